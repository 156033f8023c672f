"""The 2-means cluster index of a cluster against Gaussian clusters of the same covariance.

PPP's ``validate="gaussian"`` rule asks whether a cluster is one Gaussian: the fraction of its
scatter that its 2-means split leaves within the two sides (the cluster index
``CI = (W₀ + W₁) / T``) is compared with the cluster indices of Gaussian samples of the same
size whose covariance has the cluster's eigenvalues, split the same way (from the principal
axis, refined by 2-means). This is SigClust (Liu, Hayes, Nobel & Marron, JASA 2008): the
simulation reproduces what fitting a split to the same rows does in many dimensions with few
rows, where a single Gaussian already looks split in two. The null distribution is summarised
by a Gaussian fit to the simulated indices, as SigClust does, so that small p-values come from
a few hundred simulations.

Which clusters it holds its level on: a 2-means split removes at most 2/π of the variance along
the axis it cuts for a Gaussian, less for heavier-tailed or more peaked shapes (Student t: 0.40
of it for three degrees of freedom), and more for flat ones (uniform: 3/4). So the rule is
conservative for Gaussian and heavier-tailed clusters and over-splits flat-topped ones as n
grows; the dip rule holds its level for every unimodal shape, at the price of power on small
tables (see :class:`~probkit.cluster.PPP`).

The simulations draw from a generator seeded by the sample size and the dimension alone, so the
test is deterministic and does not depend on row order.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["REPLICATES", "SIMULATED_ROWS", "gaussian_reference_pvalue"]

REPLICATES = 200
"""Gaussian samples simulated per test."""
SIMULATED_ROWS = 1024
"""Largest simulated sample: larger clusters are compared with samples of this size. Smaller
samples split more of their own noise (lower indices), so the comparison is conservative."""
_SEED = 20261207
_ITERATIONS = 100


def two_means_index(rows: np.ndarray) -> np.ndarray:
    """The 2-means cluster index of each sample, split as PPP splits a cluster.

    Parameters
    ----------
    rows : numpy.ndarray
        Centred samples, shape ``(r, m, d)``.

    Returns
    -------
    numpy.ndarray
        ``(W₀ + W₁) / T`` per sample, shape ``(r,)``: the share of the scatter left within the
        two sides after 2-means from the cut through the mean orthogonal to the sample's own
        principal axis.
    """
    # Batched matrix products throughout (BLAS), never an (r, m, d) temporary per iteration.
    m = rows.shape[1]
    scatter = np.matmul(np.swapaxes(rows, 1, 2), rows)
    axis = np.linalg.eigh(scatter)[1][..., -1:]  # (r, d, 1): each sample's principal axis
    side = np.matmul(rows, axis)[..., 0] > 0
    total_sum = rows.sum(axis=1)  # (r, d)
    for _ in range(_ITERATIONS):
        count1 = side.sum(axis=1)
        sum1 = np.matmul(side[:, None, :].astype(rows.dtype), rows)[:, 0]
        mean1 = sum1 / np.maximum(count1, 1)[:, None]
        mean0 = (total_sum - sum1) / np.maximum(m - count1, 1)[:, None]
        # Nearer mean1 than mean0: a linear rule in x.
        offset = 0.5 * (np.sum(mean1**2, axis=1) - np.sum(mean0**2, axis=1))
        new = np.matmul(rows, (mean1 - mean0)[..., None])[..., 0] > offset[:, None]
        if np.array_equal(new, side):
            break
        side = new
    count1 = side.sum(axis=1)
    sum1 = np.matmul(side[:, None, :].astype(rows.dtype), rows)[:, 0]
    grand = total_sum / m
    mean1 = sum1 / np.maximum(count1, 1)[:, None]
    mean0 = (total_sum - sum1) / np.maximum(m - count1, 1)[:, None]
    total = np.trace(scatter, axis1=1, axis2=2) - m * np.sum(grand**2, axis=1)
    between = count1 * np.sum((mean1 - grand) ** 2, axis=1) + (m - count1) * np.sum(
        (mean0 - grand) ** 2, axis=1
    )
    return 1.0 - between / total


def gaussian_reference_pvalue(index: float, n: int, variances: np.ndarray) -> tuple[float, float]:
    """P(a Gaussian cluster's 2-means index ≤ ``index``): small when the split is real.

    Parameters
    ----------
    index : float
        The cluster's 2-means cluster index ``(W₀ + W₁) / T``.
    n : int
        The cluster's rows.
    variances : numpy.ndarray
        The eigenvalues of its covariance, shape ``(d,)``.

    Returns
    -------
    p_value, reference : float
        The p-value (from a Gaussian fit to the simulated indices) and the simulated indices'
        mean.
    """
    variances = np.sort(np.clip(np.asarray(variances, dtype=np.float64), 0.0, None))[::-1]
    d = variances.size
    m = int(min(n, SIMULATED_ROWS))
    rng = np.random.default_rng([_SEED, m, d])
    rows = rng.standard_normal((REPLICATES, m, d)) * np.sqrt(variances)
    rows -= rows.mean(axis=1, keepdims=True)
    simulated = two_means_index(rows)
    mean, sd = float(simulated.mean()), float(simulated.std(ddof=1))
    if not sd > 0 or not math.isfinite(index):
        return 1.0, mean
    return float(stats.norm.cdf((index - mean) / sd)), mean
