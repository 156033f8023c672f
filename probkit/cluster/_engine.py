"""Row-block passes over the data: the sufficient statistics that PPP's decisions need.

Every quantity PPP uses (k-means assignments and centroid sums, per-cluster scatter matrices,
local 2-means, the EM statistics of a two-component Gaussian mixture in every cluster, the
projections tested for unimodality, and the final K-component mixture) is a sum over rows. The
data therefore live on the device as fixed-size row blocks; each pass runs one compiled
function per block and adds the block's statistics in block order, so a pass costs one read of
the data whatever the number of clusters, and the tree costs a fixed number of passes per
level. With several devices every block is sharded over a one-axis mesh (``"rows"``) and the
per-block reductions become all-reduces: the same code runs on one CPU, one GPU or many, and
across hosts joined by ``jax.distributed`` (the per-row results the host-side tests need are
gathered to every process).

Passes whose intermediates grow with ``K·d`` or ``d²`` per row run over chunks of rows inside
the block (`_sum_over_chunks`), so those intermediates stay in cache; the k-means assignment and
the K-component mixture see only the active clusters, padded to a power of two
(`RowEngine._active_components`), so they cost what the clusters found cost, not the capacity.
The compiled functions depend only on the block shape (a power of two set by the memory
budget, or by n for small data), the capacity ``K`` (the largest number of clusters), that
power of two and the dtype, so data sets of similar sizes reuse them. Rows are never reordered and reductions run in
a fixed order: the same data on the same devices give bitwise-identical statistics, and other
row orders or device counts change them only by rounding, far below what the decisions have
depended on in every test (labels identical). Scatter-adds by cluster (``segment_sum``) are
deterministic on CPU; on GPU set ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["MixtureParameters", "RowEngine", "device_dtype", "regularise_covariances"]

_BLOCK_BYTES = 1 << 26  # budget for the largest per-block intermediate (64 MiB)
_CHUNK_VALUES = {"cpu": 1 << 18, "other": 1 << 24}
"""Values in the largest intermediate of one inner step of the passes whose intermediates grow
with ``K·d`` or ``d²`` per row. On CPUs, 2^18 (1 MiB of float32) keeps them in cache: on two
cores the log-densities of 8192 rows under 64 components took 48 ms at once and 10 ms in chunks
of 256 rows; the scatter matrices of 65536 rows took 45 ms at once and 24 ms in chunks of 1024.
Accelerators want few, wide steps instead: 2^24 makes a block one or a few chunks."""


class MixtureParameters(NamedTuple):
    """Gaussian mixture parameters in host arrays (float64).

    Attributes
    ----------
    means : numpy.ndarray
        Component means, shape ``(..., d)``.
    covariances : numpy.ndarray
        Component covariances, shape ``(..., d, d)``.
    weights : numpy.ndarray
        Mixing weights, shape ``(...)``.
    """

    means: np.ndarray
    covariances: np.ndarray
    weights: np.ndarray


def _segment_sum(values, segments, count):
    return jax.ops.segment_sum(values, segments, num_segments=count)


def _chunk_rows(block_rows: int, values_per_row: int, chunk_values: int) -> int:
    """Rows per chunk: a power of two (block sizes are powers of two) within ``chunk_values``."""
    rows = 1 << max(6, int(math.log2(max(chunk_values // values_per_row, 1))))
    return min(rows, block_rows)


def _chunks(rows, size: int):
    """``(B, ...)`` as ``(B // size, size, ...)``: chunk ``j`` holds rows ``j, j + B/size, ...``.

    The strided split keeps each chunk spread over all devices when the rows are sharded in
    contiguous ranges, so scanning over chunks never moves rows between devices.
    """
    return jnp.moveaxis(rows.reshape(size, rows.shape[0] // size, *rows.shape[1:]), 1, 0)


def _unchunk(values):
    """The inverse of `_chunks` for per-row outputs."""
    return jnp.moveaxis(values, 0, 1).reshape(-1, *values.shape[2:])


def _sum_over_chunks(statistics, values_per_row: int, chunk_values: int, *rows):
    """``statistics`` of every chunk of the rows, summed in chunk order.

    ``values_per_row`` is the size per row of the largest intermediate of ``statistics``; with
    ``chunk_values`` (`_CHUNK_VALUES`) it sets the chunk size.
    """
    size = _chunk_rows(rows[0].shape[0], values_per_row, chunk_values)
    chunks = tuple(_chunks(r, size) for r in rows)
    shapes = jax.eval_shape(statistics, *(c[0] for c in chunks))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def add_chunk(total, chunk):
        return jax.tree.map(jnp.add, total, statistics(*chunk)), None

    return jax.lax.scan(add_chunk, zeros, chunks)[0]


@jax.jit
def _assign_block(x, mask, centers, active, chosen, old_labels):
    # ``centers`` are the components ``chosen`` (see `RowEngine._active_components`): labels come
    # back as indices into the capacity, statistics per chosen component.
    k = centers.shape[0]
    distance = jnp.sum(x * x, axis=1)[:, None] - 2.0 * x @ centers.T + jnp.sum(centers * centers, 1)
    nearest = jnp.argmin(jnp.where(active[None, :], distance, jnp.inf), axis=1).astype(jnp.int32)
    labels = chosen[nearest]
    delta = (x - centers[nearest]) * mask[:, None]
    counts = _segment_sum(mask.astype(jnp.int32), nearest, k)
    sums = _segment_sum(delta, nearest, k)
    inertia = jnp.sum(delta * delta)
    changed = jnp.sum(mask & (labels != old_labels))
    return labels, (counts, sums, inertia, changed)


@functools.partial(jax.jit, static_argnames="chunk_values")
def _scatter_block(x, mask, labels, centers, *, chunk_values):
    def chunk_scatter(x, mask, labels):
        delta = (x - centers[labels]) * mask[:, None]
        return _segment_sum(delta[:, :, None] * delta[:, None, :], labels, centers.shape[0])

    d = x.shape[1]
    return (_sum_over_chunks(chunk_scatter, d * d, chunk_values, x, mask, labels),)


@jax.jit
def _two_means_block(x, mask, labels, children, old_side):
    k = children.shape[0]
    own = children[labels]  # (B, 2, d)
    distance = jnp.sum((x[:, None, :] - own) ** 2, axis=-1)
    side = (distance[:, 1] < distance[:, 0]).astype(jnp.int32)
    segment = 2 * labels + side
    delta = (x - jnp.take_along_axis(own, side[:, None, None], axis=1)[:, 0]) * mask[:, None]
    counts = _segment_sum(mask.astype(jnp.int32), segment, 2 * k).reshape(k, 2)
    sums = _segment_sum(delta, segment, 2 * k).reshape(k, 2, -1)
    changed = _segment_sum((mask & (side != old_side)).astype(jnp.int32), labels, k)
    return side, (counts, sums, changed)


@functools.partial(jax.jit, static_argnames="chunk_values")
def _side_scatter_block(x, mask, labels, side, children, *, chunk_values):
    k = children.shape[0]

    def chunk_scatter(x, mask, labels, side):
        segment = 2 * labels + side
        delta = (x - children.reshape(2 * k, -1)[segment]) * mask[:, None]
        return _segment_sum(delta[:, :, None] * delta[:, None, :], segment, 2 * k)

    d = x.shape[1]
    scatter = _sum_over_chunks(chunk_scatter, d * d, chunk_values, x, mask, labels, side)
    return (scatter.reshape(k, 2, *scatter.shape[1:]),)


def _log_components(x, means, whiten, log_norm):
    # log w_j N(x | m_j, Σ_j) with Σ_j⁻¹ = Wᵀ W (W lower-triangular): log_norm − ½‖W(x − m)‖².
    delta = x[..., None, :] - means
    z = jnp.einsum("...jde,...je->...jd", whiten, delta)
    return log_norm - 0.5 * jnp.sum(z * z, axis=-1), delta


def _two_component_e_step(x, mask, labels, side, means, whiten, log_norm):
    # Each row under its own cluster's two components: weights, log-densities, deviations,
    # log-likelihood, responsibilities, and whether the MAP component is the row's 2-means side.
    weight = mask.astype(x.dtype)
    log_p, delta = _log_components(x, means[labels], whiten[labels], log_norm[labels])
    log_total = jax.nn.logsumexp(log_p, axis=1)
    resp = jnp.exp(log_p - log_total[:, None]) * weight[:, None]
    agree = (jnp.argmax(log_p, axis=1) == side) & mask
    return weight, delta, log_total, resp, agree


def _e_step_summaries(k, labels, side, weight, log_total, resp, agree):
    # Per cluster: log-likelihood, summed smaller responsibility (overlap), agreement counts.
    return (
        _segment_sum(log_total * weight, labels, k),
        _segment_sum(jnp.min(resp, axis=1), labels, k),
        _segment_sum(agree.astype(jnp.int32), 2 * labels + side, 2 * k).reshape(k, 2),
    )


@functools.partial(jax.jit, static_argnames="chunk_values")
def _em_block(x, mask, labels, side, means, whiten, log_norm, *, chunk_values):
    k = means.shape[0]

    def chunk_statistics(x, mask, labels, side):
        weight, delta, log_total, resp, agree = _two_component_e_step(
            x, mask, labels, side, means, whiten, log_norm
        )
        outer = resp[:, :, None, None] * delta[..., :, None] * delta[..., None, :]
        loglik, overlap, agreement = _e_step_summaries(
            k, labels, side, weight, log_total, resp, agree
        )
        return (
            _segment_sum(resp, labels, k),
            _segment_sum(resp[:, :, None] * delta, labels, k),
            _segment_sum(outer, labels, k),
            loglik,
            overlap,
            agreement,
        )

    d = x.shape[1]
    return None, _sum_over_chunks(chunk_statistics, 4 * d * d, chunk_values, x, mask, labels, side)


@functools.partial(jax.jit, static_argnames="chunk_values")
def _estep_block(x, mask, labels, side, means, whiten, log_norm, *, chunk_values):
    # One E-step's summaries only (log-likelihood, overlap, agreement): what the split rules
    # other than "bic" read from the two-component mixture. Without the responsibility-weighted
    # first and second moments, which only an M-step needs, the pass costs a third as much.
    k = means.shape[0]

    def chunk_statistics(x, mask, labels, side):
        weight, _, log_total, resp, agree = _two_component_e_step(
            x, mask, labels, side, means, whiten, log_norm
        )
        return _e_step_summaries(k, labels, side, weight, log_total, resp, agree)

    d = x.shape[1]
    return None, _sum_over_chunks(chunk_statistics, 2 * d * d, chunk_values, x, mask, labels, side)


@jax.jit
def _project_block(x, labels, origins, directions):
    return jnp.einsum("bmd,bd->bm", directions[labels], x - origins[labels]), ()


@functools.partial(jax.jit, static_argnames="chunk_values")
def _mixture_block(x, mask, means, whiten, log_norm, active, *, chunk_values):
    def chunk_statistics(x, mask):
        weight = mask.astype(x.dtype)
        log_p, delta = _log_components(x, means, whiten, log_norm)
        log_p = jnp.where(active, log_p, -jnp.inf)
        log_total = jax.nn.logsumexp(log_p, axis=1)
        resp = jnp.exp(log_p - log_total[:, None]) * weight[:, None]
        return (
            jnp.sum(resp, axis=0),
            jnp.einsum("bk,bkd->kd", resp, delta),
            jnp.einsum("bk,bkd,bke->kde", resp, delta, delta),
            jnp.sum(log_total * weight),
        )

    k, d = means.shape
    return None, _sum_over_chunks(chunk_statistics, 3 * k * d, chunk_values, x, mask)


@functools.partial(jax.jit, static_argnames="chunk_values")
def _map_block(x, means, whiten, log_norm, active, *, chunk_values):
    def chunk_map(x):
        log_p, _ = _log_components(x, means, whiten, log_norm)
        posterior = jax.nn.softmax(jnp.where(active, log_p, -jnp.inf), axis=1)
        return jnp.argmax(posterior, axis=1).astype(jnp.int32), jnp.max(posterior, axis=1)

    size = _chunk_rows(x.shape[0], 2 * means.shape[0] * x.shape[1], chunk_values)
    component, probability = jax.lax.map(chunk_map, _chunks(x, size))
    return (_unchunk(component), _unchunk(probability)), ()


@jax.jit
def _add(total, stats):
    return jax.tree.map(jnp.add, total, stats)


def device_dtype() -> np.dtype:
    """The float dtype of the passes: float32, or float64 when JAX runs with x64 enabled."""
    return np.dtype(jnp.asarray(0.0).dtype)


def gaussian_factors(covariances: np.ndarray, weights: np.ndarray, dtype):
    """Whitening factors ``W`` (``Σ⁻¹ = WᵀW``) and ``log w − ½ log det 2πΣ`` for the device."""
    d = covariances.shape[-1]
    chol = _cholesky(covariances)
    eye = np.broadcast_to(np.eye(d), covariances.shape)
    whiten = np.linalg.solve(chol, eye)  # chol⁻¹: lower-triangular
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    with np.errstate(divide="ignore"):
        log_norm = np.log(weights) - 0.5 * (log_det + d * math.log(2 * math.pi))
    return jnp.asarray(whiten, dtype), jnp.asarray(log_norm, dtype)


class RowEngine:
    """The data as device row blocks, and the passes PPP runs over them.

    Parameters
    ----------
    data : numpy.ndarray
        The rows, shape ``(n, d)``, already validated and standardised.
    capacity : int
        The largest number of clusters (the static ``K`` of every compiled pass).
    devices : sequence of jax.Device, optional
        Devices to shard each block's rows over (default: one device, the default one).
    """

    def __init__(self, data: np.ndarray, capacity: int, devices=None):
        self.n, self.d = data.shape
        self.capacity = capacity
        self.dtype = device_dtype()
        devices = list(devices) if devices is not None else jax.local_devices()[:1]
        self._chunk = _CHUNK_VALUES["cpu" if devices[0].platform == "cpu" else "other"]
        # The largest per-row intermediates of the passes that work on a whole block at once:
        # distances to every centre and deltas (K + 2d), the projection's gathered directions
        # (up to 8d). The passes whose intermediates grow with K·d or d² run over chunks of
        # chunks of rows (`_sum_over_chunks`), whatever the block size.
        itemsize = np.dtype(self.dtype).itemsize
        per_row = itemsize * (max(capacity + 2 * self.d, 8 * self.d) + 8)
        budget = 1 << max(8, int(math.log2(max(_BLOCK_BYTES // per_row, 1))))
        # Powers of two, at least 4096 rows when the budget allows: small data sets then share
        # one compiled shape.
        wanted = 1 << max(12, math.ceil(math.log2(math.ceil(self.n / len(devices)))))
        rows = min(budget, wanted)
        rows *= len(devices)
        self.block_rows = rows
        if len(devices) > 1:
            mesh = Mesh(np.asarray(devices), ("rows",))
            self._row_sharding = NamedSharding(mesh, PartitionSpec("rows"))
            self._matrix_sharding = NamedSharding(mesh, PartitionSpec("rows", None))
        else:
            self._row_sharding = self._matrix_sharding = devices[0]
        self.blocks, self.masks = [], []
        for start in range(0, self.n, rows):
            chunk = np.zeros((rows, self.d), dtype=self.dtype)
            stop = min(start + rows, self.n)
            chunk[: stop - start] = data[start:stop]
            mask = np.arange(rows) < stop - start
            self.blocks.append(jax.device_put(chunk, self._matrix_sharding))
            self.masks.append(jax.device_put(mask, self._row_sharding))
        self.labels = [self._rows(np.zeros(rows, np.int32)) for _ in self.blocks]
        self.side = [self._rows(np.zeros(rows, np.int32)) for _ in self.blocks]
        self.longest_run = 0
        """The most iterations any one Lloyd, 2-means or EM run has taken (compare with
        ``max_iter`` to see whether a run stopped at the cap)."""

    def _rows(self, values: np.ndarray):
        return jax.device_put(values, self._row_sharding)

    def _device(self, values: np.ndarray):
        return jnp.asarray(values, self.dtype)

    def _reduce(self, function, per_block_args, *shared):
        # One pass: the compiled block function on every block, statistics added in block order.
        outputs, total = [], None
        for args in per_block_args:
            out, stats = function(*args, *shared)
            outputs.append(out)
            total = stats if total is None else _add(total, stats)
        return outputs, jax.tree.map(lambda v: np.array(v, dtype=np.float64), total)

    # k-means ----------------------------------------------------------------------------
    def _assign_pass(self, centers: np.ndarray, active: np.ndarray, old_labels):
        chosen = self._active_components(active)
        args = zip(self.blocks, self.masks, old_labels, strict=True)
        labels, (counts_chosen, sums_chosen, inertia, changed) = self._reduce(
            lambda x, m, old, *s: _assign_block(x, m, *s, old),
            args,
            self._device(np.asarray(centers)[chosen]),
            jnp.asarray(np.asarray(active)[chosen]),
            jnp.asarray(chosen, jnp.int32),
        )
        counts = _scatter_rows(counts_chosen, chosen, self.capacity)
        sums = _scatter_rows(sums_chosen, chosen, self.capacity)
        self.labels = labels
        return counts, sums, inertia, changed

    def assign(self, centers: np.ndarray, active: np.ndarray):
        """Assign every row to its nearest active centre; return the centroid statistics."""
        counts, sums, inertia, _ = self._assign_pass(centers, active, self.labels)
        return counts, sums, inertia

    def lloyd(self, centers: np.ndarray, active: np.ndarray, max_iter: int):
        """Lloyd's algorithm from ``centers`` until no row changes cluster (or ``max_iter``)."""
        centers = np.array(centers, dtype=np.float64)
        for iteration in range(1, max_iter + 1):
            counts, sums, inertia, changed = self._assign_pass(centers, active, self.labels)
            filled = counts > 0
            centers[filled] += sums[filled] / counts[filled, None]
            if changed == 0 and iteration > 1:
                break
        self.longest_run = max(self.longest_run, iteration)
        return centers, counts, inertia, iteration

    def scatter(self, centers: np.ndarray) -> np.ndarray:
        """Per-cluster scatter ``Σ (x − c)(x − c)ᵀ`` around ``centers``, shape ``(K, d, d)``."""
        args = zip(self.blocks, self.masks, self.labels, strict=True)
        _, (scatter,) = self._reduce(
            lambda x, m, lab, c: (None, _scatter_block(x, m, lab, c, chunk_values=self._chunk)),
            args,
            self._device(centers),
        )
        return scatter

    def two_means(self, children: np.ndarray, active: np.ndarray, max_iter: int):
        """2-means inside every cluster from ``children`` (shape ``(K, 2, d)``).

        Iterates until at most 1e-3 of the rows of the ``active`` clusters change side (the
        others ride along unexamined), or ``max_iter``.

        Returns the children's means, counts ``(K, 2)``, scatter matrices ``(K, 2, d, d)``
        around the means, and the number of iterations.
        """
        children = np.array(children, dtype=np.float64)
        self.side = [self._rows(np.full(self.block_rows, -1, np.int32)) for _ in self.blocks]
        for iteration in range(1, max_iter + 1):  # noqa: B007 (returned below)
            args = zip(self.blocks, self.masks, self.labels, self.side, strict=True)
            side, (counts, sums, changed) = self._reduce(
                lambda x, m, lab, old, ch: _two_means_block(x, m, lab, ch, old),
                args,
                self._device(children),
            )
            self.side = side
            filled = counts > 0
            children += np.where(filled[..., None], sums / np.maximum(counts, 1)[..., None], 0.0)
            if changed[active].sum() <= 1e-3 * counts[active].sum():
                break
        self.longest_run = max(self.longest_run, iteration)
        # The sides' scatter matrices around their means: O(d²) per row, so one pass at the end.
        args = zip(self.blocks, self.masks, self.labels, self.side, strict=True)
        _, (scatter,) = self._reduce(
            lambda x, m, lab, sd, ch: (
                None,
                _side_scatter_block(x, m, lab, sd, ch, chunk_values=self._chunk),
            ),
            args,
            self._device(children),
        )
        return children, counts, scatter, iteration

    def em_two(self, params: MixtureParameters, active: np.ndarray, max_iter: int, tol: float):
        """EM for a two-component full-covariance mixture inside every ``active`` cluster.

        Inactive clusters keep their (valid, unused) parameters; a component that keeps fewer
        than ``d + 1`` rows' worth of responsibility is frozen rather than refitted.

        EM stops when no cluster's log-likelihood per row changes by more than ``tol``.
        Returns the fitted parameters, the log-likelihood per cluster ``(K,)``, the agreement
        counts ``(K, 2)`` under the starting mixture (rows of 2-means side j whose MAP component
        is j when each side is modelled by its own Gaussian, as in the PPP author's code), the
        summed smaller responsibility per cluster under that starting mixture (its overlap)
        and the number of iterations.
        """
        means, covs, weights = (np.array(p, dtype=np.float64) for p in params)
        if max_iter == 1:  # the starting mixture's summaries only: no M-step to feed
            whiten, log_norm = gaussian_factors(covs, weights, self.dtype)
            args = zip(self.blocks, self.masks, self.labels, self.side, strict=True)
            _, (loglik, overlap, agree) = self._reduce(
                lambda x, m, lab, s, *p: _estep_block(x, m, lab, s, *p, chunk_values=self._chunk),
                args,
                self._device(means),
                whiten,
                log_norm,
            )
            self.longest_run = max(self.longest_run, 1)
            return MixtureParameters(means, covs, weights), loglik, agree, overlap, 1
        previous = None
        for iteration in range(1, max_iter + 1):
            whiten, log_norm = gaussian_factors(covs, weights, self.dtype)
            args = zip(self.blocks, self.masks, self.labels, self.side, strict=True)
            _, (mass, first, second, loglik, overlap_now, agree_now) = self._reduce(
                lambda x, m, lab, s, *p: _em_block(x, m, lab, s, *p, chunk_values=self._chunk),
                args,
                self._device(means),
                whiten,
                log_norm,
            )
            if iteration == 1:
                agree, overlap = agree_now, overlap_now
            if previous is not None and np.all(
                np.abs(loglik - previous) <= tol * (mass.sum(1) + 1)
            ):
                break
            previous = loglik
            previous_means, previous_covs = means, covs
            safe = np.maximum(mass, 1e-300)
            shift = first / safe[..., None]
            means = means + shift
            covs = second / safe[..., None, None] - shift[..., :, None] * shift[..., None, :]
            new_weights = mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-300)
            refit = active[:, None] & (mass >= self.d + 1)
            means = np.where(refit[..., None], means, previous_means)
            covs = np.where(refit[..., None, None], regularise_covariances(covs), previous_covs)
            weights = np.where(active[:, None], new_weights, weights)
        self.longest_run = max(self.longest_run, iteration)
        return MixtureParameters(means, covs, weights), loglik, agree, overlap, iteration

    def project(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Rows projected on their own cluster's directions: ``(n, m)`` host array."""
        args = zip(self.blocks, self.labels, strict=True)
        blocks, _ = self._reduce(
            _project_block, args, self._device(origins), self._device(directions)
        )
        return np.concatenate([_to_host(b) for b in blocks])[: self.n]

    def host_labels(self) -> np.ndarray:
        """The current k-means labels as a host array, shape ``(n,)``."""
        return np.concatenate([_to_host(b) for b in self.labels])[: self.n]

    # the final K-component mixture ------------------------------------------------------
    def _active_components(self, active: np.ndarray) -> np.ndarray:
        """The active components, padded with inactive ones to a power of two (at least 8).

        The K-component passes then cost what the clusters found cost, not the capacity, and
        compile for a few sizes only.
        """
        chosen = np.flatnonzero(active)
        size = min(max(8, 1 << math.ceil(math.log2(max(chosen.size, 1)))), self.capacity)
        padding = np.flatnonzero(~np.asarray(active, bool))[: size - chosen.size]
        return np.concatenate([chosen, padding])

    def em_mixture(self, params: MixtureParameters, active: np.ndarray, max_iter: int, tol: float):
        """EM for a K-component full-covariance mixture over all rows (``tol`` per row)."""
        means, covs, weights = (np.array(p, dtype=np.float64) for p in params)
        chosen = self._active_components(active)
        device_active = jnp.asarray(active[chosen])
        previous, loglik = None, -np.inf
        for iteration in range(1, max_iter + 1):  # noqa: B007 (returned below)
            whiten, log_norm = gaussian_factors(
                covs[chosen], np.where(active, weights, 1.0)[chosen], self.dtype
            )
            args = zip(self.blocks, self.masks, strict=True)
            _, (mass_chosen, first_chosen, second_chosen, loglik) = self._reduce(
                functools.partial(_mixture_block, chunk_values=self._chunk),
                args,
                self._device(means[chosen]),
                whiten,
                log_norm,
                device_active,
            )
            if previous is not None and abs(loglik - previous) <= tol * self.n:
                break
            previous = loglik
            mass, first, second = (
                _scatter_rows(value, chosen, self.capacity)
                for value in (mass_chosen, first_chosen, second_chosen)
            )
            safe = np.maximum(mass, 1e-300)
            shift = first / safe[:, None]
            refit = active & (mass >= self.d + 1)
            means = np.where(refit[:, None], means + shift, means)
            fitted = second / safe[:, None, None] - shift[:, :, None] * shift[:, None, :]
            covs = np.where(refit[:, None, None], regularise_covariances(fitted), covs)
            weights = np.where(active, mass / self.n, 0.0)
        self.longest_run = max(self.longest_run, iteration)
        return MixtureParameters(means, covs, weights), float(loglik), iteration

    def map_assignments(self, params: MixtureParameters, active: np.ndarray):
        """Each row's most probable mixture component and its posterior probability."""
        chosen = self._active_components(active)
        whiten, log_norm = gaussian_factors(
            np.asarray(params.covariances)[chosen],
            np.where(active, params.weights, 1.0)[chosen],
            self.dtype,
        )
        blocks, _ = self._reduce(
            lambda x, *p: _map_block(x, *p, chunk_values=self._chunk),
            ((x,) for x in self.blocks),
            self._device(np.asarray(params.means)[chosen]),
            whiten,
            log_norm,
            jnp.asarray(active[chosen]),
        )
        component = np.concatenate([_to_host(b[0]) for b in blocks])[: self.n]
        probability = np.concatenate([_to_host(b[1]).astype(np.float64) for b in blocks])
        return chosen[component], probability[: self.n]


def _to_host(values: jax.Array) -> np.ndarray:
    """A row-sharded array as one host array on every process.

    Across hosts (``jax.distributed``) each process holds only its devices' rows, so they are
    gathered; on one host this is a plain copy.
    """
    if values.is_fully_addressable:
        return np.asarray(values)
    return np.asarray(multihost_utils.process_allgather(values, tiled=True))


def _scatter_rows(values: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """``values`` placed at ``rows`` of a zero array with ``size`` rows."""
    full = np.zeros((size, *values.shape[1:]), values.dtype)
    full[rows] = values
    return full


def _cholesky(covariances: np.ndarray) -> np.ndarray:
    """Cholesky factors, with each eigenvalue floored where rounding made a matrix indefinite.

    Scatter matrices are summed in the device's precision (float32 by default); a cluster that
    is flat in some direction (a column with one value inside it, a column nearly a
    combination of others) can then come back with an eigenvalue a little below zero, past
    the ridge of `regularise_covariances`. Only such matrices are repaired, by flooring their
    eigenvalues at 1e-6 of their mean.
    """
    try:
        return np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(covariances)
        floor = 1e-6 * np.maximum(np.mean(np.abs(values), axis=-1, keepdims=True), 1e-30)
        repaired = (vectors * np.maximum(values, floor)[..., None, :]) @ np.swapaxes(
            vectors, -1, -2
        )
        return np.linalg.cholesky(0.5 * (repaired + np.swapaxes(repaired, -1, -2)))


def regularise_covariances(covariances: np.ndarray) -> np.ndarray:
    """Symmetrise and add a ridge of 1e-6 of the mean variance to each covariance.

    The ridge keeps every covariance positive definite and is relative to the component's own
    scale, so fits stay invariant to the data's units.
    """
    d = covariances.shape[-1]
    covariances = 0.5 * (covariances + np.swapaxes(covariances, -1, -2))
    scale = np.trace(covariances, axis1=-2, axis2=-1)[..., None, None] / d
    floor = 1e-6 * np.maximum(scale, 1e-30)
    return covariances + floor * np.eye(d)
