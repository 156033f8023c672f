"""Particle marginal Metropolis–Hastings: MH on parameters, with an SMC's evidence as likelihood.

Composed, as in Ścibior et al. (2018) and Andrieu, Doucet & Holenstein (2010), from a
Metropolis–Hastings kernel on the parameters θ and an unbiased estimator ``Ẑ(θ)`` of the
likelihood (the evidence of an inner SMC run, e.g. a particle filter): the chain on
``(θ, Ẑ)`` leaves ``p(θ) Z(θ)`` invariant in its θ-marginal because ``E[Ẑ(θ)] = Z(θ)``. The
estimate at the current θ is kept, never recomputed (that would break the argument).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from probkit._errors import ProbkitError
from probkit._validate import is_concrete
from probkit.inference.mhg import MHInfo, MHState, accept_or_reject

__all__ = ["PMMHKernel", "pmmh"]


class PMMHKernel(NamedTuple):
    """A particle marginal MH kernel.

    Attributes
    ----------
    init : Callable[[jax.Array, pytree], MHState]
        ``init(key, theta)``: estimates the log evidence at ``theta`` (needs a key).
    step : Callable[[jax.Array, MHState], tuple[MHState, MHInfo]]
        One transition; ``state.log_density`` is ``log p(θ) + log Ẑ(θ)``.
    """

    init: Callable[[jax.Array, Any], MHState]
    step: Callable[[jax.Array, MHState], tuple[MHState, MHInfo]]


def pmmh(
    log_prior_fn: Callable[[Any], jax.Array],
    log_evidence_fn: Callable[[jax.Array, Any], jax.Array],
    scale: float | jax.Array,
) -> PMMHKernel:
    """Build a PMMH kernel with a Gaussian random-walk proposal on the parameters.

    Parameters
    ----------
    log_prior_fn : callable
        ``log p(θ)``.
    log_evidence_fn : callable
        ``log_evidence_fn(key, θ) -> log Ẑ(θ)``, where ``Ẑ`` is unbiased for the likelihood
        (e.g. ``lambda key, θ: particle_filter(key, model(θ), y, n).log_evidence``).
    scale : float or Array of shape (d,)
        Standard deviations of the random-walk proposal.

    Returns
    -------
    PMMHKernel
    """
    if not callable(log_prior_fn) or not callable(log_evidence_fn):
        raise ProbkitError("`log_prior_fn` and `log_evidence_fn` must be functions.")
    if is_concrete(scale) and not np.all(np.asarray(scale) > 0):
        raise ProbkitError(f"`scale` must be positive; got {scale!r}.")

    def make_state(key, theta):
        log_prior = log_prior_fn(theta)
        # Outside the prior's support the evidence is irrelevant: skip NaN-prone estimates.
        log_evidence = jnp.where(jnp.isneginf(log_prior), -jnp.inf, log_evidence_fn(key, theta))
        return MHState(theta, log_prior + log_evidence)

    def init(key, theta):
        state = make_state(key, theta)
        if is_concrete(state.log_density) and not np.isfinite(float(state.log_density)):
            raise ProbkitError(
                "pmmh: the log prior plus log evidence estimate at the initial parameters is "
                f"{float(state.log_density)}; start where both are finite."
            )
        return state

    def step(key, state):
        key_proposal, key_evidence, key_accept = jax.random.split(key, 3)
        flat, unravel = ravel_pytree(state.position)
        proposal = unravel(flat + scale * jax.random.normal(key_proposal, flat.shape, flat.dtype))
        proposed = make_state(key_evidence, proposal)
        return accept_or_reject(
            key_accept, state, proposed, proposed.log_density - state.log_density
        )

    return PMMHKernel(init, step)
