"""Partition metrics: Fränti's centroid index and the adjusted Rand index.

The centroid index (Fränti, Rezaei & Zhao, Pattern Recognition 47, 2014) counts the clusters
that one solution misses: map every centroid of A to its nearest centroid of B; the centroids
of B that receive no mapping are orphans; CI = max(orphans A→B, orphans B→A). CI = 0 means the
cluster-level structure is right (every true cluster has exactly one centroid), whatever the
fate of individual points. The adjusted Rand index (Hubert & Arabie 1985) is the chance-
corrected agreement of two labelings; it is implemented here (a contingency table and four
sums) so that probkit does not depend on scikit-learn, which the tests use as its oracle.
"""

from __future__ import annotations

import numpy as np

from probkit._errors import ProbkitError

__all__ = ["adjusted_rand_index", "centroid_index", "centroids_of"]


def _points(name: str, value) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or not np.all(np.isfinite(array)):
        raise ProbkitError(
            f"`{name}` must be a finite 2-D array of centroids, shape (k, d) with k >= 1; "
            f"got shape {array.shape}."
        )
    return array


def _orphans(source: np.ndarray, target: np.ndarray) -> int:
    distance = (
        np.sum(source**2, axis=1)[:, None] - 2 * source @ target.T + np.sum(target**2, axis=1)
    )
    return target.shape[0] - np.unique(np.argmin(distance, axis=1)).size


def centroid_index(centroids, reference) -> int:
    """Fränti's centroid index between two sets of centroids.

    Parameters
    ----------
    centroids : array_like
        Centroids found, shape ``(k, d)``.
    reference : array_like
        Reference (true) centroids, shape ``(K, d)``.

    Returns
    -------
    int
        ``max(orphans A→B, orphans B→A)``: 0 when every reference cluster has exactly one
        centroid; at least ``|k − K|``.
    """
    found, truth = _points("centroids", centroids), _points("reference", reference)
    if found.shape[1] != truth.shape[1]:
        raise ProbkitError(
            f"`centroids` have {found.shape[1]} columns and `reference` {truth.shape[1]}; "
            "they must live in the same space."
        )
    return int(max(_orphans(found, truth), _orphans(truth, found)))


def centroids_of(X, labels) -> np.ndarray:
    """The mean of each cluster's rows, clusters in increasing label order (noise ``-1`` skipped)."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    if X.ndim != 2:
        raise ProbkitError(f"`X` must be 2-D, shape (n, d); got shape {X.shape}.")
    if labels.shape != (X.shape[0],):
        raise ProbkitError(
            f"`labels` must have one entry per row of `X` ({X.shape[0]}); got shape {labels.shape}."
        )
    clusters = np.unique(labels[labels >= 0])
    if clusters.size == 0:
        raise ProbkitError("`labels` has no cluster: every row is noise (-1).")
    return np.stack([X[labels == c].mean(axis=0) for c in clusters])


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Adjusted Rand index of two labelings of the same rows (1: identical partitions)."""
    a, b = np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ProbkitError(
            f"`labels_true` and `labels_pred` must be non-empty and of equal length; got "
            f"{a.size} and {b.size}."
        )
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1)

    def pairs(x):
        return float(np.sum(x * (x - 1)) / 2)

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    if a.size < 2:
        return 1.0  # one row: both labelings are the same (trivial) partition
    expected = rows * cols / pairs(np.array([a.size]))
    maximum = 0.5 * (rows + cols)
    if maximum == expected:  # both partitions trivial (one cluster each, or all singletons)
        return 1.0
    return (index - expected) / (maximum - expected)
