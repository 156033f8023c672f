"""MCMC rejuvenation moves whose tuning adapts to the particle cloud.

Each builder returns ``kernel_builder(state, t) -> Kernel`` for :class:`~probkit.inference.smc.
transformations.Move`. The tuning is a function of the current population only, which is fixed
while the move runs, so each particle's kernel still leaves the current target invariant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from probkit._validate import check_choice
from probkit.inference.mhg import Kernel, MHInfo, mala, random_walk
from probkit.inference.smc.state import SMCState
from probkit.inference.smc.transformations import flat_particles

__all__ = [
    "MOVES",
    "HMCState",
    "hmc_from_particles",
    "mala_from_particles",
    "particle_covariance",
    "random_walk_from_particles",
]

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


class HMCState(NamedTuple):
    """The state of :func:`hmc_from_particles`'s kernel: the position and NumPyro's HMC state."""

    position: Any
    log_density: jax.Array
    hmc_state: Any


def hmc_from_particles(
    target: TargetFn, num_leapfrog_steps: int = 10, step_scale: float = 1.0
) -> Callable:
    """HMC through NumPyro's functional ``hmc`` kernel, its mass matrix from the particle cloud.

    The inverse mass matrix is the diagonal of the particles' covariance (the usual
    preconditioning of SMC samplers); the step size is ``step_scale · d^{-1/4}`` in the
    preconditioned scale, with ``num_leapfrog_steps`` leapfrog steps per trajectory. NumPyro's
    kernel runs without warm-up adaptation, so it is a fixed kernel invariant for the target.
    """
    from numpyro.infer.hmc import hmc

    def build(state: SMCState, t: jax.Array) -> Kernel:
        log_density = target(state, t)
        covariance = _regularised(particle_covariance(state))
        dim = covariance.shape[0]
        step_size = step_scale * dim ** (-0.25)
        init_kernel, sample_kernel = hmc(potential_fn=lambda x: -log_density(x), algo="HMC")

        def init(position):
            flat, _ = jax.flatten_util.ravel_pytree(position)
            hmc_state = init_kernel(
                position,
                num_warmup=0,
                step_size=step_size,
                inverse_mass_matrix=jnp.diag(covariance).astype(flat.dtype),
                adapt_step_size=False,
                adapt_mass_matrix=False,
                num_steps=num_leapfrog_steps,
                rng_key=jax.random.key(0),
            )
            return HMCState(position, -hmc_state.potential_energy, hmc_state)

        def step(key, current):
            moved = sample_kernel(current.hmc_state._replace(rng_key=key))
            info = MHInfo(moved.mean_accept_prob, jnp.asarray(True), moved.z)
            return HMCState(moved.z, -moved.potential_energy, moved), info

        return Kernel(init, step)

    return build


MOVES = {
    "random_walk": random_walk_from_particles,
    "mala": mala_from_particles,
    "hmc": hmc_from_particles,
}
"""The adaptive moves by name, as accepted by the SMC samplers' ``move`` argument."""


def get_move(move: str | Callable, target: TargetFn) -> Callable:
    """A kernel builder from a name in :data:`MOVES` or a user's ``builder(target)``."""
    if callable(move):
        return move(target)
    return MOVES[check_choice("move", move, tuple(MOVES))](target)
