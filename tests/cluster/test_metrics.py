"""The centroid index on hand-made cases and the ARI against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from probkit import ProbkitError
from probkit.cluster import adjusted_rand_index, centroid_index, centroids_of

TRUTH = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def test_centroid_index_counts_missing_clusters():
    assert centroid_index(TRUTH + 0.3, TRUTH) == 0
    assert centroid_index(TRUTH[::-1], TRUTH) == 0  # order does not matter
    # Two centroids in one true cluster, none in another: one cluster missed.
    wrong = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 10.0], [10.0, 10.0]])
    assert centroid_index(wrong, TRUTH) == 1
    assert centroid_index(TRUTH[:2], TRUTH) == 2  # k too small: at least |k - K|
    assert centroid_index(np.vstack([TRUTH, TRUTH + 0.1]), TRUTH) == 4


def test_centroid_index_rejects_bad_input():
    with pytest.raises(ProbkitError, match="same space"):
        centroid_index(TRUTH[:, :1], TRUTH)
    with pytest.raises(ProbkitError, match="centroids"):
        centroid_index(np.array([[np.nan, 0.0]]), TRUTH)


def test_centroids_of_skips_noise():
    X = np.array([[0.0], [2.0], [10.0], [99.0]])
    assert np.allclose(centroids_of(X, [0, 0, 1, -1]), [[1.0], [10.0]])
    with pytest.raises(ProbkitError, match="one entry per row"):
        centroids_of(X, [0, 1])


@pytest.mark.parametrize("seed", range(5))
def test_adjusted_rand_index_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 + seed, 200)
    b = np.where(rng.uniform(size=200) < 0.7, a, rng.integers(0, 4, 200))
    assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index(a, a) == pytest.approx(1.0)
