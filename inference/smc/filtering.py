"""Particle filters for state-space models given as NumPyro distributions.

A :class:`StateSpaceModel` is three functions returning ``numpyro.distributions`` objects:
``x_0 ~ initial()``, ``x_t ~ transition(x_{t-1}, t)`` for ``t ≥ 1`` and
``y_t ~ observation(x_t, t)``. The filter is the Feynman–Kac model on pairs
``(x_{t-1}, x_t)``: propose ``x_t ~ q(· | x_{t-1})`` (the transition, for the bootstrap filter),
weight by ``G_t = p(y_t | x_t) p(x_t | x_{t-1}) / q(x_t | x_{t-1})``, resample when the ESS is
low. ``exp(log_evidence)`` is an unbiased estimate of ``p(y_{0:T-1})``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_leading_axis, check_positive_int
from probkit.inference.mhg import metropolis_hastings
from probkit.inference.resampling import RESAMPLERS
from probkit.inference.smc.runner import SMCResult, Stage, run_stages
from probkit.inference.smc.state import init_state
from probkit.inference.smc.transformations import Move, Propose, ResampleIf, Reweight

__all__ = ["StateSpaceModel", "filter_stages", "particle_filter"]


class StateSpaceModel(NamedTuple):
    """A state-space model as distribution-valued functions.

    Attributes
    ----------
    initial : callable
        ``initial() -> Distribution`` of ``x_0``.
    transition : callable
        ``transition(x_prev, t) -> Distribution`` of ``x_t`` given ``x_{t-1}`` (``t ≥ 1``).
    observation : callable
        ``observation(x, t) -> Distribution`` of ``y_t`` given ``x_t``.
    """

    initial: Callable[[], Any]
    transition: Callable[[Any, jax.Array], Any]
    observation: Callable[[Any, jax.Array], Any]


def _at(tree: Any, t: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda leaf: leaf[t], tree)


def filter_stages(
    model: StateSpaceModel,
    observations: Any,
    num_observations: int,
    *,
    proposal: Callable[[Any, jax.Array], Any] | None = None,
    resample_threshold: float | None = 0.5,
    resampling: str = "systematic",
    summary: Callable[[Any], Any] | None = None,
    rejuvenation_scale: float | None = None,
    rejuvenation_steps: int = 1,
) -> list[Stage]:
    """The filter as SMC stages on particles ``{"x": x_t, "previous": x_{t-1}}``.

    Exposed so that the exact oracle can interpret the very steps :func:`particle_filter` runs.
    The initial particles are drawn by the first stage from ``model.initial()``. With
    ``rejuvenation_scale``, each step ends with random-walk Metropolis moves of ``x_t`` that
    leave ``p(x_t | x_{t-1}, y_t)`` invariant (``x_{t-1}`` fixed), i.e. resample-move.
    """

    def log_observation(particle, t):
        return model.observation(particle["x"], t).log_prob(_at(observations, t)).sum()

    def log_potential(particle, t):
        value = log_observation(particle, t)
        if proposal is not None:
            value = (
                value
                + model.transition(particle["previous"], t).log_prob(particle["x"]).sum()
                - proposal(particle["previous"], t).log_prob(particle["x"]).sum()
            )
        return value

    def advance(particle, value, t):
        return {"x": value, "previous": particle["x"]}

    described = None if summary is None else (lambda particle: summary(particle["x"]))
    resample_step = ResampleIf(resample_threshold, resampling)
    rejuvenate = ()
    if rejuvenation_scale is not None:
        rejuvenate = (Move(_rejuvenation_kernel(model, observations, rejuvenation_scale),
                           rejuvenation_steps),)  # fmt: skip
    first = Stage(
        (
            Propose(lambda particle, t: model.initial(), advance),
            Reweight(log_observation, described),
            resample_step,
            *rejuvenate,
        ),
        num_steps=1,
    )
    stages = [first]
    if num_observations > 1:
        propose = proposal or (lambda previous, t: model.transition(previous, t))
        rest = Stage(
            (
                Propose(lambda particle, t: propose(particle["x"], t), advance),
                Reweight(log_potential, described),
                resample_step,
                *rejuvenate,
            ),
            num_steps=num_observations - 1,
            start=1,
        )
        stages.append(rest)
    return stages


def _rejuvenation_kernel(model: StateSpaceModel, observations: Any, scale: float) -> Callable:
    """Random-walk Metropolis on ``x_t`` targeting ``p(x_t | x_{t-1}) p(y_t | x_t)``."""

    def build(state, t):
        def log_density(particle):
            x = particle["x"]
            prior = jnp.where(
                t == 0,
                model.initial().log_prob(x).sum(),
                model.transition(particle["previous"], t).log_prob(x).sum(),
            )
            return prior + model.observation(x, t).log_prob(_at(observations, t)).sum()

        def propose(key, particle):
            noise = jax.random.normal(key, jnp.shape(particle["x"]), jnp.result_type(particle["x"]))
            return {"x": particle["x"] + scale * noise, "previous": particle["previous"]}

        return metropolis_hastings(log_density, propose)

    return build


def particle_filter(
    key: jax.Array,
    model: StateSpaceModel,
    observations: Any,
    num_particles: int,
    *,
    proposal: Callable[[Any, jax.Array], Any] | None = None,
    resample_threshold: float | None = 0.5,
    resampling: str = "systematic",
    summary: Callable[[Any], Any] | None = None,
    rejuvenation_scale: float | None = None,
    rejuvenation_steps: int = 1,
) -> SMCResult:
    """Filter ``observations`` with ``num_particles`` particles; return the evidence and history.

    Parameters
    ----------
    key : jax.Array
        A PRNG key.
    model : StateSpaceModel
        The model.
    observations : pytree
        ``y_0, ..., y_{T-1}`` stacked along a leading axis of length ``T``.
    num_particles : int
        ``n``.
    proposal : callable, optional
        ``proposal(x_prev, t) -> Distribution``, used instead of the transition for ``t ≥ 1``
        (close over the observations to make it look ahead). Its density enters the weights.
    resample_threshold : float or None
        Resample when ESS < threshold · n (default n/2); None resamples every step.
    resampling : str
        The resampling scheme.
    summary : callable, optional
        ``summary(x) -> pytree``; its filtering mean ``E[summary(x_t) | y_{0:t}]`` is recorded
        as ``history["summary"]`` (default: ``x_t`` itself).
    rejuvenation_scale : float, optional
        For continuous states: after each resampling step, move ``x_t`` by
        ``rejuvenation_steps`` random-walk Metropolis steps of this scale, invariant for
        ``p(x_t | x_{t-1}, y_t)`` (resample-move; the acceptance rate is recorded).
    rejuvenation_steps : int
        Metropolis steps per rejuvenation.

    Returns
    -------
    SMCResult
        ``log_evidence`` estimates ``log p(y_{0:T-1})``; ``history`` has
        ``log_evidence_increment`` (``log p(y_t | y_{<t})`` estimates), ``ess``, ``resampled``
        and ``summary``; the final particles hold ``{"x": x_{T-1}, "previous": x_{T-2}}``.
    """
    num_particles = check_positive_int("num_particles", num_particles)
    check_leading_axis("observations", observations)
    check_choice("resampling", resampling, tuple(RESAMPLERS))
    if rejuvenation_scale is not None and not rejuvenation_scale > 0:
        raise ProbkitError(f"`rejuvenation_scale` must be positive; got {rejuvenation_scale!r}.")
    if resample_threshold is not None and not 0 < resample_threshold <= 1:
        raise ProbkitError(
            f"`resample_threshold` must be None or an ESS fraction in (0, 1]; got {resample_threshold!r}."
        )
    return _particle_filter(
        key,
        observations,
        model=model,
        num_particles=num_particles,
        proposal=proposal,
        resample_threshold=resample_threshold,
        resampling=resampling,
        summary=summary or _identity,
        rejuvenation_scale=rejuvenation_scale,
        rejuvenation_steps=check_positive_int("rejuvenation_steps", rejuvenation_steps),
    )


def _identity(x: Any) -> Any:
    return x


# Compiled once per model and configuration: repeated eager calls with the same model object
# reuse the compilation.
@functools.partial(
    jax.jit,
    static_argnames=(
        "model", "num_particles", "proposal", "resample_threshold", "resampling", "summary",
        "rejuvenation_scale", "rejuvenation_steps",
    ),
)  # fmt: skip
def _particle_filter(
    key, observations, *, model, num_particles, proposal, resample_threshold, resampling,
    summary, rejuvenation_scale, rejuvenation_steps,
) -> SMCResult:  # fmt: skip
    num_observations = jax.tree_util.tree_leaves(observations)[0].shape[0]
    stages = filter_stages(
        model,
        observations,
        num_observations,
        proposal=proposal,
        resample_threshold=resample_threshold,
        resampling=resampling,
        summary=summary,
        rejuvenation_scale=rejuvenation_scale,
        rejuvenation_steps=rejuvenation_steps,
    )
    # Placeholder particles of the right shape; the first stage draws the real ones.
    template = model.initial().sample(jax.random.key(0))
    placeholder = jax.tree_util.tree_map(
        lambda leaf: jnp.zeros((num_particles, *jnp.shape(leaf)), jnp.result_type(leaf)), template
    )
    state = init_state({"x": placeholder, "previous": placeholder})
    state, history = run_stages(key, state, stages)
    return SMCResult(state, history, jnp.int32(num_observations), jnp.asarray(True))
