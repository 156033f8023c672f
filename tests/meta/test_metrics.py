"""Calibration and coverage metrics: known values, calibrated and miscalibrated predictions.

Statistical tests use fixed seeds. The calibrated-ECE bound allows every bin's accuracy to sit
4 binomial standard errors from its confidence at once (false alarm below 15 × 6.3e-5 ≈ 1e-3:
it needs some bin beyond 4 SE); coverage is compared at 4 binomial standard errors (6.3e-5 per
level) plus 1e-3 for the O(1/n_draws) bias of interval ends estimated from 4000 draws.
"""

import math
import warnings

import matplotlib
import numpy as np
import pytest

from probkit._errors import ProbkitError
from probkit.meta.metrics import (
    classification_calibration,
    interval_coverage,
    predictive_to_arviz,
    reliability_diagram,
)

matplotlib.use("Agg")


def test_known_values_of_a_constant_binary_forecast():
    # p(class 1) = 0.8 for five rows, three of them class 1.
    report = classification_calibration([0.8] * 5, [1, 1, 1, 0, 0])
    assert report.accuracy == pytest.approx(0.6)
    assert report.ece == pytest.approx(0.2)
    assert report.mce == pytest.approx(0.2)
    assert report.nll == pytest.approx((3 * -math.log(0.8) + 2 * -math.log(0.2)) / 5)
    assert report.brier == pytest.approx((3 * (0.2**2 + 0.2**2) + 2 * (0.8**2 + 0.8**2)) / 5)
    assert report.bin_counts.sum() == 5
    assert report.bin_counts[11] == 5  # 0.8 is in the bin (11/15, 12/15]


def test_multiclass_brier_and_nll_follow_their_definitions():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, size=50)
    report = classification_calibration(p, y)
    onehot = np.eye(4)[y]
    assert report.brier == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    assert report.nll == pytest.approx(-np.mean(np.log(p[np.arange(50), y])))
    assert report.accuracy == pytest.approx(np.mean(p.argmax(1) == y))


def _calibrated_ece_bound(report, z=4.0):
    filled = report.bin_counts > 0
    conf = report.bin_confidence[filled]
    n_b = report.bin_counts[filled]
    return float(np.sum(n_b / n_b.sum() * z * np.sqrt(conf * (1 - conf) / n_b)))


def test_ece_of_calibrated_forecasts_is_within_noise_and_overconfidence_is_caught():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    calibrated = classification_calibration(p, y)
    assert calibrated.ece <= _calibrated_ece_bound(calibrated)
    # Sharpened forecasts (log-odds tripled) are overconfident: well beyond the noise bound.
    logit = np.log(p / (1 - p))
    sharp = classification_calibration(1 / (1 + np.exp(-3 * logit)), y)
    assert sharp.ece > 2 * _calibrated_ece_bound(sharp)
    assert sharp.nll > calibrated.nll


def test_coverage_of_a_calibrated_and_of_a_too_narrow_predictive():
    rng = np.random.default_rng(2)
    n, draws = 5000, 4000
    mean = rng.normal(size=n)
    y = mean + rng.normal(size=n)
    right = interval_coverage(mean + rng.normal(size=(draws, n)), y)
    np.testing.assert_array_less(
        np.abs(right.coverage - right.levels), 4 * right.standard_error + 1e-3
    )
    z = np.array([0.6745, 1.2816, 1.6449, 1.9600])  # standard normal quantiles of the levels
    np.testing.assert_allclose(right.mean_width, 2 * z, rtol=0.02)
    narrow = interval_coverage(mean + 0.5 * rng.normal(size=(draws, n)), y)
    assert np.all(narrow.coverage < narrow.levels - 10 * narrow.standard_error)


def test_reliability_diagram_draws_one_bar_per_bin():
    report = classification_calibration([0.3, 0.9, 0.55, 0.7], [0, 1, 1, 0], n_bins=5)
    ax = reliability_diagram(report)
    assert len(ax.patches) == 5
    assert "ECE" in ax.get_title()


def test_predictive_draws_become_inference_data():
    draws = np.zeros((100, 7))
    idata = predictive_to_arviz(draws, np.ones(7), name="height")
    assert idata.posterior_predictive["height"].shape == (1, 100, 7)
    assert idata.observed_data["height"].shape == (7,)
    chains = predictive_to_arviz(np.zeros((2, 50, 7)), np.ones(7))
    assert chains.posterior_predictive["y"].shape == (2, 50, 7)
    with pytest.raises(ProbkitError, match="shape of `targets`"):
        predictive_to_arviz(np.zeros((100, 6)), np.ones(7))


@pytest.mark.parametrize(
    ("probabilities", "labels", "match"),
    [
        ([[0.5, 0.6]], [0], "sum to 1"),
        ([[np.nan, 1.0]], [0], "finite"),
        ([[0.5, 0.5]], [2], "lie in"),
        ([[0.5, 0.5]], [0.0], "integer"),
        (np.ones((2, 1)), [0, 0], "n_classes >= 2"),
    ],
)
def test_bad_probabilities_and_labels_are_refused(probabilities, labels, match):
    with pytest.raises(ProbkitError, match=match):
        classification_calibration(probabilities, labels)


def test_bad_coverage_input_is_refused():
    with pytest.raises(ProbkitError, match="levels"):
        interval_coverage(np.zeros((10, 3)), np.zeros(3), levels=[1.0])
    with pytest.raises(ProbkitError, match="shape"):
        interval_coverage(np.zeros((10, 3)), np.zeros(4))
    with pytest.raises(ProbkitError, match="finite"):
        interval_coverage(np.full((10, 3), np.inf), np.zeros(3))


def test_float32_softmax_rows_are_accepted_without_a_warning():
    # Their sums are 1 only to float32 rounding (~1e-7), which scikit-learn's log loss flags.
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(500, 5)).astype(np.float32) * 4
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 5, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_calibration(probabilities, labels)
    expected = -np.mean(np.log(probabilities.astype(np.float64)[np.arange(500), labels]))
    np.testing.assert_allclose(report.nll, expected, rtol=1e-6)
