"""Checks of the population transformations: resampling, collapse, spawn and push_evidence.

Each claim is the validity criterion of Ścibior et al. (POPL 2018) for one transformation (the
expected measure after equals the measure before, evidence included), tested exactly by
enumeration where the randomness is finite-dimensional, and by Monte Carlo through the keyed,
jitted functions users call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from probkit.inference.population import Population, push_evidence, resample, spawn
from probkit.inference.resampling import RESAMPLERS, Resampler
from probkit.theory.calibration import holm_combined_p_value, mean_z_test
from probkit.theory.check import CheckContext, Outcome, register
from probkit.theory.exact import (
    collapse_enumeration,
    compare_measures,
    offspring_count_moments,
    resampling_enumeration,
)
from probkit.theory.runner import DEFAULT_ALPHA

__all__ = [
    "collapse_is_properly_weighted",
    "exact_measure_error",
    "multinomial_and_residual_variances_match_closed_forms",
    "offspring_counts_are_unbiased",
    "resampling_cases",
    "resampling_preserves_measure_exactly",
    "resampling_variance_ordering",
    "spawn_and_push_evidence_preserve_measure",
]

EXACT_TOLERANCE = 1e-12
"""Allowed ``max_i |μ'_i - μ_i| / Z`` for exact checks in float64 (rounding is about 1e-16)."""


def resampling_cases(context: CheckContext) -> list[np.ndarray]:
    """Log weight vectors the exact checks enumerate: fixed edge cases and some drawn from the seed.

    The fixed cases cover a zero weight, total mass far from 1, equal weights and a dynamic
    range of 300 orders of magnitude. The quick size keeps three of the five cases.
    """
    rng = np.random.default_rng(context.seed)
    with np.errstate(divide="ignore"):
        zero_weight = np.log([0.3, 0.0, 1.2, 0.7, 1.5])
    drawn = [np.log(rng.gamma(0.5, size=4)) + 3.0, np.log(rng.gamma(2.0, size=5)) - 2.0]
    extreme = np.array([-700.0, 0.0, -1e-3, -30.0])
    quick = [zero_weight, extreme, drawn[0]]
    return context.pick(quick=quick, full=[*quick, np.log([2.0, 2.0, 2.0]), drawn[1]])


def _sample_sizes(num_particles: int, method: str, context: CheckContext) -> list[int]:
    """Output sizes m to resample to: fewer, more and as many particles as came in."""
    sizes = context.pick(
        quick={3, num_particles}, full={1, num_particles - 1, num_particles, num_particles + 2}
    )
    # Multinomial enumerates n**m boxes; keep it within a few thousand.
    return sorted(m for m in sizes if m >= 1 and (method != "multinomial" or m <= 5))


def exact_measure_error(
    method: str | Resampler, cases: Sequence[np.ndarray], context: CheckContext
) -> tuple[float, list[dict]]:
    """The largest ``max_i |μ'_i - μ_i| / Z`` of resampling over ``cases`` and sample sizes.

    Also confirms that no zero-weight particle is ever selected (an error of 1 if one is).
    Must run with float64 enabled.
    """
    worst, rows = 0.0, []
    name = method if isinstance(method, str) else method.name
    for case in cases:
        for num_samples in _sample_sizes(len(case), name, context):
            enumeration = resampling_enumeration(case, method, num_samples)
            error = compare_measures(case, enumeration).max_relative_error
            zero_selected = bool(
                np.isin(enumeration.support_labels(), np.flatnonzero(np.isneginf(case))).any()
            )
            error = max(error, float(zero_selected))
            worst = max(worst, error)
            rows.append(
                {
                    "method": name,
                    "n": len(case),
                    "m": num_samples,
                    "error": error,
                    "boxes": enumeration.num_pieces,
                }
            )
    return worst, rows


def _measure_figure(case: np.ndarray, methods: Sequence[str]) -> Callable:
    def draw(ax):
        before = np.exp(case)
        width = 0.8 / (len(methods) + 1)
        labels = np.arange(len(case))
        ax.bar(labels, before, width, label="before (w_i)", color="black")
        for k, method in enumerate(methods):
            after = compare_measures(case, resampling_enumeration(case, method)).after
            ax.bar(labels + (k + 1) * width, after, width, label=f"{method}, E[after]")
        ax.set_xlabel("particle")
        ax.set_ylabel("mass")
        ax.set_title("Represented measure before and after resampling (exact)")
        ax.legend(fontsize="small")

    return draw


@register(capability="population", kind="exact")
def resampling_preserves_measure_exactly(context: CheckContext) -> Outcome:
    """Every resampler keeps the represented measure, evidence included, exactly in expectation."""
    cases = resampling_cases(context)
    errors, rows = {}, []
    for method in RESAMPLERS:
        errors[method], method_rows = exact_measure_error(method, cases, context)
        rows += method_rows
    return Outcome.at_most(
        max(errors.values()),
        tolerance=EXACT_TOLERANCE,
        description="max |E[μ'] - μ| / Z over methods, weights, sizes",
        details={"error_by_method": errors, "cases": rows},
        figure=_measure_figure(cases[0], list(RESAMPLERS)),
    )


@register(capability="population", kind="exact")
def collapse_is_properly_weighted(context: CheckContext) -> Outcome:
    """collapse is properly weighted: E[Z δ_{x_I}] equals Σ_i w_i δ_{x_i} exactly."""
    errors = []
    for case in resampling_cases(context):
        errors.append(compare_measures(case, collapse_enumeration(case)).max_relative_error)
    return Outcome.at_most(
        max(errors),
        tolerance=EXACT_TOLERANCE,
        description="max |E[Z δ_x_I] - μ| / Z over weight vectors",
        details={"errors": errors},
    )


@register(capability="population", kind="exact")
def spawn_and_push_evidence_preserve_measure(context: CheckContext) -> Outcome:
    """spawn has total mass 1, and push_evidence moves Z out without changing the measure."""
    errors = []
    for case in resampling_cases(context):
        n = len(case)
        spawned = spawn(n, jnp.arange(n))
        errors.append(abs(float(jnp.sum(jnp.exp(spawned.log_weights))) - 1.0))
        population = Population(jnp.arange(n), jnp.asarray(case))
        normalised, log_z = push_evidence(population)
        rebuilt = np.exp(np.asarray(normalised.log_weights) + float(log_z))
        before = np.exp(case)
        errors.append(float(np.max(np.abs(rebuilt - before)) / before.sum()))
    return Outcome.at_most(
        max(errors),
        tolerance=EXACT_TOLERANCE,
        description="max relative mass error of spawn and Z·push_evidence",
        details={"errors": errors},
    )


def _variance_case() -> np.ndarray:
    return np.log(np.array([0.3, 0.05, 1.2, 0.7, 1.5]))


def _summed_variances(case: np.ndarray) -> dict[str, float]:
    return {
        method: float(offspring_count_moments(resampling_enumeration(case, method))[1].sum())
        for method in RESAMPLERS
    }


@register(capability="population", kind="exact")
def resampling_variance_ordering(context: CheckContext) -> Outcome:
    """On a fixed example, Σ Var(N_i) orders systematic ≤ stratified ≤ multinomial and residual ≤ multinomial.

    Stratified ≤ multinomial and residual ≤ multinomial hold for every weight vector (Douc,
    Cappé and Moulines 2005); systematic ≤ stratified does not hold in general and is checked
    on this example only. The variances are exact (enumeration), so the ordering is too.
    """
    del context  # the example is fixed and the variances are exact
    variances = _summed_variances(_variance_case())
    pairs = [
        ("systematic", "stratified"),
        ("stratified", "multinomial"),
        ("residual", "multinomial"),
    ]
    violation = max(variances[low] - variances[high] for low, high in pairs)

    def draw(ax):
        ax.bar(list(variances), list(variances.values()), color="tab:blue")
        ax.set_ylabel("Σ_i Var(N_i) (exact)")
        ax.set_title("Offspring count variance by resampler")

    return Outcome.at_most(
        violation,
        tolerance=0.0,
        description="max Var(lower) - Var(higher) over the ordered pairs",
        details={"summed_variances": variances, "pairs": pairs},
        figure=draw,
    )


@register(capability="population", kind="exact")
def multinomial_and_residual_variances_match_closed_forms(context: CheckContext) -> Outcome:
    """Enumerated offspring variances equal the closed forms m p_i (1 - p_i) and R r_i (1 - r_i).

    For multinomial resampling of m samples N_i ~ Binomial(m, p_i) with p_i = w_i / Z. For
    residual resampling N_i = floor(m p_i) + Binomial(R, r_i), with R = m - Σ floor(m p_j) and
    r_i the normalised remainders. Agreement tests the oracle and the resamplers against each other.
    """
    errors = []
    for case in resampling_cases(context):
        p = np.exp(case - np.logaddexp.reduce(case))
        for m in _sample_sizes(len(case), "multinomial", context):
            _, variance = offspring_count_moments(resampling_enumeration(case, "multinomial", m))
            errors.append(float(np.max(np.abs(variance - m * p * (1 - p)))))
            _, variance = offspring_count_moments(resampling_enumeration(case, "residual", m))
            remainders = m * p - np.floor(m * p)
            remaining = remainders.sum()
            r = remainders / remaining if remaining > 0.5 else np.zeros_like(p)
            errors.append(float(np.max(np.abs(variance - round(remaining) * r * (1 - r)))))
    return Outcome.at_most(
        max(errors),
        tolerance=1e-10,
        description="max |Var(N_i) - closed form| over cases and sizes",
        details={"errors": errors},
    )


def offspring_count_replicates(
    key: jax.Array, log_weights: jax.Array, method: str, replicates: int
) -> np.ndarray:
    """Offspring counts of ``replicates`` independent calls of :func:`resample`, shape (R, n)."""
    num = log_weights.shape[0]
    population = Population(jnp.arange(num), log_weights)

    @jax.jit
    def counts(keys):
        def one(k):
            labels = resample(k, population, method).particles
            return jnp.zeros(num).at[labels].add(1.0)

        return jax.vmap(one)(keys)

    return np.asarray(counts(jax.random.split(key, replicates)))


@register(capability="population", kind="statistical")
def offspring_counts_are_unbiased(context: CheckContext) -> Outcome:
    """Offspring counts of the keyed, jitted resample have mean n w_i / Z for every resampler.

    Per (method, particle) two-sided z-tests with the Monte Carlo standard error of the mean
    count, combined by Holm's procedure into one p-value. Zero-weight particles must never be
    drawn: a single draw of one gives p = 0.
    """
    replicates = context.pick(quick=4_000, full=40_000)
    rng = np.random.default_rng(context.seed)
    weights = rng.gamma(0.7, size=40)
    weights[[3, 17]] = 0.0  # zero weights must never be drawn
    with np.errstate(divide="ignore"):
        log_weights = jnp.asarray(np.log(weights) + 2.0)
    expected = len(weights) * weights / weights.sum()
    key = jax.random.key(context.seed)
    z_scores, p_values, z_by_method = {}, [], {}
    for method, method_key in zip(RESAMPLERS, jax.random.split(key, len(RESAMPLERS)), strict=True):
        counts = offspring_count_replicates(method_key, log_weights, method, replicates)
        z, p = mean_z_test(counts, expected)
        # A zero-weight particle has count 0 with probability one: drawing it even once is an
        # exact rejection (p = 0), which the z-test alone (z = 1 for one draw) would not give.
        drawn_zero = (expected == 0) & (counts.max(axis=0) > 0)
        z, p = np.where(drawn_zero, np.inf, z), np.where(drawn_zero, 0.0, p)
        z_scores[method] = float(np.max(np.abs(z)))
        z_by_method[method] = np.where(np.isfinite(z), z, np.nan)
        p_values.append(p)
    p_value = holm_combined_p_value(np.concatenate(p_values))

    num_tests = int(sum(len(p) for p in p_values))
    bound = float(stats.norm.isf(DEFAULT_ALPHA / (2 * num_tests)))

    def draw(ax):
        for offset, (method, z) in enumerate(z_by_method.items()):
            ax.plot(np.arange(len(z)) + 0.15 * offset, z, "o", markersize=3, label=method)
        for sign in (-1, 1):
            ax.axhline(sign * bound, color="black", linestyle="--", linewidth=0.8)
        ax.set_xlabel("particle (zero-weight particles: z = 0 when never drawn)")
        ax.set_ylabel("z of the mean offspring count")
        ax.set_title(f"Offspring counts vs n w_i / Z, {replicates} runs (dashed: Bonferroni bound)")
        ax.legend(fontsize="small", ncols=4)

    return Outcome.from_p_value(
        max(z_scores.values()),
        p_value,
        reference="|z| ~ |N(0, 1)|",
        description=f"max |z| of mean counts, {replicates} replicates",
        details={"max_abs_z_by_method": z_scores, "replicates": replicates, "num_tests": num_tests},
        figure=draw,
    )
