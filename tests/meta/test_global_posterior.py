"""The helpers behind the checks of the learner's global posterior (NUTS agreement and SBC).

The checks themselves are registered (``probkit check --capability meta``); these tests pin the
pieces they rest on to independent references: the collapsed likelihood NUTS samples from, the
CAVI fixed point the learner must reach, the NIW moments compared with NUTS, and the p-values
of the allowance test. All comparisons are exact up to rounding unless stated.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from probkit import ProbkitError
from probkit.meta import DiagonalNIW, linear_gaussian_episodes, linear_gaussian_fit
from probkit.theory.checks.meta import (
    _allowance_p_values,
    _conditional_episode_means,
    _episode_log_marginal,
    _global_hyperprior,
    _global_learner,
    _global_moments,
    _marginal_model,
    _mean_field_fixed_point,
    _require_converged,
    _sufficient_statistics,
)

NOISE = 0.3


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def episodes():
    return linear_gaussian_episodes(
        jax.random.key(3), 6, 4, jnp.array([0.4, -1.0]), jnp.array([0.6, 0.2]), NOISE
    )


def test_collapsed_episode_likelihood_equals_the_gaussian_marginal_of_y(episodes):
    mean, variance = np.array([0.2, -0.7]), np.array([0.5, 1.3])
    statistics = _sufficient_statistics(episodes.design, episodes.targets, NOISE)
    collapsed = jax.vmap(lambda g, c, s: _episode_log_marginal(mean, variance, g, c, s, 4, NOISE))(
        *statistics
    )
    design, targets = np.asarray(episodes.design), np.asarray(episodes.targets)
    reference = [
        stats.multivariate_normal.logpdf(
            y, mean=x @ mean, cov=x @ np.diag(variance) @ x.T + NOISE * np.eye(4)
        )
        for x, y in zip(design, targets, strict=True)
    ]
    np.testing.assert_allclose(collapsed, reference, rtol=0, atol=1e-10)


def test_marginal_model_density_is_hyperprior_times_collapsed_likelihood(episodes):
    hyperprior = _global_hyperprior()
    statistics = _sufficient_statistics(episodes.design, episodes.targets, NOISE)
    mean, variance = np.array([0.3, -0.5]), np.array([0.8, 0.4])
    value, _ = log_density(
        _marginal_model,
        (statistics, 4, NOISE, hyperprior),
        {},
        {"mean": mean, "variance": variance},
    )
    design, targets = np.asarray(episodes.design), np.asarray(episodes.targets)
    # σ² ~ InvGamma(n_p/2, 1/(2γ_p)) = invgamma(5, scale=2); μ | σ² ~ N(0, σ²/κ_p), κ_p = 1.
    reference = np.sum(stats.invgamma.logpdf(variance, 5.0, scale=2.0)) + np.sum(
        stats.norm.logpdf(mean, 0.0, np.sqrt(variance))
    )
    reference += sum(
        stats.multivariate_normal.logpdf(
            y, mean=x @ mean, cov=x @ np.diag(variance) @ x.T + NOISE * np.eye(4)
        )
        for x, y in zip(design, targets, strict=True)
    )
    assert abs(float(value) - reference) < 1e-9


def test_conditional_episode_means_are_bayesian_regression_posteriors(episodes):
    mean, variance = np.array([0.1, 0.9]), np.array([0.7, 0.25])
    statistics = _sufficient_statistics(episodes.design, episodes.targets, NOISE)
    result = np.asarray(_conditional_episode_means(mean, variance, statistics))
    for x, y, row in zip(
        np.asarray(episodes.design), np.asarray(episodes.targets), result, strict=True
    ):
        precision = x.T @ x / NOISE + np.diag(1 / variance)
        expected = np.linalg.solve(precision, x.T @ y / NOISE + mean / variance)
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-12)


def test_mean_field_fixed_point_is_a_stationary_point_of_the_learners_objective(episodes):
    num = episodes.design.shape[0]
    hyperprior = _global_hyperprior()
    fits = jax.vmap(lambda x, y: linear_gaussian_fit(x, y, NOISE))(
        episodes.design, episodes.targets
    )
    optimum = jax.jit(_mean_field_fixed_point, static_argnums=2)(hyperprior, fits, 500)
    assert float(optimum.df) == 10.0 + num
    assert float(optimum.kappa) == 1.0 + num
    learner = _global_learner(hyperprior, num, 10, 0.1, learn_shape=True)
    raw = {
        "loc": optimum.loc,
        "log_precision": jnp.log(optimum.precision),
        "log_df": jnp.log(optimum.df),
        "log_kappa": jnp.log(optimum.kappa),
    }
    gradient = jax.jit(jax.grad(learner.meta_loss))(raw, fits)
    for name, value in gradient.items():
        assert float(jnp.max(jnp.abs(value))) < 1e-9, name
    # A nearby law is not stationary: the test can tell.
    moved = dict(raw, log_precision=raw["log_precision"] + 0.1)
    assert (
        float(jnp.max(jnp.abs(jax.jit(jax.grad(learner.meta_loss))(moved, fits)["log_precision"])))
        > 1e-3
    )


def test_global_moments_are_the_student_t_and_inverse_gamma_moments():
    law = DiagonalNIW(
        jnp.array([0.3, -1.2]), jnp.array([0.05, 0.2]), jnp.asarray(14.0), jnp.asarray(9.0)
    )
    moments = np.asarray(_global_moments(law))
    a, b = 7.0, 0.5 / np.array([0.05, 0.2])
    # μ is Student t with 2a degrees of freedom, location m, scale √(b/(aκ)).
    t = stats.t(2 * a, loc=[0.3, -1.2], scale=np.sqrt(b / (a * 9.0)))
    ig = stats.invgamma(a, scale=b)
    np.testing.assert_allclose(moments[0], t.mean(), rtol=1e-12)
    np.testing.assert_allclose(moments[1], t.std(), rtol=1e-12)
    np.testing.assert_allclose(moments[2], ig.mean(), rtol=1e-12)
    np.testing.assert_allclose(moments[3], ig.std(), rtol=1e-12)


def test_allowance_p_values_are_one_inside_and_normal_tails_outside():
    gaps = {"a": np.array([0.03, -0.05, 0.05 + 1.96 * 0.01]), "b": np.array([-(0.05 + 0.03)])}
    errors = {"a": np.full(3, 0.01), "b": np.array([0.01])}
    p = _allowance_p_values(gaps, errors, 0.05)
    np.testing.assert_allclose(p[:2], 1.0)
    np.testing.assert_allclose(p[2], 0.05, rtol=1e-3)
    np.testing.assert_allclose(p[3], 2 * stats.norm.sf(3.0), rtol=1e-9)


def test_unconverged_runs_are_refused():
    good = {
        "r_hat": 1.002,
        "ess_bulk": 2000.0,
        "ess_tail": 1500.0,
        "kl_to_mean_field_optimum": 1e-7,
    }
    _require_converged(good, "instance")
    for change in ({"r_hat": 1.05}, {"ess_tail": 100.0}, {"kl_to_mean_field_optimum": 1e-2}):
        with pytest.raises(ProbkitError):
            _require_converged({**good, **change}, "instance")
    with pytest.raises(ProbkitError):
        _require_converged({**good, "kl_to_mean_field_optimum": float("nan")}, "instance")
