"""Checks of the Slepian IIA, Rice's formula and excursion simulation against theory.

Exact checks compare the IIA with published persistence exponents, with the classical IIA
computed independently (from the clipped correlation ``(2/π) arcsin r``, no derivatives), with
closed forms (Rice's mean, the telegraph process, the small-t slope) and with its own
tail asymptotics. Statistical checks draw from the geometric-sum sampler. All run in float64.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, optimize, stats

from probkit.exceedance import (
    ExcursionSimulation,
    SlepianIIA,
    StationaryCovariance,
    cauchy,
    crossing_intensity,
    damped_cosine,
    gaussian,
    matern,
    persistence_extrapolated,
    random_acceleration,
    rice_bound_pdf,
    sech_diffusion,
    simulate_excursions,
    solve_renewal,
)
from probkit.theory.calibration import holm_combined_p_value, mean_z_test
from probkit.theory.check import CheckContext, Outcome, register

__all__ = [
    "DIFFUSION_THETA",
    "EXACT_DIFFUSION_THETA",
    "classical_iia_theta",
    "diffusion_simulation",
    "two_scale_mixture",
]

DIFFUSION_THETA = {1: 0.1203, 2: 0.1862, 3: 0.2358}
"""θ of the classical IIA for d-dimensional diffusion, to the four digits of Majumdar, Sire,
Bray and Cornell, PRL 77, 2867 (1996)."""

RANDOM_ACCELERATION_THETA = 0.2647
"""θ_IIA of random acceleration, computed independently for this project by trapezoid quadrature
on [0, 400] (research note, section 3); the exact exponent is 1/4 (Sinai 1992)."""


def two_scale_mixture() -> StationaryCovariance:
    """``r = ½ e^{-t²/2} + ½ e^{-t²/200}``: monotone, yet ``Q < 0`` on about ``t ∈ [3.9, 9.5]``."""
    return StationaryCovariance(
        lambda t: 0.5 * jnp.exp(-0.5 * t**2) + 0.5 * jnp.exp(-0.005 * t**2), name="two_scale"
    )


def classical_iia_theta(covariance: StationaryCovariance) -> float:
    """θ of the classical IIA, solved independently of :class:`SlepianIIA`.

    McFadden's clipped-process matching (MSBC 1996, eq. 8): ``θ`` solves
    ``(θ⟨T⟩/2)[1 + θ ∫₀^∞ e^{θt} A(t) dt] = 1`` with ``A = (2/π) arcsin r`` and
    ``⟨T⟩ = π/√λ₂``. Uses only ``r`` (no derivatives, no ``1 - r²``) and scipy's adaptive
    quadrature and Brent root finder.
    """
    mean = math.pi / math.sqrt(float(covariance.lam2))

    def clipped(t):
        return 2 / math.pi * math.asin(min(1.0, float(covariance(t))))

    # A decays like r; integrate until e^{θt}A(t) is negligible (r ~ e^{-κt} with κ > θ).
    horizon = 60 * mean

    def equation(theta):
        integral, _ = integrate.quad(
            lambda t: math.exp(theta * t) * clipped(t), 0, horizon, limit=2000, epsabs=1e-13
        )
        return theta * mean / 2 * (1 + theta * integral) - 1

    upper = 1.0 / mean
    while equation(upper) < 0:
        upper *= 1.5
    return optimize.brentq(equation, 1e-6, upper, xtol=1e-13)


@register(capability="exceedance", kind="exact")
def diffusion_theta_matches_msbc(context: CheckContext) -> Outcome:
    """θ_IIA of d-dimensional diffusion reproduces Majumdar–Sire–Bray–Cornell to 5e-5."""
    rows, worst = {}, 0.0
    for d, published in DIFFUSION_THETA.items():
        theta = float(SlepianIIA(sech_diffusion(d)).theta())
        rows[f"d={d}"] = {"theta": theta, "published": published}
        worst = max(worst, abs(theta - published))
    theta = float(SlepianIIA(random_acceleration()).theta())
    rows["random_acceleration"] = {"theta": theta, "reference": RANDOM_ACCELERATION_THETA}
    worst = max(worst, abs(theta - RANDOM_ACCELERATION_THETA))
    return Outcome.at_most(
        worst,
        tolerance=5e-5,
        description="max |θ_IIA - published| (4 published digits)",
        details=rows,
    )


@register(capability="exceedance", kind="exact")
def slepian_and_classical_iia_agree(context: CheckContext) -> Outcome:
    """At level 0 the Slepian IIA and the classical (clipped-correlation) IIA give the same θ."""
    covariances = context.pick(
        quick=[sech_diffusion(2), gaussian()],
        full=[sech_diffusion(1), sech_diffusion(2), gaussian(), matern(2.5), random_acceleration()],
    )
    rows, worst = {}, 0.0
    for cov in covariances:
        slepian = float(SlepianIIA(cov).theta())
        classical = classical_iia_theta(cov)
        rows[cov.name] = {"slepian": slepian, "classical": classical}
        worst = max(worst, abs(slepian - classical) / classical)
    # The grid's O(h²) error at 256 points per mean is about 1e-5 relative.
    return Outcome.at_most(
        worst, tolerance=1e-4, description="max |θ_Slepian/θ_classical - 1|", details=rows
    )


@register(capability="exceedance", kind="exact")
def iia_mean_equals_rice_mean(context: CheckContext) -> Outcome:
    """The IIA mean, ∫S_T from the solver and 2∫E₀, equals Rice's π/√λ₂, monotone or not."""
    covariances = context.pick(
        quick=[sech_diffusion(2), damped_cosine(1.0)],
        full=[sech_diffusion(2), damped_cosine(1.0), matern(2.5), random_acceleration()],
    )
    rows, worst = {}, 0.0
    for cov in covariances:
        iia = SlepianIIA(cov)
        t = np.asarray(iia.grid)
        rice = math.pi / math.sqrt(float(cov.lam2))
        solver = integrate.trapezoid(np.asarray(iia.sf(t)), t)
        divisor = 2 * integrate.trapezoid(np.asarray(iia.divisor_sf(t)), t)
        persistence_at_zero = float(iia.persistence(0.0))
        errors = [solver / rice - 1, divisor / rice - 1, 2 * persistence_at_zero - 1]
        rows[cov.name] = {
            "rice": rice,
            "solver": solver,
            "2∫E0": divisor,
            "2P(0)": 2 * persistence_at_zero,
        }
        worst = max(worst, *map(abs, errors))
    return Outcome.at_most(
        worst,
        tolerance=1e-4,
        description="max relative error of the IIA mean (and 2·persistence(0) vs 1)",
        details=rows,
    )


@register(capability="exceedance", kind="exact")
def telegraph_case_is_exact(context: CheckContext) -> Outcome:
    """An exponential divisor D ~ Exp(2λ) gives T ~ Exp(λ) exactly through the renewal solver."""
    rate, span = 0.7, 40.0
    errors = []
    for n in (4096, 8192):
        step = span / n
        t = step * np.arange(n)
        # Tilted by e^{(λ - 10/span)t}, as SlepianIIA does, to keep the tail's relative precision.
        sf, pdf = solve_renewal(
            jnp.exp(-2 * rate * t),
            2 * rate * jnp.exp(-2 * rate * t),
            jnp.asarray(step),
            rate - 10 / span,
        )
        sf_error = np.max(np.abs(np.asarray(sf) / np.exp(-rate * t) - 1))
        pdf_error = np.max(np.abs(np.asarray(pdf) / (rate * np.exp(-rate * t)) - 1))
        errors.append(max(sf_error, pdf_error))
    # The trapezoid rule is second order: halving the step divides the error by 4, so the
    # observed order log2(e_h / e_{h/2}) must be 2; the error itself is O((λh)² λt), ~3e-5 at
    # the finer step.
    order = math.log2(errors[0] / errors[1])
    return Outcome.within(
        order,
        reference=2.0,
        tolerance=0.1 if errors[1] < 2e-4 else -1.0,
        description="convergence order of S_T, f_T to Exp(λ) (error < 2e-4 required)",
        details={"errors": [float(e) for e in errors]},
    )


@register(capability="exceedance", kind="exact")
def small_t_slope_equals_rice_limit(context: CheckContext) -> Outcome:
    """f_T(t)/t → (λ₄ - λ₂²)/(8λ₂) as t → 0, the slope of the exact density."""
    rows, worst = {}, 0.0
    # Analytic correlations only: Matérn 5/2 has a |t|⁵ term, so its slope converges at O(t).
    for cov in [sech_diffusion(2), gaussian()]:
        iia = SlepianIIA(cov)
        lam2, lam4 = float(cov.lam2), float(cov.lam4)
        t = 0.01 / math.sqrt(lam2)
        slope = float(iia.pdf(t)) / t
        limit = (lam4 - lam2**2) / (8 * lam2)
        rows[cov.name] = {"slope": slope, "limit": limit}
        worst = max(worst, abs(slope / limit - 1))
    # At t√λ₂ = 0.01 the next Taylor term is ~1e-4 relative.
    return Outcome.at_most(worst, tolerance=1e-3, description="max |slope/limit - 1|", details=rows)


@register(capability="exceedance", kind="exact")
def tail_constant_matches_solver(context: CheckContext) -> Outcome:
    """P(T > t) ~ C e^{-θt} with C = 2/(θ E[D e^{θD}]) (Cramér–Lundberg) matches the solver."""
    rows, worst = {}, 0.0
    for cov in [sech_diffusion(2), random_acceleration(), gaussian()]:
        iia = SlepianIIA(cov)
        t = 30 * float(iia.mean())
        asymptotic = float(iia.tail_constant() * jnp.exp(-iia.theta() * t))
        solver = float(iia.sf(t))
        rows[cov.name] = {"t": t, "C e^{-θt}": asymptotic, "S_T(t)": solver}
        worst = max(worst, abs(asymptotic / solver - 1))
    return Outcome.at_most(
        worst,
        tolerance=1e-3,
        description="max |C e^{-θt} / S_T(t) - 1| at t = 30 means",
        details=rows,
    )


@register(capability="exceedance", kind="exact")
def theta_gradient_is_implicit_derivative(context: CheckContext) -> Outcome:
    """dθ/dd by the implicit-function theorem equals a central finite difference."""

    def theta(d):
        return SlepianIIA(sech_diffusion(d)).theta()

    d, eps = 2.0, 1e-4
    gradient = float(jax.grad(theta)(d))
    finite = float((theta(d + eps) - theta(d - eps)) / (2 * eps))
    return Outcome.at_most(
        abs(gradient / finite - 1),
        tolerance=1e-6,
        description="|implicit gradient / finite difference - 1|",
        details={"gradient": gradient, "finite_difference": finite},
    )


@register(capability="exceedance", kind="exact")
def validity_and_tail_reports(context: CheckContext) -> Outcome:
    """Validity and tail reports classify known covariances correctly.

    Damped cosines with ω >= 2 are invalid, the two-scale mixture only numerically valid, the
    Gaussian proven, and the Cauchy correlation gets a power tail t^{-3}, not a θ.
    """
    failures = []
    reports = {}
    for omega, negative_mass in [(2.0, 0.0038), (4.0, 0.046)]:
        report = SlepianIIA(damped_cosine(omega)).validity()
        reports[f"damped_cosine({omega})"] = (report.status, report.negative_mass)
        # Negative masses from an independent grid solver (research note, section 3).
        if report.status != "invalid" or abs(report.negative_mass / negative_mass - 1) > 0.1:
            failures.append(f"damped_cosine({omega})")
    mixture = SlepianIIA(two_scale_mixture()).validity()
    reports["two_scale"] = (mixture.status, mixture.min_q)
    if mixture.status != "numerically_valid":
        failures.append("two_scale")
    if SlepianIIA(gaussian()).validity().status != "proven":
        failures.append("gaussian")
    tail = SlepianIIA(cauchy()).tail()
    reports["cauchy"] = (tail.kind, tail.exponent, tail.constant)
    # r = 1/(1+t²): S_T ~ 2E₀ ~ 2|r'|/√λ₂ ~ 2√2 t^{-3}.
    if (
        tail.kind != "power_law"
        or abs(tail.exponent - 3) > 0.05
        or abs(tail.constant / (2 * math.sqrt(2)) - 1) > 0.05
        or float(SlepianIIA(cauchy()).theta()) != 0.0
    ):
        failures.append("cauchy")
    return Outcome.at_most(
        len(failures),
        tolerance=0,
        description="covariances classified wrongly",
        details={"failures": failures, **{k: list(map(str, v)) for k, v in reports.items()}},
    )


@register(capability="exceedance", kind="statistical")
def cramer_condition_by_monte_carlo(context: CheckContext) -> Outcome:
    """E[e^{θD}] = 2 by Monte Carlo from the divisor sampler (θ from the quadrature root)."""
    iia = SlepianIIA(sech_diffusion(2))
    size = context.pick(quick=40_000, full=400_000)
    draws = iia.sample_divisor(jax.random.key(context.seed), (size,))
    # 2θ < κ = 1/2 for d = 2, so e^{θD} has a finite variance and the z-test applies.
    values = np.exp(float(iia.theta()) * np.asarray(draws))
    z, p = mean_z_test(values[:, None], np.array([2.0]))
    return Outcome.from_p_value(
        float(z[0]),
        float(p[0]),
        reference=0.0,
        description="z of mean e^{θD} - 2",
        details={"mean": float(values.mean()), "draws": size},
    )


def _cdf_of(iia: SlepianIIA):
    return lambda t: np.asarray(iia.cdf(jnp.asarray(t)))


@register(capability="exceedance", kind="statistical")
def geometric_sum_sampler_matches_solver(context: CheckContext) -> Outcome:
    """T = D₁ + ... + D_N (N ~ Geometric(½)) has the renewal solver's distribution (KS)."""
    p_values, rows = [], {}
    size = context.pick(quick=20_000, full=200_000)
    key = jax.random.key(context.seed)
    for i, cov in enumerate([sech_diffusion(2), random_acceleration()]):
        iia = SlepianIIA(cov)
        draws = np.asarray(iia.sample(jax.random.fold_in(key, i), (size,)))
        result = stats.kstest(draws, _cdf_of(iia))
        p_values.append(result.pvalue)
        rows[cov.name] = {"ks": float(result.statistic), "p": float(result.pvalue)}
    return Outcome.from_p_value(
        max(r["ks"] for r in rows.values()),
        holm_combined_p_value(np.array(p_values)),
        reference="KS distance 0",
        description="KS distance, sampler vs solver cdf (Holm over covariances)",
        details=rows,
    )


# --- simulation -------------------------------------------------------------------------------

EXACT_DIFFUSION_THETA = 3 / 16
"""The exact persistence exponent of 2-d diffusion (Poplavskyi & Schehr, PRL 121, 150601, 2018)."""


@functools.cache
def diffusion_simulation(seed: int, size: str) -> ExcursionSimulation:
    """One simulation of the d = 2 diffusion correlator shared by the simulation checks.

    ``dt·√λ₂ = 0.05`` and a window of 65 mean lengths; the full size gives about 8e5 complete
    excursions, as in the research note's reference run.
    """
    n_paths = 1024 if size == "quick" else 12288
    return simulate_excursions(
        sech_diffusion(2),
        jax.random.key(seed),
        n_paths=n_paths,
        n_steps=4096,
        dt=0.1,
        persistence_times=np.array([10.0, 20.0]),
    )


@register(capability="exceedance", kind="exact")
def simulated_crossing_intensity_matches_rice(context: CheckContext) -> Outcome:
    """The simulated zero-crossing intensity equals Rice's √λ₂/π within its error."""
    simulation = diffusion_simulation(context.seed, context.size)
    rice = float(crossing_intensity(sech_diffusion(2), 0.0, "both"))
    # Tolerance: 4 standard errors (false alarm 6e-5) plus the discretisation bias of pairs of
    # crossings inside one step, below 0.1% at dt·√λ₂ = 0.05 (research note, section 4e).
    tolerance = 4 * simulation.crossing_intensity_se / rice + 1e-3
    return Outcome.at_most(
        abs(simulation.crossing_intensity / rice - 1),
        tolerance=tolerance,
        description="|ν̂/ν_Rice - 1| (tolerance 4 SE + 0.1% grid bias)",
        details={
            "simulated": simulation.crossing_intensity,
            "standard_error": simulation.crossing_intensity_se,
            "rice": rice,
        },
    )


@register(capability="exceedance", kind="exact")
def simulated_survival_agrees_with_iia(context: CheckContext) -> Outcome:
    """For 2-d diffusion the IIA survival function matches simulation to about 0.003."""
    simulation = diffusion_simulation(context.seed, context.size)
    iia = SlepianIIA(sech_diffusion(2))
    times = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 30.0])
    simulated, standard_error = simulation.sf(times)
    approximation = np.asarray(iia.sf(jnp.asarray(times)))
    # The IIA is an approximation: the research note measured |S_sim - S_IIA| <= 0.0024 at
    # these times. Allow 0.003 plus 4 standard errors of the simulation.
    excess = np.abs(simulated - approximation) - 4 * standard_error
    return Outcome.at_most(
        float(np.max(excess)),
        tolerance=3e-3,
        description="max |S_sim - S_IIA| - 4 SE over t = 1..30",
        details={
            "times": times.tolist(),
            "simulated": np.asarray(simulated).tolist(),
            "standard_error": np.asarray(standard_error).tolist(),
            "iia": approximation.tolist(),
        },
    )


@register(capability="exceedance", kind="statistical")
def simulated_theta_matches_exact_diffusion_exponent(context: CheckContext) -> Outcome:
    """The tail fit of simulated 2-d diffusion excursions is consistent with θ = 3/16."""
    simulation = diffusion_simulation(context.seed, context.size)
    window = context.pick(quick=(12.0, 40.0), full=(15.0, 50.0))
    fit = simulation.fit_theta(window, n_bootstrap=200, key=jax.random.key(context.seed + 1))
    # A two-sided z-test with the bootstrap standard error; the θ_IIA = 0.1862 approximation is
    # 0.0013 from the exact value, far inside the quick size's error.
    z = (fit.theta - EXACT_DIFFUSION_THETA) / fit.standard_error
    return Outcome.from_p_value(
        z,
        float(2 * stats.norm.sf(abs(z))),
        reference=0.0,
        description="z of θ̂ - 3/16",
        details={
            "theta": fit.theta,
            "interval": [fit.lower, fit.upper],
            "standard_error": fit.standard_error,
            "n_in_window": int(fit.n_in_window),
            "theta_iia": float(SlepianIIA(sech_diffusion(2)).theta()),
        },
    )


@register(capability="exceedance", kind="exact")
def persistence_matches_orthant_probability(context: CheckContext) -> Outcome:
    """Persistence of 2-d diffusion: orthant probability = simulation, and IIA within 2%.

    Genz orthant probabilities on grids, extrapolated to a continuous grid, are the exact value.
    """
    covariance = sech_diffusion(2)
    horizon = 10.0
    exact = persistence_extrapolated(covariance, horizon)
    simulation = diffusion_simulation(context.seed, context.size)
    simulated = float(simulation.persistence[0])
    simulated_se = float(simulation.persistence_se[0])
    iia = float(SlepianIIA(covariance).persistence(horizon))
    # Simulation: 4 standard errors (both) plus its own grid bias at dt = 0.1, below 1e-4
    # (the orthant values at steps 0.25 and 0.125 differ from the limit by 3e-4 and 7e-5).
    simulation_gap = abs(simulated - exact.value) - 4 * math.hypot(simulated_se, exact.error)
    # The IIA is an approximation; the research note measured it 1% above the exact value.
    iia_gap = abs(iia / exact.value - 1) - 0.02
    return Outcome.at_most(
        max(simulation_gap / 1e-4, iia_gap / 0.02 + 1.0) - 1.0,
        tolerance=0.0,
        description="max(excess of |sim - exact| over 4 SE + 1e-4, of |IIA/exact - 1| over 2%)",
        details={
            "orthant_extrapolated": exact.value,
            "orthant_error": exact.error,
            "simulated": simulated,
            "simulated_se": simulated_se,
            "iia": iia,
        },
    )


@register(capability="exceedance", kind="exact")
def rice_bound_dominates_density(context: CheckContext) -> Outcome:
    """The Rice first-order bound lies above the simulated density and meets the IIA at t → 0."""
    covariance = sech_diffusion(2)
    simulation = diffusion_simulation(context.seed, context.size)
    density = simulation.pdf()
    centres = 0.5 * (density.bin_edges[1:] + density.bin_edges[:-1])
    keep = (centres > 0.5) & (centres < 15.0)
    bound = np.asarray(rice_bound_pdf(covariance, jnp.asarray(centres[keep])))
    # The histogram averages the density over a bin: allow 4 SE plus the bin-averaging error.
    excess = density.density[keep] - bound - 4 * density.standard_error[keep]
    small_t = 0.01 / math.sqrt(float(covariance.lam2))
    ratio = float(rice_bound_pdf(covariance, small_t) / SlepianIIA(covariance).pdf(small_t))
    return Outcome.at_most(
        max(float(np.max(excess)) / 1e-3, abs(ratio - 1) / 1e-3),
        tolerance=1.0,
        description="max(excess of f_sim over f₁ + 4 SE in units of 1e-3, |f₁/f_IIA - 1| at small t in 1e-3)",
        details={"max_excess": float(np.max(excess)), "small_t_ratio": ratio},
    )
