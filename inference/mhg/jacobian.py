"""``log |det J|`` of a dimension-matching map, by forward-mode autodiff, padding excluded.

A Green move maps ``(x, u)`` to ``(x', u')``. Its Jacobian is taken with respect to the
continuous coordinates that are actually in use: every floating-point entry of the position and
the auxiliary draw, except the padding rows of :class:`~probkit.inference.mhg.padded.Padded`
arrays. Integer and boolean leaves are discrete (counting measure) and do not enter.

Why not a library: JAX gives ``jacfwd``, but the active block changes with the state (a birth
adds a row to ``x`` and consumes ``u``), while shapes must stay static to jit. The full Jacobian
over all padded entries is computed, its rows and columns are reordered so that the active ones
come first, and the inactive block is replaced by the identity: the determinant of that static
square matrix is the determinant of the active block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from probkit.inference.mhg.padded import Padded

__all__ = ["active_count", "continuous_view", "log_abs_det_jacobian"]


def _is_padded(node: Any) -> bool:
    return isinstance(node, Padded)


def _is_continuous(leaf: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


def continuous_view(tree: Any) -> tuple[jax.Array, jax.Array, Callable[[jax.Array], Any]]:
    """The continuous coordinates of a pytree as one vector.

    Returns
    -------
    flat : Array, shape (n,)
        Every floating-point entry, padding rows included, in flattening order.
    mask : Array of bool, shape (n,)
        Which entries are in use (padding rows are not).
    rebuild : callable
        ``rebuild(flat)`` is the tree with its floating entries replaced; discrete leaves and
        padded sizes are kept.
    """
    nodes, treedef = jax.tree_util.tree_flatten(tree, is_leaf=_is_padded)
    pieces, masks, slots = [], [], []
    for node in nodes:
        values = node.values if isinstance(node, Padded) else node
        if not _is_continuous(values):
            slots.append(None)
            continue
        values = jnp.asarray(values)
        pieces.append(values.ravel())
        if isinstance(node, Padded):
            rows = jnp.arange(values.shape[0]) < node.size
            masks.append(jnp.broadcast_to(rows.reshape((-1,) + (1,) * (values.ndim - 1)),
                                          values.shape).ravel())  # fmt: skip
        else:
            masks.append(jnp.ones(values.size, dtype=bool))
        slots.append((values.shape, values.dtype, values.size))
    if pieces:
        dtype = jnp.result_type(*pieces)
        flat = jnp.concatenate([p.astype(dtype) for p in pieces])
        mask = jnp.concatenate(masks)
    else:
        flat = jnp.zeros((0,))
        mask = jnp.zeros((0,), dtype=bool)

    def rebuild(new_flat: jax.Array) -> Any:
        out, offset = [], 0
        for node, slot in zip(nodes, slots, strict=True):
            if slot is None:
                out.append(node)
                continue
            shape, dtype, size = slot
            values = new_flat[offset : offset + size].reshape(shape).astype(dtype)
            offset += size
            out.append(Padded(values, node.size) if isinstance(node, Padded) else values)
        return jax.tree_util.tree_unflatten(treedef, out)

    return flat, mask, rebuild


def active_count(tree: Any) -> jax.Array:
    """The number of continuous coordinates in use (padding excluded)."""
    _, mask, _ = continuous_view(tree)
    return jnp.sum(mask)


def log_abs_det_jacobian(
    fn: Callable[[Any, Any], tuple[Any, Any]], position: Any, aux: Any
) -> jax.Array:
    """``log |det ∂(x', u') / ∂(x, u)|`` of ``(x', u') = fn(x, u)`` over the active coordinates.

    Parameters
    ----------
    fn : callable
        ``fn(position, aux) -> (position', aux')``, differentiable in its floating entries.
    position, aux : pytree
        The point ``(x, u)``.

    Returns
    -------
    Array, shape ()
        The log absolute determinant; NaN when the map does not match dimensions (the number
        of active continuous coordinates differs between input and output), so that a kernel
        rejects the move instead of using a meaningless ratio.
    """
    flat_in, mask_in, rebuild = continuous_view((position, aux))
    output = fn(position, aux)
    flat_out, mask_out, _ = continuous_view(output)
    count_in, count_out = jnp.sum(mask_in), jnp.sum(mask_out)
    n_in, n_out = flat_in.shape[0], flat_out.shape[0]
    if n_in == 0 and n_out == 0:
        return jnp.zeros((), dtype=jnp.result_type(float))

    def flat_fn(flat):
        return continuous_view(fn(*rebuild(flat)))[0]

    jacobian = jax.jacfwd(flat_fn)(flat_in) if n_in and n_out else jnp.zeros((n_out, n_in))
    size = max(n_in, n_out)
    square = jnp.zeros((size, size), dtype=jacobian.dtype).at[:n_out, :n_in].set(jacobian)
    # Active rows and columns first (stable order), then the inactive ones.
    row_order = jnp.argsort(~jnp.pad(mask_out, (0, size - n_out)), stable=True)
    col_order = jnp.argsort(~jnp.pad(mask_in, (0, size - n_in)), stable=True)
    reordered = square[row_order][:, col_order]
    index = jnp.arange(size)
    active = (index[:, None] < count_in) & (index[None, :] < count_in)
    identity = (index[:, None] == index[None, :]).astype(reordered.dtype)
    _, log_det = jnp.linalg.slogdet(jnp.where(active, reordered, identity))
    return jnp.where(count_in == count_out, log_det, jnp.nan)
