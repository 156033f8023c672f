"""Ready-made Green moves on padded states: birth/death, split/merge, and a random walk.

A position holds its components in :class:`~probkit.inference.mhg.padded.Padded` arrays that
share one size ``k`` (e.g. the means and weights of a mixture); other leaves (global parameters)
are left alone by the dimension-changing moves. A component ("element") is the row of each
padded array: an array of the event shape when the position has one padded array, a tuple of
rows (in pytree flattening order) when it has several.

The user supplies the distributions and the dimension-matching maps; the builders supply the
index bookkeeping, the index-choice probabilities and the Jacobians, which is where
hand-written reversible-jump code goes wrong (research note ``qbs_smc_mhg.md`` §1.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from probkit._errors import ProbkitError
from probkit._validate import check_choice
from probkit.inference.mhg.green import Move
from probkit.inference.mhg.jacobian import continuous_view
from probkit.inference.mhg.padded import Padded, delete_row, insert_row, padded_leaves

__all__ = ["birth_death", "random_walk_move", "split_merge"]


def _is_padded(node: Any) -> bool:
    return isinstance(node, Padded)


def _size(position: Any) -> jax.Array:
    leaves = padded_leaves(position)
    if not leaves:
        raise ProbkitError(
            "the position has no Padded array: dimension-changing moves need the components in "
            "Padded arrays (see probkit.inference.mhg.padded)."
        )
    return leaves[0].size


def _map_padded(position: Any, fn: Callable[[int, Padded], Padded]) -> Any:
    nodes, treedef = jax.tree_util.tree_flatten(position, is_leaf=_is_padded)
    out, count = [], 0
    for node in nodes:
        if isinstance(node, Padded):
            out.append(fn(count, node))
            count += 1
        else:
            out.append(node)
    return jax.tree_util.tree_unflatten(treedef, out)


def _pieces(element: Any, count: int) -> tuple:
    return (element,) if count == 1 else tuple(element)


def _element(rows: list, count: int) -> Any:
    return rows[0] if count == 1 else tuple(rows)


def _insert(position: Any, index: jax.Array, element: Any) -> Any:
    count = len(padded_leaves(position))
    pieces = _pieces(element, count)
    return _map_padded(position, lambda j, node: insert_row(node, index, pieces[j]))


def _delete(position: Any, index: jax.Array) -> tuple[Any, Any]:
    rows = []

    def remove(_, node):
        smaller, row = delete_row(node, index)
        rows.append(row)
        return smaller

    smaller = _map_padded(position, remove)
    return smaller, _element(rows, len(rows))


def _row(position: Any, index: jax.Array) -> Any:
    leaves = padded_leaves(position)
    return _element([leaf.values[index] for leaf in leaves], len(leaves))


def _replace(position: Any, index: jax.Array, element: Any) -> Any:
    count = len(padded_leaves(position))
    pieces = _pieces(element, count)
    return _map_padded(
        position,
        lambda j, node: Padded(
            node.values.at[index].set(jnp.asarray(pieces[j], node.values.dtype)), node.size
        ),
    )


def _log_abs_det(fn: Callable[[Any], Any], point: Any) -> jax.Array:
    """``log |det ∂fn/∂point|`` for a map between pytrees of equal flattened size."""
    flat, unravel = ravel_pytree(point)
    if flat.shape[0] == 0:
        return jnp.zeros((), dtype=jnp.result_type(float))
    jacobian = jax.jacfwd(lambda v: ravel_pytree(fn(unravel(v)))[0])(flat)
    if jacobian.shape[0] != jacobian.shape[1]:
        raise ProbkitError(
            f"a dimension-matching map sends {jacobian.shape[1]} coordinates to "
            f"{jacobian.shape[0]}; it must be a bijection between spaces of equal dimension."
        )
    return jnp.linalg.slogdet(jacobian)[1]


def _uniform_index(key: jax.Array, count: jax.Array) -> jax.Array:
    # randint with an upper bound of 0 would be meaningless; such a draw is only made when the
    # move has probability zero, and the move is then refused by its log density (-inf).
    return jax.random.randint(key, (), 0, jnp.maximum(count, 1), dtype=jnp.int32)


def _log_uniform(count: jax.Array) -> jax.Array:
    count = jnp.asarray(count)
    return jnp.where(count > 0, -jnp.log(jnp.maximum(count, 1).astype(float)), -jnp.inf)


def birth_death(
    element_sample: Callable[[jax.Array, Any], Any],
    element_log_density: Callable[[Any, Any], jax.Array],
    *,
    element_map: Callable[[Any, Any], Any] | None = None,
    element_map_inverse: Callable[[Any, Any], Any] | None = None,
    placement: Literal["uniform", "end"] = "uniform",
    names: tuple[str, str] = ("birth", "death"),
) -> tuple[Move, Move]:
    """A birth move that adds one component and the death move that removes one.

    Birth: draw ``u ~ g(· | x)``, make the component ``e = T(u, x)`` (``T`` the identity by
    default) and insert it; death: remove a component ``e`` and recover ``u = T⁻¹(e, x')`` from
    the smaller state ``x'``. The Jacobian is ``|det ∂T/∂u|`` (insertion only permutes
    coordinates).

    Parameters
    ----------
    element_sample : callable
        ``element_sample(key, x) -> u``.
    element_log_density : callable
        ``element_log_density(u, x) -> log g(u | x)``, with ``x`` the state without the new
        component.
    element_map, element_map_inverse : callable, optional
        ``T(u, x)`` and ``T⁻¹(e, x)``, a bijection in its first argument (e.g. a scaling that
        proposes on the scale of the current components). Give both or neither.
    placement : {"uniform", "end"}
        ``"uniform"``: the new component goes to a uniform position among ``k + 1`` and death
        removes a uniform one of ``k`` (for exchangeable components); ``"end"``: birth appends
        and death removes the last (for ordered components such as polynomial coefficients).
    names : (str, str)
        The two moves' names.

    Returns
    -------
    (Move, Move)
        Birth and death, each naming the other as its reverse. Give death probability zero at
        ``k = 0`` in ``move_probabilities``.

    Notes
    -----
    Auxiliary draws (what ``sample_aux`` returns, and what an ``aux_support`` for
    :func:`~probkit.theory.transition.mhg_transition_matrix` lists): birth ``(index, u)`` with
    ``index`` an int32 in ``0..k`` (exactly ``k`` with ``placement="end"``); death ``index``, an
    int32 in ``0..k-1`` (exactly ``k - 1`` with ``"end"``).
    """
    check_choice("placement", placement, ("uniform", "end"))
    for argument, value in (
        ("element_sample", element_sample),
        ("element_log_density", element_log_density),
    ):
        if not callable(value):
            raise ProbkitError(f"`{argument}` must be a function; got {type(value).__name__}.")
    if (element_map is None) != (element_map_inverse is None):
        raise ProbkitError(
            "give both `element_map` and `element_map_inverse`, or neither (identity)."
        )
    at_end = placement == "end"
    birth_name, death_name = names

    def to_element(u, x):
        return u if element_map is None else element_map(u, x)

    def to_aux(e, x):
        return e if element_map_inverse is None else element_map_inverse(e, x)

    def map_log_det(u, x):
        if element_map is None:
            return jnp.zeros((), dtype=jnp.result_type(float))
        return _log_abs_det(lambda v: element_map(v, x), u)

    def birth_sample(key, x):
        key_index, key_element = jax.random.split(key)
        size = _size(x)
        index = size if at_end else _uniform_index(key_index, size + 1)
        return jnp.asarray(index, jnp.int32), element_sample(key_element, x)

    def birth_log_density(aux, x):
        index, u = aux
        size = _size(x)
        if at_end:
            # The index is not random, but it is part of the draw: any other index has
            # probability zero (so that an end-placement move never pairs with a uniform one).
            log_index = jnp.where(index == size, 0.0, -jnp.inf)
        else:
            log_index = jnp.where((index >= 0) & (index <= size), _log_uniform(size + 1), -jnp.inf)
        return element_log_density(u, x) + log_index

    def birth_apply(x, aux):
        index, u = aux
        return _insert(x, index, to_element(u, x)), index

    def birth_log_det(x, aux):
        return map_log_det(aux[1], x)

    def death_sample(key, x):
        size = _size(x)
        index = size - 1 if at_end else _uniform_index(key, size)
        return jnp.asarray(index, jnp.int32)

    def death_log_density(index, x):
        size = _size(x)
        if at_end:
            return jnp.where((size > 0) & (index == size - 1), 0.0, -jnp.inf)
        return jnp.where((index >= 0) & (index < size), _log_uniform(size), -jnp.inf)

    def death_apply(x, index):
        smaller, element = _delete(x, index)
        return smaller, (index, to_aux(element, smaller))

    def death_log_det(x, index):
        smaller, element = _delete(x, index)
        return -map_log_det(to_aux(element, smaller), smaller)

    birth = Move(
        birth_name, birth_sample, birth_log_density, birth_apply, death_name, birth_log_det
    )
    death = Move(
        death_name, death_sample, death_log_density, death_apply, birth_name, death_log_det
    )
    return birth, death


def split_merge(
    split_map: Callable[[Any, Any], tuple[Any, Any]],
    merge_map: Callable[[Any, Any], tuple[Any, Any]],
    aux_sample: Callable[[jax.Array, Any], Any],
    aux_log_density: Callable[[Any, Any], jax.Array],
    *,
    names: tuple[str, str] = ("split", "merge"),
) -> tuple[Move, Move]:
    """A split move that turns one component into two and the merge move that undoes it.

    Split: pick a component ``e`` (uniform among ``k``), draw ``u ~ g(· | e)``, set
    ``(a, b) = S(e, u)``; ``a`` replaces ``e`` and ``b`` is inserted at a uniform position among
    ``k + 1``. Merge: pick an ordered pair ``(a, b)`` of distinct components (uniform among
    ``(k + 1) k``), set ``(e, u) = M(a, b)``, put ``e`` in place of ``a`` and remove ``b``. The
    index choices of the two moves are in one-to-one correspondence with equal probabilities
    ``1 / (k (k + 1))``; the Jacobian ``|det ∂(a, b)/∂(e, u)|`` is computed by autodiff.

    Parameters
    ----------
    split_map : callable
        ``S(e, u) -> (a, b)``, a bijection onto its image.
    merge_map : callable
        ``M(a, b) -> (e, u)``, its inverse.
    aux_sample : callable
        ``aux_sample(key, e) -> u``; ``u`` has as many continuous coordinates as a component.
    aux_log_density : callable
        ``aux_log_density(u, e) -> log g(u | e)``.
    names : (str, str)
        The two moves' names.

    Returns
    -------
    (Move, Move)
        Split and merge, each naming the other as its reverse. Give merge probability zero
        at ``k < 2`` and split probability zero at ``k = 0``.

    Notes
    -----
    Auxiliary draws: split ``(index, place, u)``, the component split (int32 in ``0..k-1``),
    the insertion position of ``b`` (int32 in ``0..k``) and ``u``; merge ``(first, second)``,
    the distinct positions of ``a`` and ``b`` (int32 in ``0..k-1`` for a state of size ``k``).
    """
    for argument, value in (
        ("split_map", split_map),
        ("merge_map", merge_map),
        ("aux_sample", aux_sample),
        ("aux_log_density", aux_log_density),
    ):
        if not callable(value):
            raise ProbkitError(f"`{argument}` must be a function; got {type(value).__name__}.")
    split_name, merge_name = names

    def split_sample(key, x):
        key_index, key_place, key_u = jax.random.split(key, 3)
        size = _size(x)
        index = _uniform_index(key_index, size)
        place = _uniform_index(key_place, size + 1)
        return index, place, aux_sample(key_u, _row(x, index))

    def split_log_density(aux, x):
        index, place, u = aux
        size = _size(x)
        valid = (index >= 0) & (index < size) & (place >= 0) & (place <= size)
        log_choice = jnp.where(valid, _log_uniform(size) + _log_uniform(size + 1), -jnp.inf)
        return log_choice + aux_log_density(u, _row(x, index))

    def split_apply(x, aux):
        index, place, u = aux
        first, second = split_map(_row(x, index), u)
        grown = _insert(_replace(x, index, first), place, second)
        first_index = jnp.where(index < place, index, index + 1).astype(jnp.int32)
        return grown, (first_index, place)

    def split_log_det(x, aux):
        index, _, u = aux
        return _log_abs_det(lambda eu: split_map(*eu), (_row(x, index), u))

    def merge_sample(key, x):
        key_first, key_second = jax.random.split(key)
        size = _size(x)
        first = _uniform_index(key_first, size)
        other = _uniform_index(key_second, size - 1)
        second = jnp.where(other >= first, other + 1, other).astype(jnp.int32)
        return first, second

    def merge_log_density(aux, x):
        first, second = aux
        size = _size(x)
        valid = (first != second) & (first >= 0) & (first < size) & (second >= 0) & (second < size)
        return jnp.where(valid, _log_uniform(size) + _log_uniform(size - 1), -jnp.inf)

    def merge_apply(x, aux):
        first, second = aux
        element, u = merge_map(_row(x, first), _row(x, second))
        shrunk, _ = _delete(_replace(x, first, element), second)
        index = jnp.where(first < second, first, first - 1).astype(jnp.int32)
        return shrunk, (index, second, u)

    def merge_log_det(x, aux):
        first, second = aux
        return _log_abs_det(lambda ab: merge_map(*ab), (_row(x, first), _row(x, second)))

    split = Move(
        split_name, split_sample, split_log_density, split_apply, merge_name, split_log_det
    )
    merge = Move(
        merge_name, merge_sample, merge_log_density, merge_apply, split_name, merge_log_det
    )
    return split, merge


def random_walk_move(scale: float | jax.Array, *, name: str = "walk") -> Move:
    """A within-dimension random walk on every active continuous coordinate: ``x + scale · v``.

    ``v ~ N(0, I)`` over all continuous entries (padding included, where it is unused);
    ``v' = -v`` makes the move its own reverse with Jacobian one.

    Parameters
    ----------
    scale : float or Array
        A common step size, or one per continuous coordinate (in the flattening order of
        :func:`~probkit.inference.mhg.jacobian.continuous_view`).
    name : str
        The move's name.
    """
    if isinstance(scale, (int, float)) and not scale > 0:
        raise ProbkitError(f"`scale` must be positive; got {scale!r}.")

    def sample(key, x):
        flat, _, _ = continuous_view(x)
        return jax.random.normal(key, flat.shape, flat.dtype)

    def log_density(v, x):
        return -0.5 * jnp.sum(v**2) - 0.5 * v.shape[0] * math.log(2 * math.pi)

    def apply(x, v):
        flat, mask, rebuild = continuous_view(x)
        return rebuild(flat + jnp.where(mask, scale * v, 0.0)), -v

    def log_det(x, v):
        return jnp.zeros((), dtype=jnp.result_type(float))

    return Move(name, sample, log_density, apply, None, log_det)
