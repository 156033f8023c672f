"""SMC samplers from the prior to the posterior: likelihood tempering and data annealing.

Both are resample-move samplers (Del Moral, Doucet & Jasra 2006; Chopin 2002) composed of
:mod:`~probkit.inference.smc.transformations`: each step reweights to the next target, resamples
when the ESS is low, and moves the particles with an MCMC kernel that leaves the new target
invariant. The prior is never tempered; the likelihood is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_leading_axis, check_positive_int, is_concrete
from probkit.inference.resampling import RESAMPLERS
from probkit.inference.smc.moves import get_move
from probkit.inference.smc.runner import SMCResult, Stage, run_stages, run_until
from probkit.inference.smc.state import SMCState, init_state
from probkit.inference.smc.transformations import Move, ResampleIf, Reweight, Temper

__all__ = ["data_annealed_smc", "tempered_smc"]


def _check_common(initial_particles, num_mcmc_steps, resample_threshold, resampling):
    num = check_leading_axis("initial_particles", initial_particles)
    if num < 2:
        raise ProbkitError(
            f"`initial_particles` holds {num} particle; SMC needs at least 2 (hundreds or more)."
        )
    check_positive_int("num_mcmc_steps", num_mcmc_steps)
    check_choice("resampling", resampling, tuple(RESAMPLERS))
    if resample_threshold is not None and not 0 < resample_threshold <= 1:
        raise ProbkitError(
            f"`resample_threshold` must be None (resample every step) or an ESS fraction in "
            f"(0, 1]; got {resample_threshold!r}."
        )


def _tempered_target(log_prior_fn, log_likelihood_fn):
    def target(state: SMCState, t: jax.Array):
        def log_density(x):
            log_likelihood = log_likelihood_fn(x)
            # λ = 0 with ℓ = -inf would give NaN; the prior alone is the target then.
            tempered = jnp.where(state.temperature > 0, state.temperature * log_likelihood, 0.0)
            return log_prior_fn(x) + tempered

        return log_density

    return target


def tempered_smc(
    key: jax.Array,
    log_prior_fn: Callable[[Any], jax.Array],
    log_likelihood_fn: Callable[[Any], jax.Array],
    initial_particles: Any,
    *,
    schedule: Any = None,
    target_ess: float = 0.5,
    move: str | Callable = "random_walk",
    num_mcmc_steps: int = 5,
    resample_threshold: float | None = None,
    resampling: str = "systematic",
    max_steps: int = 500,
    bisection_steps: int = 30,
) -> SMCResult:
    """Tempered SMC from the prior to the posterior ``prior · likelihood``, with its evidence.

    Targets ``π_λ ∝ p(x) L(x)^λ`` for ``0 = λ_0 < λ_1 < ... < λ_T = 1``. Each step raises λ
    (:class:`~probkit.inference.smc.transformations.Temper`), resamples (every step by default),
    and moves each particle with ``num_mcmc_steps`` steps of an MCMC kernel invariant for the new
    ``π_λ``. ``exp(log_evidence)`` is an unbiased estimate of ``Z = ∫ p(x) L(x) dx``.

    Parameters
    ----------
    key : jax.Array
        A PRNG key.
    log_prior_fn, log_likelihood_fn : callable
        ``log p(x)`` and ``log L(x)`` of one particle.
    initial_particles : pytree
        ``n`` independent draws from the prior (leading axis ``n``).
    schedule : array_like, optional
        Fixed exponents ``λ_1 < ... < λ_T = 1``. Without it the schedule is adaptive: each λ is
        chosen by bisection so that the conditional ESS equals ``target_ess · n``.
    target_ess : float
        The conditional ESS fraction of the adaptive schedule, in (0, 1).
    move : {"random_walk", "mala", "hmc"} or callable
        The rejuvenation kernel, tuned from the particle cloud
        (:mod:`~probkit.inference.smc.moves`), or ``builder(target) -> kernel_builder``.
    num_mcmc_steps : int
        MCMC steps per particle per SMC step.
    resample_threshold : float or None
        Resample when ESS < threshold · n; None (default) resamples every step.
    resampling : str
        The resampling scheme.
    max_steps : int
        For the adaptive schedule: stop after this many steps (``completed`` is then False).
    bisection_steps : int
        Bisection iterations per adaptive step; λ' is found to ``2^-bisection_steps`` of the
        remaining interval.

    Returns
    -------
    SMCResult
        Its ``history`` holds ``temperature``, ``log_evidence_increment``, ``ess``,
        ``resampled`` and ``acceptance_rate`` per step.

    Raises
    ------
    ProbkitError
        On a bad schedule, particle count, threshold or method; called eagerly, when an adaptive
        run ends before reaching λ = 1 (under a caller's ``jit`` it cannot raise: read
        ``completed``).

    Notes
    -----
    The run is compiled once per configuration and function objects, so repeated calls with the
    same ``log_prior_fn`` and ``log_likelihood_fn`` objects do not recompile.
    """
    _check_common(initial_particles, num_mcmc_steps, resample_threshold, resampling)
    if schedule is not None:
        schedule = tuple(float(s) for s in _check_schedule(schedule))
    elif not 0 < target_ess < 1:
        raise ProbkitError(f"`target_ess` must lie in (0, 1); got {target_ess!r}.")
    max_steps = check_positive_int("max_steps", max_steps)
    bisection_steps = check_positive_int("bisection_steps", bisection_steps)
    result = _tempered_smc(
        key,
        initial_particles,
        log_prior_fn=log_prior_fn,
        log_likelihood_fn=log_likelihood_fn,
        schedule=schedule,
        target_ess=float(target_ess),
        move=move,
        num_mcmc_steps=num_mcmc_steps,
        resample_threshold=resample_threshold,
        resampling=resampling,
        max_steps=max_steps,
        bisection_steps=bisection_steps,
    )
    check_completed(result, max_steps)
    return result


# Compiled once per configuration and function objects: repeated eager calls with the same
# functions reuse the compilation; inside a caller's jit this simply inlines.
@functools.partial(
    jax.jit,
    static_argnames=(
        "log_prior_fn", "log_likelihood_fn", "schedule", "target_ess", "move", "num_mcmc_steps",
        "resample_threshold", "resampling", "max_steps", "bisection_steps",
    ),
)  # fmt: skip
def _tempered_smc(
    key, initial_particles, *, log_prior_fn, log_likelihood_fn, schedule, target_ess, move,
    num_mcmc_steps, resample_threshold, resampling, max_steps, bisection_steps,
) -> SMCResult:  # fmt: skip
    target = _tempered_target(log_prior_fn, log_likelihood_fn)
    resample_step = ResampleIf(resample_threshold, resampling)
    move_step = Move(get_move(move, target), num_mcmc_steps)
    state = init_state(initial_particles, temperature=0.0)
    if schedule is not None:
        temper = Temper(log_likelihood_fn, schedule=schedule)
        stage = Stage((temper, resample_step, move_step), num_steps=len(schedule))
        state, history = run_stages(key, state, [stage])
        return SMCResult(state, history, jnp.int32(len(schedule)), jnp.asarray(True))
    temper = Temper(log_likelihood_fn, target_ess=target_ess, bisection_steps=bisection_steps)
    return run_until(
        key,
        state,
        (temper, resample_step, move_step),
        done=lambda s: s.temperature >= 1.0,
        max_steps=max_steps,
    )


def check_completed(result: SMCResult, max_steps: int) -> None:
    """Raise when a concrete adaptive run stopped at ``max_steps`` before reaching λ = 1."""
    if is_concrete(result.completed) and not bool(result.completed):
        raise ProbkitError(
            f"tempering reached λ = {float(result.state.temperature):.3g} < 1 in max_steps="
            f"{max_steps} steps; raise max_steps, lower target_ess, or use more particles."
        )


def _check_schedule(schedule: Any) -> np.ndarray:
    values = np.asarray(schedule, dtype=float)
    if (
        values.ndim != 1
        or values.size == 0
        or values[0] <= 0
        or np.any(np.diff(values) <= 0)
        or values[-1] != 1.0
    ):
        raise ProbkitError(
            "`schedule` must be a strictly increasing sequence of tempering exponents in (0, 1] "
            f"ending at 1 (λ_0 = 0 is implied); got {schedule!r}."
        )
    return values


def data_annealed_smc(
    key: jax.Array,
    log_prior_fn: Callable[[Any], jax.Array],
    log_likelihood_fn: Callable[[Any, jax.Array], jax.Array],
    num_observations: int,
    initial_particles: Any,
    *,
    move: str | Callable = "random_walk",
    num_mcmc_steps: int = 5,
    resample_threshold: float | None = 0.5,
    resampling: str = "systematic",
) -> SMCResult:
    """SMC that adds the observations one at a time (IBIS, Chopin 2002).

    Targets ``π_t ∝ p(x) Π_{s ≤ t} p(y_s | x, y_{<s})``: step ``t`` reweights by the ``t``-th
    likelihood term, resamples when the ESS is low, and moves the particles with a kernel
    invariant for ``π_t``. After the last step ``exp(log_evidence)`` estimates ``p(y_{0:T-1})``
    without bias, and ``history["log_evidence_increment"][t]`` the one-step predictive
    ``log p(y_t | y_{<t})``.

    Parameters
    ----------
    log_likelihood_fn : callable
        ``log_likelihood_fn(x, t) = log p(y_t | x, y_{<t})``, the ``t``-th term.
    num_observations : int
        ``T``, the number of steps.
    key, log_prior_fn, initial_particles, move, num_mcmc_steps, resampling
        As for :func:`tempered_smc`.
    resample_threshold : float or None
        Resample when ESS < threshold · n (default n/2); None resamples every step.

    Returns
    -------
    SMCResult
    """
    _check_common(initial_particles, num_mcmc_steps, resample_threshold, resampling)
    num_observations = check_positive_int("num_observations", num_observations)
    return _data_annealed_smc(
        key,
        initial_particles,
        log_prior_fn=log_prior_fn,
        log_likelihood_fn=log_likelihood_fn,
        num_observations=num_observations,
        move=move,
        num_mcmc_steps=num_mcmc_steps,
        resample_threshold=resample_threshold,
        resampling=resampling,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "log_prior_fn", "log_likelihood_fn", "num_observations", "move", "num_mcmc_steps",
        "resample_threshold", "resampling",
    ),
)  # fmt: skip
def _data_annealed_smc(
    key, initial_particles, *, log_prior_fn, log_likelihood_fn, num_observations, move,
    num_mcmc_steps, resample_threshold, resampling,
) -> SMCResult:  # fmt: skip
    def target(state: SMCState, t: jax.Array):
        def log_density(x):
            steps = jnp.arange(num_observations)
            terms = jax.vmap(lambda s: log_likelihood_fn(x, s))(steps)
            return log_prior_fn(x) + jnp.sum(jnp.where(steps <= t, terms, 0.0))

        return log_density

    stage = Stage(
        (
            Reweight(log_likelihood_fn),
            ResampleIf(resample_threshold, resampling),
            Move(get_move(move, target), num_mcmc_steps),
        ),
        num_steps=num_observations,
    )
    state, history = run_stages(key, init_state(initial_particles), [stage])
    return SMCResult(state, history, jnp.int32(num_observations), jnp.asarray(True))
