"""The state an SMC run carries between steps, and what can be read off it.

An SMC state keeps its population *normalised* (weights summing to one) and the log evidence
estimate apart, in ``log_evidence``: every reweighting pushes its evidence increment out of the
population (``push_evidence`` of Ścibior et al. 2018), so the increment is always computed from
the normalised incoming weights, ``log Σ_i W_i G(x_i)``. That is right after a resampling step
and after a skipped one alike (research note ``qbs_smc_mhg.md`` §1.6), and it keeps the log
weights of order one in float32 however large ``|log Z|`` grows. The represented measure is
``exp(log_evidence) · Σ_i W_i δ_{x_i}``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from probkit.inference.population import Population, push_evidence, spawn

__all__ = ["SMCState", "init_state", "log_evidence_variance", "represented_log_weights"]


class SMCState(NamedTuple):
    """The state of an SMC run.

    Attributes
    ----------
    population : Population
        The particles with *normalised* weights (they sum to one).
    log_evidence : Array, shape ()
        ``log Ẑ``, the log of the evidence estimated so far.
    eve : Array, shape (n,), int32
        For each particle, the index of its ancestor among the initial particles (the genealogy
        that the single-run variance estimate of :func:`log_evidence_variance` reads).
    num_resampled : Array, shape (), int32
        How many resampling steps have happened.
    temperature : Array, shape ()
        The tempering exponent λ of the current target ``prior · likelihood^λ`` for tempered
        samplers; 1 for the others.
    """

    population: Population
    log_evidence: jax.Array
    eve: jax.Array
    num_resampled: jax.Array
    temperature: jax.Array


def init_state(particles: Any, *, temperature: float = 1.0) -> SMCState:
    """Start an SMC run from ``n`` particles of equal weight (total mass one, ``log Ẑ = 0``).

    Parameters
    ----------
    particles : pytree
        Arrays with a leading axis of length ``n``: independent draws from the initial
        distribution (the genealogy-based variance estimate assumes they are independent).
    temperature : float
        The initial tempering exponent (0 for a tempered sampler started at the prior).
    """
    num = jax.tree_util.tree_leaves(particles)[0].shape[0]
    population, log_evidence = push_evidence(spawn(num, particles))
    dtype = population.log_weights.dtype
    return SMCState(
        population=population,
        log_evidence=jnp.zeros((), dtype) + log_evidence,
        eve=jnp.arange(num, dtype=jnp.int32),
        num_resampled=jnp.zeros((), jnp.int32),
        temperature=jnp.asarray(temperature, dtype),
    )


def represented_log_weights(state: SMCState) -> jax.Array:
    """The log weights of the measure the state represents, ``log Ẑ + log W_i``."""
    return state.log_evidence + state.population.log_weights


def log_evidence_variance(state: SMCState) -> jax.Array:
    """A single-run estimate of ``Var(Ẑ / Z)``, hence of ``Var(log Ẑ)`` when it is small.

    The genealogy estimator of Lee & Whiteley (2018, Biometrika 105:609–625), with the number of
    resampling events as exponent for resampling triggered by the ESS (Du & Guyader 2021):

    ``V = 1 - (n / (n - 1))^{R + 1} · (1 - Σ_k S_k²)``, ``S_k = Σ_{i : eve_i = k} W_i``,

    with ``R`` resampling steps and ``eve_i`` the initial ancestor of particle ``i``. It is
    unbiased for multinomial resampling (and a close approximation for the lower-variance
    schemes); once every particle descends from one initial particle it returns 1 and says
    nothing more. By the delta method ``Var(log Ẑ) ≈ Var(Ẑ / Z)``.
    """
    weights = jnp.exp(state.population.log_weights)
    num = weights.shape[0]
    branch_mass = jax.ops.segment_sum(weights, state.eve, num_segments=num)
    factor = (num / (num - 1.0)) ** (state.num_resampled + 1.0)
    return 1.0 - factor * (1.0 - jnp.sum(branch_mass**2))
