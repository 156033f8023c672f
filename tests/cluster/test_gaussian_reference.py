"""The Gaussian-reference test of PPP's ``"gaussian"`` rule: its level on Gaussian clusters,
its determinism, and its power where the clusters are groups."""

import numpy as np
import pytest
from scipy import stats

from probkit.cluster._gaussian_reference import gaussian_reference_pvalue, two_means_index


def _test(rows):
    centred = rows - rows.mean(axis=0)
    index = two_means_index(centred[None])[0]
    variances = np.linalg.eigvalsh(centred.T @ centred / rows.shape[0])
    return gaussian_reference_pvalue(index, rows.shape[0], variances)


def test_two_means_index_of_two_far_groups_and_of_a_uniform_line():
    rng = np.random.default_rng(0)
    groups = np.concatenate([rng.normal(-10, 1, (500, 1)), rng.normal(10, 1, (500, 1))])
    # Two groups 20 SD apart: the split leaves 1 / (1 + 100) of the scatter within them.
    assert two_means_index((groups - groups.mean())[None])[0] == pytest.approx(1 / 101, rel=0.05)
    line = rng.uniform(-1, 1, (20000, 1))
    # A uniform law's best split leaves a quarter of its variance (the theory's 1 - 3/4).
    assert two_means_index((line - line.mean())[None])[0] == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize(("n", "d"), [(100, 2), (300, 10), (2000, 30)])
def test_level_on_gaussian_clusters(n, d):
    # p-values of Gaussian clusters: the fraction below 0.05 stays within a one-sided binomial
    # bound at false-alarm rate 1e-3 (40 data sets).
    rng = np.random.default_rng([1, n, d])
    scales = np.linspace(1.0, 3.0, d)
    p_values = np.array([_test(rng.normal(size=(n, d)) * scales)[0] for _ in range(40)])
    bound = stats.binom.isf(1e-3, 40, 0.05)
    assert np.sum(p_values < 0.05) <= bound
    assert p_values.mean() > 0.3  # not stuck at 0 or piled up at small values


def test_deterministic_and_powerful_on_groups():
    rng = np.random.default_rng(2)
    centres = np.zeros((3, 10))
    centres[np.arange(3), np.arange(3)] = 4.0
    groups = np.concatenate([rng.normal(c, 1.0, (60, 10)) for c in centres])
    first = _test(groups)
    assert first == _test(groups)
    # Row order changes the eigenvalues by rounding only.
    assert _test(groups[rng.permutation(180)]) == pytest.approx(first, rel=1e-9)
    assert first[0] < 0.01
