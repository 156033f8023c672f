"""Checks of sequential Monte Carlo: exact measure preservation of whole runs, unbiased evidence.

The exact checks run the very stages an SMC algorithm samples through the enumeration oracle of
:func:`probkit.theory.exact.smc_enumeration` and compare the expected represented measure with
the model's exact unnormalised posterior (evidence included). The statistical checks replicate
runs with few particles, so that a bias in the evidence would show, and test the claims of the
theory (unbiasedness of Ẑ, the Jensen gap of log Ẑ, the genealogy variance estimate, filtering
means) with Monte Carlo standard errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from scipy import special, stats

from probkit.inference.mhg import random_walk
from probkit.inference.numpyro_bridge import model_densities
from probkit.inference.population import collapse
from probkit.inference.smc.filtering import filter_stages, particle_filter
from probkit.inference.smc.pmmh import pmmh
from probkit.inference.smc.runner import Stage
from probkit.inference.smc.state import init_state
from probkit.inference.smc.tempering import data_annealed_smc, tempered_smc
from probkit.inference.smc.transformations import Propose, ResampleIf, Reweight
from probkit.theory.calibration import (
    holm_combined_p_value,
    mean_z_test,
    rank_uniformity_p_value,
)
from probkit.theory.check import CheckContext, Outcome, register
from probkit.theory.exact import smc_enumeration
from probkit.theory.models import (
    BetaBernoulli,
    DiscreteHMM,
    LinearGaussianSSM,
    NormalNormal,
    SprinklerSoft,
)

__all__ = [
    "hierarchical_model",
    "hmm_measure_error",
    "sprinkler_measure_error",
    "sprinkler_stages",
]

EXACT_TOLERANCE = 1e-12


def sprinkler_stages(
    threshold: float | None, method: str, reweight: type[Reweight] = Reweight
) -> list[Stage]:
    """The soft sprinkler program as SMC: draw rain, score it, draw the sprinkler, score it.

    ``reweight`` lets a test substitute a broken reweighting step.
    """

    def set_rain(particle, value, t):
        return {"rain": value, "sprinkler": particle["sprinkler"]}

    def set_sprinkler(particle, value, t):
        return {"rain": particle["rain"], "sprinkler": value}

    resample_step = ResampleIf(threshold, method)
    rain = Stage(
        (
            Propose(lambda particle, t: dist.Bernoulli(probs=0.3), set_rain),
            reweight(lambda particle, t: jnp.where(particle["rain"] == 1, jnp.log(0.2), 0.0)),
            resample_step,
        ),
        num_steps=1,
    )
    sprinkler = Stage(
        (
            Propose(
                lambda particle, t: dist.Bernoulli(
                    probs=jnp.where(particle["rain"] == 1, 0.1, 0.4)
                ),
                set_sprinkler,
            ),
            reweight(lambda particle, t: jnp.where(particle["sprinkler"] == 1, jnp.log(0.1), 0.0)),
            resample_step,
        ),
        num_steps=1,
        start=1,
    )
    return [rain, sprinkler]


def _relative_error(found: dict, exact: dict) -> float:
    total = sum(exact.values())
    keys = set(found) | set(exact)
    return max(abs(found.get(k, 0.0) - exact.get(k, 0.0)) for k in keys) / total


def sprinkler_measure_error(num_particles: int, stages: Sequence[Stage]) -> float:
    """``max |E[μ̂] - μ| / Z`` of an SMC run of the soft sprinkler, by exact enumeration."""
    zeros = jnp.zeros(num_particles, jnp.int32)
    enumeration = smc_enumeration(stages, init_state({"rain": zeros, "sprinkler": zeros}))
    found = enumeration.expected_measure(lambda p: (int(p["rain"]), int(p["sprinkler"])))
    return _relative_error(found, SprinklerSoft().exact_measure())


def hmm_measure_error(
    num_particles: int, threshold: float | None, method: str, hmm: DiscreteHMM | None = None
) -> float:
    """``max |E[μ̂] - μ| / Z`` of the particle filter on a discrete HMM, over ``(x_{T-2}, x_{T-1})``."""
    hmm = hmm or DiscreteHMM()
    observations = jnp.asarray(hmm.observations)
    stages = filter_stages(hmm.state_space_model(), observations, len(hmm.observations),
                           resample_threshold=threshold, resampling=method)  # fmt: skip
    zeros = jnp.zeros(num_particles, jnp.int32)
    enumeration = smc_enumeration(stages, init_state({"x": zeros, "previous": zeros}))
    found = enumeration.expected_measure(lambda p: (int(p["previous"]), int(p["x"])))
    return _relative_error(found, hmm.exact_pair_measure())


@register(capability="smc", kind="exact")
def smc_preserves_measure_exactly_on_sprinkler(context: CheckContext) -> Outcome:
    """A whole SMC run of the soft sprinkler keeps the unnormalised posterior exactly, Z = 0.5026 included."""
    configurations = context.pick(
        quick=[(2, None, "systematic"), (3, 0.9, "stratified")],
        full=[(n, threshold, method) for n in (1, 2, 3)
              for threshold, method in ((None, "systematic"), (None, "multinomial"),
                                        (0.9, "stratified"), (0.6, "residual"))],
    )  # fmt: skip
    errors = {
        f"n={n}, threshold={threshold}, {method}": sprinkler_measure_error(
            n, sprinkler_stages(threshold, method)
        )
        for n, threshold, method in configurations
    }
    return Outcome.at_most(
        max(errors.values()),
        tolerance=EXACT_TOLERANCE,
        description="max |E[Ẑ Σ W δ] - μ| / Z over configurations",
        details={"errors": errors},
    )


@register(capability="smc", kind="exact")
def particle_filter_preserves_measure_exactly_on_hmm(context: CheckContext) -> Outcome:
    """The particle filter on a 3-state HMM (T = 4), always or ESS-triggered, keeps p(x, y) exactly."""
    configurations = context.pick(
        quick=[(2, None, "systematic"), (3, 0.7, "systematic")],
        full=[(1, None, "multinomial"), (2, None, "systematic"), (2, 0.8, "multinomial"),
              (3, 0.7, "systematic"), (3, None, "residual"), (3, 0.9, "stratified")],
    )  # fmt: skip
    errors = {
        f"n={n}, threshold={threshold}, {method}": hmm_measure_error(n, threshold, method)
        for n, threshold, method in configurations
    }
    return Outcome.at_most(
        max(errors.values()),
        tolerance=EXACT_TOLERANCE,
        description="max |E[Ẑ Σ W δ] - p(x_{T-2}, x_{T-1}, y)| / Z",
        details={"errors": errors, "log_evidence": float(np.log(sum(DiscreteHMM().forward()[-1])))},
    )


# --- replicated runs -----------------------------------------------------------------------------

_LGSSM = LinearGaussianSSM()
_LGSSM_STEPS = 20


def _lgssm_replicates(context: CheckContext, num_particles: int, method: str, threshold):
    observations = _LGSSM.simulate(_LGSSM_STEPS, seed=context.seed + 1)
    log_z, means, _ = _LGSSM.kalman(observations)
    model = _LGSSM.state_space_model()
    replicates = context.pick(quick=1_000, full=10_000)

    @jax.jit
    def run(keys):
        def one(key):
            result = particle_filter(key, model, jnp.asarray(observations), num_particles,
                                     resample_threshold=threshold, resampling=method)  # fmt: skip
            return result.log_evidence, result.log_evidence_variance, result.history["summary"]

        return jax.vmap(one)(keys)

    keys = jax.random.split(jax.random.key(context.seed), replicates)
    log_evidence, variance, filtering_means = (np.asarray(v) for v in run(keys))
    return log_z, means, log_evidence, variance, filtering_means


def _ratio_outcome(log_evidence: np.ndarray, log_z: float, label: str, **details) -> Outcome:
    ratio = np.exp(log_evidence - log_z)
    z, p = mean_z_test(ratio[:, None], np.ones(1))
    return Outcome.from_p_value(
        float(z[0]),
        float(p[0]),
        reference="z ~ N(0, 1)",
        description=f"z of mean(Ẑ/Z) - 1, {ratio.size} runs of {label}",
        details={"mean_ratio": float(ratio.mean()), "sd_ratio": float(ratio.std(ddof=1)),
                 "log_z": log_z, **details},
    )  # fmt: skip


@register(capability="smc", kind="statistical")
def particle_filter_evidence_is_unbiased(context: CheckContext) -> Outcome:
    """E[Ẑ] = Z for the bootstrap filter on a linear-Gaussian model (Kalman evidence), n = 32, ESS-triggered."""
    log_z, _, log_evidence, _, _ = _lgssm_replicates(context, 32, "systematic", 0.5)
    return _ratio_outcome(log_evidence, log_z, "a 32-particle filter, T = 20")


@register(capability="smc", kind="statistical")
def log_evidence_falls_short_by_half_its_variance(context: CheckContext) -> Outcome:
    """E[log Ẑ] = log Z - Var(log Ẑ)/2 (log-normal CLT of Bérard, Del Moral & Doucet 2014).

    Tested with 256 particles, where log Ẑ is close to normal: z of mean(log Ẑ - log Z) + s²/2,
    with standard error sqrt(s²/R + s⁴/(2(R-1))) for the mean and the sample variance.
    """
    log_z, _, log_evidence, _, _ = _lgssm_replicates(context, 256, "systematic", 0.5)
    difference = log_evidence - log_z
    replicates = difference.size
    variance = difference.var(ddof=1)
    gap = difference.mean() + variance / 2
    standard_error = np.sqrt(variance / replicates + variance**2 / (2 * (replicates - 1)))
    z = gap / standard_error
    return Outcome.from_p_value(
        float(z),
        float(2 * stats.norm.sf(abs(z))),
        reference="z ~ N(0, 1)",
        description="z of mean(log Ẑ - log Z) + Var(log Ẑ)/2",
        details={"mean_log_error": float(difference.mean()), "variance": float(variance),
                 "jensen_gap_is_negative": bool(difference.mean() < 0)},
    )  # fmt: skip


@register(capability="smc", kind="statistical")
def single_run_variance_estimate_matches_replicates(context: CheckContext) -> Outcome:
    """The Lee–Whiteley single-run variance estimate is unbiased (multinomial resampling, every step).

    Lee & Whiteley (2018) show ``E[Ẑ² V̂] = Var(Ẑ)`` for the relative estimate ``V̂`` that
    :func:`~probkit.inference.smc.state.log_evidence_variance` returns. z of
    mean((Ẑ/Z)² V̂) - Var(Ẑ/Z) over replicated runs, with standard error
    sqrt(Var((Ẑ/Z)² V̂)/R + (m₄ - s⁴)/R) for the two means.
    """
    log_z, _, log_evidence, relative, _ = _lgssm_replicates(context, 64, "multinomial", None)
    ratio = np.exp(log_evidence - log_z)
    estimates = ratio**2 * relative
    replicates = ratio.size
    centred = ratio - ratio.mean()
    sample_variance = centred.var(ddof=1)
    fourth = np.mean(centred**4)
    difference = estimates.mean() - sample_variance
    standard_error = np.sqrt(estimates.var(ddof=1) / replicates
                             + (fourth - sample_variance**2) / replicates)  # fmt: skip
    z = difference / standard_error
    return Outcome.from_p_value(
        float(z),
        float(2 * stats.norm.sf(abs(z))),
        reference="z ~ N(0, 1)",
        description="z of mean((Ẑ/Z)² V̂) - Var(Ẑ/Z)",
        details={"mean_estimate": float(estimates.mean()), "replicate_variance": float(sample_variance),
                 "mean_relative_estimate": float(relative.mean()),
                 "replicate_variance_of_log": float(np.var(log_evidence, ddof=1))},
    )  # fmt: skip


@register(capability="smc", kind="statistical")
def particle_filter_means_match_kalman(context: CheckContext) -> Outcome:
    """Filtering means of a 2 000-particle filter agree with the Kalman filter at every step.

    Per step, z of the mean over replicated runs minus the Kalman mean (Monte Carlo standard
    error; the O(1/n) bias of the self-normalised mean is far below it), combined by Holm.
    """
    observations = _LGSSM.simulate(_LGSSM_STEPS, seed=context.seed + 1)
    _, kalman_means, _ = _LGSSM.kalman(observations)
    model = _LGSSM.state_space_model()
    replicates = context.pick(quick=32, full=256)
    run = jax.jit(jax.vmap(lambda key: particle_filter(
        key, model, jnp.asarray(observations), 2_000).history["summary"]))  # fmt: skip
    means = np.asarray(run(jax.random.split(jax.random.key(context.seed), replicates)))
    z, p = mean_z_test(means, kalman_means)

    def draw(ax):
        steps = np.arange(kalman_means.size)
        ax.plot(steps, kalman_means, color="black", label="Kalman filter")
        ax.errorbar(steps, means.mean(0), yerr=2 * means.std(0, ddof=1) / np.sqrt(replicates),
                    fmt=".", label=f"particle filter, mean of {replicates} runs ± 2 se")  # fmt: skip
        ax.set_xlabel("t")
        ax.set_ylabel("E[x_t | y_0:t]")
        ax.legend(fontsize="small")

    return Outcome.from_p_value(
        float(np.max(np.abs(z))),
        holm_combined_p_value(p),
        reference="|z| ~ |N(0, 1)|",
        description=f"max |z| of filtering means over {kalman_means.size} steps",
        details={"max_abs_error": float(np.max(np.abs(means.mean(0) - kalman_means)))},
        figure=draw,
    )


def _fixed_random_walk(scale: float) -> Callable:
    # A move whose scale does not adapt to the particles: E[Ẑ] = Z holds exactly for it, while
    # adaptation from the particle cloud adds an O(1/n) bias (Beskos et al. 2016).
    def builder(target):
        return lambda state, t: random_walk(target(state, t), scale)

    return builder


@register(capability="smc", kind="statistical")
def tempered_smc_evidence_is_unbiased(context: CheckContext) -> Outcome:
    """E[Ẑ] = Z for tempered SMC on a normal–normal model (fixed schedule and move), n = 64."""
    model = NormalNormal()
    y = jnp.asarray(model.observations)

    def log_prior(x):
        return dist.Normal(model.prior_mean, model.prior_scale).log_prob(x)

    def log_likelihood(x):
        return dist.Normal(x, model.noise_scale).log_prob(y).sum()

    replicates = context.pick(quick=1_000, full=10_000)
    schedule = np.geomspace(1e-3, 1.0, 12)

    @jax.jit
    def run(keys):
        def one(key):
            key_init, key_run = jax.random.split(key)
            particles = model.prior_mean + model.prior_scale * jax.random.normal(key_init, (64,))
            return tempered_smc(key_run, log_prior, log_likelihood, particles, schedule=schedule,
                                move=_fixed_random_walk(0.3), num_mcmc_steps=2).log_evidence  # fmt: skip

        return jax.vmap(one)(keys)

    log_evidence = np.asarray(run(jax.random.split(jax.random.key(context.seed), replicates)))
    return _ratio_outcome(log_evidence, model.log_evidence(), "64-particle tempered SMC")


@register(capability="smc", kind="statistical")
def data_annealed_smc_evidence_is_unbiased(context: CheckContext) -> Outcome:
    """E[Ẑ] = Z for data-annealed SMC on a Beta–Bernoulli model (logit scale), n = 64."""
    model = BetaBernoulli()
    y = jnp.asarray(model.observations, dtype=float)

    def log_prior(logit):
        # Beta(a, b) for θ = sigmoid(logit), with the Jacobian dθ/dlogit = θ(1 - θ).
        return (model.a * jax.nn.log_sigmoid(logit) + model.b * jax.nn.log_sigmoid(-logit)
                - special.betaln(model.a, model.b))  # fmt: skip

    def log_likelihood(logit, t):
        return y[t] * jax.nn.log_sigmoid(logit) + (1 - y[t]) * jax.nn.log_sigmoid(-logit)

    replicates = context.pick(quick=1_000, full=10_000)

    @jax.jit
    def run(keys):
        def one(key):
            key_init, key_run = jax.random.split(key)
            theta = jax.random.beta(key_init, model.a, model.b, (64,))
            particles = jnp.log(theta) - jnp.log1p(-theta)
            return data_annealed_smc(key_run, log_prior, log_likelihood, y.size, particles,
                                     move=_fixed_random_walk(0.8), num_mcmc_steps=2).log_evidence  # fmt: skip

        return jax.vmap(one)(keys)

    log_evidence = np.asarray(run(jax.random.split(jax.random.key(context.seed), replicates)))
    return _ratio_outcome(log_evidence, model.log_evidence(), "64-particle data-annealed SMC")


def hierarchical_model(y=None):
    """A small hierarchical NumPyro model: μ ~ N(0, 1), τ ~ HalfNormal(1), θ_j ~ N(μ, τ), y_j ~ N(θ_j, 1)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("groups", 3):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)


@register(capability="smc", kind="statistical")
def smc_posterior_is_calibrated_on_a_hierarchical_model(context: CheckContext) -> Outcome:
    """SBC: ranks of μ, τ and θ₀ among SMC posterior draws of a hierarchical NumPyro model are uniform.

    Each simulation draws (μ, τ, θ, y) from the model, runs L = 15 independent adaptive SMC
    runs (128 particles) on y and keeps one properly weighted draw of each (``collapse``); the
    rank of the truth among them is uniform on {0..15} when the posterior is right (Talts et al.
    2018). χ² per parameter, combined by Holm.
    """
    num_simulations = context.pick(quick=128, full=1_000)
    num_draws, num_particles = 15, 128

    def simulate(key):
        key_truth, key_runs = jax.random.split(key)
        trace = handlers.trace(handlers.seed(hierarchical_model, key_truth)).get_trace()
        truth = jnp.stack([trace["mu"]["value"], trace["tau"]["value"], trace["theta"]["value"][0]])
        densities = model_densities(hierarchical_model, (trace["y"]["value"],))

        def posterior_draw(k):
            key_prior, key_smc, key_draw = jax.random.split(k, 3)
            particles = densities.sample_prior(key_prior, num_particles)
            result = tempered_smc(key_smc, densities.log_prior, densities.log_likelihood,
                                  particles, max_steps=100)  # fmt: skip
            value = densities.constrain(collapse(key_draw, result.population).particle)
            return jnp.stack([value["mu"], value["tau"], value["theta"][0]]), result.completed

        draws, completed = jax.vmap(posterior_draw)(jax.random.split(key_runs, num_draws))
        return jnp.sum(draws < truth, axis=0), jnp.all(completed)

    ranks, completed = jax.jit(jax.vmap(simulate))(
        jax.random.split(jax.random.key(context.seed), num_simulations)
    )
    p_value, counts = rank_uniformity_p_value(np.asarray(ranks), num_draws)

    def draw(ax):
        for j, name in enumerate(("μ", "τ", "θ₀")):
            ax.step(np.arange(num_draws + 1), counts[:, j], where="mid", label=name)
        ax.axhline(num_simulations / (num_draws + 1), color="black", linestyle="--")
        ax.set_xlabel("rank of the truth among 15 posterior draws")
        ax.set_ylabel("simulations")
        ax.set_title("Simulation-based calibration (dashed: uniform)")
        ax.legend(fontsize="small")

    return Outcome.from_p_value(
        float(np.max(np.abs(counts - num_simulations / (num_draws + 1)))),
        p_value,
        reference="uniform ranks",
        description=f"max |count - R/16| over 16 rank bins, R = {num_simulations}",
        details={"rank_counts": counts.T.tolist(), "all_runs_completed": bool(np.all(completed))},
        figure=draw,
    )


@register(capability="smc", kind="statistical")
def pmmh_targets_the_exact_posterior(context: CheckContext) -> Outcome:
    """PMMH with a 100-particle filter targets the exact posterior of an AR coefficient.

    The reference posterior of ``a`` in the linear-Gaussian model (flat prior on (-1, 1)) comes
    from the Kalman evidence on a grid of 4 001 points. z-tests of E[a] and E[a²] from 8 chains,
    with standard errors from batch means (40 batches per chain), combined by Holm.
    """
    observations = jnp.asarray(_LGSSM.simulate(_LGSSM_STEPS, seed=context.seed + 1))
    grid = np.linspace(-0.9995, 0.9995, 4_001)
    log_posterior = np.array([
        dataclasses.replace(_LGSSM, a=a).kalman(np.asarray(observations))[0] for a in grid
    ])  # fmt: skip
    weights = np.exp(log_posterior - log_posterior.max())
    weights /= weights.sum()
    exact = np.array([weights @ grid, weights @ grid**2])

    def log_prior(a):
        return jnp.where(jnp.abs(a) < 1.0, 0.0, -jnp.inf)

    def log_evidence(key, a):
        model = dataclasses.replace(_LGSSM, a=a).state_space_model()
        return particle_filter(key, model, observations, 100).log_evidence

    kernel = pmmh(log_prior, log_evidence, 0.6)
    num_steps = context.pick(quick=3_000, full=20_000)
    burn_in = num_steps // 10

    @jax.jit
    def chain(key):
        state = kernel.init(jax.random.fold_in(key, 1), jnp.asarray(0.0))

        def body(current, step_key):
            current, info = kernel.step(step_key, current)
            return current, (current.position, info.is_accepted)

        return jax.lax.scan(body, state, jax.random.split(key, num_steps))[1]

    positions, accepted = jax.vmap(chain)(jax.random.split(jax.random.key(context.seed), 8))
    kept = np.asarray(positions)[:, burn_in:]
    batches = kept[:, : (kept.shape[1] // 40) * 40].reshape(8 * 40, -1)
    batch_means = np.stack([batches.mean(axis=1), (batches**2).mean(axis=1)], axis=1)
    z, p = mean_z_test(batch_means, exact)
    return Outcome.from_p_value(
        float(np.max(np.abs(z))),
        holm_combined_p_value(p),
        reference="|z| ~ |N(0, 1)|",
        description="max |z| of E[a], E[a²] (batch means) against the Kalman-grid posterior",
        details={"exact_moments": exact.tolist(), "chain_moments": batch_means.mean(0).tolist(),
                 "acceptance_rate": float(np.asarray(accepted).mean())},
    )  # fmt: skip
