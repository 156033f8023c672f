"""Monte Carlo ground truth for excursions of stationary Gaussian processes.

:func:`simulate_excursions` draws paths of a stationary Gaussian process on a regular grid by
circulant embedding (Dietrich & Newsam 1993; Wood & Chan 1994) and reduces every batch of paths,
inside one compiled function, to a handful of statistics: level-crossing counts (for Rice's
intensity), the histogram of complete excursion lengths above the level (for the survival
function and the persistence exponent θ), the moments of those lengths, and persistence
probabilities ``P(X > u on [0, t])``. Paths are never kept: memory grows with the batch, not with
the number of paths.

Estimators
----------
*Crossing intensity.* Up- plus down-crossings of the level between neighbouring grid points,
per unit time. A pair of crossings inside one grid step is missed, so the estimate is biased low
by ``O((dt·√λ₂)²)`` for smooth covariances and more when ``λ₄ = ∞``.

*Excursion lengths.* An excursion runs from an up-crossing to the next down-crossing; both times
are placed by linear interpolation between the grid points. Excursions cut by either end of the
window are dropped. Dropping them biases the kept ones towards short lengths (an excursion of
length ``ℓ`` fits in a window of length ``W`` only if it starts in ``[0, W - ℓ]``), so each kept
excursion is given the Horvitz–Thompson weight ``W / (W - ℓ)``: the weighted histogram estimates
the Palm distribution of lengths (the law of an excursion picked at a typical up-crossing)
without edge bias. Both the raw and the weighted histograms are returned; the survival function,
density, moments and θ fit use the weighted one. Linear interpolation shortens short,
parabola-shaped excursions by ``O(dt²)`` (at ``dt·√λ₂ = 0.05``, ``S(1)`` of the d = 2 diffusion
comes out about 0.001 low), and excursions shorter than about a step are missed.

*Persistence.* ``P(X > u on [0, t])`` is estimated by the fraction of all grid windows
``[s, s + t]`` (every start ``s`` of every path) on which the path is above ``u`` at every grid
point. A stationary average, with no Palm conditioning; the grid misses excursions below ``u``
that start and end between grid points, a bias of the same order as the crossing bias.

*Standard errors* come from the variation between independent batches of paths (ratio estimators
by the delta method). Batches are merged into at most 128 blocks (consecutive batches), so that
the per-block histograms kept for the bootstrap stay small.

Performance
-----------
On two CPU cores float32 paths (the default) run at 2.7-3.9 times the throughput of a plain
NumPy float64 loop (``benchmarks/exceedance_simulation.py``: 42-46 million grid points per second
at the default batch of ``2^18`` points, against 12 million; float64 paths run at NumPy's speed,
held back by float64 ``erf_inv`` in the normals). Two measures got there: the threefry hash is
unrolled (`probkit._random.fast_threefry`, the same numbers five times faster on CPU), and the
reduction visits crossings instead of every grid interval (`_reduce_paths`). On one H100 GPU the
step (before that reduction) ran at 1.5-1.6 billion points per second with batches of ``2^22``
points and 3.4-4.6 billion with the default ``2^25`` (float32; float64 is 5-15 % slower), 170 to
550 times NumPy on the GPU machine's CPU. The first call of each configuration (``n_steps``,
``batch_size``, number of bins and persistence times, dtype, devices, and the crossing capacity,
a power of two set by ``r(dt)`` and the level) compiles for 3-4 s on CPU; the covariance,
``dt``, ``level`` and ``n_paths`` are otherwise arguments of the compiled step.

Reproducibility
---------------
Path ``2p`` and path ``2p + 1`` are the real and imaginary parts of one complex FFT whose normals
are drawn from ``jax.random.fold_in(key, p)``. The paths therefore do not depend on the batch
size or on the number of devices: with the same key, the integer statistics (crossing counts,
histogram counts, persistence counts) are identical for any batch size and device count, and the
floating-point sums agree to rounding (their summation order changes).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from probkit._errors import ProbkitError
from probkit._random import fast_threefry
from probkit._validate import check_choice, check_positive_int, is_concrete
from probkit.exceedance._checks import check_covariance
from probkit.exceedance.covariance import StationaryCovariance

__all__ = [
    "BlockStatistics",
    "ExcursionDensity",
    "ExcursionSimulation",
    "ThetaFit",
    "circulant_embedding",
    "fit_exponential_tail",
    "simulate_excursions",
]

_AXIS = "paths"
_MAX_BLOCKS = 128
_EMBEDDING_TOLERANCE = 1e-8
"""Eigenvalues of the circulant above ``-1e-8 · max`` are rounding and are clipped to 0."""
_MAX_DOUBLINGS = 5
_COARSE_GRID = 0.1
"""Above ``dt·√λ₂ = 0.1`` a noticeable share of crossings fall in pairs inside one step."""
_SAMPLES_PER_BATCH = {"cpu": 2**18, "other": 2**25}
"""Default grid points per batch: on 2 CPU cores 2^18 ran faster than 2^21 (cache); on an H100
2^25 ran 2.8 times faster than 2^22 (4.6 against 1.6 billion points per second)."""
_MIN_BATCHES = 16
"""The default batch size leaves at least this many batches (when there are enough paths):
standard errors come from the variation between batches, and one batch gives none."""
_INT32_LIMIT = 2**31 - 1
_MAX_TABLE = 2**20
_DISCARD = 256


# --- results ----------------------------------------------------------------------------------


class BlockStatistics(NamedTuple):
    """Statistics of consecutive batches merged into blocks (for standard errors, bootstrap).

    Attributes
    ----------
    n_paths : ndarray of int64, shape (n_blocks,)
        Paths simulated in each block.
    crossings : ndarray of int64, shape (n_blocks, 2)
        Up- and down-crossings of the level.
    counts : ndarray of int64, shape (n_blocks, n_bins + 2)
        Complete excursions per length bin; slot 0 holds lengths below the first edge, slot
        ``n_bins + 1`` lengths at or above the last edge.
    weighted_counts : ndarray of float64, shape (n_blocks, n_bins + 2)
        The same with each excursion weighted by ``W / (W - ℓ)`` (see the module notes).
    moments : ndarray of float64, shape (n_blocks, 6)
        ``Σw, Σw², Σwℓ, Σwℓ², Σℓ, Σℓ²`` over complete excursions (``w`` the edge weight).
    persistence_counts : ndarray of int64, shape (n_blocks, n_times)
        Grid windows of each persistence time on which the path stays above the level.
    """

    n_paths: np.ndarray
    crossings: np.ndarray
    counts: np.ndarray
    weighted_counts: np.ndarray
    moments: np.ndarray
    persistence_counts: np.ndarray


class ExcursionDensity(NamedTuple):
    """A histogram estimate of the excursion-length density.

    Attributes
    ----------
    bin_edges : ndarray, shape (n_bins + 1,)
        The bin edges.
    density : ndarray, shape (n_bins,)
        Edge-corrected probability per unit length in each bin.
    standard_error : ndarray, shape (n_bins,)
        Binomial standard error with the effective number of excursions ``(Σw)²/Σw²``.
    """

    bin_edges: np.ndarray
    density: np.ndarray
    standard_error: np.ndarray


class ThetaFit(NamedTuple):
    """A fitted exponential tail rate ``θ`` of the excursion-length distribution.

    Attributes
    ----------
    theta : float
        The maximum-likelihood rate of a truncated exponential on ``window`` (binned likelihood).
    lower, upper : float
        Percentile bootstrap confidence interval (NaN without bootstrap).
    standard_error : float
        Bootstrap standard deviation of ``theta`` (NaN without bootstrap).
    n_in_window : float
        (Weighted) number of excursions whose length falls in the window.
    window : tuple of float
        The window actually used, snapped to bin edges.
    n_bootstrap : int
        Bootstrap replicates used.
    resample : str
        ``"blocks"`` (independent blocks of paths), ``"multinomial"`` (histogram counts) or
        ``"none"``.
    """

    theta: float
    lower: float
    upper: float
    standard_error: float
    n_in_window: float
    window: tuple[float, float]
    n_bootstrap: int
    resample: str


@dataclasses.dataclass(frozen=True, eq=False)
class ExcursionSimulation:
    """Reduced statistics of a Monte Carlo simulation of level excursions.

    Lengths and times are in the covariance's time unit. ``W = n_steps · dt`` is the length of
    each simulated path.

    Attributes
    ----------
    n_paths, n_steps : int
        Paths simulated and grid steps per path (each path has ``n_steps + 1`` points).
    dt, level : float
        Grid step and level.
    total_time : float
        ``n_paths · n_steps · dt``, the time over which crossings were counted.
    crossings : tuple of int
        Up- and down-crossings of the level.
    crossing_intensity, crossing_intensity_se : float
        Crossings in both directions per unit time (compare ``crossing_intensity(cov, level,
        "both")``) and its standard error.
    bin_edges : ndarray, shape (n_bins + 1,)
        Edges of the excursion-length histogram.
    counts : ndarray of int64, shape (n_bins,)
        Complete excursions per bin (raw, not edge-corrected).
    n_below, n_above : int
        Complete excursions shorter than the first edge / not shorter than the last one.
    n_excursions : int
        All complete excursions: ``counts.sum() + n_below + n_above``.
    weighted_counts : ndarray of float64, shape (n_bins,)
        ``counts`` with the edge weights ``W / (W - ℓ)``.
    mean_length, mean_length_se : float
        Edge-corrected mean excursion length (compare ``mean_excursion_length(cov, level)``) and
        its standard error.
    std_length : float
        Edge-corrected standard deviation of the excursion length.
    persistence_times : ndarray, shape (n_times,)
        Times ``t`` (multiples of ``dt``).
    persistence, persistence_se : ndarray, shape (n_times,)
        ``P(X > level on [0, t])`` and standard errors.
    blocks : BlockStatistics
        Per-block statistics behind the standard errors and the bootstrap.
    batch_size, n_batches : int
        Paths per batch (after rounding) and batches run.
    embedding_size : int
        Length ``2m`` of the circulant embedding.
    min_eigenvalue : float
        The most negative circulant eigenvalue relative to the largest (clipped to 0), or 0.
    n_devices : int
        Devices each batch was split over.
    """

    n_paths: int
    n_steps: int
    dt: float
    level: float
    total_time: float
    crossings: tuple[int, int]
    crossing_intensity: float
    crossing_intensity_se: float
    bin_edges: np.ndarray
    counts: np.ndarray
    n_below: int
    n_above: int
    n_excursions: int
    weighted_counts: np.ndarray
    mean_length: float
    mean_length_se: float
    std_length: float
    persistence_times: np.ndarray
    persistence: np.ndarray
    persistence_se: np.ndarray
    blocks: BlockStatistics
    batch_size: int
    n_batches: int
    embedding_size: int
    min_eigenvalue: float
    n_devices: int

    def __repr__(self) -> str:
        return (
            f"ExcursionSimulation(n_paths={self.n_paths}, n_steps={self.n_steps}, dt={self.dt:g}, "
            f"level={self.level:g}, crossing_intensity={self.crossing_intensity:.6g} ± "
            f"{self.crossing_intensity_se:.2g}, n_excursions={self.n_excursions}, "
            f"mean_length={self.mean_length:.6g} ± {self.mean_length_se:.2g})"
        )

    @property
    def window(self) -> float:
        """``W = n_steps · dt``, the length of each path."""
        return self.n_steps * self.dt

    def _weighted_total(self) -> float:
        return float(self.blocks.moments[:, 0].sum())

    def _effective_count(self) -> float:
        total, squares = self.blocks.moments[:, 0].sum(), self.blocks.moments[:, 1].sum()
        return float(total**2 / squares) if squares > 0 else 0.0

    def sf(self, t: Any, *, standard_error: str = "binomial") -> tuple[np.ndarray, np.ndarray]:
        """The survival function ``S(t) = P(T > t)`` of the (Palm) excursion length.

        Exact (up to Monte Carlo error) at the bin edges, linearly interpolated between them;
        ``S(0) = 1``. Edge-corrected (see the module notes).

        Parameters
        ----------
        t : float or array
            Lengths ``t >= 0``; beyond the last bin edge the value is NaN unless no excursion
            was that long.
        standard_error : {"binomial", "blocks"}
            ``"binomial"``: ``√(S(1 - S)/n_eff)`` with ``n_eff = (Σw)²/Σw²``, which treats
            excursions as independent; ``"blocks"``: from the variation between blocks of
            paths, which also covers the dependence between excursions of one path.

        Returns
        -------
        sf, se : ndarray
            ``S(t)`` and its standard error, with the shape of ``t``.
        """
        check_choice("standard_error", standard_error, ("binomial", "blocks"))
        t = np.asarray(t, dtype=float)
        if np.any(~np.isfinite(t)) or np.any(t < 0):
            raise ProbkitError(f"`t` must be finite and >= 0; got {t!r}.")
        weighted = self.blocks.weighted_counts  # (blocks, n_bins + 2)
        total = weighted.sum(axis=1)
        # Mass at or above each edge, per block: the tail sums of the bins and the overflow.
        tails = np.cumsum(weighted[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (blocks, n_bins + 1)
        grand = total.sum()
        edge_sf = tails.sum(axis=0) / grand if grand > 0 else np.full(tails.shape[1], np.nan)
        if standard_error == "binomial":
            n_eff = self._effective_count()
            edge_se = np.sqrt(np.clip(edge_sf * (1 - edge_sf), 0, None) / max(n_eff, 1e-300))
        else:
            edge_se = _ratio_se(tails, total[:, None])
        edges = self.bin_edges
        if edges[0] > 0:  # lengths are positive: S(0) = 1 exactly
            edges = np.concatenate([[0.0], edges])
            edge_sf = np.concatenate([[1.0], edge_sf])
            edge_se = np.concatenate([[0.0], edge_se])
        value = np.interp(t, edges, edge_sf)
        se = np.interp(t, edges, edge_se)
        beyond = t > edges[-1]
        if np.any(beyond):
            overflow = weighted[:, -1].sum() > 0
            value = np.where(beyond, np.nan if overflow else 0.0, value)
            se = np.where(beyond, np.nan if overflow else 0.0, se)
        return value, se

    def pdf(self) -> ExcursionDensity:
        """The edge-corrected histogram density of the excursion length.

        Returns
        -------
        ExcursionDensity
            ``bin_edges``, ``density`` (probability per unit length in each bin; integrates to
            the share of excursions inside the bins) and a binomial ``standard_error``.
        """
        total = self._weighted_total()
        widths = np.diff(self.bin_edges)
        if total <= 0:
            nan = np.full(widths.shape, np.nan)
            return ExcursionDensity(self.bin_edges, nan, nan)
        p = self.weighted_counts / total
        se = np.sqrt(p * (1 - p) / max(self._effective_count(), 1e-300))
        return ExcursionDensity(self.bin_edges, p / widths, se / widths)

    def fit_theta(
        self,
        window: tuple[float, float],
        *,
        n_bootstrap: int = 200,
        key: Any = None,
        confidence: float = 0.95,
        resample: str = "blocks",
    ) -> ThetaFit:
        """Fit the exponential tail ``S(t) ≈ C e^{-θt}`` of the excursion length on a window.

        The excursions with length in ``[t0, t1)`` follow, if the tail is exponential there, an
        exponential law truncated to the window, whose rate is found by maximum likelihood on
        the (edge-weighted) histogram bins. The bootstrap resamples blocks of paths (which
        keeps the dependence between the excursions of one path) or, with
        ``resample="multinomial"`` or fewer than 10 blocks, the histogram counts.

        Parameters
        ----------
        window : (float, float)
            ``(t0, t1)``, snapped to the nearest bin edges. Choose it where the tail is
            exponential but still holds many excursions (say ``S`` between ``1e-2`` and
            ``50 / n_excursions``); the prefactor's subleading terms bias short windows.
        n_bootstrap : int
            Bootstrap replicates (0: no interval).
        key : jax.random key
            Needed when ``n_bootstrap > 0``; the resampling is seeded from it.
        confidence : float
            Coverage of the percentile interval.
        resample : {"blocks", "multinomial"}
            What the bootstrap resamples.

        Returns
        -------
        ThetaFit
        """
        check_choice("resample", resample, ("blocks", "multinomial"))
        blocks = self.blocks.weighted_counts[:, 1:-1]
        raw = self.blocks.counts[:, 1:-1]
        if resample == "blocks" and blocks.shape[0] < 10:
            resample = "multinomial"
        return fit_exponential_tail(
            self.bin_edges,
            self.weighted_counts,
            window,
            block_counts=blocks if resample == "blocks" else None,
            raw_counts=raw.sum(axis=0),
            n_bootstrap=n_bootstrap,
            key=key,
            confidence=confidence,
        )


jax.tree_util.register_dataclass(
    ExcursionSimulation,
    data_fields=[
        "crossing_intensity",
        "crossing_intensity_se",
        "bin_edges",
        "counts",
        "weighted_counts",
        "mean_length",
        "mean_length_se",
        "std_length",
        "persistence_times",
        "persistence",
        "persistence_se",
        "blocks",
    ],
    meta_fields=[
        "n_paths",
        "n_steps",
        "dt",
        "level",
        "total_time",
        "crossings",
        "n_below",
        "n_above",
        "n_excursions",
        "batch_size",
        "n_batches",
        "embedding_size",
        "min_eigenvalue",
        "n_devices",
    ],
)


# --- circulant embedding ----------------------------------------------------------------------


def _fast_length(n: int) -> int:
    # The smallest 2^a 3^b 5^c >= n: FFT libraries on every backend are fastest on these.
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            value = power35
            while value < n:
                value *= 2
            best = min(best, value)
            power35 *= 3
        power5 *= 5
    return best


@jax.jit
def _evaluate(covariance: StationaryCovariance, lags: jax.Array) -> jax.Array:
    # One compiled call instead of an eager op-by-op evaluation (seconds of small compilations).
    return covariance(lags)


@jax.jit
def _lam2(covariance: StationaryCovariance) -> jax.Array:
    return covariance.lam2


def _mean_excursion_length(lam2: float, level: float) -> float:
    # Rice: P(X > u) / μ⁺(u), as `rice.mean_excursion_length` but on the host, in log space.
    from scipy.special import log_ndtr

    log_rate = 0.5 * math.log(lam2) - 0.5 * level**2 - math.log(2 * math.pi)
    return math.exp(float(log_ndtr(-level)) - log_rate)


def circulant_embedding(
    covariance: StationaryCovariance, n_steps: int, dt: float
) -> tuple[np.ndarray, float]:
    """Eigenvalues of the circulant embedding of ``r`` on the grid ``k·dt``, in float64.

    The correlations ``r(0), r(dt), ..., r(m·dt)`` are extended symmetrically to a circulant
    vector of length ``2m`` (``m >= n_steps``, a product of 2, 3 and 5); its discrete Fourier
    transform holds the eigenvalues of the circulant matrix, which is a valid covariance when
    they are non-negative, and then contains the Toeplitz covariance of ``n_steps + 1`` grid
    points. Eigenvalues above ``-1e-8`` times the largest are rounding and are set to 0; a more
    negative one doubles ``m`` (up to 32 times its first value), since the jump of the
    extension's derivative at ``m·dt`` shrinks as ``r`` decays.

    Parameters
    ----------
    covariance : StationaryCovariance
        The correlation function (concrete parameters).
    n_steps : int
        Grid steps to be simulated.
    dt : float
        Grid step.

    Returns
    -------
    eigenvalues : ndarray of float64, shape (2m,)
        Non-negative eigenvalues.
    min_ratio : float
        The most negative eigenvalue over the largest before clipping (0 if none was negative).

    Raises
    ------
    ProbkitError
        If no embedding up to the size limit is non-negative definite.
    """
    m = _fast_length(n_steps)
    # r is evaluated in float64 whatever the global setting: float32 rounding of r makes
    # eigenvalues of size 1e-7 · max appear with either sign and hides (or fakes) a bad embedding.
    with jax.enable_x64(True):
        for _ in range(_MAX_DOUBLINGS + 1):
            lags = dt * np.arange(m + 1, dtype=np.float64)
            r = np.asarray(_evaluate(covariance, lags), dtype=np.float64)
            if not np.all(np.isfinite(r)):
                raise ProbkitError(
                    f"covariance {covariance.name!r} is not finite on the grid k·dt "
                    f"(dt={dt:g}, up to lag {m * dt:g}); r must be finite for t >= 0."
                )
            circulant = np.concatenate([r, r[-2:0:-1]])
            eigenvalues = np.fft.fft(circulant).real
            largest = eigenvalues.max()
            smallest = eigenvalues.min()
            ratio = smallest / largest if largest > 0 else -np.inf
            if ratio >= -_EMBEDDING_TOLERANCE:
                return np.clip(eigenvalues, 0.0, None), float(min(ratio, 0.0))
            m = _fast_length(2 * m)
    raise ProbkitError(
        f"covariance {covariance.name!r}: the circulant embedding of r on n_steps={n_steps} "
        f"steps of dt={dt:g} is not non-negative definite even with 2m={len(circulant)} points "
        f"(smallest eigenvalue {ratio:.3g} times the largest, tolerance "
        f"{-_EMBEDDING_TOLERANCE:g}). Circulant embedding needs r to have (nearly) decayed "
        f"within {2**_MAX_DOUBLINGS} path lengths; oscillating or slowly decaying correlations "
        "(cosine sums, long-memory models) fail. Use a covariance that decays, e.g. multiply r "
        "by a wide Gaussian taper, or a shorter path (fewer `n_steps`) if r decays slowly."
    )


# --- the compiled batch step ------------------------------------------------------------------


def _batch_statistics(
    pair_offset,
    key,
    n_paths,
    sqrt_eigenvalues,
    edges,
    level,
    dt,
    lags,
    table,
    cell,
    *,
    n_steps: int,
    pairs: int,
    dtype: Any,
    capacity: int,
    use_table: bool,
):
    """Simulate ``2·pairs`` paths (this device's share of a batch) and reduce them."""
    n_fft = sqrt_eigenvalues.shape[0]
    # This device's pairs: global pair indices fix the random numbers whatever the layout.
    first = pair_offset + jax.lax.axis_index(_AXIS) * pairs
    pair_index = first + jnp.arange(pairs, dtype=jnp.int32)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, pair_index)
    normals = jax.vmap(lambda k: jax.random.normal(fast_threefry(k), (2, n_fft), dtype))(keys)
    spectrum = jax.lax.complex(normals[:, 0], normals[:, 1]) * sqrt_eigenvalues
    field = jnp.fft.fft(spectrum, axis=-1)[:, : n_steps + 1]
    # Path 2p is the real part of pair p and path 2p + 1 its imaginary part.
    x = jnp.concatenate([field.real, field.imag], axis=0)  # (2·pairs, n_steps + 1)
    path_index = jnp.concatenate([2 * pair_index, 2 * pair_index + 1])
    valid = path_index < n_paths  # the last batch may hold paths beyond n_paths: masked
    out = _reduce_paths(
        x, valid, level, dt, edges, lags, table, cell, capacity=capacity, use_table=use_table
    )
    return jax.tree_util.tree_map(
        lambda v: jax.lax.psum(v, _AXIS), (jnp.sum(valid, dtype=jnp.int32), *out)
    )


def _reduce_paths(x, valid, level, dt, edges, lags, table, cell, *, capacity: int, use_table: bool):
    """Crossings, excursion-length histogram, moments and persistence counts of paths ``x``.

    Parameters
    ----------
    x : array, shape (rows, n_steps + 1)
        Paths on the grid.
    valid : bool array, shape (rows,)
        Paths to count (the others are ignored).
    level, dt : scalars
        The level and the grid step.
    edges, lags, table, cell
        Histogram edges, persistence windows in steps, and the lookup table of `_slot`.
    capacity : int
        Crossings handled per pass; passes repeat until every crossing is handled, so it
        changes the speed only.
    use_table : bool
        Whether `_slot` uses ``table``.

    Returns
    -------
    tuple
        ``(crossings, counts, weighted, moments, persistence)`` with ``crossings = (up, down)``,
        the histogram of complete excursion lengths (slot 0: below the first edge, last slot:
        above the last) without and with edge weights, six moments and the persistence counts.

    Notes
    -----
    Only grid intervals with a crossing matter, and they are sparse (about one in 60 at
    ``dt·√λ₂ = 0.05``). The crossings are numbered in row-major order (`_BitIndex`), and each
    pass locates ``capacity`` of them by binary search, so the histogram's scatter-add
    (about 45 ns per update on a CPU) runs over crossings instead of over every grid interval;
    on two CPU cores this made the reduction about six times faster. Crossings of the level
    alternate up and down along a path, so the up-crossing that opens the excursion closed by
    a down-crossing is the crossing just before it, if that one is on the same path.
    """
    rows, n_points = x.shape
    n_steps = n_points - 1
    accumulate = jnp.result_type(float)  # float64 when enabled, else float32
    level = level.astype(x.dtype)
    above = x > level
    crossing = (above[:, :-1] != above[:, 1:]) & valid[:, None]
    up = jnp.sum(crossing & above[:, 1:], dtype=jnp.int32)
    per_row = jnp.sum(crossing, axis=1, dtype=jnp.int32)
    index = _BitIndex.build(crossing.ravel())
    total = index.total
    flat = x.ravel()

    def locate(ordinal):
        """Path, step, interpolated fraction and direction of crossing number ``ordinal``."""
        position = jnp.clip(index.position(ordinal), 0, rows * n_steps - 1)
        row, step = position // n_steps, position % n_steps
        x0 = flat[row * n_points + step]
        x1 = flat[row * n_points + step + 1]
        fraction = (level - x0) / jnp.where(x1 != x0, x1 - x0, 1)
        return row, step, fraction, x1 > level

    n_slots = edges.shape[0] + 1
    # Non-excursions go to discard slots, sliced off; spread over _DISCARD of them because on
    # GPUs a scatter-add of many updates to one address serialises on its atomic.
    discard = n_slots + jnp.arange(capacity, dtype=jnp.int32) % _DISCARD

    def one_pass(state):
        chunk, previous, counts, weighted, moments, persistence = state
        present = jnp.arange(capacity, dtype=jnp.int32) < total - chunk * capacity
        row, step, fraction, rising = locate(
            chunk * capacity + jnp.arange(capacity, dtype=jnp.int32)
        )
        # The crossing before each one: the last of the previous pass, then this pass's own.
        before = [
            jnp.concatenate([first[None], value[:-1]])
            for first, value in zip(previous, (row, step, fraction), strict=True)
        ]
        same_path = before[0] == row
        down = present & ~rising
        # A down-crossing with no up-crossing before it on its path closes an excursion that
        # began before the window: dropped from the lengths, kept for persistence.
        complete = down & same_path
        # Grid points of the run above the level that ends here; a run from the path's first
        # point (no up-crossing before it on the path) has step + 1. Integer step counts keep
        # the lengths exact to the interpolated fractions (float32 steps would lose them at
        # 2^14 steps).
        whole_steps = jnp.where(same_path, step - before[1], step + 1)
        steps = whole_steps.astype(accumulate) + (fraction - before[2]).astype(accumulate)
        steps = jnp.where(complete, steps, 0.0)
        length = steps * dt.astype(accumulate)
        # Horvitz–Thompson edge weight W / (W - ℓ): an excursion of length ℓ is complete in the
        # window for only a share (W - ℓ)/W of its possible starts.
        weight = jnp.where(complete, n_steps / jnp.maximum(n_steps - steps, 1e-6), 0.0)
        slot = jnp.where(complete, _slot(length, edges, table, cell, use_table), discard)
        counts = counts + jnp.zeros(n_slots + _DISCARD, jnp.int32).at[slot].add(1)[:n_slots]
        weighted = (
            weighted + jnp.zeros(n_slots + _DISCARD, accumulate).at[slot].add(weight)[:n_slots]
        )
        moments = moments + jnp.stack(
            [
                jnp.sum(weight),
                jnp.sum(weight**2),
                jnp.sum(weight * length),
                jnp.sum(weight * length**2),
                jnp.sum(length),
                jnp.sum(length**2),
            ]
        )
        # Persistence: a maximal run of R grid points above the level holds R - k windows of
        # k steps on which the path stays above it.
        run = jnp.where(down, whole_steps, 0)
        persistence = persistence + jnp.sum(
            jnp.maximum(run[:, None] - lags, 0), axis=0, dtype=jnp.int32
        )
        last = (row[-1], step[-1], fraction[-1])
        return chunk + 1, last, counts, weighted, moments, persistence

    n_passes = total // capacity + (total % capacity > 0)
    start = (
        jnp.int32(0),
        (jnp.int32(-1), jnp.int32(0), jnp.zeros((), x.dtype)),
        jnp.zeros(n_slots, jnp.int32),
        jnp.zeros(n_slots, accumulate),
        jnp.zeros(6, accumulate),
        jnp.zeros(lags.shape[0], jnp.int32),
    )
    _, _, counts, weighted, moments, persistence = jax.lax.while_loop(
        lambda state: state[0] < n_passes, one_pass, start
    )

    # Runs still above the level at the path's last point: from its last up-crossing, or from
    # its first point if it never crossed.
    _, last_step, _, _ = locate(jnp.cumsum(per_row, dtype=jnp.int32) - 1)
    end_run = jnp.where(per_row > 0, n_steps - last_step, n_steps + 1)
    end_run = jnp.where(above[:, -1] & valid, end_run, 0)
    persistence = persistence + jnp.sum(
        jnp.maximum(end_run[:, None] - lags, 0), axis=0, dtype=jnp.int32
    )
    crossings = jnp.stack([up, jnp.sum(per_row) - up])
    return crossings, counts, weighted, moments, persistence


class _BitIndex(NamedTuple):
    """The positions of the true entries of a boolean vector, packed 32 to a word.

    ``position(n)`` is the index of the ``n``-th true entry (from 0): a binary search in the
    cumulative counts of the words, then a five-step binary search for the set bit inside the
    word. A cumulative sum over every entry instead costs a scan of the whole vector (on a CPU,
    ``jnp.cumsum`` of 2 million entries took 22 ms; packing and summing the words took 1 ms).
    """

    words: jax.Array  # uint32, bit b of word w is entry 32·w + b
    counts: jax.Array  # int32, true entries per word
    cumulative: jax.Array  # int32, true entries in words 0..w

    @classmethod
    def build(cls, mask: jax.Array) -> _BitIndex:
        padded = jnp.pad(mask, (0, -mask.shape[0] % 32)).reshape(-1, 32)
        bits = jnp.left_shift(jnp.uint32(1), jnp.arange(32, dtype=jnp.uint32))
        words = jnp.sum(jnp.where(padded, bits, jnp.uint32(0)), axis=1, dtype=jnp.uint32)
        counts = jax.lax.population_count(words).astype(jnp.int32)
        return cls(words, counts, jnp.cumsum(counts, dtype=jnp.int32))

    @property
    def total(self) -> jax.Array:
        return self.cumulative[-1]

    def position(self, ordinal: jax.Array) -> jax.Array:
        """Index of true entry number ``ordinal`` (undefined outside ``[0, total)``)."""
        word = jnp.searchsorted(self.cumulative, ordinal, side="right", method="scan")
        word = jnp.clip(word, 0, self.words.shape[0] - 1).astype(jnp.int32)
        rank = ordinal - (self.cumulative[word] - self.counts[word])  # among the word's bits
        bits = self.words[word]
        offset = jnp.zeros_like(rank)
        for width in (16, 8, 4, 2, 1):
            low = jnp.right_shift(bits, offset.astype(jnp.uint32)) & jnp.uint32((1 << width) - 1)
            below = jax.lax.population_count(low).astype(rank.dtype)
            skip = rank >= below
            rank = jnp.where(skip, rank - below, rank)
            offset = jnp.where(skip, offset + width, offset)
        return (word * 32 + offset).astype(jnp.int32)


def _slot(length, edges, table, cell, use_table: bool):
    """The number of bin edges ``<= length`` (0: below the bins, ``n_bins + 1``: above).

    ``jnp.searchsorted`` costs a binary search per element (ten times the rest of the
    histogram on CPU). With a table of that number at multiples of a cell no wider than the
    narrowest bin, one lookup plus one comparison on each side is exact: a cell holds at most
    one edge, and the comparisons also absorb a cell index that rounding moved by one.
    """
    if not use_table:
        return jnp.searchsorted(edges, length, side="right").astype(jnp.int32)
    cells = table.shape[0]
    index = jnp.clip(jnp.floor(length / cell), 0, cells - 1).astype(jnp.int32)
    guess = table[index]
    padded = jnp.concatenate(
        [jnp.array([-jnp.inf], edges.dtype), edges, jnp.array([jnp.inf], edges.dtype)]
    )
    # padded[s] is the s-th edge counted from 1, so s is right iff padded[s] <= length < padded[s+1].
    guess = guess + (length >= padded[guess + 1]) - (length < padded[guess])
    return guess.astype(jnp.int32)


def _slot_table(edges: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The lookup table of `_slot`: edges ``<=`` each multiple of the cell (None if too big)."""
    cell = float(np.min(np.diff(edges)))
    cells = math.ceil(edges[-1] / cell) + 2
    if cells > _MAX_TABLE:
        return None, cell
    return np.searchsorted(edges, cell * np.arange(cells), side="right"), cell


def _crossing_capacity(correlation: float, level: float, rows: int, n_steps: int) -> int:
    """Crossings one pass of `_reduce_paths` handles: a power of two above the likely count.

    A grid step of correlation ρ holds a crossing of level 0 with probability arccos(ρ)/π
    (exact: the sign change of a bivariate normal pair), and of level u with about
    ``exp(-u²/2)`` times that. The capacity leaves room for 1.25 times the expected count plus
    six standard deviations of a Poisson count, so a second pass is rare; rounding up to a power
    of two lets nearby grids and levels share one compiled step.
    """
    rate = math.acos(min(max(correlation, -1.0), 1.0)) / math.pi * math.exp(-0.5 * level**2)
    expected = rows * n_steps * rate
    wanted = 1.25 * expected + 6.0 * math.sqrt(expected) + 256
    return min(1 << math.ceil(math.log2(wanted)), rows * n_steps)


@functools.lru_cache(maxsize=32)
def _make_step(
    n_steps: int,
    pairs: int,
    dtype_name: str,
    n_lags: int,
    devices: tuple,
    x64: bool,
    capacity: int,
    use_table: bool,
):
    """One compiled batch step per configuration; ``jax.jit`` then caches by argument shapes.

    The batch's pairs are split evenly over a 1-D mesh of ``devices``; every device simulates
    and reduces its share and the statistics are summed with ``psum``, so no path leaves the
    device that drew it.
    """
    del n_lags, x64  # part of the cache key only: they change the traced shapes and dtypes
    mesh = Mesh(np.array(devices), (_AXIS,))
    local = functools.partial(
        _batch_statistics,
        n_steps=n_steps,
        pairs=pairs // len(devices),
        dtype=jnp.dtype(dtype_name),
        capacity=capacity,
        use_table=use_table,
    )
    replicated = PartitionSpec()
    mapped = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(replicated,) * 10,
        out_specs=replicated,
        check_vma=False,
    )
    return jax.jit(mapped)


# --- the public entry point -------------------------------------------------------------------


def simulate_excursions(
    covariance: StationaryCovariance,
    key: Any,
    *,
    n_paths: int,
    n_steps: int,
    dt: float,
    level: float = 0.0,
    batch_size: int | None = None,
    bins: Any = None,
    persistence_times: Any = None,
    dtype: Any = jnp.float32,
    devices: Sequence[Any] | None = None,
) -> ExcursionSimulation:
    """Simulate a stationary Gaussian process and reduce its excursions above ``level``.

    Paths of ``n_steps + 1`` grid points ``0, dt, ..., n_steps·dt`` are drawn by circulant
    embedding, two per complex FFT, in batches; each batch is reduced inside one compiled
    function to crossing counts, a histogram of complete excursion lengths, their moments and
    persistence counts (see the module notes for the estimators). No batch of paths outlives
    its reduction. With several devices each batch is split over a 1-D mesh of them; the result
    does not depend on how many (nor on ``batch_size``) beyond floating-point rounding.

    Parameters
    ----------
    covariance : StationaryCovariance
        The process's correlation function, with concrete parameters.
    key : jax.random key
        Path ``2p`` and ``2p + 1`` use ``jax.random.fold_in(key, p)``.
    n_paths : int
        Paths to simulate.
    n_steps : int
        Grid steps per path; each path covers ``W = n_steps · dt``, which must be at least twice
        the mean excursion length (and should be many times it: excursions longer than the
        window cannot be seen).
    dt : float
        Grid step. Keep ``dt·√λ₂`` at or below about 0.05: pairs of crossings inside one step
        are missed (a ``UserWarning`` above 0.1).
    level : float
        The level ``u`` (in standard deviations).
    batch_size : int, optional
        Paths per batch, rounded up to a multiple of ``2 × number of devices`` (two paths per
        FFT). Default: about ``2^18`` grid points per batch on CPU, ``2^25`` on accelerators,
        and at most ``n_paths / 16`` paths, so that the standard errors rest on at least 16
        batches.
    bins : int or array, optional
        Histogram of excursion lengths: an int gives that many equal bins on ``[0, W]``, an
        array the increasing edges (``>= 0``). Default: equal bins on ``[0, W]`` of a round
        width of at least ``dt`` and ``W/1000``.
    persistence_times : array, optional
        Times ``t`` (rounded to multiples of ``dt``, at most ``W``) at which to estimate
        ``P(X > level on [0, t])``. Default: none.
    dtype : float32 or float64
        Precision of the paths (float64 needs ``jax_enable_x64``). Circulant eigenvalues are
        always computed in float64; statistics are accumulated across batches in int64 and
        float64 on the host, and within a batch in int32 and the default float type (float64
        when x64 is enabled, else float32).
    devices : sequence of jax.Device, optional
        Devices to split each batch over. Default: all devices of the default backend (of the
        default device, when one is set).

    Returns
    -------
    ExcursionSimulation
        Counts, estimates and standard errors; ``sf``, ``pdf`` and ``fit_theta`` methods.

    Raises
    ------
    ProbkitError
        On bad arguments (named in the message), a window shorter than twice the mean
        excursion length, or a covariance whose circulant embedding is not valid.

    Examples
    --------
    >>> import jax
    >>> from probkit.exceedance import sech_diffusion
    >>> sim = simulate_excursions(
    ...     sech_diffusion(2.0), jax.random.key(0), n_paths=64, n_steps=2048, dt=0.1
    ... )
    >>> abs(sim.crossing_intensity - 0.159) < 0.02  # Rice: √λ₂/π = 0.159
    True
    """
    check_covariance(covariance)
    if not is_concrete(covariance):
        raise ProbkitError(
            "`covariance` has traced parameters: simulate_excursions runs a host loop over "
            "batches and cannot be called inside jit/vmap/grad. Call it with concrete values."
        )
    n_paths = check_positive_int("n_paths", n_paths)
    n_steps = check_positive_int("n_steps", n_steps)
    dt = _check_finite("dt", dt, positive=True)
    level = _check_finite("level", level, positive=False)
    dtype = _check_dtype(dtype)
    key = _check_key(key)
    devices = _check_devices(devices)
    n_devices = len(devices)
    window = n_steps * dt

    with jax.enable_x64(True):  # host-side, float64 reference values of the covariance
        lam2 = float(_lam2(covariance))
    if not (math.isfinite(lam2) and lam2 > 0):
        raise ProbkitError(f"covariance {covariance.name!r} has λ₂ = {lam2}; need 0 < λ₂ < ∞.")
    mean_length = _mean_excursion_length(lam2, level)
    resolution = dt * math.sqrt(lam2)
    if resolution > _COARSE_GRID:
        warnings.warn(
            f"dt·√λ₂ = {resolution:.3g} > {_COARSE_GRID}: pairs of crossings inside one grid "
            "step are missed, which biases the crossing intensity low and the excursion "
            f"lengths high; use dt <= {0.05 / math.sqrt(lam2):.3g} (dt·√λ₂ <= 0.05).",
            UserWarning,
            stacklevel=2,
        )
    if window < 2 * mean_length:
        raise ProbkitError(
            f"n_steps·dt = {window:.4g} is shorter than twice the mean excursion length "
            f"{mean_length:.4g} above level {level:g}, so few excursions would be complete. "
            f"Increase `n_steps` to at least {math.ceil(2 * mean_length / dt)} (better "
            f"{math.ceil(20 * mean_length / dt)}) or `dt`."
        )
    edges = _check_bins(bins, window, dt)
    times, lags = _check_persistence_times(persistence_times, n_steps, dt)

    multiple = 2 * n_devices
    if batch_size is None:
        target = _SAMPLES_PER_BATCH["cpu" if devices[0].platform == "cpu" else "other"]
        batch_size = max(target // (n_steps + 1), 1)
        batch_size = min(batch_size, max(n_paths // _MIN_BATCHES, 1))
    else:
        batch_size = check_positive_int("batch_size", batch_size)
    batch_size = -(-batch_size // multiple) * multiple
    if batch_size * (n_steps + 1) > _INT32_LIMIT:
        raise ProbkitError(
            f"batch_size·(n_steps + 1) = {batch_size * (n_steps + 1)} exceeds 2^31 - 1, the "
            "range of the per-batch int32 counts; use a smaller `batch_size` (at most "
            f"{_INT32_LIMIT // (n_steps + 1)})."
        )
    n_batches = -(-n_paths // batch_size)

    eigenvalues, min_ratio = circulant_embedding(covariance, n_steps, dt)
    if n_batches < 2:
        warnings.warn(
            f"n_paths = {n_paths} fits in one batch of {batch_size} paths, so the standard "
            "errors (from the variation between batches) are NaN; use a smaller `batch_size` "
            "or more paths.",
            stacklevel=2,
        )
    n_fft = eigenvalues.shape[0]
    accumulate = jnp.result_type(float)
    sqrt_eigenvalues = jnp.asarray(np.sqrt(eigenvalues / n_fft), dtype=dtype)
    edges_device = jnp.asarray(edges, dtype=accumulate)
    table, cell = _slot_table(edges)
    with jax.enable_x64(True):
        correlation = float(_evaluate(covariance, jnp.asarray([dt]))[0])
    step = _make_step(
        n_steps,
        batch_size // 2,
        jnp.dtype(dtype).name,
        len(lags),
        tuple(devices),
        bool(jax.config.jax_enable_x64),
        _crossing_capacity(correlation, level, batch_size // n_devices, n_steps),
        table is not None,
    )
    args = (
        key,
        jnp.asarray(n_paths, jnp.int32),
        sqrt_eigenvalues,
        edges_device,
        jnp.asarray(level, accumulate),
        jnp.asarray(dt, accumulate),
        jnp.asarray(lags, jnp.int32),
        jnp.asarray(table if table is not None else np.zeros(1), jnp.int32),
        jnp.asarray(cell, accumulate),
    )

    n_blocks = min(n_batches, _MAX_BLOCKS)
    totals = _Blocks(n_blocks, len(edges) + 1, len(lags))
    pending = None
    for batch in range(n_batches):
        # Dispatch the next batch before fetching the last one's statistics, so the device
        # never waits on the host.
        out = step(jnp.asarray(batch * (batch_size // 2), jnp.int32), *args)
        if pending is not None:
            totals.add(batch - 1, n_batches, pending)
        pending = out
    totals.add(n_batches - 1, n_batches, pending)
    blocks = totals.finish()
    return _summarise(
        blocks,
        n_paths=n_paths,
        n_steps=n_steps,
        dt=dt,
        level=level,
        edges=edges,
        times=times,
        lags=lags,
        batch_size=batch_size,
        n_batches=n_batches,
        embedding_size=n_fft,
        min_ratio=min_ratio,
        n_devices=n_devices,
    )


class _Blocks:
    """Host-side accumulation of batch statistics into blocks of consecutive batches."""

    def __init__(self, n_blocks: int, n_slots: int, n_lags: int):
        self.n_blocks = n_blocks
        self.paths = np.zeros(n_blocks, np.int64)
        self.crossings = np.zeros((n_blocks, 2), np.int64)
        self.counts = np.zeros((n_blocks, n_slots), np.int64)
        self.weighted = np.zeros((n_blocks, n_slots), np.float64)
        self.moments = np.zeros((n_blocks, 6), np.float64)
        self.persistence = np.zeros((n_blocks, n_lags), np.int64)

    def add(self, batch: int, n_batches: int, out) -> None:
        block = batch * self.n_blocks // n_batches
        paths, crossings, counts, weighted, moments, persistence = (np.asarray(v) for v in out)
        self.paths[block] += int(paths)
        self.crossings[block] += crossings.astype(np.int64)
        self.counts[block] += counts.astype(np.int64)
        self.weighted[block] += weighted.astype(np.float64)
        self.moments[block] += moments.astype(np.float64)
        self.persistence[block] += persistence.astype(np.int64)

    def finish(self) -> BlockStatistics:
        return BlockStatistics(
            self.paths, self.crossings, self.counts, self.weighted, self.moments, self.persistence
        )


def _ratio_se(numerators: Any, denominators: Any) -> Any:
    """Standard error of ``Σ_b y_b / Σ_b x_b`` from independent blocks (delta method).

    Blocks run along axis 0; trailing axes are separate ratios. NaN with fewer than two blocks.
    """
    y = np.asarray(numerators, dtype=float)
    x = np.asarray(denominators, dtype=float)
    y, x = np.broadcast_arrays(y, x)
    blocks = y.shape[0]
    total = x.sum(axis=0)
    if blocks < 2:
        return np.full(y.shape[1:], np.nan)[()]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = y.sum(axis=0) / total
        residual = y - ratio * x
        se = np.sqrt(blocks / (blocks - 1) * np.sum(residual**2, axis=0)) / total
    return np.where(total > 0, se, np.nan)[()]


def _summarise(blocks: BlockStatistics, **info: Any) -> ExcursionSimulation:
    n_steps, dt, lags = info["n_steps"], info["dt"], info["lags"]
    n_paths = int(blocks.n_paths.sum())
    time_per_block = blocks.n_paths * n_steps * dt
    both = blocks.crossings.sum(axis=1)
    total_time = float(time_per_block.sum())
    counts = blocks.counts.sum(axis=0)
    weighted = blocks.weighted_counts.sum(axis=0)
    moments = blocks.moments.sum(axis=0)
    w, _, wl, wl2, _, _ = moments
    mean = wl / w if w > 0 else float("nan")
    std = math.sqrt(max(wl2 / w - mean**2, 0.0)) if w > 0 else float("nan")
    windows = blocks.n_paths[:, None] * (n_steps + 1 - np.asarray(lags))[None, :]
    persistence_counts = blocks.persistence_counts.sum(axis=0)
    persistence = persistence_counts / np.maximum(windows.sum(axis=0), 1)
    persistence_se = np.atleast_1d(_ratio_se(blocks.persistence_counts, windows))
    return ExcursionSimulation(
        n_paths=n_paths,
        n_steps=n_steps,
        dt=dt,
        level=info["level"],
        total_time=total_time,
        crossings=(int(blocks.crossings[:, 0].sum()), int(blocks.crossings[:, 1].sum())),
        crossing_intensity=float(both.sum() / total_time),
        crossing_intensity_se=float(_ratio_se(both, time_per_block)),
        bin_edges=info["edges"],
        counts=counts[1:-1],
        n_below=int(counts[0]),
        n_above=int(counts[-1]),
        n_excursions=int(counts.sum()),
        weighted_counts=weighted[1:-1],
        mean_length=float(mean),
        mean_length_se=float(_ratio_se(blocks.moments[:, 2], blocks.moments[:, 0])),
        std_length=float(std),
        persistence_times=info["times"],
        persistence=persistence,
        persistence_se=persistence_se,
        blocks=blocks,
        batch_size=info["batch_size"],
        n_batches=info["n_batches"],
        embedding_size=info["embedding_size"],
        min_eigenvalue=info["min_ratio"],
        n_devices=info["n_devices"],
    )


# --- argument checks --------------------------------------------------------------------------


def _check_finite(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool | np.bool_):
        raise ProbkitError(f"`{name}` must be a number; got the boolean {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ProbkitError(f"`{name}` must be a real number; got {value!r}.") from None
    if not math.isfinite(number) or (positive and number <= 0):
        accepted = "a finite number > 0" if positive else "a finite number"
        raise ProbkitError(f"`{name}` must be {accepted}; got {value!r}.")
    return number


def _check_dtype(dtype: Any) -> Any:
    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        raise ProbkitError(f"`dtype` must be float32 or float64; got {dtype!r}.") from None
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ProbkitError(f"`dtype` must be float32 or float64; got {dtype}.")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ProbkitError(
            "`dtype` float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) "
            "or run inside `with jax.enable_x64(True):`, or use dtype=float32."
        )
    return dtype


def _check_key(key: Any) -> jax.Array:
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ProbkitError(f"`key` must be a single PRNG key; got shape {key.shape}.")
        return key
    array = np.asarray(key) if isinstance(key, jax.Array | np.ndarray) else None
    if array is not None and array.dtype == np.uint32 and array.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(array))  # a raw jax.random.PRNGKey
    raise ProbkitError(
        f"`key` must be a JAX PRNG key such as jax.random.key(0); got {type(key).__name__}."
    )


def _check_devices(devices: Sequence[Any] | None) -> list:
    if devices is None:
        default = jax.config.jax_default_device
        if default is not None and not isinstance(default, str):
            return list(jax.devices(default.platform))
        return list(jax.devices(default) if isinstance(default, str) else jax.devices())
    devices = list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ProbkitError(
            "`devices` must be a non-empty sequence of jax.Device (e.g. jax.devices()); got "
            f"{devices!r}."
        )
    if len({d.platform for d in devices}) > 1 or len(set(devices)) != len(devices):
        raise ProbkitError("`devices` must be distinct devices of one platform.")
    return devices


def _nice_width(width: float) -> float:
    exponent = math.floor(math.log10(width))
    for mantissa in (1.0, 2.0, 5.0, 10.0):
        candidate = mantissa * 10.0**exponent
        if candidate >= width * (1 - 1e-12):
            return candidate
    return 10.0 ** (exponent + 1)  # pragma: no cover


def _check_bins(bins: Any, window: float, dt: float) -> np.ndarray:
    if bins is None:
        width = _nice_width(max(dt, window / 1000))
        return width * np.arange(math.ceil(window / width * (1 - 1e-12)) + 1)
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool | np.bool_):
        count = check_positive_int("bins", bins)
        return np.linspace(0.0, window, count + 1)
    edges = np.asarray(bins, dtype=float)
    if (
        edges.ndim != 1
        or edges.size < 2
        or not np.all(np.isfinite(edges))
        or edges[0] < 0
        or np.any(np.diff(edges) <= 0)
    ):
        raise ProbkitError(
            "`bins` must be a positive int or a 1-D array of at least 2 finite, strictly "
            f"increasing edges >= 0; got {bins!r}."
        )
    return edges


def _check_persistence_times(times: Any, n_steps: int, dt: float):
    if times is None:
        return np.zeros(0), np.zeros(0, np.int64)
    values = np.atleast_1d(np.asarray(times, dtype=float))
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ProbkitError(
            f"`persistence_times` must be a 1-D array of finite times >= 0; got {times!r}."
        )
    lags = np.rint(values / dt).astype(np.int64)
    if np.any(lags > n_steps):
        raise ProbkitError(
            f"`persistence_times` up to {values.max():g} exceed the path length n_steps·dt = "
            f"{n_steps * dt:g}; use shorter times or more `n_steps`."
        )
    return lags * dt, lags


# --- tail fit ---------------------------------------------------------------------------------


def _truncated_exponential_loglik(
    theta: float, lower: np.ndarray, upper: np.ndarray, span: float, counts: np.ndarray
) -> float:
    """Binned log-likelihood of an exponential of rate θ truncated to ``[0, span)``.

    ``lower`` and ``upper`` are the bins' edges measured from the window's start; the bin
    probability is ``e^{-θa}(1 - e^{-θ(b-a)}) / (1 - e^{-θ·span})``, written with ``expm1`` so
    that it is exact near ``θ = 0`` and valid for ``θ < 0`` (a rising tail).
    """
    if abs(theta) * span < 1e-12:
        log_p = np.log((upper - lower) / span)
    else:
        log_p = -theta * lower + np.log(
            np.expm1(-theta * (upper - lower)) / np.expm1(-theta * span)
        )
    return float(np.sum(counts * log_p))


def _fit_rate(lower, upper, span, counts) -> float:
    from scipy.optimize import minimize_scalar

    smallest = float(np.min(upper - lower))
    result = minimize_scalar(
        lambda theta: -_truncated_exponential_loglik(theta, lower, upper, span, counts),
        bounds=(-50.0 / span, 50.0 / smallest),
        method="bounded",
        options={"xatol": 1e-10 / smallest},
    )
    return float(result.x)


def fit_exponential_tail(
    bin_edges: Any,
    counts: Any,
    window: tuple[float, float],
    *,
    block_counts: Any = None,
    raw_counts: Any = None,
    n_bootstrap: int = 200,
    key: Any = None,
    confidence: float = 0.95,
) -> ThetaFit:
    """Fit ``S(t) ∝ e^{-θt}`` on a window from a histogram of lengths.

    The lengths in ``[t0, t1)`` are modelled as exponential with rate ``θ`` truncated to the
    window; ``θ`` maximises the binned (multinomial) likelihood of the histogram counts in the
    window, so the bins' widths and the truncation are exact, unlike a least-squares fit of
    ``log S``. The interval is a percentile bootstrap.

    Parameters
    ----------
    bin_edges : array, shape (n_bins + 1,)
        Histogram edges.
    counts : array, shape (n_bins,)
        Counts per bin (may be non-integer weights, as the edge-corrected histogram).
    window : (float, float)
        ``(t0, t1)``, snapped to the nearest edges; at least two bins must lie inside.
    block_counts : array, shape (n_blocks, n_bins), optional
        Counts of independent blocks of data summing to ``counts``: the bootstrap resamples
        blocks (keeps the dependence inside a block). Otherwise it resamples the histogram
        multinomially.
    raw_counts : array, shape (n_bins,), optional
        Integer counts behind weighted ``counts`` (for the multinomial bootstrap: a
        resampled raw count is scaled by the bin's mean weight). Default: ``counts`` rounded.
    n_bootstrap : int
        Replicates (0: none).
    key : jax.random key
        Seeds the bootstrap; required when ``n_bootstrap > 0``.
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    ThetaFit
    """
    edges = np.asarray(bin_edges, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if edges.ndim != 1 or counts.shape != (edges.size - 1,):
        raise ProbkitError(
            f"`counts` must have one entry per bin: {edges.size - 1} for {edges.size} edges; "
            f"got shape {counts.shape}."
        )
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ProbkitError("`counts` must be finite and non-negative.")
    try:
        t0, t1 = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ProbkitError(f"`window` must be a pair (t0, t1); got {window!r}.") from None
    if not (math.isfinite(t0) and math.isfinite(t1) and t0 < t1):
        raise ProbkitError(f"`window` must be finite with t0 < t1; got {window!r}.")
    n_bootstrap = int(n_bootstrap)
    if n_bootstrap < 0:
        raise ProbkitError(f"`n_bootstrap` must be >= 0; got {n_bootstrap}.")
    if not 0 < confidence < 1:
        raise ProbkitError(f"`confidence` must lie in (0, 1); got {confidence!r}.")
    i0 = int(np.argmin(np.abs(edges - t0)))
    i1 = int(np.argmin(np.abs(edges - t1)))
    if i1 - i0 < 2:
        raise ProbkitError(
            f"`window` {window!r} holds {max(i1 - i0, 0)} bin(s) after snapping to the edges "
            f"({edges[i0]:g}, {edges[i1]:g}); it needs at least 2: widen it or use finer bins."
        )
    start, span = edges[i0], edges[i1] - edges[i0]
    lower, upper = edges[i0:i1] - start, edges[i0 + 1 : i1 + 1] - start
    inside = counts[i0:i1]
    n_in = float(inside.sum())
    if n_in <= 0:
        raise ProbkitError(
            f"no excursion has a length in the window [{edges[i0]:g}, {edges[i1]:g}); choose "
            "a window where the histogram has counts."
        )
    theta = _fit_rate(lower, upper, span, inside)
    nan = float("nan")
    if n_bootstrap == 0:
        return ThetaFit(theta, nan, nan, nan, n_in, (edges[i0], edges[i1]), 0, "none")
    if key is None:
        raise ProbkitError(
            "`key` is needed for the bootstrap (n_bootstrap > 0): pass jax.random.key(seed), "
            "or n_bootstrap=0 for the point estimate only."
        )
    key = _check_key(key)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    replicates = np.empty(n_bootstrap)
    if block_counts is not None:
        blocks = np.asarray(block_counts, dtype=float)[:, i0:i1]
        method = "blocks"
        for b in range(n_bootstrap):
            pick = rng.integers(0, blocks.shape[0], blocks.shape[0])
            replicates[b] = _fit_rate(lower, upper, span, blocks[pick].sum(axis=0))
    else:
        raw = counts if raw_counts is None else np.asarray(raw_counts, dtype=float)
        raw = np.rint(raw[i0:i1]).astype(np.int64)
        mean_weight = np.where(raw > 0, inside / np.maximum(raw, 1), 0.0)
        method = "multinomial"
        total = int(raw.sum())
        for b in range(n_bootstrap):
            draw = rng.multinomial(total, raw / total)
            replicates[b] = _fit_rate(lower, upper, span, draw * mean_weight)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return ThetaFit(
        theta,
        float(low),
        float(high),
        float(np.std(replicates, ddof=1)) if n_bootstrap > 1 else nan,
        n_in,
        (float(edges[i0]), float(edges[i1])),
        n_bootstrap,
        method,
    )
