"""Metropolis–Hastings(–Green) kernels with the ``(init, step)`` shape.

Each builder closes over a log density and returns a :class:`Kernel`: ``state = init(position)``
and ``state, info = step(key, state)``. A kernel leaves its target invariant (the MHG theorem,
research note ``qbs_smc_mhg.md`` §1.5), so it keeps the measure a population represents when it
moves every particle: that is what makes it a valid SMC rejuvenation move.

Positions are pytrees of arrays; proposals act on their flattened vector
(:func:`jax.flatten_util.ravel_pytree`). One acceptance rule serves every proposal: a NaN in the
log acceptance ratio is a rejection, never propagated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from probkit._errors import ProbkitError
from probkit._validate import check_choice, is_concrete

__all__ = [
    "Kernel",
    "MHInfo",
    "MHState",
    "accept_or_reject",
    "acceptance_log_probability",
    "mala",
    "metropolis_hastings",
    "random_walk",
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


def _check_log_density_fn(log_density_fn: Any) -> None:
    if not callable(log_density_fn):
        raise ProbkitError(
            f"`log_density_fn` must be a function of a position returning a scalar log density; "
            f"got {type(log_density_fn).__name__}."
        )


def _checked_init(name: str, make_state: Callable[[Any], MHState]) -> Callable[[Any], MHState]:
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


def _check_scale(name: str, value: Any) -> None:
    """A positive scalar, a positive vector, or a square factor with a positive diagonal."""
    if not is_concrete(value):
        return
    array = np.asarray(value, dtype=float)
    square = array.ndim < 2 or (array.ndim == 2 and array.shape[0] == array.shape[1])
    diagonal = np.diag(array) if array.ndim == 2 and square else array
    if array.ndim > 2 or not square or not np.all(np.isfinite(array)) or np.any(diagonal <= 0):
        raise ProbkitError(
            f"`{name}` must be a positive number, a vector of positive numbers, or a square "
            f"lower-triangular factor with a positive diagonal; got {value!r}."
        )


def random_walk(
    log_density_fn: Callable[[Any], jax.Array],
    scale: float | jax.Array,
    *,
    rule: AcceptanceRule = "metropolis",
) -> Kernel:
    """Random-walk Metropolis: propose ``y = x + L ξ`` with ``ξ ~ N(0, I)``.

    Parameters
    ----------
    log_density_fn : callable
        The target's log density (unnormalised), a function of one position.
    scale : float, Array of shape (d,), or Array of shape (d, d)
        ``L``: a common standard deviation, one per coordinate, or a lower-triangular factor of the
        proposal covariance ``L Lᵀ`` (e.g. the Cholesky factor of ``2.38² Σ / d`` estimated from a
        particle cloud).
    rule : {"metropolis", "barker"}
        The acceptance rule.

    Returns
    -------
    Kernel
        The proposal is symmetric, so ``log ρ = log π(y) - log π(x)``.
    """
    _check_log_density_fn(log_density_fn)
    check_choice("rule", rule, ("metropolis", "barker"))
    _check_scale("scale", scale)
    scale = jnp.asarray(scale)

    def make_state(position):
        return MHState(position, log_density_fn(position))

    def step(key, state):
        key_proposal, key_accept = jax.random.split(key)
        flat, unravel = ravel_pytree(state.position)
        noise = jax.random.normal(key_proposal, flat.shape, flat.dtype)
        move = scale @ noise if scale.ndim == 2 else scale * noise
        proposal = make_state(unravel(flat + move))
        return accept_or_reject(
            key_accept, state, proposal, proposal.log_density - state.log_density, rule
        )

    return Kernel(_checked_init("random_walk", make_state), step)


def mala(
    log_density_fn: Callable[[Any], jax.Array],
    step_size: float,
    *,
    rule: AcceptanceRule = "metropolis",
) -> Kernel:
    """Metropolis-adjusted Langevin: ``y = x + (ε²/2) ∇log π(x) + ε ξ``.

    Parameters
    ----------
    log_density_fn : callable
        The target's log density, differentiable by JAX.
    step_size : float
        ``ε > 0``.
    rule : {"metropolis", "barker"}
        The acceptance rule.

    Notes
    -----
    The proposal is not symmetric: ``log ρ = log π(y) + log q(x | y) - log π(x) - log q(y | x)``
    with ``log q(y | x) = -‖y - x - (ε²/2)∇log π(x)‖² / (2ε²)`` (constants cancel).
    """
    _check_log_density_fn(log_density_fn)
    check_choice("rule", rule, ("metropolis", "barker"))
    _check_scale("step_size", step_size)
    if jnp.ndim(step_size) != 0:
        raise ProbkitError(f"`step_size` must be a scalar; got shape {jnp.shape(step_size)}.")
    value_and_grad = jax.value_and_grad(log_density_fn)

    def make_state(position):
        value, grad = value_and_grad(position)
        return MHState(position, value, grad)

    def log_q(to_flat, from_flat, from_grad_flat):
        mean = from_flat + 0.5 * step_size**2 * from_grad_flat
        return -jnp.sum((to_flat - mean) ** 2) / (2.0 * step_size**2)

    def step(key, state):
        key_proposal, key_accept = jax.random.split(key)
        flat, unravel = ravel_pytree(state.position)
        grad_flat, _ = ravel_pytree(state.log_density_grad)
        noise = jax.random.normal(key_proposal, flat.shape, flat.dtype)
        proposal_flat = flat + 0.5 * step_size**2 * grad_flat + step_size * noise
        proposal = make_state(unravel(proposal_flat))
        proposal_grad_flat, _ = ravel_pytree(proposal.log_density_grad)
        log_ratio = (
            proposal.log_density
            - state.log_density
            + log_q(flat, proposal_flat, proposal_grad_flat)
            - log_q(proposal_flat, flat, grad_flat)
        )
        return accept_or_reject(key_accept, state, proposal, log_ratio, rule)

    return Kernel(_checked_init("mala", make_state), step)


def metropolis_hastings(
    log_density_fn: Callable[[Any], jax.Array],
    proposal_sample: Callable[[jax.Array, Any], Any],
    proposal_log_density: Callable[[Any, Any], jax.Array] | None = None,
    *,
    rule: AcceptanceRule = "metropolis",
) -> Kernel:
    """Density-form Metropolis–Hastings with any proposal.

    Parameters
    ----------
    log_density_fn : callable
        The target's log density.
    proposal_sample : callable
        ``proposal_sample(key, x) -> y``.
    proposal_log_density : callable, optional
        ``proposal_log_density(y, x) = log q(y | x)``. Omit it only for a symmetric proposal.
    rule : {"metropolis", "barker"}
        The acceptance rule.

    Notes
    -----
    ``log ρ = log π(y) + log q(x | y) - log π(x) - log q(y | x)`` (research note §1.5, density form).
    """
    _check_log_density_fn(log_density_fn)
    check_choice("rule", rule, ("metropolis", "barker"))
    if not callable(proposal_sample):
        raise ProbkitError("`proposal_sample` must be a function (key, x) -> y.")

    def make_state(position):
        return MHState(position, log_density_fn(position))

    def step(key, state):
        key_proposal, key_accept = jax.random.split(key)
        proposal = make_state(proposal_sample(key_proposal, state.position))
        log_ratio = proposal.log_density - state.log_density
        if proposal_log_density is not None:
            log_ratio = (
                log_ratio
                + proposal_log_density(state.position, proposal.position)
                - proposal_log_density(proposal.position, state.position)
            )
        return accept_or_reject(key_accept, state, proposal, log_ratio, rule)

    return Kernel(_checked_init("metropolis_hastings", make_state), step)
