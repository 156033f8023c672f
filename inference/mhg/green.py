"""Metropolis–Hastings–Green kernels: involutive MCMC and reversible jump, one engine.

A step picks a move type ``m`` with state-dependent probability ``j(m | x)``, draws an auxiliary
``u ~ g_m(· | x)``, maps ``(x', u') = h_m(x, u)`` and accepts with probability ``α(ρ)`` where

    log ρ = log π(x') + log j(m̄ | x') + log g_m̄(u' | x')
          − log π(x)  − log j(m | x)  − log g_m(u | x)  + log |det ∂(x', u')/∂(x, u)|

and ``m̄`` is the reverse move, whose map undoes ``h_m`` (``h_m̄(h_m(x, u)) = (x, u)``). The
combined map ``(x, m, u) ↦ (x', m̄, u')`` is then an involution of the extended space, and the MHG
theorem (research note ``qbs_smc_mhg.md`` §1.5; Green 1995; Neklyudov et al. 2020) says the kernel
is π-reversible. An involutive kernel is the one-move case with ``m̄ = m``.

Every kernel also exposes :meth:`MHGKernel.propose`, the deterministic part of a step for a given
move and auxiliary draw; :func:`probkit.theory.transition.mhg_transition_matrix` builds exact
transition matrices from it, and :func:`check_moves` tests the involution and the Jacobians.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import check_choice, is_concrete
from probkit.inference.mhg.base import (
    AcceptanceRule,
    MHState,
    acceptance_log_probability,
    check_log_density_fn,
)
from probkit.inference.mhg.jacobian import active_count, continuous_view, log_abs_det_jacobian
from probkit.inference.mhg.padded import Padded, padded_leaves

__all__ = [
    "MHGInfo",
    "MHGKernel",
    "Move",
    "Proposal",
    "check_moves",
    "involutive",
    "reversible_jump",
]


class Move(NamedTuple):
    """One move type of an MHG kernel.

    Attributes
    ----------
    name : str
        Names the move in reports and errors.
    sample_aux : callable
        ``sample_aux(key, x) -> u``, a draw from ``g(· | x)`` (a pytree; integer leaves are
        discrete choices, floating leaves continuous).
    aux_log_density : callable
        ``aux_log_density(u, x) -> log g(u | x)`` (density for continuous leaves, probability for
        discrete ones).
    apply : callable
        ``apply(x, u) -> (x', u')``, the dimension-matching map; ``u'`` is an auxiliary value of
        the reverse move, and the reverse move's ``apply`` must return ``(x, u)`` from it.
    reverse : str or None
        The name of the reverse move; ``None`` for a move that is its own reverse (an
        involution).
    log_abs_det_jacobian : callable or None
        ``(x, u) -> log |det ∂(x', u')/∂(x, u)|`` when known analytically; ``None`` computes it by
        forward-mode autodiff over the active continuous coordinates
        (:func:`~probkit.inference.mhg.jacobian.log_abs_det_jacobian`).
    """

    name: str
    sample_aux: Callable[[jax.Array, Any], Any]
    aux_log_density: Callable[[Any, Any], jax.Array]
    apply: Callable[[Any, Any], tuple[Any, Any]]
    reverse: str | None = None
    log_abs_det_jacobian: Callable[[Any, Any], jax.Array] | None = None


class Proposal(NamedTuple):
    """The deterministic part of one MHG step, for a given move and auxiliary draw.

    Attributes
    ----------
    position : pytree
        ``x'``.
    log_density : Array
        ``log π(x')``.
    log_ratio : Array
        ``log ρ``; ``-inf`` when the move cannot be reversed (``j(m̄ | x') = 0``), leaves the
        capacity of a padded state, or has zero target density; NaN when the map does not
        match dimensions.
    log_forward : Array
        ``log j(m | x) + log g_m(u | x)``: the log probability (density) of choosing this move
        and this auxiliary value.
    log_reverse : Array
        ``log j(m̄ | x') + log g_m̄(u' | x')``.
    log_jacobian : Array
        ``log |det ∂(x', u')/∂(x, u)|``.
    in_capacity : Array of bool
        False when a padded array of ``x'`` has a size outside ``[0, capacity]``.
    """

    position: Any
    log_density: jax.Array
    log_ratio: jax.Array
    log_forward: jax.Array
    log_reverse: jax.Array
    log_jacobian: jax.Array
    in_capacity: jax.Array


class MHGInfo(NamedTuple):
    """What one MHG step did.

    Attributes
    ----------
    acceptance_probability : Array, shape ()
        ``α(ρ)`` (0 when the ratio was NaN or the move left the capacity).
    is_accepted : Array of bool, shape ()
    proposal : pytree
        The proposed position.
    move : Array of int, shape ()
        The index of the move type tried (order of the kernel's ``moves``).
    in_capacity : Array of bool, shape ()
        False when the proposal would have grown a padded array past its capacity.
    check_error : Array, shape ()
        With ``check=True``: the largest round-trip error of the step (involution, log-ratio
        antisymmetry, analytic against automatic Jacobian); NaN without checking.
    """

    acceptance_probability: jax.Array
    is_accepted: jax.Array
    proposal: Any
    move: jax.Array
    in_capacity: jax.Array
    check_error: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class MHGKernel:
    """A Metropolis–Hastings–Green kernel with the ``(init, step)`` shape.

    Build it with :func:`involutive` or :func:`reversible_jump`.

    Attributes
    ----------
    log_density_fn : callable
        The target's log density (unnormalised) of a position.
    moves : tuple of Move
        The move types.
    move_probabilities : callable or None
        ``move_probabilities(x) -> Array of shape (len(moves),)``, the probabilities ``j(m | x)``;
        ``None`` for equal probabilities.
    rule : {"metropolis", "barker"}
        The acceptance rule.
    check : bool
        Verify the involution and Jacobians in every step (reported in
        :attr:`MHGInfo.check_error`) and at ``init`` (raising).
    """

    log_density_fn: Callable[[Any], jax.Array]
    moves: tuple[Move, ...]
    move_probabilities: Callable[[Any], jax.Array] | None = None
    rule: AcceptanceRule = "metropolis"
    check: bool = False

    # -- the pieces of a step, shared with the exact oracles -------------------------------

    def move_index(self, move: int | str) -> int:
        """The index of a move given its index or name."""
        if isinstance(move, str):
            names = [m.name for m in self.moves]
            if move not in names:
                raise ProbkitError(f"no move named {move!r}; the kernel's moves are {names}.")
            return names.index(move)
        return int(move)

    def reverse_index(self, move: int | str) -> int:
        """The index of the reverse of a move."""
        index = self.move_index(move)
        reverse = self.moves[index].reverse
        return index if reverse is None else self.move_index(reverse)

    def log_move_probabilities(self, position: Any) -> jax.Array:
        """``log j(m | x)`` for every move, shape ``(len(moves),)``."""
        count = len(self.moves)
        if self.move_probabilities is None:
            dtype = jnp.result_type(float)
            return jnp.full((count,), -math.log(count), dtype=dtype)
        probabilities = jnp.asarray(self.move_probabilities(position))
        return jnp.log(probabilities)

    def propose(
        self, position: Any, move: int | str, aux: Any, log_density: jax.Array | None = None
    ) -> tuple[Proposal, Any]:
        """The deterministic part of a step: ``(Proposal, u')`` for move ``move`` and draw ``aux``.

        ``move`` is static (an index or a name); ``log_density`` is ``log π(x)`` when already
        known. The step of this kernel uses exactly this function after drawing the move and
        the auxiliary value.
        """
        index = self.move_index(move)
        reverse = self.reverse_index(index)
        spec, reverse_spec = self.moves[index], self.moves[reverse]
        new_position, new_aux = spec.apply(position, aux)
        if spec.log_abs_det_jacobian is None:
            log_jacobian = log_abs_det_jacobian(spec.apply, position, aux)
        else:
            log_jacobian = jnp.asarray(spec.log_abs_det_jacobian(position, aux))
        log_forward = self.log_move_probabilities(position)[index] + spec.aux_log_density(
            aux, position
        )
        log_reverse = self.log_move_probabilities(new_position)[
            reverse
        ] + reverse_spec.aux_log_density(new_aux, new_position)
        in_capacity = _in_capacity(new_position)
        new_log_density = jnp.asarray(self.log_density_fn(new_position))
        if log_density is None:
            log_density = jnp.asarray(self.log_density_fn(position))
        log_ratio = new_log_density - log_density + log_reverse - log_forward + log_jacobian
        # A proposal the reverse move cannot reach, with zero density, or from a draw of
        # probability zero is never accepted: -inf, not the NaN of -inf - (-inf) or a +inf.
        impossible = (
            ~in_capacity
            | (new_log_density == -jnp.inf)
            | (log_reverse == -jnp.inf)
            | (log_forward == -jnp.inf)
        )
        log_ratio = jnp.where(impossible, -jnp.inf, log_ratio)
        # One float type for every move, so that lax.switch sees identical branch outputs.
        real = jnp.result_type(float)
        proposal = Proposal(
            new_position, new_log_density.astype(real), log_ratio.astype(real),
            jnp.asarray(log_forward, real), jnp.asarray(log_reverse, real),
            jnp.asarray(log_jacobian, real), in_capacity,
        )  # fmt: skip
        return proposal, new_aux

    def roundtrip_errors(self, position: Any, move: int | str, aux: Any) -> dict[str, jax.Array]:
        """The violations of the MHG conditions at one point ``z = (x, u)`` of the extended space.

        Returns
        -------
        dict
            ``involution``: the distance between ``(x, u)`` and the reverse move applied to
            ``(x', u')`` (active coordinates and discrete leaves); ``jacobian``:
            ``|L(z) + L(f(z))|`` for the log-Jacobians ``L`` of the two trips; ``ratio``:
            ``|log ρ(z) + log ρ(f(z))|`` (the ratio must be antisymmetric under the involution;
            counted when both are finite); and, for a move with an analytic Jacobian,
            ``analytic_jacobian``: its distance to the automatic one. All zero up to rounding
            for a correct move.
        """
        index = self.move_index(move)
        reverse = self.reverse_index(index)
        forward, new_aux = self.propose(position, index, aux)
        back, back_aux = self.propose(forward.position, reverse, new_aux)
        real = jnp.result_type(float)
        usable = jnp.isfinite(forward.log_ratio) & jnp.isfinite(back.log_ratio)
        errors = {
            "involution": jnp.maximum(
                _tree_distance(back.position, position), _tree_distance(back_aux, aux)
            ),
            "jacobian": _finite_gap(forward.log_jacobian, back.log_jacobian),
            "ratio": jnp.where(usable, jnp.abs(forward.log_ratio + back.log_ratio), 0.0),
        }
        spec = self.moves[index]
        if spec.log_abs_det_jacobian is not None:
            automatic = log_abs_det_jacobian(spec.apply, position, aux)
            errors["analytic_jacobian"] = jnp.abs(forward.log_jacobian - automatic)
        return {name: jnp.asarray(value, dtype=real) for name, value in errors.items()}

    def roundtrip_error(self, position: Any, move: int | str, aux: Any) -> jax.Array:
        """The largest of :meth:`roundtrip_errors`."""
        return jnp.max(jnp.stack(list(self.roundtrip_errors(position, move, aux).values())))

    # -- the kernel -------------------------------------------------------------------------

    @functools.cached_property
    def _branches(self) -> list[Callable]:
        # Built once per kernel: lax.switch caches its compilation on the identity of these
        # functions, so rebuilding them in every un-jitted step would recompile every step.
        def branch(index):
            def run(key_aux, position, log_density):
                aux = self.moves[index].sample_aux(key_aux, position)
                proposal, _ = self.propose(position, index, aux, log_density)
                if self.check:
                    error = self.roundtrip_error(position, index, aux)
                else:
                    error = jnp.full((), jnp.nan, dtype=jnp.result_type(float))
                return proposal, error

            return run

        return [branch(i) for i in range(len(self.moves))]

    def init(self, position: Any) -> MHState:
        """The state at ``position``; with a concrete position, validates the kernel there."""
        state = MHState(position, jnp.asarray(self.log_density_fn(position)))
        if jnp.shape(state.log_density) != ():
            raise ProbkitError(
                f"`log_density_fn` must return a scalar; got shape {jnp.shape(state.log_density)}. "
                "vmap the kernel over chains instead."
            )
        if is_concrete(state.log_density):
            if not np.isfinite(np.asarray(state.log_density)):
                raise ProbkitError(
                    f"the log density at the initial position is {float(state.log_density)}; "
                    "start the chain where the target has positive, finite density."
                )
            _validate_at(self, position)
            if self.check:
                check_moves(self, position, jax.random.key(0))
        return state

    def step(self, key: jax.Array, state: MHState) -> tuple[MHState, MHGInfo]:
        """One transition; jit- and vmap-compatible."""
        key_move, key_aux, key_accept = jax.random.split(key, 3)
        count = len(self.moves)
        if count == 1:
            move = jnp.zeros((), dtype=jnp.int32)
        else:
            move = jax.random.categorical(
                key_move, self.log_move_probabilities(state.position)
            ).astype(jnp.int32)

        branches = self._branches
        if count == 1:
            proposal, error = branches[0](key_aux, state.position, state.log_density)
        else:
            proposal, error = jax.lax.switch(
                move, branches, key_aux, state.position, state.log_density
            )
        log_alpha = acceptance_log_probability(proposal.log_ratio, self.rule)
        accept = (
            jnp.log(jax.random.uniform(key_accept, dtype=jnp.result_type(log_alpha))) < log_alpha
        )
        candidate = MHState(proposal.position, proposal.log_density.astype(state.log_density.dtype))
        new_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(accept, new, old), candidate, state
        )
        info = MHGInfo(
            jnp.exp(log_alpha), accept, proposal.position, move, proposal.in_capacity, error
        )
        return new_state, info


def _in_capacity(position: Any) -> jax.Array:
    result = jnp.asarray(True)
    for node in padded_leaves(position):
        result = result & (node.size >= 0) & (node.size <= node.capacity)
    return result


def _tree_distance(a: Any, b: Any) -> jax.Array:
    """Max abs difference over active continuous coordinates and all discrete leaves."""
    flat_a, mask_a, _ = continuous_view(a)
    flat_b, mask_b, _ = continuous_view(b)
    dtype = jnp.result_type(float)
    if flat_a.shape != flat_b.shape:
        return jnp.asarray(jnp.inf, dtype=dtype)
    continuous = jnp.where(mask_a & mask_b, jnp.abs(flat_a - flat_b), 0.0)
    masks_differ = jnp.any(mask_a != mask_b)
    gaps = [jnp.max(continuous, initial=0.0), jnp.where(masks_differ, jnp.inf, 0.0)]
    discrete_a = _discrete_leaves(a)
    discrete_b = _discrete_leaves(b)
    if len(discrete_a) != len(discrete_b):
        return jnp.asarray(jnp.inf, dtype=dtype)
    for x, y in zip(discrete_a, discrete_b, strict=True):
        if jnp.shape(x) != jnp.shape(y):
            return jnp.asarray(jnp.inf, dtype=dtype)
        gaps.append(jnp.where(jnp.all(x == y), 0.0, jnp.inf))
    return jnp.max(jnp.stack([jnp.asarray(g, dtype=dtype) for g in gaps]))


def _discrete_leaves(tree: Any) -> list[jax.Array]:
    """Integer/boolean leaves, with padded integer arrays reduced to their active rows."""
    out = []
    nodes = jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, Padded))
    for node in nodes:
        if isinstance(node, Padded):
            out.append(node.size)
            if not jnp.issubdtype(node.values.dtype, jnp.inexact):
                rows = node.mask.reshape((-1,) + (1,) * (node.values.ndim - 1))
                out.append(jnp.where(rows, node.values, 0))
        elif not jnp.issubdtype(jnp.result_type(node), jnp.inexact):
            out.append(jnp.asarray(node))
    return out


def _finite_gap(a: jax.Array, b: jax.Array) -> jax.Array:
    gap = jnp.abs(a + b)
    return jnp.where(jnp.isnan(a) | jnp.isnan(b), jnp.inf, jnp.where(jnp.isfinite(gap), gap, 0.0))


def _validate_at(kernel: MHGKernel, position: Any) -> None:
    """Eager checks at a concrete position: probabilities, shapes, dimension matching."""
    log_j = kernel.log_move_probabilities(position)
    count = len(kernel.moves)
    if log_j.shape != (count,):
        raise ProbkitError(
            f"`move_probabilities` must return one probability per move, shape ({count},); "
            f"got shape {log_j.shape}."
        )
    probabilities = np.exp(np.asarray(log_j, dtype=np.float64))
    tolerance = 1e-5 if np.asarray(log_j).dtype == np.float32 else 1e-10
    if not np.all(np.isfinite(probabilities)) or abs(probabilities.sum() - 1.0) > tolerance:
        raise ProbkitError(
            f"`move_probabilities` must be non-negative and sum to one; at the initial position "
            f"they are {dict(zip([m.name for m in kernel.moves], probabilities.round(6), strict=True))} "
            f"(sum {probabilities.sum():.6g}). Give every move type its probability j(m | x), "
            "with zero for moves that cannot start from x."
        )
    structure = jax.tree_util.tree_structure(position)
    shapes = jax.tree_util.tree_map(lambda leaf: (jnp.shape(leaf), jnp.result_type(leaf)), position)
    live = [i for i in range(count) if probabilities[i] > 0]

    def counts(x, index):
        move = kernel.moves[index]
        aux = move.sample_aux(jax.random.key(0), x)
        new_position, new_aux = move.apply(x, aux)
        return (
            new_position,
            _in_capacity(new_position),
            active_count((x, aux)),
            active_count((new_position, new_aux)),
        )

    for index in live:
        move = kernel.moves[index]
        try:
            new_shape = jax.eval_shape(lambda x, index=index: counts(x, index), position)[0]
        except (TypeError, ValueError, IndexError) as error:
            raise ProbkitError(
                f"move {move.name!r} fails on the initial position: {error}. Check that its "
                "auxiliary draw and map match the position (a component of several padded "
                "arrays is a tuple of their rows in pytree flattening order; dict keys sort)."
            ) from error
        new_shapes = jax.tree_util.tree_map(lambda leaf: (leaf.shape, leaf.dtype), new_shape)
        if jax.tree_util.tree_structure(new_shape) != structure or new_shapes != shapes:
            raise ProbkitError(
                f"move {move.name!r} returns a position of a different structure, shape or dtype "
                f"than it was given ({new_shapes} instead of {shapes}); a move must keep the "
                "position's structure (use Padded arrays for a varying number of components)."
            )
    # One compilation for all moves: eager op-by-op dispatch, or one per move, costs seconds.
    results = jax.jit(lambda x: [counts(x, i)[1:] for i in live])(position)
    for index, (in_capacity, before, after) in zip(live, results, strict=True):
        if bool(in_capacity) and int(before) != int(after):
            raise ProbkitError(
                f"move {kernel.moves[index].name!r} does not match dimensions: it maps "
                f"{int(before)} continuous coordinates (position and auxiliary draw) to "
                f"{int(after)}. A Green move needs dim(x) + dim(u) = dim(x') + dim(u'); draw as "
                "many auxiliary coordinates as the move adds."
            )


_CONDITIONS = {
    "involution": "the reverse move does not give back the position and auxiliary draw",
    "jacobian": "the log-Jacobians of the move and its reverse do not sum to zero",
    "ratio": "log ρ(z) + log ρ(f(z)) is not zero",
    "analytic_jacobian": "the analytic log-Jacobian differs from the automatic one",
}


def check_moves(
    kernel: MHGKernel,
    position: Any,
    key: jax.Array,
    *,
    num_draws: int = 8,
    tolerance: float | None = None,
) -> dict[str, float]:
    """Test every move of ``kernel`` at ``position`` and raise if one is not a valid MHG move.

    For each move with positive probability at ``position``, draws ``num_draws`` auxiliary
    values and evaluates :meth:`MHGKernel.roundtrip_error`: the reverse move must undo the
    move (``f(f(z)) = z``), the log-Jacobians of the forward and return trip must sum to zero, an
    analytic Jacobian must equal the automatic one, and ``log ρ(z) = -log ρ(f(z))``.

    Parameters
    ----------
    kernel : MHGKernel
    position : pytree
        A concrete position with positive target density.
    key : jax.Array
        For the auxiliary draws.
    num_draws : int
        Auxiliary draws per move.
    tolerance : float, optional
        The largest error accepted; default ``1e-8`` in float64 and ``1e-3`` in float32.

    Returns
    -------
    dict
        The largest error per move name.

    Raises
    ------
    ProbkitError
        Naming the first move whose error exceeds the tolerance.
    """
    if tolerance is None:
        tolerance = 1e-8 if jnp.result_type(float) == jnp.float64 else 1e-3
    log_j = np.asarray(kernel.log_move_probabilities(position))
    errors: dict[str, float] = {}
    for index, move in enumerate(kernel.moves):
        if not log_j[index] > -np.inf:
            continue

        def errors_at(k, index=index):
            aux = kernel.moves[index].sample_aux(k, position)
            return kernel.roundtrip_errors(position, index, aux)

        keys = jax.random.split(jax.random.fold_in(key, index), num_draws)
        found = {name: float(jnp.max(v)) for name, v in jax.jit(jax.vmap(errors_at))(keys).items()}
        worst = max(found.values())
        errors[move.name] = worst
        if not worst <= tolerance:
            reverse = kernel.moves[kernel.reverse_index(index)].name
            failed = {
                name: f"{value:.3g}" for name, value in found.items() if not value <= tolerance
            }
            raise ProbkitError(
                f"move {move.name!r} (reverse {reverse!r}) fails the MHG round trip: "
                f"{', '.join(f'{_CONDITIONS[name]} (error {value})' for name, value in failed.items())}"
                f"; tolerance {tolerance:.1g}."
            )
    return errors


def _check_moves_argument(moves: Any) -> tuple[Move, ...]:
    if isinstance(moves, Move):
        moves = (moves,)
    if not isinstance(moves, Sequence) or not moves or not all(isinstance(m, Move) for m in moves):
        raise ProbkitError(f"`moves` must be a non-empty sequence of Move; got {moves!r}.")
    names = [m.name for m in moves]
    if len(set(names)) != len(names):
        raise ProbkitError(f"move names must be unique; got {names}.")
    for move in moves:
        for attribute in ("sample_aux", "aux_log_density", "apply"):
            if not callable(getattr(move, attribute)):
                raise ProbkitError(f"move {move.name!r}: `{attribute}` must be a function.")
        if move.reverse is not None:
            if move.reverse not in names:
                raise ProbkitError(
                    f"move {move.name!r} names {move.reverse!r} as its reverse, but there is no "
                    f"such move among {names}; add it, or give reverse=None for an involution."
                )
            back = moves[names.index(move.reverse)].reverse
            if (back or move.reverse) != move.name:
                raise ProbkitError(
                    f"move {move.name!r} names {move.reverse!r} as its reverse, but "
                    f"{move.reverse!r} names {back or move.reverse!r}; reverses must pair up."
                )
    return tuple(moves)


def reversible_jump(
    log_density_fn: Callable[[Any], jax.Array],
    moves: Sequence[Move],
    move_probabilities: Callable[[Any], jax.Array] | None = None,
    *,
    rule: AcceptanceRule = "metropolis",
    check: bool = False,
) -> MHGKernel:
    """A reversible-jump (Green) kernel from move types paired with their reverses.

    Parameters
    ----------
    log_density_fn : callable
        The target's log density of a position (a pytree, with
        :class:`~probkit.inference.mhg.padded.Padded` arrays for varying dimension).
    moves : sequence of Move
        The move types, e.g. from :func:`~probkit.inference.mhg.moves.birth_death`,
        :func:`~probkit.inference.mhg.moves.split_merge` and
        :func:`~probkit.inference.mhg.moves.random_walk_move`.
    move_probabilities : callable, optional
        ``j(m | x)`` for every move, summing to one; zero for a move that cannot start from
        ``x`` (a death at ``k = 0``). Default: equal probabilities.
    rule : {"metropolis", "barker"}
        The acceptance rule.
    check : bool
        Check the moves at ``init`` (raising) and in every step (reported in
        ``info.check_error``); about doubles the cost of a step.

    Returns
    -------
    MHGKernel

    Examples
    --------
    A random number of standard normal coordinates (``k ~ Geometric(1/2)``) with birth and
    death from the prior, and a random walk within dimension:

    >>> import jax, jax.numpy as jnp
    >>> from probkit.inference.mhg import padded, birth_death, random_walk_move, reversible_jump
    >>> def log_density(x):
    ...     k = x.size
    ...     return -(k + 1) * jnp.log(2.0) - 0.5 * jnp.sum(jnp.where(x.mask, x.values**2, 0.0))
    >>> birth, death = birth_death(
    ...     lambda key, x: jax.random.normal(key, dtype=x.values.dtype),
    ...     lambda u, x: -0.5 * u**2 - 0.5 * jnp.log(2 * jnp.pi),
    ... )
    >>> def probabilities(x):
    ...     # the standard normal density constant of the birth is left out of the target
    ...     return jnp.array([0.4, jnp.where(x.size > 0, 0.4, 0.0), 0.2 + 0.4 * (x.size == 0)])
    >>> kernel = reversible_jump(log_density, [birth, death, random_walk_move(0.5)], probabilities)
    >>> state = kernel.init(padded(jnp.zeros((0,)), capacity=20))
    """
    check_log_density_fn(log_density_fn)
    check_choice("rule", rule, ("metropolis", "barker"))
    moves = _check_moves_argument(moves)
    if move_probabilities is not None and not callable(move_probabilities):
        raise ProbkitError(
            "`move_probabilities` must be a function of the position returning one probability "
            "per move, or None for equal probabilities."
        )
    return MHGKernel(log_density_fn, moves, move_probabilities, rule, bool(check))


def involutive(
    log_density_fn: Callable[[Any], jax.Array],
    sample_aux: Callable[[jax.Array, Any], Any],
    aux_log_density: Callable[[Any, Any], jax.Array],
    involution: Callable[[Any, Any], tuple[Any, Any]],
    *,
    log_abs_det_jacobian: Callable[[Any, Any], jax.Array] | None = None,
    rule: AcceptanceRule = "metropolis",
    check: bool = False,
    name: str = "involution",
) -> MHGKernel:
    """Involutive MCMC: ``v ~ q(· | x)``, ``(x', v') = f(x, v)`` with ``f ∘ f = id``.

    Accepts with ``min{1, π(x') q(v' | x') / (π(x) q(v | x)) · |det J_f(x, v)|}``
    (Neklyudov et al. 2020; Cusumano-Towner et al. 2020).

    Parameters
    ----------
    log_density_fn : callable
        The target's log density.
    sample_aux : callable
        ``sample_aux(key, x) -> v``.
    aux_log_density : callable
        ``aux_log_density(v, x) -> log q(v | x)``.
    involution : callable
        ``involution(x, v) -> (x', v')``.
    log_abs_det_jacobian : callable, optional
        ``(x, v) -> log |det J_f(x, v)|``; by default computed by forward-mode autodiff.
    rule : {"metropolis", "barker"}
    check : bool
        Verify ``f(f(z)) = z``, the Jacobians and the antisymmetry of the log ratio at ``init``
        (raising a :class:`ProbkitError` naming the move) and in every step
        (``info.check_error``).
    name : str
        The move's name in reports and errors.

    Returns
    -------
    MHGKernel

    Examples
    --------
    Hamiltonian Monte Carlo is the involution ``(x, p) ↦ flip(leapfrog(x, p))``; the simplest
    involutive kernel is a reflection ``x' = 2v - x`` about a point ``v ~ N(x, 1)``:

    >>> import jax, jax.numpy as jnp
    >>> from probkit.inference.mhg import involutive
    >>> kernel = involutive(
    ...     lambda x: -0.5 * x**2,
    ...     lambda key, x: x + jax.random.normal(key),
    ...     lambda v, x: -0.5 * (v - x) ** 2,
    ...     lambda x, v: (2 * v - x, v),
    ... )
    >>> state, info = kernel.step(jax.random.key(0), kernel.init(jnp.asarray(0.3)))
    """
    check_log_density_fn(log_density_fn)
    check_choice("rule", rule, ("metropolis", "barker"))
    for argument, value in (
        ("sample_aux", sample_aux),
        ("aux_log_density", aux_log_density),
        ("involution", involution),
    ):
        if not callable(value):
            raise ProbkitError(f"`{argument}` must be a function; got {type(value).__name__}.")
    if log_abs_det_jacobian is not None and not callable(log_abs_det_jacobian):
        raise ProbkitError("`log_abs_det_jacobian` must be a function (x, v) -> scalar, or None.")
    move = Move(name, sample_aux, aux_log_density, involution, None, log_abs_det_jacobian)
    return MHGKernel(log_density_fn, (move,), None, rule, bool(check))
