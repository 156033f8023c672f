"""Checks of the von Mises toolkit and its Boltzmann fits against theory.

Closed forms (the Bessel ratio, entropy, KL, cdf) are compared with adaptive quadrature of the
density; the sampler with the exact cdf (KS) and with the exact trigonometric moments (z-tests,
since KS cannot see the difference between κ = 1e-8 and the uniform law); EM with scipy's
exact one-component fit and with its own monotonicity; butane's Boltzmann density with
independent quadrature and with the van 't Hoff relation. All run in float64 except the
sampler checks, which also run in float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import kl_divergence
from scipy import integrate, optimize, special, stats

from probkit.circular import (
    BUTANE_RYCKAERT_BELLEMANS,
    VonMises,
    boltzmann_grid,
    butane_energy,
    fit_to_energy,
    fit_vonmises_mixture,
    thermal_energy,
)
from probkit.special import bessel_ratio, bessel_ratio_complement, bessel_ratios
from probkit.theory.calibration import holm_combined_p_value, mean_z_test
from probkit.theory.check import CheckContext, Outcome, register

__all__ = ["BUTANE_300K", "SAMPLER_KAPPAS"]

BUTANE_300K = {
    "trans": 0.6504,
    "gauche_plus": 0.1748,
    "cos_1": -0.48437,
    "cos_2": 0.39247,
    "cos_3": -0.80144,
    "entropy": 0.77155,
}
"""Butane's Ryckaert–Bellemans Boltzmann density at 300 K: trans population (|φ| > 120°), one
gauche population, E cos pφ and the entropy in nats, computed independently for this project
on a 4096-point periodic grid (research note ``vonmises.md``, section 4), to the digits given."""

SAMPLER_KAPPAS = (0.0, 1e-8, 1e-4, 1e-2, 0.1, 1.0, 10.0, 21.0, 100.0, 1e3, 1e4, 1e6, 1e8)
"""The concentrations at which the sampler is tested (research note, section 5)."""

_QUADRATURE_KAPPAS = (0.01, 0.5, 1.0, 2.0, 10.0, 30.0, 300.0)


def _density(theta, kappa, loc=0.0):
    # exp(κ(cos - 1)) / (2π i0e(κ)): overflow-free at large κ, independent of probkit.
    return np.exp(kappa * (np.cos(theta - loc) - 1)) / (2 * np.pi * special.i0e(kappa))


def _quad(function, kappa, loc=0.0):
    # Split at the mode: for large κ the mass sits in a window of width ~ 1/√κ around it.
    points = [loc] if kappa > 1 else None
    value, _ = integrate.quad(
        function, -np.pi + loc, np.pi + loc, points=points, limit=500, epsabs=1e-14, epsrel=1e-13
    )
    return value


@register(capability="circular", kind="exact")
def closed_forms_match_quadrature(context: CheckContext) -> Outcome:
    """A(κ), the entropy, the vM-vM KL and the cdf agree with adaptive quadrature to 1e-9."""
    rows, worst = {}, 0.0
    with jax.enable_x64(True):
        for kappa in _QUADRATURE_KAPPAS:
            law = VonMises(0.0, kappa)
            ratio = _quad(lambda t, k=kappa: np.cos(t) * _density(t, k), kappa)
            entropy = _quad(lambda t, k=kappa: -_density(t, k) * np.log(_density(t, k)), kappa)
            other = (1.0, 0.5 * kappa + 1.0)
            kl = _quad(
                lambda t, k=kappa, o=other: (
                    _density(t, k) * (np.log(_density(t, k)) - np.log(_density(t, o[1], o[0])))
                ),
                kappa,
            )
            x = 0.3 / math.sqrt(1 + kappa)
            cdf = integrate.quad(lambda t, k=kappa: _density(t, k), -np.pi, x, epsabs=1e-14)[0]
            errors = {
                "A": float(bessel_ratio(kappa)) - ratio,
                "entropy": float(law.entropy()) - entropy,
                "kl": float(kl_divergence(law, VonMises(*other))) - kl,
                "cdf": float(law.cdf(x)) - cdf,
            }
            rows[f"kappa={kappa}"] = errors
            worst = max(worst, *map(abs, errors.values()))
    return Outcome.at_most(
        worst,
        tolerance=1e-9,
        description="max |closed form - quadrature| over A, H, KL, cdf",
        details=rows,
    )


@register(capability="circular", kind="exact")
def ppf_inverts_cdf(context: CheckContext) -> Outcome:
    """ppf(cdf(x)) = x across κ from 1e-8 to 1e8 in float64."""
    kappas = np.array([1e-8, 0.1, 1.0, 10.0, 21.0, 1e3, 1e6, 1e8])
    # x within three standard deviations (or the whole circle), one row per κ.
    scale = np.minimum(np.pi * 0.99, 3.0 / np.sqrt(kappas))[:, None]
    with jax.enable_x64(True):
        x = jnp.asarray(scale * np.linspace(-1, 1, 101))
        law = VonMises(0.0, jnp.asarray(kappas)[:, None])
        errors = np.max(np.abs(np.asarray(law.icdf(law.cdf(x))) - np.asarray(x)), axis=1)
    errors = errors / scale[:, 0]
    return Outcome.at_most(
        float(errors.max()),
        tolerance=1e-8,
        description="max |ppf(cdf(x)) - x| / (3/√κ)",
        details={f"kappa={k:g}": float(e) for k, e in zip(kappas, errors, strict=True)},
    )


def _sampler_draws(kappas, dtype, size, seed):
    with jax.enable_x64(dtype == "float64"):
        kappa = jnp.asarray(kappas, dtype)
        draws = VonMises(jnp.zeros_like(kappa), kappa).sample(jax.random.PRNGKey(seed), (size,))
        return np.asarray(draws, dtype=np.float64)


@register(capability="circular", kind="statistical")
def sampler_matches_cdf(context: CheckContext) -> Outcome:
    """KS tests of the sampler against the exact cdf, κ from 0 to 1e8, float32 and float64.

    One KS test per (κ, dtype) pair, combined by Holm's method: the family-wise false-alarm rate
    is the runner's alpha. float32 draws are compared with the exact law: a sampler that
    discretises (acos near 1) or truncates fails here.
    """
    size = context.pick(quick=20_000, full=200_000)
    p_values, rows = [], {}
    for offset, dtype in enumerate(("float32", "float64")):
        draws = _sampler_draws(SAMPLER_KAPPAS, dtype, size, context.seed + offset)
        for column, kappa in enumerate(SAMPLER_KAPPAS):
            x = draws[:, column]
            # Standardise large κ so scipy's cdf is evaluated where it is accurate.
            result = (
                stats.kstest(x, stats.vonmises(kappa).cdf)
                if kappa > 0
                else (stats.kstest(x, stats.uniform(-np.pi, 2 * np.pi).cdf))
            )
            p_values.append(result.pvalue)
            rows[f"{dtype} kappa={kappa:g}"] = {
                "D": float(result.statistic),
                "p": float(result.pvalue),
                "distinct": int(np.unique(x).size),
            }
    p_values = np.asarray(p_values)
    return Outcome.from_p_value(
        float(p_values.min()),
        holm_combined_p_value(p_values),
        reference="KS p-values uniform",
        description=f"min KS p-value over {p_values.size} (κ, dtype) pairs, {size} draws each",
        details=rows,
    )


@register(capability="circular", kind="statistical")
def sampler_moments_match(context: CheckContext) -> Outcome:
    """The draws' circular variance 1 - cos θ and cos 2θ have the exact means 1 - A(κ), I₂/I₀.

    z-tests with the Monte Carlo standard error, scaled per κ so that concentrated laws are
    tested on the scale of their spread; KS cannot tell κ = 1e-8 from the uniform law, these
    moments can at the sample size used. Holm-combined over κ and dtype.
    """
    size = context.pick(quick=20_000, full=200_000)
    kappas = SAMPLER_KAPPAS[1:]
    p_values, rows = [], {}
    with jax.enable_x64(True):
        complement = np.asarray(bessel_ratio_complement(jnp.asarray(kappas)))
        second = np.asarray(bessel_ratios(jnp.asarray(kappas), 2))[:, 1]
    for offset, dtype in enumerate(("float32", "float64")):
        draws = _sampler_draws(kappas, dtype, size, context.seed + 10 + offset)
        # 1 - cos θ = 2 sin²(θ/2) without cancellation at large κ.
        variance = 2 * np.sin(draws / 2) ** 2
        _, p_variance = mean_z_test(variance, complement)
        _, p_second = mean_z_test(np.cos(2 * draws), second)
        for column, kappa in enumerate(kappas):
            rows[f"{dtype} kappa={kappa:g}"] = {
                "p(1-cos)": float(p_variance[column]),
                "p(cos 2θ)": float(p_second[column]),
            }
        p_values.extend([*p_variance, *p_second])
    p_values = np.asarray(p_values)
    return Outcome.from_p_value(
        float(p_values.min()),
        holm_combined_p_value(p_values),
        reference="exact trigonometric moments",
        description=f"min z-test p-value over {p_values.size} moments, {size} draws each",
        details=rows,
    )


@register(capability="circular", kind="exact")
def reparameterised_sample_gradient_is_exact(context: CheckContext) -> Outcome:
    """d(sample)/dκ by implicit reparameterisation equals d ppf(u; κ)/dκ at the draw's u."""
    kappas = np.array([0.3, 2.0, 21.0, 500.0])
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(context.seed)
        kappa = jnp.asarray(kappas)

        def draw(k):
            return VonMises(0.0, k).sample(key, (64,))

        theta, tangent = jax.jvp(draw, (kappa,), (jnp.ones_like(kappa),))
        u = VonMises(0.0, kappa).cdf(theta)
        step = 1e-6 * kappa
        finite = (VonMises(0.0, kappa + step).icdf(u) - VonMises(0.0, kappa - step).icdf(u)) / (
            2 * step
        )
        scale = np.max(np.abs(np.asarray(finite)), axis=0)
        errors = np.max(np.abs(np.asarray(tangent - finite)), axis=0) / scale
    return Outcome.at_most(
        float(errors.max()),
        tolerance=1e-6,
        description="max |dθ/dκ (implicit) - central difference of the ppf| / max|dθ/dκ|",
        details={f"kappa={k:g}": float(e) for k, e in zip(kappas, errors, strict=True)},
    )


@register(capability="circular", kind="exact")
def exact_m_step_matches_scipy(context: CheckContext) -> Outcome:
    """One-component EM returns scipy's exact vonmises.fit (κ̂ by a bracketed root of A = R̄)."""
    rng = np.random.default_rng(context.seed)
    rows, worst = {}, 0.0
    for kappa in (0.5, 5.0, 200.0):
        data = stats.vonmises.rvs(kappa, loc=0.3, size=2000, random_state=rng)
        kappa_scipy, loc_scipy, _ = stats.vonmises.fit(data, fscale=1)
        with jax.enable_x64(True):
            fit = fit_vonmises_mixture(jnp.asarray(data), 1)
            kappa_em = float(fit.concentration[0])
            loc_em = float(fit.loc[0])
        error = max(
            abs(kappa_em / kappa_scipy - 1), abs(math.remainder(loc_em - loc_scipy, 2 * math.pi))
        )
        rows[f"kappa={kappa}"] = {"probkit": [kappa_em, loc_em], "scipy": [kappa_scipy, loc_scipy]}
        worst = max(worst, error)
    return Outcome.at_most(
        worst,
        tolerance=1e-6,
        description="max(relative κ̂ difference, |μ̂ difference|) with scipy",
        details=rows,
    )


@register(capability="circular", kind="exact")
def em_never_decreases_likelihood(context: CheckContext) -> Outcome:
    """EM's objective never decreases, on a 3-component sample (fitted with 2, 3 and 4 components)."""
    rng = np.random.default_rng(context.seed)
    parts = [
        stats.vonmises.rvs(30.0, loc=np.pi, size=600, random_state=rng),
        stats.vonmises.rvs(40.0, loc=1.1, size=200, random_state=rng),
        stats.vonmises.rvs(2.0, loc=-1.0, size=200, random_state=rng),
    ]
    data = np.concatenate(parts)
    worst, rows = -np.inf, {}
    with jax.enable_x64(True):
        for k in context.pick(quick=(3,), full=(2, 3, 4)):
            fit = fit_vonmises_mixture(jnp.asarray(data), k, n_init=4, seed=context.seed)
            trace = np.asarray(fit.log_likelihood_trace)
            trace = trace[np.isfinite(trace)]
            # Largest decrease, relative to the objective's size (rounding: ~1e-13).
            decrease = float(np.max(-np.diff(trace)) / np.max(np.abs(trace)))
            rows[f"K={k}"] = {"iterations": int(fit.n_iter), "max relative decrease": decrease}
            worst = max(worst, decrease)
    return Outcome.at_most(
        worst,
        tolerance=1e-12,
        description="largest relative decrease of the EM objective",
        details=rows,
    )


def _butane_summary(grid) -> dict[str, float]:
    # Smooth functionals only: the periodic trapezoid rule is spectrally accurate for them,
    # but only first-order for indicators such as the trans population.
    return {
        "cos_1": grid.expectation(np.cos),
        "cos_2": grid.expectation(lambda phi: np.cos(2 * phi)),
        "cos_3": grid.expectation(lambda phi: np.cos(3 * phi)),
        "entropy": grid.entropy(),
    }


@register(capability="circular", kind="exact")
def butane_boltzmann_density_is_exact(context: CheckContext) -> Outcome:
    """Butane at 300 K: populations and moments match quadrature and the reference values.

    The grid's moments agree with adaptive quadrature of the potential to 1e-10; populations
    (by quadrature) and moments agree with the independent reference values to their last digit.
    """
    kT = thermal_energy(300.0)
    summary = _butane_summary(boltzmann_grid(butane_energy, kT))

    def weight(phi):
        x = -math.cos(phi)
        energy = sum(c * x**n for n, c in enumerate(BUTANE_RYCKAERT_BELLEMANS))
        return math.exp(-energy / kT)

    def integral(function, lower=-math.pi, upper=math.pi):
        return integrate.quad(function, lower, upper, limit=200, epsabs=0, epsrel=1e-13)[0]

    z = integral(weight)
    quadrature = {
        "trans": 2 * integral(weight, 2 * math.pi / 3, math.pi) / z,
        "gauche_plus": integral(weight, 0.0, 2 * math.pi / 3) / z,
        **{f"cos_{p}": integral(lambda t, p=p: math.cos(p * t) * weight(t)) / z for p in (1, 2, 3)},
    }
    quadrature_error = max(
        abs(summary[name] - quadrature[name]) for name in ("cos_1", "cos_2", "cos_3")
    )
    values = {**quadrature, "entropy": summary["entropy"]}
    # A reference value is right when within half a unit of its last digit.
    reference_error = max(
        abs(values[name] - value) / (0.5 * 10.0 ** -_decimals(value))
        for name, value in BUTANE_300K.items()
    )
    statistic = max(quadrature_error / 1e-10, reference_error)
    return Outcome.at_most(
        statistic,
        tolerance=1.0,
        description="max(|grid - quad|/1e-10, |value - reference|/half a unit of its last digit)",
        details={"grid": summary, "quad": quadrature},
    )


def _decimals(value: float) -> int:
    text = f"{value}"
    return len(text.split(".")[1]) if "." in text else 0


@register(capability="circular", kind="exact")
def butane_trans_gauche_ratio_follows_van_t_hoff(context: CheckContext) -> Outcome:
    """d ln(P_trans/P_gauche)/dβ = ⟨V⟩_gauche - ⟨V⟩_trans at 200-600 K (van 't Hoff relation)."""
    rows, worst = {}, 0.0
    for temperature in (200.0, 300.0, 600.0):
        kT = thermal_energy(temperature)
        beta = 1 / kT

        def log_ratio(b):
            grid = boltzmann_grid(butane_energy, 1 / b)
            trans = grid.expectation(lambda phi: np.abs(phi) > 2 * np.pi / 3)
            return math.log(trans / (1 - trans))

        step = 1e-4 * beta
        slope = (log_ratio(beta + step) - log_ratio(beta - step)) / (2 * step)
        grid = boltzmann_grid(butane_energy, kT)
        energy = np.asarray(butane_energy(grid.angles))
        is_trans = np.abs(grid.angles) > 2 * np.pi / 3
        p = grid.probabilities
        mean_trans = np.sum(p * energy * is_trans) / np.sum(p * is_trans)
        mean_gauche = np.sum(p * energy * ~is_trans) / np.sum(p * ~is_trans)
        expected = mean_gauche - mean_trans
        rows[f"T={temperature:g}K"] = {"slope": slope, "<V>_g - <V>_t": float(expected)}
        worst = max(worst, abs(slope / expected - 1))
    # Central differences in β have relative error O(step²) ≈ 1e-8.
    return Outcome.at_most(
        worst,
        tolerance=1e-6,
        description="max relative error of the van 't Hoff slope",
        details=rows,
    )


@register(capability="circular", kind="exact")
def butane_forward_kl_fits(context: CheckContext) -> Outcome:
    """Forward-KL fits of butane: K = 1 is moment matching, and KL falls strictly with K."""
    kT = thermal_energy(300.0)
    grid = boltzmann_grid(butane_energy, kT)
    # The forward-KL optimal single von Mises matches the first trigonometric moment exactly.
    c, s = grid.expectation(np.cos), grid.expectation(np.sin)
    resultant = math.hypot(c, s)
    kappa_exact = optimize.brentq(
        lambda k: special.i1e(k) / special.i0e(k) - resultant, 1e-9, 1e4, xtol=1e-14
    )
    n_init = context.pick(quick=2, full=16)
    kls, rows = [], {}
    for k in range(1, context.pick(quick=2, full=5) + 1):
        fit = fit_to_energy(butane_energy, kT, k, n_init=n_init, seed=context.seed)
        kls.append(fit.kl)
        rows[f"K={k}"] = {
            "kl": fit.kl,
            "weights": np.asarray(fit.distribution.weights).round(4).tolist(),
            "loc_deg": np.rad2deg(np.asarray(fit.distribution.loc)).round(2).tolist(),
            "kappa": np.asarray(fit.distribution.concentration).round(2).tolist(),
        }
        if k == 1:
            kappa_error = abs(float(fit.distribution.concentration[0]) / kappa_exact - 1)
    # Strict decrease by a margin: each extra component must lower KL by 1e-4 nats at least
    # (much more than EM's tolerance).
    shortfall = max(0.0, 1e-4 - float(np.min(-np.diff(kls))))
    statistic = max(kappa_error / 1e-8, shortfall / 1e-4)
    return Outcome.at_most(
        statistic,
        tolerance=1.0,
        description="max(|κ̂₁/κ_moment - 1|/1e-8, KL shortfall/1e-4)",
        details={"kappa_moment_matching": kappa_exact, **rows},
    )
