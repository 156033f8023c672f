"""Statistical tests with stated false-alarm rates, for checks whose reference is an expectation.

Every test returns a p-value under the null hypothesis that the code agrees with theory; the
runner (:mod:`probkit.theory.runner`) decides verdicts at a family-wise false-alarm rate.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["holm_combined_p_value", "mean_z_test", "rank_uniformity_p_value"]


def mean_z_test(samples: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided z-tests that each column of ``samples`` has mean ``expected``.

    The standard error is the sample standard deviation over ``sqrt(R)``: the Monte Carlo error
    of the mean of ``R`` independent replicates. The normal approximation needs ``R`` in the
    hundreds or more. A column with no spread tests equality exactly: p-value 1 when its
    constant value equals ``expected``, else 0.

    Parameters
    ----------
    samples : numpy.ndarray, shape (R, k)
        ``R`` independent replicates of ``k`` statistics.
    expected : numpy.ndarray, shape (k,)
        Their expectations under the null hypothesis.

    Returns
    -------
    z : numpy.ndarray, shape (k,)
        ``(mean - expected) / standard error`` (0 for columns without spread that match, ±inf
        for those that do not).
    p_values : numpy.ndarray, shape (k,)
    """
    samples = np.asarray(samples, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    replicates = samples.shape[0]
    mean = samples.mean(axis=0)
    standard_error = samples.std(axis=0, ddof=1) / np.sqrt(replicates)
    difference = mean - expected
    # Spread-free columns: equality up to rounding of the mean of identical values.
    constant = standard_error <= 1e-12 * np.maximum(1.0, np.abs(expected))
    matches = np.abs(difference) <= 1e-9 * np.maximum(1.0, np.abs(expected))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(
            constant,
            np.where(matches, 0.0, np.sign(difference) * np.inf),
            difference / standard_error,
        )
    p_values = 2 * stats.norm.sf(np.abs(z))
    return z, p_values


def holm_combined_p_value(p_values: np.ndarray) -> float:
    """One p-value for a family of tests: the smallest Holm-adjusted p-value.

    Rejecting the family when it is below ``alpha`` controls the family-wise error rate at
    ``alpha`` (:func:`statsmodels.stats.multitest.multipletests`, ``method="holm"``).
    """
    p_values = np.asarray(p_values, dtype=np.float64).ravel()
    adjusted = multipletests(p_values, method="holm")[1]
    return float(adjusted.min())


def rank_uniformity_p_value(ranks: np.ndarray, num_draws: int) -> tuple[float, np.ndarray]:
    """SBC (Talts et al. 2018): are ranks in ``{0, ..., L}`` uniform? One p-value for all columns.

    Pearson's χ² test of the ``L + 1`` rank counts of each column (``scipy.stats.chisquare``),
    combined over the columns by Holm's procedure. Keep ``R / (L + 1)`` at 5 or more.

    Parameters
    ----------
    ranks : numpy.ndarray, shape (R,) or (R, k)
        For each simulation, the number of the ``L`` posterior draws below the true value.
    num_draws : int
        ``L``.

    Returns
    -------
    p_value : float
    counts : numpy.ndarray, shape (L + 1, k)
        The rank histogram of each column.
    """
    ranks = np.asarray(ranks, dtype=int).reshape(len(ranks), -1)
    counts = np.stack([np.bincount(column, minlength=num_draws + 1) for column in ranks.T], axis=1)
    p_values = [stats.chisquare(counts[:, j]).pvalue for j in range(counts.shape[1])]
    return holm_combined_p_value(np.asarray(p_values)), counts
