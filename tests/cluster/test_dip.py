"""Hartigan's dip: the statistic against the ``diptest`` package (an independent C++
implementation), the p-values against its independently simulated tables, and calibration."""

from __future__ import annotations

import diptest
import numpy as np
import pytest
from diptest.consts import Consts
from scipy import stats

from probkit.cluster import dip_pvalue, dip_statistic, dip_test


def _samples():
    rng = np.random.default_rng(0)
    # n >= 5: for n <= 4 the two implementations follow different conventions (diptest returns
    # 0, probkit the algorithm's minimum 1/(2n)); PPP never tests fewer than 20 points.
    for n in (5, 9, 17, 50, 333, 2000):
        yield rng.normal(size=n)
        yield rng.uniform(size=n)
        yield np.concatenate([rng.normal(size=n // 2), rng.normal(3.0, 1.0, n - n // 2)])
        yield np.round(rng.normal(size=n), 1)  # ties
    yield np.array([0.0, 0.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize(("index", "sample"), list(enumerate(_samples())))
def test_dip_statistic_matches_the_diptest_package(index, sample):
    assert dip_statistic(sample) == pytest.approx(diptest.dipstat(sample), abs=1e-12)


def test_dip_statistic_edge_cases():
    assert dip_statistic(np.full(7, 3.0)) == 0.0
    sample = np.random.default_rng(1).normal(size=100)
    assert dip_statistic(np.sort(sample), is_sorted=True) == dip_statistic(sample)
    assert dip_statistic(sample) == pytest.approx(dip_statistic(-sample), abs=1e-15)  # reflection
    assert dip_statistic(5 + 3 * sample) == pytest.approx(dip_statistic(sample), abs=1e-15)


@pytest.mark.parametrize("n", [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 72000])
def test_pvalues_agree_with_the_independent_tables(n):
    # diptest's critical values come from Maechler's own simulation, ours from 1e5 uniform
    # samples per size: both are Monte Carlo estimates of the same tail probability t. Each has
    # binomial standard error about sqrt(t(1 - t)/1e5); five joint standard errors (false-alarm
    # below 1e-5 per comparison), plus 5 % of t for the interpolation between sizes.
    row = list(Consts._SAMPLE_SIZE).index(n)
    for level in (0.5, 0.9, 0.95, 0.99, 0.995, 0.999):
        dip = Consts._CRIT_VALS[row][list(Consts._ALPHA).index(level)]
        tail = 1 - level
        tolerance = 5 * np.sqrt(2 * tail * (1 - tail) / 1e5) + 0.05 * tail
        assert dip_pvalue(dip, n) == pytest.approx(tail, abs=tolerance)


def test_pvalue_is_uniform_under_the_uniform_null():
    # 400 uniform samples of n = 150: the p-values should be uniform (KS, false-alarm 1e-3).
    rng = np.random.default_rng(2)
    p = [dip_test(rng.uniform(size=150))[1] for _ in range(400)]
    assert stats.kstest(p, "uniform").pvalue > 1e-3


def test_pvalue_tail_and_bounds():
    assert dip_pvalue(0.0, 100) == 1.0
    assert dip_pvalue(0.5, 3) == 1.0  # too few points to test
    assert 0.0 <= dip_pvalue(0.2, 1000) < 1e-12  # far beyond the simulated tail
    rng = np.random.default_rng(3)
    bimodal = np.concatenate([rng.normal(size=300), rng.normal(6.0, 1.0, 300)])
    assert dip_test(bimodal)[1] < 1e-6
    dip, p = dip_test(rng.uniform(size=100), n=10_000)  # quantiles standing in for a large sample
    assert p == dip_pvalue(dip, 10_000)
