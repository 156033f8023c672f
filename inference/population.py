"""Weighted particle populations that carry the evidence, and the transformations that keep their measure.

A :class:`Population` with particles ``x_i`` and log weights ``log w_i`` represents the
unnormalised measure ``μ = Σ_i w_i δ_{x_i}``. Its total mass ``Z = Σ_i w_i`` is the evidence
estimate carried so far. Every transformation in this module is *valid* in the sense of Ścibior
et al. (POPL 2018): the measure it returns equals the measure it was given, in expectation over
its own randomness, evidence included (research note ``qbs_smc_mhg.md`` §1.2–1.4).

=================  ===============================================  ===================================
transformation     what it does                                     why the measure is kept
=================  ===============================================  ===================================
``spawn``          ``n`` particles, each of weight ``1/n``          total mass 1, the measure of ``()``
``reweight``       multiplies each weight by a potential ``G(x)``   defines the new target ``G·μ``
``resample``       draws ancestors, all new weights ``Z/m``         unbiased offspring counts
``push_evidence``  normalises the weights, returns ``log Z`` apart  ``Z`` moves out, mass unchanged
``collapse``       one particle drawn ∝ ``w_i``, weighted by ``Z``  ``E[Z δ_{x_I}] = μ``
=================  ===============================================  ===================================

Degenerate populations. A population whose weights are all zero represents the zero measure
(evidence 0). Called eagerly, functions that cannot act on it (``resample``, ``collapse``,
``push_evidence``, ``normalized_weights``, ``expectation``) raise :class:`~probkit.ProbkitError`,
and every function raises on NaN or +inf log weights. Under ``jit``/``vmap`` nothing can raise:
a degenerate population (all weights zero, or any NaN or +inf log weight) is turned into the
zero population, whose ``log_evidence`` is ``-inf`` and ``ess`` is 0; :func:`is_degenerate`
reports it. No function returns NaN weights.

All functions keep the dtype of the log weights (float32 or float64) and are pure, jit- and
vmap-compatible.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from probkit._errors import ProbkitError
from probkit._validate import (
    check_finite_or_minus_inf,
    check_leading_axis,
    check_positive_int,
    is_concrete,
)
from probkit.inference.resampling import Resampler, get_resampler

__all__ = [
    "Population",
    "WeightedParticle",
    "collapse",
    "collapse_from_uniforms",
    "ess",
    "expectation",
    "is_degenerate",
    "log_evidence",
    "normalized_weights",
    "push_evidence",
    "resample",
    "resample_from_uniforms",
    "reweight",
    "spawn",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Population:
    """A weighted particle population, the unnormalised measure ``Σ_i w_i δ_{x_i}``.

    Parameters
    ----------
    particles : pytree
        The particles ``x_i``: a pytree of arrays whose leading axis indexes the particles.
    log_weights : Array, shape (n,)
        ``log w_i``. ``-inf`` is a zero weight. Their ``logsumexp`` is the log evidence.

    Notes
    -----
    The constructor does not validate (it runs inside traced code); :func:`spawn` does. A
    population is an immutable pytree, so it passes through ``jit``, ``vmap`` and ``lax.scan``.
    """

    particles: Any
    log_weights: jax.Array

    @property
    def num_particles(self) -> int:
        """The number of particles ``n`` (static)."""
        return self.log_weights.shape[-1]

    @property
    def log_evidence(self) -> jax.Array:
        """``log Z = log Σ_i w_i``; see :func:`log_evidence`."""
        return log_evidence(self)

    @property
    def ess(self) -> jax.Array:
        """The effective sample size; see :func:`ess`."""
        return ess(self)


class WeightedParticle(NamedTuple):
    """One particle with a weight: the weighted measure ``w δ_x`` returned by :func:`collapse`.

    Attributes
    ----------
    particle : pytree
        The particle ``x`` (no particle axis).
    log_weight : Array, shape ()
        ``log w``; for :func:`collapse` this is the log evidence of the population.
    """

    particle: Any
    log_weight: jax.Array


# --- validation helpers ------------------------------------------------------------------------


def _check_population(population: Population, name: str = "population") -> None:
    if not isinstance(population, Population):
        raise ProbkitError(
            f"`{name}` must be a probkit Population; got {type(population).__name__}. "
            "Build one with `spawn(n, particles)` or `Population(particles, log_weights)`."
        )
    if jnp.ndim(population.log_weights) != 1:
        raise ProbkitError(
            f"`{name}.log_weights` must have shape (n,); got shape "
            f"{jnp.shape(population.log_weights)}. vmap over populations instead of batching them."
        )
    if not jnp.issubdtype(jnp.result_type(population.log_weights), jnp.floating):
        raise ProbkitError(
            f"`{name}.log_weights` must be floating point; got {jnp.result_type(population.log_weights)}."
        )
    check_leading_axis(f"{name}.particles", population.particles, population.num_particles)
    check_finite_or_minus_inf(f"{name}.log_weights", population.log_weights)


def _check_has_mass(population: Population, action: str) -> None:
    # NumPy, not jnp: inside a jit trace even a closed-over constant becomes a tracer under jnp.
    if is_concrete(population.log_weights) and not np.any(
        np.asarray(population.log_weights) > -np.inf
    ):
        raise ProbkitError(
            f"cannot {action}: every weight of the population is zero, so it represents the zero "
            "measure (log evidence -inf). Every particle was given a log potential of -inf; "
            "check the potential, or start from more particles so that some land in the support."
        )


def _normalised_log_weights(log_weights: jax.Array) -> jax.Array:
    # log(w_i / Z) from weights relative to the largest: subtracting log Z directly would lose
    # the digits of log Z's magnitude (about 1e-3 relative in float32 at |log Z| ~ 1e4).
    shifted = log_weights - jnp.max(log_weights)
    return shifted - logsumexp(shifted)


def _degenerate(log_weights: jax.Array) -> jax.Array:
    """True when the log weights hold NaN or +inf, or are all -inf."""
    bad = jnp.isnan(log_weights) | (log_weights == jnp.inf)
    return jnp.any(bad) | jnp.all(log_weights == -jnp.inf)


# --- measures and summaries --------------------------------------------------------------------


def spawn(num_particles: int, particles: Any) -> Population:
    """Start a population of ``num_particles`` particles, each of weight ``1 / num_particles``.

    The represented measure has total mass 1, so the evidence carried from here on is the
    evidence of whatever reweighting follows (``spawn n`` of Ścibior et al. 2018).

    Parameters
    ----------
    num_particles : int
        The number of particles ``n`` (at least 1).
    particles : pytree
        The initial particles, a pytree of arrays whose leading axis has length ``n``
        (for instance ``n`` draws from a prior).

    Returns
    -------
    Population
        log weights ``-log n`` in the floating dtype JAX uses by default.

    Raises
    ------
    ProbkitError
        If ``num_particles`` is not a positive integer or the leading axes disagree with it.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from probkit.inference.population import spawn
    >>> pop = spawn(4, jnp.zeros((4, 2)))
    >>> float(pop.log_evidence)
    0.0
    """
    num_particles = check_positive_int("num_particles", num_particles)
    check_leading_axis("particles", particles, num_particles)
    log_weights = jnp.full((num_particles,), -math.log(num_particles), dtype=jnp.result_type(float))
    return Population(particles=particles, log_weights=log_weights)


def log_evidence(population: Population) -> jax.Array:
    """The log total mass ``log Z = log Σ_i w_i`` of the population (``-inf`` when degenerate)."""
    log_weights = population.log_weights
    return jnp.where(_degenerate(log_weights), -jnp.inf, logsumexp(log_weights))


def is_degenerate(population: Population) -> jax.Array:
    """True when the population has no usable weight: all zero, or any NaN or +inf log weight."""
    return _degenerate(population.log_weights)


def ess(population: Population) -> jax.Array:
    """The effective sample size ``(Σ w_i)² / Σ w_i²``, between 1 and ``n``; 0 when degenerate.

    Computed in log space, so it is exact for weights far outside the dtype's range.
    """
    log_weights = population.log_weights
    # Shift by the largest log weight first: the two logsumexps are then O(log n) and their
    # difference keeps full relative precision even when the log weights are huge.
    shifted = log_weights - jnp.max(log_weights)
    log_ess = 2.0 * logsumexp(shifted) - logsumexp(2.0 * shifted)
    return jnp.where(_degenerate(log_weights), 0.0, jnp.exp(log_ess))


def normalized_weights(population: Population) -> jax.Array:
    """The weights divided by their sum, ``w_i / Z``.

    Raises
    ------
    ProbkitError
        Called eagerly on a population with no positive weight. Under tracing the normalised
        weights of a degenerate population are all zero.
    """
    _check_population(population)
    _check_has_mass(population, "normalise the weights")
    log_weights = population.log_weights
    weights = jnp.exp(_normalised_log_weights(log_weights))
    return jnp.where(_degenerate(log_weights), 0.0, weights)


def expectation(population: Population, fn: Callable[[Any], Any]) -> Any:
    """The self-normalised expectation ``Σ_i (w_i / Z) f(x_i)`` of ``fn`` under the population.

    Parameters
    ----------
    population : Population
        The weighted particles.
    fn : callable
        Maps one particle to a pytree of arrays; it is vmapped over the particles.

    Returns
    -------
    pytree
        The weighted average of ``fn``'s output, leaf by leaf.
    """
    weights = normalized_weights(population)
    values = jax.vmap(fn)(population.particles)
    return jax.tree_util.tree_map(lambda v: jnp.tensordot(weights, v, axes=1), values)


# --- transformations ---------------------------------------------------------------------------


def reweight(population: Population, log_potential: Callable[[Any], jax.Array] | jax.Array):
    """Multiply each weight by a potential: ``w_i ← w_i G(x_i)``.

    This is ``score`` of the semantics: the new population represents the measure ``G·μ``, and
    its evidence grows by the factor ``Σ w_i G(x_i) / Σ w_i``.

    Parameters
    ----------
    population : Population
        The weighted particles.
    log_potential : callable or Array, shape (n,)
        ``log G``: either a function of one particle (vmapped over the particles) or the values
        ``log G(x_i)`` already computed. ``-inf`` (a zero potential) is allowed.

    Raises
    ------
    ProbkitError
        If the values have the wrong shape or, called eagerly, hold NaN or +inf.
    """
    _check_population(population)
    if callable(log_potential):
        values = jax.vmap(log_potential)(population.particles)
    else:
        values = jnp.asarray(log_potential)
    if jnp.shape(values) != (population.num_particles,):
        raise ProbkitError(
            f"`log_potential` must give one value per particle, shape ({population.num_particles},); "
            f"got shape {jnp.shape(values)}. A callable must return a scalar for one particle."
        )
    check_finite_or_minus_inf("log_potential", values)
    new_log_weights = population.log_weights + values.astype(population.log_weights.dtype)
    # Under tracing a NaN or +inf potential cannot raise: the population becomes the zero
    # population (log evidence -inf) rather than carrying NaN weights onward.
    new_log_weights = jnp.where(_degenerate(new_log_weights), -jnp.inf, new_log_weights)
    return dataclasses.replace(population, log_weights=new_log_weights)


def _select(population: Population, ancestors: jax.Array, log_weight: jax.Array) -> Population:
    particles = jax.tree_util.tree_map(lambda leaf: leaf[ancestors], population.particles)
    log_weights = jnp.full(ancestors.shape, log_weight, dtype=population.log_weights.dtype)
    return Population(particles=particles, log_weights=log_weights)


def resample_from_uniforms(
    uniforms: jax.Array,
    population: Population,
    method: str | Resampler = "systematic",
    num_samples: int | None = None,
) -> Population:
    """The deterministic core of :func:`resample`: resample with the given uniform draws.

    Useful for common random numbers (resampling several populations with the same draws) and
    for the exact oracle, which integrates this map over ``uniforms``.

    Parameters
    ----------
    uniforms : Array, shape (resampler.num_uniforms(num_samples),)
        Independent Uniform[0, 1) draws.
    population, method, num_samples
        As for :func:`resample`.
    """
    _check_population(population)
    _check_has_mass(population, "resample")
    resampler = get_resampler(method)
    num_samples = population.num_particles if num_samples is None else num_samples
    num_samples = check_positive_int("num_samples", num_samples)
    expected_shape = (resampler.num_uniforms(num_samples),)
    if jnp.shape(uniforms) != expected_shape:
        raise ProbkitError(
            f"`uniforms` must have shape {expected_shape} for {resampler.name} resampling of "
            f"{num_samples} samples; got {jnp.shape(uniforms)}."
        )
    return _resample_validated(uniforms, population, resampler, num_samples)


# Compiled once per (resampler, size) so that eager calls do not dispatch op by op; inside a
# user's jit this inlines like any other function.
@functools.partial(jax.jit, static_argnames=("resampler", "num_samples"))
def _resample_validated(
    uniforms: jax.Array, population: Population, resampler: Resampler, num_samples: int
) -> Population:
    log_weights = population.log_weights
    degenerate = _degenerate(log_weights)
    ancestors = resampler.ancestors(uniforms, log_weights, num_samples)
    ancestors = jnp.where(degenerate, jnp.arange(num_samples) % population.num_particles, ancestors)
    # Every new particle carries Z / m: the offspring counts are unbiased, so the measure
    # Σ_j (Z/m) δ_{x_{a_j}} equals Σ_i w_i δ_{x_i} in expectation (qbs_smc_mhg.md §1.4).
    log_weight = jnp.where(degenerate, -jnp.inf, logsumexp(log_weights) - math.log(num_samples))
    return _select(population, ancestors, log_weight)


def resample(
    key: jax.Array,
    population: Population,
    method: str | Resampler = "systematic",
    num_samples: int | None = None,
) -> Population:
    """Resample the population, keeping its measure (and so its evidence) in expectation.

    Draws ancestors ``a_1..a_m`` with unbiased offspring counts and returns the population
    ``Σ_j (Z/m) δ_{x_{a_j}}``. The evidence ``Z`` stays in the weights; it is not dropped.

    Parameters
    ----------
    key : jax.Array
        A PRNG key.
    population : Population
        The weighted particles.
    method : {"systematic", "stratified", "residual", "multinomial"} or Resampler
        The resampling scheme (see :mod:`probkit.inference.resampling`). Systematic resampling
        is the default: it has the lowest variance on most problems and costs one uniform.
    num_samples : int, optional
        The number of particles ``m`` after resampling; defaults to ``n``.

    Returns
    -------
    Population
        ``m`` particles, each with log weight ``log Z - log m``. A degenerate population
        resampled under tracing gives the zero population (all log weights ``-inf``).

    Raises
    ------
    ProbkitError
        On a bad method or size; called eagerly, on NaN or +inf log weights or all-zero weights.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from probkit.inference.population import Population, resample
    >>> pop = Population(jnp.arange(3.0), jnp.log(jnp.array([0.5, 0.0, 1.5])))
    >>> new = resample(jax.random.key(0), pop, method="systematic")
    >>> float(new.log_evidence)  # Z = 2 is kept
    0.693...
    >>> bool((new.particles != 1.0).all())  # the zero-weight particle is never drawn
    True
    """
    resampler = get_resampler(method)
    _check_population(population)
    num_samples = population.num_particles if num_samples is None else num_samples
    num_samples = check_positive_int("num_samples", num_samples)
    dtype = population.log_weights.dtype
    uniforms = jax.random.uniform(key, (resampler.num_uniforms(num_samples),), dtype=dtype)
    return resample_from_uniforms(uniforms, population, resampler, num_samples)


def push_evidence(population: Population) -> tuple[Population, jax.Array]:
    """Split the evidence out of the population: ``(normalised population, log Z)``.

    The returned population has weights ``w_i / Z`` (total mass 1); ``Z`` times it is the
    original measure. This is ``pushEvidence`` of the semantics: the caller carries ``log Z``
    in an enclosing representation (an SMC's running log evidence, or a PMMH likelihood).

    Raises
    ------
    ProbkitError
        Called eagerly on a population with no positive weight. Under tracing a degenerate
        population gives the zero population and ``log Z = -inf``.
    """
    _check_population(population)
    _check_has_mass(population, "push the evidence out of the population")
    log_z = log_evidence(population)
    normalised = jnp.where(
        _degenerate(population.log_weights),
        -jnp.inf,
        _normalised_log_weights(population.log_weights),
    )
    return dataclasses.replace(population, log_weights=normalised), log_z


def collapse_from_uniforms(uniforms: jax.Array, population: Population) -> WeightedParticle:
    """The deterministic core of :func:`collapse`, with its one uniform draw given.

    Parameters
    ----------
    uniforms : Array, shape (1,)
        One Uniform[0, 1) draw.
    population : Population
        The weighted particles.
    """
    one = resample_from_uniforms(uniforms, population, method="multinomial", num_samples=1)
    particle = jax.tree_util.tree_map(lambda leaf: leaf[0], one.particles)
    return WeightedParticle(particle=particle, log_weight=one.log_weights[0])


def collapse(key: jax.Array, population: Population) -> WeightedParticle:
    """Draw one particle in proportion to its weight and weight it by the evidence ``Z``.

    The result ``Z δ_{x_I}`` with ``P(I = i) = w_i / Z`` is *properly weighted*:
    ``E[Z f(x_I)] = Σ_i w_i f(x_i)`` for every ``f``. This is ``proper``/``collapse`` of the
    semantics, the single weighted sample used by particle marginal MH and SMC².

    Returns
    -------
    WeightedParticle
        The drawn particle and ``log Z``. Under tracing, a degenerate population gives log
        weight ``-inf``.

    Raises
    ------
    ProbkitError
        Called eagerly on a population with NaN or +inf log weights or no positive weight.
    """
    _check_population(population)
    _check_has_mass(population, "collapse the population")
    uniforms = jax.random.uniform(key, (1,), dtype=population.log_weights.dtype)
    return collapse_from_uniforms(uniforms, population)
