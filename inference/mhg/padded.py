"""Variable-dimension states in fixed-capacity arrays, so that trans-dimensional kernels jit.

A reversible-jump state with ``k`` components is held as a :class:`Padded` array of a fixed
``capacity`` whose first ``size`` rows are the components; rows past ``size`` are padding that no
density or map may read. Shapes never change, so a chain that moves between dimensions compiles
once and vmaps over chains.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError

__all__ = ["Padded", "delete_row", "insert_row", "padded", "padded_leaves"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Padded:
    """The first ``size`` rows of ``values`` are the components; the rest is padding.

    Attributes
    ----------
    values : Array, shape (capacity, *event_shape)
        The components, padded with zeros to the capacity.
    size : Array, shape (), integer
        How many rows are components (the dimension index ``k``).

    Notes
    -----
    Densities written for a :class:`Padded` state use :attr:`mask` (``jnp.where`` or a masked
    sum) so that the padding never contributes. A kernel that would grow the state past
    ``capacity`` is refused, so a chain targets the target restricted to ``size <= capacity``:
    choose the capacity where the target has negligible mass.
    """

    values: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        """The number of rows (static)."""
        return self.values.shape[0]

    @property
    def mask(self) -> jax.Array:
        """Boolean array of shape ``(capacity,)``: which rows are components."""
        return jnp.arange(self.capacity) < self.size

    def active(self) -> np.ndarray:
        """The components as a NumPy array of shape ``(size, *event_shape)`` (host only)."""
        return np.asarray(self.values)[: int(self.size)]


def padded(values: Any, capacity: int, dtype: Any = None) -> Padded:
    """Build a :class:`Padded` from the ``k`` components in ``values`` (host-side constructor).

    Parameters
    ----------
    values : array_like, shape (k, *event_shape)
        The components; ``k`` may be 0 (then give an array of shape ``(0, *event_shape)``).
    capacity : int
        The largest number of components the state may hold; ``capacity >= k``.
    dtype : dtype, optional
        The array dtype (default: that of ``values``, floats in JAX's default precision).
    """
    array = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    if array.ndim == 0:
        raise ProbkitError(
            "`values` must have a leading axis of components (shape (k, ...)); got a scalar. "
            "Use shape (0,) for an empty state."
        )
    if not isinstance(capacity, (int, np.integer)) or capacity < 1 or capacity < array.shape[0]:
        raise ProbkitError(
            f"`capacity` must be an integer >= 1 and >= the number of components "
            f"{array.shape[0]}; got {capacity!r}."
        )
    buffer = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    buffer[: array.shape[0]] = array
    return Padded(jnp.asarray(buffer), jnp.asarray(array.shape[0], dtype=jnp.int32))


def insert_row(state: Padded, index: jax.Array, row: jax.Array) -> Padded:
    """Insert ``row`` at ``index`` (0 ≤ index ≤ size), shifting later rows down by one.

    Growing past the capacity is the caller's concern: the row that falls off is lost and the
    returned ``size`` exceeds the capacity, which MHG kernels treat as a refused move.
    """
    rows = jnp.arange(state.capacity)
    source = jnp.where(rows > index, rows - 1, rows)
    shifted = state.values[source]
    at = (rows == index).reshape((-1,) + (1,) * (state.values.ndim - 1))
    values = jnp.where(at, jnp.asarray(row, state.values.dtype), shifted)
    values = jnp.where(_row_mask(rows < state.size + 1, values), values, 0)
    return Padded(values, state.size + 1)


def delete_row(state: Padded, index: jax.Array) -> tuple[Padded, jax.Array]:
    """Remove the row at ``index`` (0 ≤ index < size): ``(smaller state, removed row)``."""
    rows = jnp.arange(state.capacity)
    source = jnp.minimum(jnp.where(rows >= index, rows + 1, rows), state.capacity - 1)
    values = state.values[source]
    values = jnp.where(_row_mask(rows < state.size - 1, values), values, 0)
    return Padded(values, state.size - 1), state.values[index]


def _row_mask(mask: jax.Array, values: jax.Array) -> jax.Array:
    return mask.reshape((-1,) + (1,) * (values.ndim - 1))


def padded_leaves(position: Any) -> list[Padded]:
    """The :class:`Padded` nodes of a position, in pytree flattening order."""
    leaves = jax.tree_util.tree_leaves(position, is_leaf=lambda x: isinstance(x, Padded))
    return [leaf for leaf in leaves if isinstance(leaf, Padded)]
