"""The pieces every Metropolis–Hastings(–Green) kernel shares: states, step reports, acceptance.

A kernel is a pair of pure functions ``state = init(position)`` and
``state, info = step(key, state)``; it leaves its target invariant by the MHG theorem (research
note ``qbs_smc_mhg.md`` §1.5), which needs only an acceptance probability with
``α(x, y) = ρ(x, y) α(y, x)``. One acceptance rule serves every kernel: a NaN in the log ratio is a
rejection, never propagated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import is_concrete

__all__ = [
    "AcceptanceRule",
    "Kernel",
    "MHInfo",
    "MHState",
    "accept_or_reject",
    "acceptance_log_probability",
]

AcceptanceRule = Literal["metropolis", "barker"]


class MHState(NamedTuple):
    """The state of a Metropolis–Hastings chain.

    Attributes
    ----------
    position : pytree
        The current point.
    log_density : Array, shape ()
        The target's log density at ``position`` (cached).
    log_density_grad : pytree or None
        Its gradient, for kernels that use it (MALA); ``None`` otherwise.
    """

    position: Any
    log_density: jax.Array
    log_density_grad: Any = None


class MHInfo(NamedTuple):
    """What one step did.

    Attributes
    ----------
    acceptance_probability : Array, shape ()
        The probability with which the proposal was accepted (0 when the ratio was NaN).
    is_accepted : Array, shape ()
        Whether it was.
    proposal : pytree
        The proposed point.
    """

    acceptance_probability: jax.Array
    is_accepted: jax.Array
    proposal: Any


class Kernel(NamedTuple):
    """A Markov kernel as a pair of pure functions.

    Attributes
    ----------
    init : Callable[[pytree], MHState]
        Builds the state at a position (evaluates and caches the log density).
    step : Callable[[jax.Array, MHState], tuple[MHState, MHInfo]]
        One transition; jit- and vmap-compatible.
    """

    init: Callable[[Any], MHState]
    step: Callable[[jax.Array, MHState], tuple[MHState, MHInfo]]


def acceptance_log_probability(log_ratio: jax.Array, rule: AcceptanceRule = "metropolis"):
    """The log probability of accepting a move whose MHG ratio is ``exp(log_ratio)``.

    Metropolis: ``min(1, ρ)``; Barker: ``ρ / (1 + ρ)``. Both satisfy ``α(x, y) = ρ(x, y) α(y, x)``,
    which is all the MHG theorem needs. A NaN ratio gives ``-inf`` (the move is rejected).
    """
    if rule == "metropolis":
        log_alpha = jnp.minimum(0.0, log_ratio)
    else:
        log_alpha = -jnp.logaddexp(0.0, -log_ratio)
    return jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_alpha)


def accept_or_reject(
    key: jax.Array,
    state: MHState,
    proposal: MHState,
    log_ratio: jax.Array,
    rule: AcceptanceRule = "metropolis",
) -> tuple[MHState, MHInfo]:
    """Accept ``proposal`` with probability ``α(log_ratio)``, else keep ``state``."""
    log_alpha = acceptance_log_probability(log_ratio, rule)
    accept = jnp.log(jax.random.uniform(key, dtype=jnp.result_type(log_alpha))) < log_alpha
    new_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(accept, new, old), proposal, state
    )
    return new_state, MHInfo(jnp.exp(log_alpha), accept, proposal.position)


def check_log_density_fn(log_density_fn: Any) -> None:
    """Raise a :class:`ProbkitError` unless ``log_density_fn`` is callable."""
    if not callable(log_density_fn):
        raise ProbkitError(
            f"`log_density_fn` must be a function of a position returning a scalar log density; "
            f"got {type(log_density_fn).__name__}."
        )


def checked_init(name: str, make_state: Callable[[Any], MHState]) -> Callable[[Any], MHState]:
    """Wrap ``make_state`` to refuse a concrete initial state with a bad log density.

    A non-scalar or non-finite log density raises a :class:`ProbkitError` naming the kernel.
    """

    def init(position: Any) -> MHState:
        state = make_state(position)
        if jnp.shape(state.log_density) != ():
            raise ProbkitError(
                f"{name}: `log_density_fn` must return a scalar; got shape "
                f"{jnp.shape(state.log_density)}. vmap the kernel over chains instead."
            )
        if is_concrete(state.log_density) and not np.isfinite(np.asarray(state.log_density)):
            raise ProbkitError(
                f"{name}: the log density at the initial position is {float(state.log_density)}; "
                "start the chain where the target has positive, finite density."
            )
        return state

    return init
