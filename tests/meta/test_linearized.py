"""The support-curvature posterior (``LinearizedPosterior``) and the default fit optimiser.

The posterior's variances and draws are compared with the explicit inverse of its precision;
on a linear-Gaussian model ``NIWMeta.adapt`` must return the exact posterior under the prior's
mode, which the diagonal closed form does not.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import digamma

from probkit import ProbkitError
from probkit.meta import (
    DiagonalNIW,
    GaussianFit,
    LinearizedFit,
    LinearizedPosterior,
    LocalPosterior,
    NIWMeta,
    default_fit_optimizer,
    gauss_newton_factor,
    laplace_fit,
    linear_gaussian_episodes,
    linear_gaussian_fit,
    linearized_episode_meta_loss,
    random_effects_meta_loss,
)

NOISE = 0.5


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _posterior():
    key_factor, key_mean, key_variance = jax.random.split(jax.random.key(3), 3)
    factor = jax.random.normal(key_factor, (2, 4))
    mean = jax.random.normal(key_mean, (4,))
    variance = jax.random.uniform(key_variance, (4,), minval=0.5, maxval=2.0)
    explicit = jnp.linalg.inv(jnp.diag(1.0 / variance) + factor.T @ factor)
    return LinearizedPosterior(mean, variance, factor), explicit


def test_marginal_variances_are_those_of_the_explicit_inverse():
    posterior, explicit = _posterior()
    np.testing.assert_allclose(posterior.covariance, jnp.diagonal(explicit), rtol=1e-12)


def test_draws_have_the_posterior_mean_and_covariance():
    posterior, explicit = _posterior()
    num = 40_000
    draws = np.asarray(posterior.sample(jax.random.key(0), num))
    explicit = np.asarray(explicit)
    # Per entry the sample mean has sd √(Σ_kk/n) and the sample covariance sd
    # √((Σ_kk Σ_ll + Σ_kl²)/n) (Gaussian draws); 5 sd over 4 + 16 entries: a false alarm
    # below 2e-5.
    mean_sd = np.sqrt(np.diagonal(explicit) / num)
    assert np.all(np.abs(draws.mean(axis=0) - posterior.mean) < 5 * mean_sd)
    covariance_sd = np.sqrt(
        (np.outer(np.diagonal(explicit), np.diagonal(explicit)) + explicit**2) / num
    )
    assert np.all(np.abs(np.cov(draws, rowvar=False) - explicit) < 5 * covariance_sd)


def test_the_factor_squares_to_the_gauss_newton_matrix():
    # A softmax head: its loss's Hessian in the logits is singular (rank ways - 1 per example).
    key_x, key_w, key_y = jax.random.split(jax.random.key(5), 3)
    x = jax.random.normal(key_x, (6, 3))
    labels = jax.random.randint(key_y, (6,), 0, 4)
    theta = jax.random.normal(key_w, (12,))

    def outputs(params):
        return jnp.tanh(x @ params.reshape(3, 4))

    def output_loss(z):
        return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], axis=1))

    factor = gauss_newton_factor(outputs, output_loss, theta)
    jacobian = jax.jacobian(lambda params: jnp.ravel(outputs(params)))(theta)
    hessian = jax.hessian(lambda flat: output_loss(flat.reshape(6, 4)))(jnp.ravel(outputs(theta)))
    np.testing.assert_allclose(factor.T @ factor, jacobian.T @ hessian @ jacobian, atol=1e-12)


def _linear_learner(**options):
    def outputs(params, episode):
        return episode[0] @ params

    def output_loss(predictions, episode):
        return 0.5 * jnp.sum((episode[1] - predictions) ** 2) / NOISE**2

    def loss(params, episode):
        return output_loss(outputs(params, episode), episode)

    return NIWMeta(loss, jnp.zeros(3), outputs=outputs, output_loss=output_loss, **options)


def test_adapting_a_linear_model_gives_its_exact_posterior():
    learner = _linear_learner(init_precision=0.5)
    state = learner.init()
    data = linear_gaussian_episodes(jax.random.key(1), 1, 4, jnp.zeros(3), 1.0, NOISE**2)
    support = (data.design[0], data.targets[0])
    posterior = learner.adapt(jax.random.key(0), state, support)
    assert isinstance(posterior, LinearizedPosterior)
    loc, variance = learner.prior(state).mode()
    precision = jnp.diag(1.0 / variance) + support[0].T @ support[0] / NOISE**2
    exact_mean = jnp.linalg.solve(precision, support[0].T @ support[1] / NOISE**2 + loc / variance)
    # The default fit (L-BFGS, 20 steps) reaches the quadratic's minimum to rounding.
    np.testing.assert_allclose(posterior.mean, exact_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        posterior.covariance, jnp.diagonal(jnp.linalg.inv(precision)), rtol=1e-10
    )
    diagonal = learner.adapt(jax.random.key(0), state, support, curvature="diagonal")
    assert isinstance(diagonal, LocalPosterior)
    np.testing.assert_allclose(diagonal.mean, posterior.mean, rtol=1e-12)
    # The diagonal keeps only diag(XᵀX): its variances are smaller than the exact marginals.
    assert np.all(np.asarray(diagonal.covariance) < np.asarray(posterior.covariance))
    draws = learner.sample_outputs(
        jax.random.key(2), posterior, lambda params: support[0] @ params, 8
    )
    assert draws.shape == (8, 4)


def test_support_curvature_needs_the_models_outputs():
    def loss(params, episode):
        return 0.5 * jnp.sum((episode[1] - episode[0] @ params) ** 2)

    learner = NIWMeta(loss, jnp.zeros(3))
    support = (jnp.ones((2, 3)), jnp.zeros(2))
    assert isinstance(learner.adapt(jax.random.key(0), learner.init(), support), LocalPosterior)
    with pytest.raises(ProbkitError, match="outputs"):
        learner.adapt(jax.random.key(0), learner.init(), support, curvature="support")
    with pytest.raises(ProbkitError, match="curvature"):
        learner.adapt(jax.random.key(0), learner.init(), support, curvature="full")


def test_the_default_fit_needs_no_learning_rate_across_scales():
    # The same well-conditioned quadratic (curvatures 1 to 10) scaled by 1e-3, 1 and 1e3: L-BFGS
    # scales its steps by the curvature it meets and reaches the minimum in 20 steps at every
    # scale; Adam at a fixed rate moves each coordinate by about that rate per step and does
    # not get there at any of them.
    curvatures = jnp.linspace(1.0, 10.0, 5)
    target = jnp.linspace(-1.0, 1.0, 5)
    scales = jnp.array([1e-3, 1.0, 1e3])

    def end(scale, **options):
        def loss(theta):
            return 0.5 * scale * jnp.sum(curvatures * (theta - target) ** 2)

        return laplace_fit(loss, jnp.zeros(5), num_steps=20, **options).mean

    lbfgs = jax.vmap(lambda scale: end(scale, min_precision=1e-6, max_precision=1e6))(scales)
    np.testing.assert_allclose(lbfgs, jnp.broadcast_to(target, (3, 5)), atol=1e-6)
    adam = jax.vmap(lambda scale: end(scale, learning_rate=1e-2))(scales)
    assert np.all(np.max(np.abs(np.asarray(adam - target)), axis=1) > 0.5)
    assert isinstance(default_fit_optimizer(), optax.GradientTransformationExtraArgs)
    with pytest.raises(ProbkitError, match="learning_rate"):
        end(1.0, learning_rate=0.1, optimizer=optax.sgd(0.1))


# --- the meta-loss with the support's full curvature ------------------------------------------


def _law(loc, log_precision, log_df):
    return DiagonalNIW(loc, jnp.exp(log_precision), jnp.exp(log_df), jnp.asarray(1.3))


def test_linearized_meta_loss_is_the_random_effects_loss_for_a_full_rank_factor():
    # A quadratic ½(θ - m̄)ᵀA(θ - m̄) with A = FᵀF of full rank, modelled about another point
    # θ̂: the two forms differ by the model's value at θ̂ alone, in value and in every gradient.
    keys = jax.random.split(jax.random.key(5), 5)
    dimension = 6
    factor = jax.random.normal(keys[0], (dimension + 3, dimension))
    curvature = factor.T @ factor
    centre, point = jax.random.normal(keys[1], (2, dimension))
    linearized = LinearizedFit(point, curvature @ (point - centre), factor)
    at_point = 0.5 * (point - centre) @ curvature @ (point - centre)
    law = (
        jax.random.normal(keys[2], (dimension,)),
        jax.random.normal(keys[3], (dimension,)),
        jnp.asarray(1.5),
    )

    def ours(*law):
        return linearized_episode_meta_loss(_law(*law), linearized) + at_point

    def theirs(*law):
        return random_effects_meta_loss(_law(*law), GaussianFit(centre, curvature))

    np.testing.assert_allclose(ours(*law), theirs(*law), rtol=1e-12)
    for mine, reference in zip(
        jax.grad(ours, (0, 1, 2))(*law), jax.grad(theirs, (0, 1, 2))(*law), strict=True
    ):
        np.testing.assert_allclose(mine, reference, rtol=1e-10, atol=1e-12)


def test_linearized_meta_loss_of_a_rank_one_factor_is_the_negative_log_evidence():
    # d = 2 and one curvature direction: the random-effects form needs an invertible A, so the
    # reference is the evidence ∫ exp(-L_q(θ)) N(θ; m₀, P⁻¹) dθ by quadrature on a grid of ±9
    # prior standard deviations (the trapezoid rule is exact to rounding for such smooth,
    # fast-decaying integrands), plus the law's terms (d/2)[log(n₀/2) - ψ(n₀/2)] + d/(2κ₀).
    point = jnp.array([0.3, -0.2])
    gradient = jnp.array([0.8, -0.5])
    factor = jnp.array([[1.5, 0.7]])
    law = DiagonalNIW(jnp.array([0.1, 0.4]), jnp.array([0.6, 1.7]), jnp.asarray(2.5), 1.3)
    pull = law.prior_precision()
    sd = 1.0 / jnp.sqrt(pull)
    axes = [law.loc[k] + sd[k] * jnp.linspace(-9.0, 9.0, 1201) for k in range(2)]
    grid = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)
    step = grid - point
    model = step @ gradient + 0.5 * (step @ factor.T)[..., 0] ** 2
    prior_density = jnp.exp(-0.5 * jnp.sum(pull * (grid - law.loc) ** 2, axis=-1)) * jnp.prod(
        jnp.sqrt(pull / (2 * jnp.pi))
    )
    evidence = jnp.trapezoid(jnp.trapezoid(jnp.exp(-model) * prior_density, axes[1]), axes[0])
    df = law.df
    expected = -jnp.log(evidence) + (jnp.log(df / 2) - digamma(df / 2)) + 1.0 / law.kappa
    value = linearized_episode_meta_loss(law, LinearizedFit(point, gradient, factor))
    np.testing.assert_allclose(value, expected, rtol=1e-9)


def test_meta_training_with_the_support_curvature_is_exact_for_a_linear_model():
    # A linear-Gaussian model: its Gauss-Newton model is the loss itself, so an update with the
    # support's curvature must equal one with the exact full-precision fit, where the default
    # diagonal of the same learner does not.
    data = linear_gaussian_episodes(jax.random.key(4), 8, 2, jnp.zeros(3), 1.0, NOISE**2)
    episodes = (data.design, data.targets)
    learner = _linear_learner(init_precision=0.5, meta_curvature="support")
    exact = NIWMeta(
        learner.loss,
        jnp.zeros(3),
        fit=lambda key, start, episode: linear_gaussian_fit(episode[0], episode[1], NOISE**2),
        init_precision=0.5,
    )
    diagonal = _linear_learner(init_precision=0.5)
    assert diagonal.meta_curvature == "diagonal"
    states = [
        model.update(jax.random.key(0), model.init(), episodes)[0]
        for model in (learner, exact, diagonal)
    ]
    for name in ("loc", "log_precision", "log_df"):
        np.testing.assert_allclose(states[0].raw[name], states[1].raw[name], rtol=1e-9, atol=1e-12)
    assert not np.allclose(states[0].raw["log_precision"], states[2].raw["log_precision"])


def test_support_meta_curvature_refusals():
    def loss(params, episode):
        return 0.5 * jnp.sum((episode[1] - episode[0] @ params) ** 2)

    with pytest.raises(ProbkitError, match="outputs"):
        NIWMeta(loss, jnp.zeros(3), meta_curvature="support")
    with pytest.raises(ProbkitError, match="quadratic"):
        _linear_learner(meta_loss="monte_carlo", meta_curvature="support")
    with pytest.raises(ProbkitError, match="meta_curvature"):
        _linear_learner(meta_curvature="full")
