"""Density-form Metropolis–Hastings: random walk, MALA, and any proposal with its log density.

Positions are pytrees of arrays; the random-walk and Langevin proposals act on their flattened
vector (:func:`jax.flatten_util.ravel_pytree`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from probkit._errors import ProbkitError
from probkit._validate import check_choice, is_concrete
from probkit.inference.mhg.base import (
    AcceptanceRule,
    Kernel,
    MHState,
    accept_or_reject,
    check_log_density_fn,
    checked_init,
)

__all__ = ["mala", "metropolis_hastings", "random_walk"]


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
    check_log_density_fn(log_density_fn)
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

    return Kernel(checked_init("random_walk", make_state), step)


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
    check_log_density_fn(log_density_fn)
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

    return Kernel(checked_init("mala", make_state), step)


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
    check_log_density_fn(log_density_fn)
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

    return Kernel(checked_init("metropolis_hastings", make_state), step)
