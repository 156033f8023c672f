"""The steps SMC is composed of, each a valid transformation of an :class:`SMCState`.

A transformation is a frozen, hashable object called as ``state, diagnostics =
transformation(key, state, t)``; ``t`` is the step index (traced inside ``lax.scan``) and
``diagnostics`` a dict of scalars recorded in the run's history. Every SMC algorithm of probkit
is a list of these, and nothing else:

========================  ======================================  =================================
transformation            what it does                            why it keeps the measure
========================  ======================================  =================================
:class:`Propose`          ``x' ~ q(· | x)`` for every particle    defines the path-space measure
:class:`Reweight`         ``W_i ← W_i G(x_i)``, evidence pushed    ``score``: defines the new target
:class:`Temper`           raises the likelihood's exponent         a :class:`Reweight` by ``ℓ^Δλ``
:class:`ResampleIf`       resamples when the ESS is low            unbiased offspring counts
:class:`Move`             MCMC steps invariant for the target      invariance (the MHG theorem)
========================  ======================================  =================================

Because the list is data, the exact oracle of :mod:`probkit.theory.exact` can interpret the very
same steps by enumeration (on finite spaces), which is how the checks show that a whole SMC run
preserves the unnormalised measure, evidence included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp

from probkit.inference.mhg import Kernel
from probkit.inference.population import (
    Population,
    ess,
    expectation,
    push_evidence,
    resample_from_uniforms,
    reweight,
)
from probkit.inference.resampling import get_resampler
from probkit.inference.smc.state import SMCState

__all__ = [
    "Move",
    "Propose",
    "ResampleIf",
    "Reweight",
    "Temper",
    "conditional_ess",
    "reweight_state",
    "should_resample",
]


def _vmap_particles(fn: Callable, particles: Any, *args: Any) -> Any:
    return jax.vmap(lambda p: fn(p, *args))(particles)


def reweight_state(state: SMCState, log_potential_values: jax.Array) -> tuple[SMCState, dict]:
    """Multiply the normalised weights by ``G`` and push the evidence increment out.

    The increment ``log Σ_i W_i G(x_i)`` is computed from the normalised incoming weights, so it
    is right whether or not the previous step resampled. A potential that is zero on every
    particle leaves the zero population and an increment of ``-inf`` (reported, never NaN).
    """
    population = reweight(state.population, log_potential_values)
    population, increment = push_evidence(population)
    new_state = state._replace(population=population, log_evidence=state.log_evidence + increment)
    return new_state, {"log_evidence_increment": increment, "ess": ess(population)}


def should_resample(population: Population, threshold: float | None) -> jax.Array:
    """True when ``threshold`` is None (always resample) or ``ESS < threshold · n``."""
    if threshold is None:
        return jnp.asarray(True)
    return ess(population) < threshold * population.num_particles


def conditional_ess(log_weights: jax.Array, log_potential_values: jax.Array) -> jax.Array:
    """``n (Σ W_i G_i)² / Σ W_i G_i²`` for normalised ``W`` (Zhou, Johansen & Aston 2016).

    The effective sample size of the *incremental* weights, which the adaptive tempering of
    :class:`Temper` targets; it equals the ESS of ``G`` right after resampling.
    """
    num = log_weights.shape[0]
    log_first = logsumexp(log_weights + log_potential_values)
    log_second = logsumexp(log_weights + 2.0 * log_potential_values)
    return num * jnp.exp(2.0 * log_first - log_second)


@dataclasses.dataclass(frozen=True)
class Propose:
    """Draw every particle's successor from a distribution: ``x' ~ proposal(x, t)``.

    Attributes
    ----------
    proposal : callable
        ``proposal(particle, t) -> numpyro.distributions.Distribution``. On finite spaces the
        exact oracle enumerates its support (``enumerate_support``).
    update : callable, optional
        ``update(particle, value, t) -> particle``: how the drawn value enters the particle
        (default: it replaces it).
    """

    proposal: Callable[[Any, jax.Array], Any]
    update: Callable[[Any, Any, jax.Array], Any] | None = None

    def apply_values(self, state: SMCState, values: Any, t: jax.Array) -> SMCState:
        """The state whose particles received the drawn ``values`` (shared with the oracle)."""
        particles = state.population.particles
        if self.update is None:
            new = values
        else:
            new = jax.vmap(lambda p, v: self.update(p, v, t))(particles, values)
        # Keep the particles' dtypes (a sampler may return int64 where int32 was stored), so that
        # the state has one type from step to step, as lax.scan requires.
        if jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(particles):
            new = jax.tree_util.tree_map(lambda n, o: n.astype(o.dtype), new, particles)
        return state._replace(population=dataclasses.replace(state.population, particles=new))

    def __call__(self, key: jax.Array, state: SMCState, t: jax.Array) -> tuple[SMCState, dict]:
        """Apply the step at index ``t``: ``(new_state, diagnostics)``."""
        particles = state.population.particles
        keys = jax.random.split(key, state.population.num_particles)
        values = jax.vmap(lambda k, p: self.proposal(p, t).sample(k))(keys, particles)
        return self.apply_values(state, values, t), {}


@dataclasses.dataclass(frozen=True)
class Reweight:
    """Reweight by a log potential ``log G(x, t)`` and push the evidence increment out.

    Attributes
    ----------
    log_potential : callable
        ``log_potential(particle, t) -> scalar``.
    summary : callable, optional
        ``summary(particle) -> pytree``: its weighted mean after reweighting is recorded in the
        history as ``"summary"`` (e.g. the filtering mean of a particle filter).
    """

    log_potential: Callable[[Any, jax.Array], jax.Array]
    summary: Callable[[Any], Any] | None = None

    def __call__(self, key: jax.Array, state: SMCState, t: jax.Array) -> tuple[SMCState, dict]:
        """Apply the step at index ``t``: ``(new_state, diagnostics)``."""
        del key  # deterministic
        values = _vmap_particles(self.log_potential, state.population.particles, t)
        state, diagnostics = reweight_state(state, values)
        if self.summary is not None:
            diagnostics["summary"] = expectation(state.population, self.summary)
        return state, diagnostics


@dataclasses.dataclass(frozen=True)
class ResampleIf:
    """Resample when ``ESS < threshold · n`` (always when ``threshold`` is None).

    The decision depends only on the current weights, so either branch keeps the measure and so
    does the step. The genealogy (``eve``) follows the ancestors.

    Attributes
    ----------
    threshold : float or None
        ESS fraction in (0, 1] below which to resample; None resamples every step.
    method : str
        A resampler of :mod:`probkit.inference.resampling`.
    """

    threshold: float | None = None
    method: str = "systematic"

    def resample(self, key: jax.Array, state: SMCState) -> SMCState:
        """Resample unconditionally, carrying the genealogy along."""
        resampler = get_resampler(self.method)
        num = state.population.num_particles
        dtype = state.population.log_weights.dtype
        uniforms = jax.random.uniform(key, (resampler.num_uniforms(num),), dtype=dtype)
        return self.resample_from_uniforms(uniforms, state)

    def resample_from_uniforms(self, uniforms: jax.Array, state: SMCState) -> SMCState:
        """The deterministic core of :meth:`resample` (shared with the exact oracle)."""
        carried = Population((state.population.particles, state.eve), state.population.log_weights)
        new = resample_from_uniforms(uniforms, carried, self.method)
        particles, eve = new.particles
        return state._replace(
            population=Population(particles, new.log_weights),
            eve=eve,
            num_resampled=state.num_resampled + 1,
        )

    def __call__(self, key: jax.Array, state: SMCState, t: jax.Array) -> tuple[SMCState, dict]:
        """Apply the step at index ``t``: ``(new_state, diagnostics)``."""
        del t
        decision = should_resample(state.population, self.threshold)
        new_state = jax.lax.cond(decision, lambda s: self.resample(key, s), lambda s: s, state)
        return new_state, {"resampled": decision}


@dataclasses.dataclass(frozen=True)
class Move:
    """Apply ``num_steps`` steps of an MCMC kernel to every particle; weights are untouched.

    Valid when the kernel leaves the current target invariant (resample-move of Gilks & Berzuini
    2001): the measure ``Z · π`` is then kept exactly, not only in expectation.

    Attributes
    ----------
    kernel_builder : callable
        ``kernel_builder(state, t) -> Kernel`` for the current target; it may adapt to the
        particle cloud (see :func:`random_walk_from_particles`).
    num_steps : int
        MCMC steps per particle.
    """

    kernel_builder: Callable[[SMCState, jax.Array], Kernel]
    num_steps: int = 1

    def __call__(self, key: jax.Array, state: SMCState, t: jax.Array) -> tuple[SMCState, dict]:
        """Apply the step at index ``t``: ``(new_state, diagnostics)``."""
        kernel = self.kernel_builder(state, t)
        num = state.population.num_particles

        def chain(key_i, position):
            def one(carry, k):
                chain_state, accepted = carry
                chain_state, info = kernel.step(k, chain_state)
                return (chain_state, accepted + info.acceptance_probability), None

            start = kernel.init(position)
            (final, accepted), _ = jax.lax.scan(
                one, (start, jnp.zeros((), start.log_density.dtype)),
                jax.random.split(key_i, self.num_steps),
            )  # fmt: skip
            return final.position, accepted / self.num_steps

        positions, acceptance = jax.vmap(chain)(
            jax.random.split(key, num), state.population.particles
        )
        population = dataclasses.replace(state.population, particles=positions)
        return state._replace(population=population), {"acceptance_rate": jnp.mean(acceptance)}


@dataclasses.dataclass(frozen=True)
class Temper:
    """Raise the likelihood's exponent from λ to λ' and reweight by ``ℓ(x)^{λ' - λ}``.

    With ``schedule`` the next exponent is ``schedule[t]``; without it, λ' is found by bisection
    so that the conditional ESS of the incremental weights equals ``target_ess · n``
    (:func:`conditional_ess`; the weights and the solver use the same sign, ``+Δλ ℓ``), or is 1
    when even the full step keeps that ESS.

    Attributes
    ----------
    log_likelihood : callable
        ``log_likelihood(particle) -> scalar``.
    schedule : Array or None
        Fixed exponents, one per step, increasing to 1.
    target_ess : float
        For the adaptive schedule: the conditional ESS fraction to keep, in (0, 1).
    bisection_steps : int
        Bisection iterations of the adaptive schedule (the error in Δλ halves with each).
    """

    log_likelihood: Callable[[Any], jax.Array]
    schedule: Any = None
    target_ess: float = 0.5
    bisection_steps: int = 60

    def next_temperature(self, state: SMCState, log_likelihoods: jax.Array, t: jax.Array):
        """The next exponent λ' (fixed schedule or bisection on the conditional ESS)."""
        current = state.temperature
        if self.schedule is not None:
            return jnp.asarray(self.schedule, current.dtype)[t]
        log_weights = state.population.log_weights
        num = log_weights.shape[0]

        # Bisection only evaluates Δλ > 0, where a -inf log-likelihood (zero likelihood) is a
        # zero incremental weight, never NaN.
        def excess(delta):
            return conditional_ess(log_weights, delta * log_likelihoods) - self.target_ess * num

        full = 1.0 - current

        def bisect(bounds, _):
            low, high = bounds
            middle = 0.5 * (low + high)
            keep = excess(middle) >= 0
            return (jnp.where(keep, middle, low), jnp.where(keep, high, middle)), None

        (low, _), _ = jax.lax.scan(
            bisect, (jnp.zeros_like(full), full), None, length=self.bisection_steps
        )
        delta = jnp.where(excess(full) >= 0, full, low)
        # A step must make progress: at worst the smallest step bisection can resolve.
        delta = jnp.maximum(delta, full * 2.0**-self.bisection_steps)
        return jnp.minimum(current + delta, 1.0)

    def __call__(self, key: jax.Array, state: SMCState, t: jax.Array) -> tuple[SMCState, dict]:
        """Apply the step at index ``t``: ``(new_state, diagnostics)``."""
        del key
        log_likelihoods = _vmap_particles(
            lambda p: self.log_likelihood(p), state.population.particles
        )
        new_temperature = self.next_temperature(state, log_likelihoods, t)
        delta = new_temperature - state.temperature
        # 0 · (-inf) would be NaN: a zero increment leaves a zero-likelihood particle alone.
        values = jnp.where(delta > 0, delta * log_likelihoods, 0.0)
        state, diagnostics = reweight_state(state, values)
        diagnostics["temperature"] = new_temperature
        return state._replace(temperature=new_temperature), diagnostics


def flat_particles(population: Population) -> jax.Array:
    """The particles as a matrix ``(n, d)`` of flattened positions."""
    return jax.vmap(lambda p: ravel_pytree(p)[0])(population.particles)
