"""Belief propagation with the edges and the bags of a field sharded over devices.

A sweep of :func:`~probkit.inference.bp.belief_propagation` is a gather of beliefs per directed
edge, a segment sum of messages per variable and the count messages of every bag: all of it
data-parallel over edges and over bags. :func:`shard_mrf` lays a field out for that: the
directed-edge and pairwise arrays are split over a one-axis device mesh along the edges, each
block of count factors along its bags, and the per-variable arrays are replicated. The compiled
sweep is then partitioned by XLA (each device sends the messages of its edges and bags; the
per-variable sums become all-reduces), so the same ``belief_propagation`` call runs on one
device or many.

The mesh needs the edges and the bags in multiples of the device count, so the field is padded
with edges that carry no coupling and bags with no members. Neither changes a marginal or the
Bethe ``log Z``: an edge with ``J = 0`` sends the message ``log E[e^{0·y}] = 0`` and adds 0 to
the Bethe free energy, and an empty bag with ``φ(0) = 1`` sends nothing and adds
``log φ(0) = 0``. The messages of the result include the padding (the field's own come first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from probkit._errors import ProbkitError
from probkit.inference.bp.model import BinaryMRF, CountBlock, CountFactors, _directed_edges

__all__ = ["pad_mrf", "shard_mrf"]


def _pad_rows(values, rows: int, fill) -> np.ndarray:
    values = np.asarray(values)
    padding = np.full((rows - values.shape[0], *values.shape[1:]), fill, dtype=values.dtype)
    return np.concatenate([values, padding])


def _round_up(size: int, multiple: int) -> int:
    return max(multiple, math.ceil(size / multiple) * multiple)


def _padded_block(block: CountBlock, multiple: int) -> CountBlock:
    rows = _round_up(block.members.shape[0], multiple)
    empty = np.full(block.log_potential.shape[1], -np.inf)
    empty[0] = 0.0  # φ(0) = 1: a bag with no members holds no positives
    padded = CountBlock(
        members=_pad_rows(block.members, rows, 0),
        mask=_pad_rows(block.mask, rows, False),
        log_potential=_pad_rows(block.log_potential, rows, empty),
        counts=_pad_rows(block.counts, rows, 0.0),
        strength=_pad_rows(block.strength, rows, np.inf),
        bag_index=_pad_rows(block.bag_index, rows, -1),
    )
    return CountBlock(*(jnp.asarray(values) for values in padded))


def shard_mrf(mrf: BinaryMRF, devices: Sequence[Any] | None = None) -> BinaryMRF:
    """The field laid out over ``devices``: edges and bags sharded, variables replicated.

    Parameters
    ----------
    mrf : BinaryMRF
        A field from :func:`~probkit.inference.bp.binary_mrf`.
    devices : sequence of jax.Device, optional
        The devices of the one-axis mesh (default: every device of this process).

    Returns
    -------
    BinaryMRF
        The same field, padded with neutral edges and empty bags to multiples of the device
        count; :func:`~probkit.inference.bp.belief_propagation` on it gives the marginals and the
        Bethe ``log Z`` of ``mrf`` up to rounding.
    """
    if not isinstance(mrf, BinaryMRF):
        raise ProbkitError(
            f"`mrf` must be a BinaryMRF (from binary_mrf), got {type(mrf).__name__}."
        )
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ProbkitError("`devices` is empty; pass at least one jax.Device.")
    mesh = Mesh(np.asarray(devices), ("shards",))
    split = NamedSharding(mesh, PartitionSpec("shards"))
    replicated = NamedSharding(mesh, PartitionSpec())

    padded = pad_mrf(mrf, len(devices))
    factors = padded.count_factors
    return BinaryMRF(
        unary=jax.device_put(padded.unary, replicated),
        edges=jax.device_put(padded.edges, split),
        coupling=jax.device_put(padded.coupling, split),
        directed=jax.device_put(padded.directed, split),
        count_factors=None
        if factors is None
        else CountFactors(jax.device_put(factors.blocks, split), factors.num_bags),
    )


def pad_mrf(mrf: BinaryMRF, multiple: int) -> BinaryMRF:
    """The field with neutral edges and empty bags added up to multiples of ``multiple``."""
    num_edges = _round_up(mrf.edges.shape[0], multiple)
    # Padding edges join variable 0 to itself with J = 0: their messages are exactly neutral.
    edges = _pad_rows(mrf.edges, num_edges, 0)
    coupling = _pad_rows(mrf.coupling, num_edges, 0.0)
    count_factors = None
    if mrf.count_factors is not None:
        blocks = tuple(_padded_block(block, multiple) for block in mrf.count_factors.blocks)
        count_factors = CountFactors(blocks, mrf.count_factors.num_bags)
    return BinaryMRF(
        unary=mrf.unary,
        edges=jnp.asarray(edges),
        coupling=jnp.asarray(coupling),
        directed=_directed_edges(edges, coupling, coupling.dtype),
        count_factors=count_factors,
    )
