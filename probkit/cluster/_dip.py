"""Hartigan's dip statistic of unimodality and its p-value.

The dip of a sample is the sup-distance between its empirical cdf and the closest unimodal cdf
(Hartigan & Hartigan, Ann. Statist. 13, 1985). Under any unimodal law, the uniform is the least
favourable case, so a p-value from the dip's distribution for uniform samples is valid
(conservative) for every unimodal cluster shape, whatever its size n: this is what lets
:class:`~probkit.cluster.PPP` refuse to split non-Gaussian clusters as n grows.

The statistic is computed by the O(n) algorithm of Hartigan & Hartigan (their AS 217 structure:
greatest convex minorant and least concave majorant pointers, then shrinking the modal
interval). It is written here because the maintained implementations are GPL-licensed (R's and
PyPI's ``diptest``); the test suite uses the latter as an independent oracle. The null
distribution is simulated by :mod:`probkit.cluster._dip_null`.
"""

from __future__ import annotations

import numpy as np

from probkit.cluster._dip_table import NULL_LEVELS, NULL_QUANTILES, NULL_SIZES, TAIL_SLOPE

__all__ = ["dip_pvalue", "dip_statistic", "dip_test"]


def dip_statistic(x, *, is_sorted: bool = False) -> float:
    """Hartigan's dip of a one-dimensional sample.

    Parameters
    ----------
    x : array_like
        The sample, shape ``(n,)`` with ``n >= 1``.
    is_sorted : bool
        Skip sorting when ``x`` is already in increasing order.

    Returns
    -------
    float
        The dip, in ``[1/(2n), 1/4]``; ``0`` for a constant sample.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if not is_sorted:
        x = np.sort(x)
    n = x.size
    if n == 0 or x[0] == x[-1]:
        return 0.0
    xs = x.tolist()  # plain floats: the pointer loops below run much faster on a list
    minorant = _minorant_pointers(xs)
    majorant = _majorant_pointers(xs)
    low, high, dip = 0, n - 1, 1.0  # dip counted in units of 1/n until the last line
    while True:
        gcm = [high]  # vertices of the convex minorant of x[low..high], right to left
        while gcm[-1] > low:
            gcm.append(minorant[gcm[-1]])
        lcm = [low]  # vertices of the concave majorant of x[low..high], left to right
        while lcm[-1] < high:
            lcm.append(majorant[lcm[-1]])
        last_g, last_l = len(gcm) - 1, len(lcm) - 1
        ig, ih = last_g, last_l
        if last_g != 1 or last_l != 1:
            # The largest vertical distance between the two hulls, scanning from both ends.
            d, ix, iv = 0.0, last_g - 1, 1
            while True:
                g, v = gcm[ix], lcm[iv]
                if g > v:
                    g1 = gcm[ix + 1]
                    dx = (v - g1 + 1) - (xs[v] - xs[g1]) * (g - g1) / (xs[g] - xs[g1])
                    iv += 1
                    if dx >= d:
                        d, ig, ih = dx, ix + 1, iv - 1
                else:
                    v1 = lcm[iv - 1]
                    dx = (xs[g] - xs[v1]) * (v - v1) / (xs[v] - xs[v1]) - (g - v1 - 1)
                    ix -= 1
                    if dx >= d:
                        d, ig, ih = dx, ix + 1, iv
                ix = max(ix, 0)
                iv = min(iv, last_l)
                if gcm[ix] == lcm[iv]:
                    break
        else:
            d = 1.0
        if d < dip:
            break
        # The dip outside the modal interval: the minorant left of it, the majorant right of it.
        dip_left = max(
            (_hull_gap(x, gcm[j + 1], gcm[j], convex=True) for j in range(ig, last_g)), default=0.0
        )
        dip_right = max(
            (_hull_gap(x, lcm[j], lcm[j + 1], convex=False) for j in range(ih, last_l)),
            default=0.0,
        )
        dip = max(dip, dip_left, dip_right)
        if low == gcm[ig] and high == lcm[ih]:
            break
        low, high = gcm[ig], lcm[ih]
    return dip / (2 * n)


def _minorant_pointers(xs: list[float]) -> list[int]:
    # pointer[j]: the vertex before j on the greatest convex minorant of the ecdf on x[0..j].
    pointer = [0] * len(xs)
    for j in range(1, len(xs)):
        m, xj = j - 1, xs[j]
        while True:
            mm = pointer[m]
            if m == 0 or (xj - xs[m]) * (m - mm) < (xs[m] - xs[mm]) * (j - m):
                break
            m = mm
        pointer[j] = m
    return pointer


def _majorant_pointers(xs: list[float]) -> list[int]:
    # pointer[k]: the vertex after k on the least concave majorant of the ecdf on x[k..n-1].
    n = len(xs)
    pointer = [0] * n
    pointer[n - 1] = n - 1
    for k in range(n - 2, -1, -1):
        m, xk = k + 1, xs[k]
        while True:
            mm = pointer[m]
            if m == n - 1 or (xk - xs[m]) * (m - mm) < (xs[m] - xs[mm]) * (k - m):
                break
            m = mm
        pointer[k] = m
    return pointer


def _hull_gap(x: np.ndarray, begin: int, end: int, *, convex: bool) -> float:
    # Largest distance (in units of 1/n) between the ecdf and one hull segment [begin, end].
    if end - begin <= 1 or x[end] == x[begin]:
        return 1.0
    steps = np.arange(begin, end + 1) - begin
    line = (x[begin : end + 1] - x[begin]) * ((end - begin) / (x[end] - x[begin]))
    gap = steps + 1 - line if convex else line - (steps - 1)
    return max(1.0, float(gap.max()))


def dip_pvalue(dip: float, n: int) -> float:
    """P(dip ≥ ``dip``) for ``n`` uniform draws: a valid p-value under any unimodal law.

    The null distribution of ``√n · dip`` is tabulated by simulation in
    :mod:`probkit.cluster._dip_null`; between tabulated sizes it is interpolated linearly in
    ``1/√n``, beyond the largest size the largest is used (the distribution of ``√n · dip``
    has converged there to about 1 %), and beyond the simulated tail (p < 1e-3) the log
    p-value is extrapolated linearly in ``(√n · dip)²``.

    Parameters
    ----------
    dip : float
        The dip statistic.
    n : int
        The sample size it was computed from (at least 4).

    Returns
    -------
    float
        The p-value, in ``[0, 1]``.
    """
    n = int(n)
    if n < 4:
        return 1.0
    scaled = np.sqrt(n) * dip
    quantiles = _quantiles_at(n)
    if scaled <= quantiles[0]:
        return 1.0
    if scaled <= quantiles[-1]:
        return float(1.0 - np.interp(scaled, quantiles, NULL_LEVELS))
    tail = 1.0 - NULL_LEVELS[-1]
    return float(tail * np.exp(-TAIL_SLOPE * (scaled**2 - quantiles[-1] ** 2)))


def _quantiles_at(n: int) -> np.ndarray:
    sizes = np.asarray(NULL_SIZES, dtype=np.float64)
    if n >= sizes[-1]:
        return np.asarray(NULL_QUANTILES[-1])
    position = np.searchsorted(sizes, n)
    if sizes[position] == n:
        return np.asarray(NULL_QUANTILES[position])
    lo, hi = position - 1, position
    weight = (1 / np.sqrt(n) - 1 / np.sqrt(sizes[lo])) / (
        1 / np.sqrt(sizes[hi]) - 1 / np.sqrt(sizes[lo])
    )
    return (1 - weight) * np.asarray(NULL_QUANTILES[lo]) + weight * np.asarray(NULL_QUANTILES[hi])


def dip_test(x, *, n: int | None = None) -> tuple[float, float]:
    """Hartigan's dip test of unimodality.

    Parameters
    ----------
    x : array_like
        The sample, shape ``(m,)``.
    n : int, optional
        The size of the sample that ``x`` summarises, when ``x`` holds ``m < n`` quantiles of a
        larger sample (as :class:`~probkit.cluster.PPP` does for large clusters); default
        ``m``.

    Returns
    -------
    dip, p_value : float
        The statistic and its p-value against unimodality.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    dip = dip_statistic(x)
    return dip, dip_pvalue(dip, x.size if n is None else n)
