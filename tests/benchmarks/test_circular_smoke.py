"""The two ``probkit.circular`` benchmarks run at their smoke size and write sane results.

``benchmarks/circular_fit.py`` (mixture fitting against pycircstat2 ``MovM``, scipy and
scikit-learn's ``GaussianMixture``) and ``benchmarks/circular_sampler.py`` (``VonMises.sample``
against NumPyro's). Peers that are not installed (they come with the ``bench`` extra) are skipped
by the benchmarks themselves, with the reason recorded; the tests then check only probkit.
"""

import importlib.util
import json
import sys

import numpy as np
import pytest
from _common import load_benchmark as load

HAVE_PYCIRCSTAT2 = importlib.util.find_spec("pycircstat2") is not None
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None


def read_outputs(out, name):
    return json.loads((out / f"{name}.json").read_text()), (out / f"{name}.md").read_text()


@pytest.fixture(scope="module")
def circular_fit(tmp_path_factory):
    # float32 only: each probkit precision costs two compilations (single and batched fits).
    out = tmp_path_factory.mktemp("circular_fit")
    load("circular_fit").main(["--smoke", "--out", str(out), "--dtypes", "float32"])
    return read_outputs(out, "circular_fit")


def _within_mc_error(entry, run, true_key="true_heldout_mean_loglik"):
    """probkit's held-out mean log-likelihood is within 4 Monte Carlo standard errors of the
    true mixture's on the same angles (a fit is never better than the truth by more than noise,
    and an EM fit of 8 parameters to 1000 angles loses about 8 / 2000 nats per angle)."""
    gap = entry["heldout_mean_loglik_median"] - run[true_key]
    return abs(gap) < 4 * run["true_heldout_se"] + 0.01


def test_circular_fit_single_smoke(circular_fit):
    payload, markdown = circular_fit
    assert payload["smoke"] is True
    (run,) = payload["runs"]
    assert run["n"] == 1000
    probkit = run["methods"]["probkit_float32"]
    assert probkit["first_call_s"] >= probkit["compile_s"] > 0
    assert probkit["steady_median_s"] > 0
    assert probkit["converged_fraction"] == 1.0
    assert _within_mc_error(probkit, run)
    # The recovered parameters: trans at ±π and the two gauche states.
    loc = np.sort(np.abs(probkit["params_first_call"]["loc"]))
    np.testing.assert_allclose(loc, [1.1, 1.1, np.pi], atol=0.05)
    # One von Mises component is far worse than the true three-component mixture.
    assert run["methods"]["scipy_vonmises_k1"]["heldout_minus_true_first_call"] < -0.5
    if HAVE_PYCIRCSTAT2:
        assert "pycircstat2_movm" in run["ratio_peer_over_probkit"]
        assert np.isfinite(run["methods"]["pycircstat2_movm"]["heldout_mean_loglik_median"])
    else:
        assert "pycircstat2_movm" in payload["skipped"]
    if HAVE_SKLEARN:
        gmm = run["methods"]["sklearn_gmm"]
        # The trans component straddles ±π: a Gaussian mixture on the line fits it badly and
        # leaves probability outside the circle.
        assert gmm["heldout_mean_loglik_median"] < probkit["heldout_mean_loglik_median"]
        assert 0 < gmm["mass_outside_circle"] < 1
    assert "probkit_float32" in markdown
    assert "true mixture" in markdown


def test_circular_fit_batched_smoke(circular_fit):
    payload, markdown = circular_fit
    batched = payload["batched"]
    assert batched["batch"] == 8
    assert batched["n"] == 500
    probkit = batched["methods"]["probkit_float32"]
    assert probkit["converged_fraction"] == 1.0
    assert _within_mc_error(probkit, batched)
    for name in ("pycircstat2_movm", "scipy_vonmises_k1", "sklearn_gmm"):
        if name in batched["methods"]:
            entry = batched["methods"][name]
            factor = batched["batch"] / batched["peer_subset"]
            assert entry["steady_median_extrapolated_s"] == pytest.approx(
                entry["steady_median_s"] * factor
            )
    assert "fitted at once" in markdown


def test_circular_fit_reports_missing_peers(tmp_path, monkeypatch):
    # No probkit precision and no peer importable: nothing compiles, the reasons are written.
    monkeypatch.setitem(sys.modules, "pycircstat2.clustering", None)
    monkeypatch.setitem(sys.modules, "sklearn.mixture", None)
    payload = load("circular_fit").main(
        [
            "--smoke",
            "--out",
            str(tmp_path),
            "--dtypes",
            "--peers",
            "pycircstat2_movm",
            "sklearn_gmm",
            "--no-batched",
        ]
    )
    assert set(payload["skipped"]) == {"pycircstat2_movm", "sklearn_gmm"}
    assert payload["runs"][0]["methods"] == {}
    assert "Skipped pycircstat2_movm" in (tmp_path / "circular_fit.md").read_text()


def test_circular_sampler_smoke(tmp_path):
    # probkit alone here (NumPyro's sampler is compiled by the next test, in float32 only).
    payload = load("circular_sampler").main(
        ["--smoke", "--out", str(tmp_path), "--libraries", "probkit"]
    )
    saved, markdown = read_outputs(tmp_path, "circular_sampler")
    assert saved["n_draws"] == 2000
    assert saved["ks"]["tests_per_library"] == 26
    assert saved["ks"]["bonferroni_level"] == pytest.approx(0.01 / 26)
    for dtype in ("float32", "float64"):
        probkit = payload["runs"][dtype]["libraries"]["probkit"]
        assert probkit["draw_dtype"] == dtype
        assert probkit["compile_s"] > 0
        # probkit's sampler passes every KS test, in both precisions, from κ = 0 to 1e8.
        assert probkit["all_passed"], probkit["failed_kappas"]
        for entry in probkit["kappas"].values():
            assert entry["non_finite"] == 0
            assert entry["distinct_values"] >= 1990  # continuous draws, no rounding to a grid
            assert abs(entry["one_minus_cos_z"]) < 5
            assert entry["draws_per_s"] > 0
    assert len(saved["scipy_reference"]) == 13
    assert "probkit KS p" in markdown


def test_circular_sampler_numpyro_smoke(tmp_path):
    # NumPyro's float32 sampler at three concentrations: its known failures are reported as
    # failures (research note §5: NaN draws at κ = 0, a few hundred distinct values at κ = 1e6).
    payload = load("circular_sampler").main(
        [
            "--smoke",
            "--out",
            str(tmp_path),
            "--libraries",
            "numpyro",
            "--dtypes",
            "float32",
            "--kappas",
            "0",
            "1",
            "1e6",
            "--no-scipy",
        ]
    )
    numpyro = payload["runs"]["float32"]["libraries"]["numpyro"]
    assert payload["ks"]["tests_per_library"] == 3
    assert numpyro["kappas"]["1.0"]["passed"]
    assert numpyro["failed_kappas"] == [0.0, 1e6]
    assert numpyro["kappas"]["0.0"]["non_finite"] > 0
    assert numpyro["kappas"]["1000000.0"]["distinct_values"] < 1000
    assert "numpyro KS p" in (tmp_path / "circular_sampler.md").read_text()
