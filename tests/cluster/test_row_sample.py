"""The hashed subsample behind PPP(tree_rows=...): independent of the rows' order, units and
signs, of the size asked, and spread over the table like a uniform random subsample."""

from __future__ import annotations

import numpy as np
from scipy import stats

from probkit.cluster._row_sample import hashed_subsample, row_hashes


def _working(seed=0, n=20_000, d=4):
    return np.random.default_rng(seed).standard_normal((n, d))


def test_the_subsample_has_the_size_asked_and_no_repeats():
    X = _working()
    chosen = hashed_subsample(X, 3000)
    assert chosen.size == 3000
    assert np.unique(chosen).size == 3000
    assert hashed_subsample(X, 10**6).size == X.shape[0]


def test_the_subsample_does_not_depend_on_row_order_or_signs():
    X = _working()
    chosen = hashed_subsample(X, 3000)
    permutation = np.random.default_rng(1).permutation(X.shape[0])
    again = hashed_subsample(X[permutation], 3000)
    assert np.array_equal(X[chosen], X[permutation][again])  # same rows, same order
    flipped = X * np.array([1.0, -1.0, 1.0, -1.0])
    assert np.array_equal(hashed_subsample(flipped, 3000), chosen)


def test_rounding_level_changes_keep_the_subsample():
    # The same table standardised from other units agrees only to rounding.
    X = _working()
    nudged = X * (1 + 4e-16) + 1e-16
    assert np.array_equal(hashed_subsample(nudged, 3000), hashed_subsample(X, 3000))


def test_a_rotation_matrix_is_applied_before_hashing():
    X = _working()
    rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(4, 4)))
    turned = X @ rotation.T
    assert np.array_equal(hashed_subsample(turned, 3000, rotation), hashed_subsample(X, 3000))


def test_structured_rows_get_distinct_hashes():
    # Small integers: float64 words that end in zeros (a multiply-add of them collides).
    rng = np.random.default_rng(3)
    cells = np.round(rng.normal(scale=2.0, size=(50_000, 3))).astype(np.int64)
    distinct = np.unique(cells, axis=0).shape[0]
    assert np.unique(row_hashes(cells)).size == distinct


def test_the_subsample_is_spread_like_a_uniform_one():
    # Each of the d columns' mean over the subsample against its sampling distribution
    # (finite-population correction), and the subsample's share of the first and second
    # halves of the table (row positions carry no weight in the hash). Bonferroni over the
    # d + 1 z-tests at a family-wise false-alarm rate of 1e-3.
    n, m, d = 20_000, 3000, 4
    X = _working(n=n, d=d)
    chosen = hashed_subsample(X, m)
    correction = np.sqrt((n - m) / (n - 1))
    z_means = (X[chosen].mean(axis=0) - X.mean(axis=0)) / (X.std(axis=0) / np.sqrt(m) * correction)
    share = np.mean(chosen < n // 2)
    z_share = (share - 0.5) / (0.5 / np.sqrt(m) * correction)
    bound = stats.norm.isf(1e-3 / (2 * (d + 1)))
    assert np.all(np.abs(z_means) < bound), z_means
    assert abs(z_share) < bound
