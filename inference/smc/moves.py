"""MCMC rejuvenation moves whose tuning adapts to the particle cloud.

Each builder returns ``kernel_builder(state, t) -> Kernel`` for :class:`~probkit.inference.smc.
transformations.Move`. The tuning is a function of the current population only, which is fixed
while the move runs, so each particle's kernel still leaves the current target invariant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from probkit._validate import check_choice
from probkit.inference.mhg import Kernel, mala, random_walk
from probkit.inference.smc.state import SMCState
from probkit.inference.smc.transformations import flat_particles

__all__ = ["MOVES", "mala_from_particles", "particle_covariance", "random_walk_from_particles"]

TargetFn = Callable[[SMCState, jax.Array], Callable[[Any], jax.Array]]


def particle_covariance(state: SMCState) -> jax.Array:
    """The weighted covariance ``Σ_i W_i (x_i - m)(x_i - m)ᵀ`` of the flattened particles."""
    flat = flat_particles(state.population)
    weights = jnp.exp(state.population.log_weights)
    mean = weights @ flat
    centred = flat - mean
    return (centred * weights[:, None]).T @ centred


def _regularised(covariance: jax.Array) -> jax.Array:
    # A collapsed cloud (every particle equal) has zero covariance; a relative jitter keeps the
    # factorisation finite, and the move then barely moves instead of producing NaN.
    dim = covariance.shape[0]
    level = jnp.maximum(jnp.trace(covariance) / dim, jnp.finfo(covariance.dtype).tiny)
    return covariance + 1e-8 * level * jnp.eye(dim, dtype=covariance.dtype)


def random_walk_from_particles(target: TargetFn, scale_factor: float = 2.38) -> Callable:
    """Random-walk Metropolis with proposal covariance ``(scale_factor² / d) Σ̂``.

    ``Σ̂`` is the weighted covariance of the particles (:func:`particle_covariance`); 2.38²/d is
    the optimal scaling for Gaussian targets (Roberts, Gelman & Gilks 1997).

    Parameters
    ----------
    target : callable
        ``target(state, t) -> log_density_fn`` for the current target.
    scale_factor : float
        The multiplier of the particle standard deviations, before the ``1/sqrt(d)``.
    """

    def build(state: SMCState, t: jax.Array) -> Kernel:
        covariance = particle_covariance(state)
        dim = covariance.shape[0]
        factor = jnp.linalg.cholesky(_regularised(covariance) * scale_factor**2 / dim)
        return random_walk(target(state, t), factor)

    return build


def mala_from_particles(target: TargetFn, step_scale: float = 1.65) -> Callable:
    """MALA with step size ``step_scale · d^{-1/6} · σ_min``.

    ``σ_min`` is the smallest marginal standard deviation of the particles, so the step suits the
    narrowest direction; ``1.65 d^{-1/6}`` is the optimal scaling for standardised Gaussian
    targets (Roberts & Rosenthal 1998).
    """

    def build(state: SMCState, t: jax.Array) -> Kernel:
        covariance = _regularised(particle_covariance(state))
        dim = covariance.shape[0]
        sigma = jnp.sqrt(jnp.min(jnp.diag(covariance)))
        return mala(target(state, t), step_scale * dim ** (-1.0 / 6.0) * sigma)

    return build


MOVES = {"random_walk": random_walk_from_particles, "mala": mala_from_particles}
"""The adaptive moves by name, as accepted by the SMC samplers' ``move`` argument."""


def get_move(move: str | Callable, target: TargetFn) -> Callable:
    """A kernel builder from a name in :data:`MOVES` or a user's ``builder(target)``."""
    if callable(move):
        return move(target)
    return MOVES[check_choice("move", move, tuple(MOVES))](target)
