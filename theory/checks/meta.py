"""Checks of the conjugate normal-inverse-Wishart toolkit behind NIW hierarchical meta-learning.

Exact checks: the conjugate update and the marginal likelihood satisfy Bayes' identity
``log p(D) = log p(D | φ) + log p(φ) - log p(φ | D)`` at random ``φ`` (full and diagonal forms,
weighted and padded data included); the densities agree with scipy's ``invwishart`` and
``normal_inverse_gamma``; the predictive agrees with scipy's ``multivariate_t`` and with the
ratio of marginal likelihoods ``p(D ∪ {x}) / p(D)``. Statistical checks: the closed-form KL
divergences and the expected Gaussian KL against Monte Carlo averages, and the sampler's moments
against the closed-form means. For the meta-learner: the meta-loss is a random-effects
likelihood, the local closed form is the numerical optimum and the exact linear-Gaussian
posterior, training reaches the random-effects estimate, and the prior strength's limits are
pooling (n₀Γ₀ → ∞) and per-episode fitting (n₀Γ₀ → 0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions.kl import kl_divergence
from scipy import optimize, stats
from statsmodels.stats import meta_analysis

from probkit.distributions import NormalInverseGamma, NormalInverseWishart
from probkit.meta import (
    DiagonalNIW,
    GaussianFit,
    NIWMeta,
    episode_meta_loss,
    linear_gaussian_episodes,
    linear_gaussian_fit,
    local_posterior,
    random_effects_meta_loss,
)
from probkit.theory.calibration import holm_combined_p_value, mean_z_test
from probkit.theory.check import CheckContext, Outcome, register

__all__: list[str] = []

EXACT_TOLERANCE = 1e-10
"""Log densities of order 100 in float64: agreement to 1e-10 leaves room for rounding only."""


def _random_niw_parameters(rng, d):
    a = rng.standard_normal((d, d))
    return (
        rng.standard_normal(d),
        rng.uniform(0.5, 3.0),
        d + 1.0 + rng.uniform(0.5, 4.0),
        a @ a.T + d * np.eye(d),
    )


def _random_nig_parameters(rng, d):
    return (
        rng.standard_normal(d),
        rng.uniform(0.5, 3.0, d),
        rng.uniform(1.5, 4.0, d),
        rng.uniform(0.3, 2.0, d),
    )


@jax.jit
def _bayes_terms(key, x, weights, niw_parameters, nig_parameters):
    # Compiled once: eager calls would compile every small operation on its own.
    prior = NormalInverseWishart(*niw_parameters)
    phi = prior.sample(key)
    posterior = prior.posterior(x, weights)
    niw = (
        phi,
        prior.log_prob(phi),
        posterior.log_prob(phi),
        prior.log_marginal_likelihood(x, weights),
    )
    diagonal = NormalInverseGamma(*nig_parameters)
    psi = diagonal.sample(jax.random.fold_in(key, 1))
    nig = (
        psi,
        diagonal.log_prob(psi),
        diagonal.posterior(x).log_prob(psi),
        diagonal.log_marginal_likelihood(x),
    )
    return niw, nig


@register(capability="meta", kind="exact")
def conjugate_update_satisfies_bayes_identity(context: CheckContext) -> Outcome:
    """log p(D) = log p(D|φ) + log p(φ) − log p(φ|D) at random φ, full and diagonal NIW."""
    rng = np.random.default_rng(context.seed)
    repeats = context.pick(quick=4, full=20)
    errors = {"full": 0.0, "weighted": 0.0, "diagonal": 0.0}
    d, n = 3, 15
    with jax.enable_x64(True):
        for r in range(repeats):
            x = rng.standard_normal((n, d)) * 1.7 + rng.standard_normal(d)
            # 0 weights pad; fractional weights temper the likelihood.
            weighted = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.2, 1.5, n))
            niw_parameters = _random_niw_parameters(rng, d)
            nig_parameters = _random_nig_parameters(rng, d)
            for label, weights in (("full", np.ones(n)), ("weighted", weighted)):
                niw, nig = jax.device_get(
                    _bayes_terms(
                        jax.random.key(100 * context.seed + r),
                        x,
                        weights,
                        niw_parameters,
                        nig_parameters,
                    )
                )
                (loc, cov), log_prior, log_posterior, log_evidence = niw
                likelihood = np.sum(
                    weights * stats.multivariate_normal.logpdf(x, mean=loc, cov=cov)
                )
                error = abs(log_evidence - (likelihood + log_prior - log_posterior))
                errors[label] = max(errors[label], float(error))
            (loc, var), log_prior, log_posterior, log_evidence = nig
            likelihood = np.sum(stats.norm.logpdf(x, loc, np.sqrt(var)))
            error = abs(log_evidence - (likelihood + log_prior - log_posterior))
            errors["diagonal"] = max(errors["diagonal"], float(error))
    return Outcome.at_most(
        max(errors.values()),
        EXACT_TOLERANCE,
        description="max |log p(D) − Bayes identity| (float64)",
        details={"max_error": errors, "repeats": repeats},
    )


@jax.jit
def _scipy_terms(key, x, new, niw_parameters, nig_parameters):
    prior = NormalInverseWishart(*niw_parameters)
    _, cov = prior.sample(key)
    posterior = prior.posterior(x)
    both = jax.vmap(lambda row: jnp.concatenate([x, row[None]]))(new)
    niw = {
        "covariance": cov,
        "log_iw": prior._inverse_wishart().log_prob(cov),
        "predictive": posterior.predictive().log_prob(new),
        "ratio": jax.vmap(prior.log_marginal_likelihood)(both) - prior.log_marginal_likelihood(x),
        "posterior": (posterior.loc, posterior.kappa, posterior.df, posterior.scale_matrix),
    }
    diagonal = NormalInverseGamma(*nig_parameters)
    psi = diagonal.sample(jax.random.fold_in(key, 1))
    nig = {
        "value": psi,
        "log_prob": diagonal.log_prob(psi),
        "predictive": jnp.sum(diagonal.posterior(x).predictive().log_prob(new), axis=-1),
        "ratio": jax.vmap(diagonal.log_marginal_likelihood)(both)
        - diagonal.log_marginal_likelihood(x),
    }
    return niw, nig


@register(capability="meta", kind="exact")
def densities_and_predictives_agree_with_scipy(context: CheckContext) -> Outcome:
    """IW and NIG densities match scipy; predictives match multivariate_t and p(D∪{x})/p(D)."""
    rng = np.random.default_rng(context.seed)
    errors: dict[str, float] = {}

    def record(name, a, b):
        errors[name] = max(errors.get(name, 0.0), float(np.max(np.abs(np.asarray(a) - b))))

    with jax.enable_x64(True):
        for r in range(context.pick(quick=4, full=16)):
            d = 2 + r % 2
            niw_parameters = _random_niw_parameters(rng, d)
            nig_parameters = _random_nig_parameters(rng, d)
            x = rng.standard_normal((10, d)) + 0.5
            new = rng.standard_normal((4, d)) * 2.0
            niw, nig = jax.device_get(
                _scipy_terms(jax.random.key(r), x, new, niw_parameters, nig_parameters)
            )
            _, _, df, scale = niw_parameters
            record(
                "inverse_wishart_vs_scipy",
                niw["log_iw"],
                stats.invwishart.logpdf(niw["covariance"], df=df, scale=scale),
            )
            loc_n, kappa_n, df_n, scale_n = niw["posterior"]
            t_df = df_n - d + 1
            t_shape = scale_n * (kappa_n + 1) / (kappa_n * t_df)
            reference = stats.multivariate_t.logpdf(new, loc=loc_n, shape=t_shape, df=t_df)
            record("niw_predictive_vs_scipy_t", niw["predictive"], reference)
            record("niw_predictive_vs_marginal_ratio", niw["predictive"], niw["ratio"])
            loc, var = nig["value"]
            m, kappa, a, b = nig_parameters
            reference = sum(
                stats.normal_inverse_gamma(mu=m[k], lmbda=kappa[k], a=a[k], b=b[k]).logpdf(
                    loc[k], var[k]
                )
                for k in range(d)
            )
            record("nig_vs_scipy", nig["log_prob"], reference)
            record("nig_predictive_vs_marginal_ratio", nig["predictive"], nig["ratio"])
    return Outcome.at_most(
        max(errors.values()),
        EXACT_TOLERANCE,
        description="max |probkit − reference| over log densities (float64)",
        details=errors,
    )


@functools.partial(jax.jit, static_argnames="draws")
def _kl_draws(key, draws, niw_p, nig_p):
    full = NormalInverseWishart(*niw_p).sample(jax.random.fold_in(key, 0), (draws,))
    diagonal = NormalInverseGamma(*nig_p).sample(jax.random.fold_in(key, 1), (draws,))
    return full, diagonal


@jax.jit
def _kl_values(sample, diagonal, niw_p, niw_q, nig_p, nig_q, mean, covariance, variances):
    # Compiled apart from the sampling: one program doing both stalled XLA on CPU at 1e5 draws.
    p, q = NormalInverseWishart(*niw_p), NormalInverseWishart(*niw_q)
    g, h = NormalInverseGamma(*nig_p), NormalInverseGamma(*nig_q)
    monte_carlo = {
        "kl_niw": p.log_prob(sample) - q.log_prob(sample),
        "kl_nig": g.log_prob(diagonal) - h.log_prob(diagonal),
    }
    closed_form = {
        "kl_niw": kl_divergence(p, q),
        "kl_nig": kl_divergence(g, h),
        "expected_gaussian_kl_niw": p.expected_gaussian_kl(mean, covariance),
        "expected_gaussian_kl_nig": g.expected_gaussian_kl(mean, variances),
    }
    return monte_carlo, closed_form


def _gaussian_kl(mean, covariance, loc, cov):
    """KL(N(mean, covariance) ‖ N(loc_i, cov_i)) for every draw i, in NumPy."""
    d = mean.shape[-1]
    diff = loc - mean
    quadratic = np.einsum("ni,ni->n", diff, np.linalg.solve(cov, diff[..., None])[..., 0])
    trace = np.trace(
        np.linalg.solve(cov, np.broadcast_to(covariance, cov.shape)), axis1=-2, axis2=-1
    )
    log_det_ratio = np.linalg.slogdet(cov)[1] - np.linalg.slogdet(covariance)[1]
    return 0.5 * (trace + quadratic - d + log_det_ratio)


@register(capability="meta", kind="statistical")
def kl_divergences_match_monte_carlo(context: CheckContext) -> Outcome:
    """Closed-form KL(NIW‖NIW), KL(NIG‖NIG) and E KL(N(m,V)‖N(μ,Σ)) equal Monte Carlo means."""
    rng = np.random.default_rng(context.seed)
    draws = context.pick(quick=100_000, full=1_000_000)
    d = 3
    mean = rng.standard_normal(d)
    a = rng.standard_normal((d, d))
    covariance = a @ a.T / d + 0.5 * np.eye(d)
    variances = rng.uniform(0.2, 2.0, d)
    with jax.enable_x64(True):
        niw_p, niw_q = _random_niw_parameters(rng, d), _random_niw_parameters(rng, d)
        nig_p, nig_q = _random_nig_parameters(rng, d), _random_nig_parameters(rng, d)
        sample, diagonal = _kl_draws(jax.random.key(context.seed), draws, niw_p, nig_p)
        monte_carlo, closed_form = jax.device_get(
            _kl_values(sample, diagonal, niw_p, niw_q, nig_p, nig_q, mean, covariance, variances)
        )
        sample, diagonal = jax.device_get((sample, diagonal))
    loc, var = diagonal
    monte_carlo["expected_gaussian_kl_niw"] = _gaussian_kl(mean, covariance, *sample)
    monte_carlo["expected_gaussian_kl_nig"] = 0.5 * np.sum(
        variances / var + (mean - loc) ** 2 / var - 1.0 + np.log(var / variances), axis=-1
    )
    names = list(closed_form)
    samples = np.stack([monte_carlo[name] for name in names], axis=1)
    expected = np.array([closed_form[name] for name in names])
    z, p_values = mean_z_test(samples, expected)
    return Outcome.from_p_value(
        float(np.max(np.abs(z))),
        holm_combined_p_value(p_values),
        reference=0.0,
        description="max |z| of Monte Carlo mean − closed form (Holm over 4)",
        details={
            name: {"closed_form": float(expected[i]), "z": float(z[i])}
            for i, name in enumerate(names)
        },
    )


@functools.partial(jax.jit, static_argnames="draws")
def _draws(key, draws, niw_parameters, nig_parameters):
    full = NormalInverseWishart(*niw_parameters).sample(jax.random.fold_in(key, 0), (draws,))
    diagonal = NormalInverseGamma(*nig_parameters).sample(jax.random.fold_in(key, 1), (draws,))
    return full, diagonal


@register(capability="meta", kind="statistical")
def samplers_match_the_closed_form_means(context: CheckContext) -> Outcome:
    """Sample means of μ and Σ (σ²) equal m and Ψ/(ν − d − 1) (b/(a − 1)), full and diagonal."""
    rng = np.random.default_rng(context.seed)
    draws = context.pick(quick=50_000, full=500_000)
    d = 3
    a = rng.standard_normal((d, d))
    # ν > d + 3 and a > 2: Σ and σ² have finite variances, so the z-test applies.
    m, kappa, df, scale = rng.standard_normal(d), 1.5, d + 6.0, a @ a.T + np.eye(d)
    m2, kappa2, a2, b2 = rng.standard_normal(d), 2.0, rng.uniform(3.0, 5.0, d), np.ones(d)
    with jax.enable_x64(True):
        (loc, cov), (loc2, var2) = jax.device_get(
            _draws(
                jax.random.key(context.seed + 1),
                draws,
                (m, kappa, df, scale),
                (m2, kappa2, a2, b2),
            )
        )
    samples = np.concatenate([loc, cov.reshape(draws, -1), loc2, var2], axis=1)
    expected = np.concatenate([m, (scale / (df - d - 1)).ravel(), m2, b2 / (a2 - 1)])
    z, p_values = mean_z_test(samples, expected)
    return Outcome.from_p_value(
        float(np.max(np.abs(z))),
        holm_combined_p_value(p_values),
        reference=0.0,
        description=f"max |z| over {expected.size} sample means (Holm)",
        details={"draws": draws, "z": z.tolist()},
    )


# --- NIW meta-learning --------------------------------------------------------------------------


def _random_meta_prior(rng, d):
    return DiagonalNIW(
        jnp.asarray(rng.standard_normal(d)),
        jnp.asarray(rng.uniform(0.3, 2.0, d)),
        jnp.asarray(rng.uniform(2.0, 20.0)),
        jnp.asarray(rng.uniform(0.5, 3.0)),
    )


def _random_fits(rng, d):
    a = rng.standard_normal((d, d))
    diagonal = GaussianFit(
        jnp.asarray(rng.standard_normal(d)), jnp.asarray(rng.uniform(0.2, 5.0, d))
    )
    full = GaussianFit(jnp.asarray(rng.standard_normal(d)), jnp.asarray(a @ a.T + 0.3 * np.eye(d)))
    return diagonal, full


@jax.jit
def _meta_terms(prior, fit):
    direct = episode_meta_loss(prior, fit)
    random_effects = random_effects_meta_loss(prior, fit)
    gradient = jax.grad(lambda loc: episode_meta_loss(prior._replace(loc=loc), fit))(prior.loc)
    return direct, random_effects, gradient


@register(capability="meta", kind="exact")
def meta_loss_is_a_random_effects_likelihood(context: CheckContext) -> Outcome:
    """f + ½g at the local optimum = −log N(m̄; m₀, Ā⁻¹ + (n₀Γ₀)⁻¹) + constants; ∇m₀ = −W(m̄ − m₀)."""
    rng = np.random.default_rng(context.seed)
    errors = {"loss_diagonal": 0.0, "loss_full": 0.0, "reptile_gradient": 0.0}
    with jax.enable_x64(True):
        for _ in range(context.pick(quick=4, full=20)):
            d = 4
            prior = _random_meta_prior(rng, d)
            for label, fit in zip(
                ("loss_diagonal", "loss_full"), _random_fits(rng, d), strict=True
            ):
                direct, random_effects, gradient = jax.device_get(_meta_terms(prior, fit))
                errors[label] = max(errors[label], abs(float(direct - random_effects)))
                precision = np.asarray(fit.precision)
                within = np.linalg.inv(precision) if precision.ndim == 2 else np.diag(1 / precision)
                between = np.diag(1.0 / np.asarray(prior.df * prior.precision))
                weight = np.linalg.inv(within + between)
                reptile = -weight @ (np.asarray(fit.mean) - np.asarray(prior.loc))
                errors["reptile_gradient"] = max(
                    errors["reptile_gradient"], float(np.max(np.abs(gradient - reptile)))
                )
    return Outcome.at_most(
        max(errors.values()),
        EXACT_TOLERANCE,
        description="max |meta-loss − random-effects form|, |∇m₀ − (−W(m̄ − m₀))|",
        details=errors,
    )


@register(capability="meta", kind="exact")
def local_closed_form_is_the_numerical_optimum(context: CheckContext) -> Outcome:
    """The closed-form (m*, V*) minimises E_q ½(θ−m̄)ᵀĀ(θ−m̄) + E KL(q‖N(μ,Σ)) (BFGS, diagonal q)."""
    rng = np.random.default_rng(context.seed)
    d = 5
    worst = 0.0
    with jax.enable_x64(True):
        objective = jax.jit(
            lambda z, prior, fit: _local_objective(prior, fit, z[:d], jnp.exp(z[d:]))
        )
        gradient = jax.jit(jax.grad(lambda z, prior, fit: objective(z, prior, fit)))
        for _ in range(context.pick(quick=2, full=10)):
            prior = _random_meta_prior(rng, d)
            fit, _ = _random_fits(rng, d)
            result = optimize.minimize(
                lambda z, prior=prior, fit=fit: float(objective(z, prior, fit)),
                np.zeros(2 * d),
                jac=lambda z, prior=prior, fit=fit: np.asarray(gradient(z, prior, fit)),
                method="BFGS",
                options={"gtol": 1e-12, "maxiter": 10_000},
            )
            closed = local_posterior(prior, fit)
            worst = max(
                worst,
                float(np.max(np.abs(result.x[:d] - closed.mean))),
                float(np.max(np.abs(np.exp(result.x[d:]) / closed.covariance - 1))),
            )
    return Outcome.at_most(
        worst,
        1e-6,
        description="max |BFGS − closed form| (mean; relative for variances)",
        details={"dimension": d},
    )


def _local_objective(prior, fit, mean, variances):
    """E_{N(mean, diag(variances))} ½(θ − m̄)ᵀĀ(θ − m̄) + E_{q(φ)} KL, written out directly."""
    diff = mean - fit.mean
    expected_fit = 0.5 * jnp.sum(fit.precision * (diff**2 + variances))
    return expected_fit + prior.as_distribution().expected_gaussian_kl(mean, variances)


@register(capability="meta", kind="exact")
def local_posterior_is_the_exact_linear_gaussian_update(context: CheckContext) -> Outcome:
    """For y = Φθ + ε the closed form is the CAVI update: Bayesian regression with N(m₀, (n₀Γ₀)⁻¹)."""
    rng = np.random.default_rng(context.seed)
    worst = 0.0
    with jax.enable_x64(True):
        for n in (2, 12):  # fewer rows than parameters, and more
            d, noise = 4, 0.7
            design = rng.standard_normal((n, d))
            targets = rng.standard_normal(n)
            prior = _random_meta_prior(rng, d)
            closed = local_posterior(prior, linear_gaussian_fit(design, targets, noise))
            # Bayesian linear regression with prior N(m₀, diag(1/(n₀γ₀))), written in NumPy.
            prior_precision = np.diag(np.asarray(prior.df * prior.precision))
            precision = design.T @ design / noise + prior_precision
            covariance = np.linalg.inv(precision)
            mean = covariance @ (
                design.T @ targets / noise + prior_precision @ np.asarray(prior.loc)
            )
            worst = max(
                worst,
                float(np.max(np.abs(np.asarray(closed.mean) - mean))),
                float(np.max(np.abs(np.asarray(closed.covariance) - covariance))),
            )
    return Outcome.at_most(
        worst, EXACT_TOLERANCE, description="max |closed form − regression posterior|"
    )


@register(capability="meta", kind="exact")
def meta_training_reaches_the_random_effects_estimate(context: CheckContext) -> Outcome:
    """Full-batch NIW-Meta on linear-Gaussian episodes reaches the random-effects MLE of (μ, τ²).

    The MLE is found independently by Nelder–Mead on the random-effects likelihood; τ² is also
    compared with statsmodels' Paule–Mandel estimate (a different estimator: within 15 %).
    """
    num = context.pick(quick=300, full=3000)
    with jax.enable_x64(True):
        mean, between, noise = np.array([0.8]), np.array([0.5]), 1.0
        data = linear_gaussian_episodes(jax.random.key(context.seed), num, 6, mean, between, noise)
        fits = jax.vmap(lambda x, y: linear_gaussian_fit(x, y, noise))(data.design, data.targets)
        estimates = np.asarray(fits.mean[:, 0])
        within = 1.0 / np.asarray(fits.precision[:, 0, 0])

        def negative_log_likelihood(z):
            total = within + np.exp(z[1])
            return 0.5 * np.mean(np.log(total) + (estimates - z[0]) ** 2 / total)

        reference = optimize.minimize(
            negative_log_likelihood,
            np.array([0.0, 0.0]),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20_000},
        ).x
        learner = NIWMeta(
            lambda params, episode: 0.0,
            jnp.zeros(1),
            fit=lambda key, start, episode: linear_gaussian_fit(episode[0], episode[1], noise),
            optimizer=optax.adam(0.05),
            learn_df=False,
        )
        state = learner.init()
        episodes = (data.design, data.targets)
        for step in range(600):
            state, _ = learner.update(jax.random.key(step), state, episodes)
        prior = learner.prior(state)
        learned = (float(prior.loc[0]), float(1.0 / (prior.df * prior.precision[0])))
    paule_mandel = float(
        meta_analysis.combine_effects(estimates, within, method_re="iterated").tau2
    )
    mle = (float(reference[0]), float(np.exp(reference[1])))
    # Each error over its tolerance: the learner against the MLE (1e-3, optimisation error), and
    # the MLE's τ² against Paule–Mandel's (a different estimator: 15 %).
    ratios = {
        "mean_vs_mle": abs(learned[0] - mle[0]) / 1e-3,
        "tau2_vs_mle": abs(learned[1] / mle[1] - 1) / 1e-3,
        "tau2_vs_paule_mandel": abs(learned[1] / paule_mandel - 1) / 0.15,
    }
    return Outcome.at_most(
        max(ratios.values()),
        1.0,
        description="max error / tolerance (MLE: 1e-3; Paule–Mandel τ²: 15 %)",
        details={
            **ratios,
            "learned": learned,
            "mle": mle,
            "tau2_paule_mandel": paule_mandel,
            "episodes": num,
        },
    )


@register(capability="meta", kind="exact")
def extreme_priors_give_pooling_and_per_episode_fits(context: CheckContext) -> Outcome:
    """The two limits of the prior strength n₀Γ₀ on linear-Gaussian episodes.

    As n₀Γ₀ → ∞ (here 1e9) the meta-loss is minimised by the pooled least-squares fit of all
    episodes and every local posterior sits at it: one shared parameter, as in ProtoNet-like
    pooling. As n₀Γ₀ → 0 (here 1e-9) every local posterior mean is its own episode's
    least-squares fit: per-episode fine-tuning. References in NumPy (``lstsq``); the errors are
    O(1/n₀Γ₀) and O(n₀Γ₀) respectively, far below the tolerance.
    """
    d, noise = 3, 0.5
    num = context.pick(quick=40, full=400)
    with jax.enable_x64(True):
        data = linear_gaussian_episodes(
            jax.random.key(context.seed), num, 8, jnp.array([1.0, -1.0, 0.5]), 0.5, noise
        )
        design, targets = np.asarray(data.design), np.asarray(data.targets)
        fits = jax.vmap(lambda x, y: linear_gaussian_fit(x, y, noise))(data.design, data.targets)
        pooled = np.linalg.lstsq(design.reshape(-1, d), targets.reshape(-1), rcond=None)[0]
        own = np.stack(
            [np.linalg.lstsq(x, y, rcond=None)[0] for x, y in zip(design, targets, strict=True)]
        )

        def prior(loc, strength):
            df = 10.0
            return DiagonalNIW(loc, jnp.full(d, strength / df), jnp.asarray(df), jnp.asarray(1.0))

        def total_loss(loc, strength):
            losses = jax.vmap(lambda fit: episode_meta_loss(prior(loc, strength), fit))(fits)
            return jnp.sum(losses)

        strong = 1e9
        loss = jax.jit(lambda loc: total_loss(loc, strong))
        gradient = jax.jit(jax.grad(lambda loc: total_loss(loc, strong)))
        result = optimize.minimize(
            lambda z: float(loss(jnp.asarray(z))),
            np.zeros(d),
            jac=lambda z: np.asarray(gradient(jnp.asarray(z))),
            method="BFGS",
            options={"gtol": 1e-10, "maxiter": 1000},
        )
        shared = jax.vmap(lambda fit: local_posterior(prior(jnp.asarray(result.x), strong), fit))(
            fits
        ).mean
        weak = jax.vmap(lambda fit: local_posterior(prior(jnp.asarray(pooled), 1e-9), fit))(
            fits
        ).mean
    errors = {
        "optimum_vs_pooled": float(np.max(np.abs(result.x - pooled))),
        "local_means_vs_shared": float(np.max(np.abs(np.asarray(shared) - result.x))),
        "weak_prior_vs_own_fits": float(np.max(np.abs(np.asarray(weak) - own))),
    }
    return Outcome.at_most(
        max(errors.values()),
        1e-6,
        description="max |limit − least-squares reference|",
        details={**errors, "episodes": num},
    )
