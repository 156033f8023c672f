"""NIW meta-learning: closed forms, limits, fits, the learner's API and its refusals.

The identities against theory (random-effects form, numerical optimum, regression posterior,
convergence to the random-effects MLE) are registered checks (``probkit check --capability
meta``); these tests cover the rest. All comparisons are exact up to rounding unless stated.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from probkit import ProbkitError
from probkit.meta import (
    DiagonalNIW,
    GaussianFit,
    NIWMeta,
    episode_meta_loss,
    laplace_fit,
    linear_gaussian_episodes,
    linear_gaussian_fit,
    local_posterior,
    monte_carlo_episode_meta_loss,
    sgld_fit,
    sinusoid_episodes,
)

D = 3


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _prior(pull):
    # n₀γ₀ = pull in every coordinate.
    return DiagonalNIW(
        jnp.array([1.0, -2.0, 0.5]), jnp.full(D, pull / 4.0), jnp.asarray(4.0), jnp.asarray(1.0)
    )


def test_limits_shared_parameters_and_fine_tuning():
    fit = GaussianFit(jnp.array([0.3, 0.7, -1.0]), jnp.array([2.0, 1.0, 5.0]))
    # n₀Γ₀ → ∞: every episode keeps m₀ (ProtoNet-like sharing); → 0: its own fit (fine-tuning).
    shared = local_posterior(_prior(1e12), fit)
    np.testing.assert_allclose(shared.mean, _prior(1.0).loc, atol=1e-11)
    tuned = local_posterior(_prior(1e-12), fit)
    np.testing.assert_allclose(tuned.mean, fit.mean, atol=1e-11)
    np.testing.assert_allclose(tuned.covariance, 1.0 / fit.precision, rtol=1e-11)


@pytest.mark.parametrize("full", [False, True])
def test_the_monte_carlo_meta_loss_of_a_quadratic_loss_is_the_surrogate_plus_its_minimum(full):
    # For L(θ) = c + ½(θ - m̄)ᵀĀ(θ - m̄) the draws average to the surrogate's value plus c, and
    # their gradient in m₀ to the surrogate's. Under q_i = N(m, V), u = m - m̄ and P = n₀Γ₀:
    # Var L = uᵀĀVĀu + ½ tr((ĀV)²), and the gradient's error (VP)ᵀĀV^½z̄ has covariance
    # (VP)ᵀĀVĀ(VP)/S. Tolerances 4 SE (false alarm about 6e-5 per comparison).
    rng = np.random.default_rng(3)
    a = rng.standard_normal((D, D))
    precision = jnp.asarray(a @ a.T + 0.5 * np.eye(D)) if full else jnp.array([2.0, 1.0, 5.0])
    fit = GaussianFit(jnp.array([0.3, 0.7, -1.0]), precision)
    matrix = precision if full else jnp.diag(precision)
    c, prior, draws = 1.7, _prior(2.0), 20_000

    def loss(theta):
        diff = theta - fit.mean
        return c + 0.5 * diff @ matrix @ diff

    @jax.jit
    def estimate(loc):
        return jax.value_and_grad(
            lambda loc: monte_carlo_episode_meta_loss(
                prior._replace(loc=loc), fit, loss, jax.random.key(0), draws
            )
        )(loc)

    @jax.jit
    def surrogate(loc):
        return jax.value_and_grad(lambda loc: episode_meta_loss(prior._replace(loc=loc), fit))(loc)

    (value, grad), (exact_value, exact_grad) = estimate(prior.loc), surrogate(prior.loc)
    mean, covariance = local_posterior(prior, fit)
    v = covariance if full else jnp.diag(covariance)
    u = mean - fit.mean
    value_variance = u @ matrix @ v @ matrix @ u + 0.5 * jnp.trace(matrix @ v @ matrix @ v)
    assert abs(float(value - exact_value - c)) < 4 * float(jnp.sqrt(value_variance / draws))
    sensitivity = v @ jnp.diag(prior.prior_precision())  # ∂m/∂m₀
    grad_covariance = sensitivity.T @ matrix @ v @ matrix @ sensitivity / draws
    np.testing.assert_array_less(
        np.abs(np.asarray(grad - exact_grad)), 4 * np.sqrt(np.diag(np.asarray(grad_covariance)))
    )


def test_the_learner_trains_with_the_monte_carlo_meta_loss():
    data = linear_gaussian_episodes(jax.random.key(4), 32, 6, jnp.array([1.0, -1.0, 0.5]), 0.3, 0.5)

    def loss(params, episode):
        design, targets = episode
        return 0.5 * jnp.sum((targets - design @ params) ** 2) / 0.5

    learner = NIWMeta(
        loss,
        jnp.zeros(D),
        fit=lambda key, start, episode: linear_gaussian_fit(episode[0], episode[1], 0.5),
        meta_loss="monte_carlo",
        num_loss_samples=4,
        optimizer=optax.adam(0.1),
    )
    state, losses = learner.init(), []
    for step in range(40):
        state, info = learner.update(jax.random.key(step), state, (data.design, data.targets))
        losses.append(float(info["meta_loss"]))
    # The quadratic variant's training is checked against the random-effects MLE by the
    # registered check meta/meta_training_reaches_the_random_effects_estimate.
    assert losses[-1] < losses[0] - 1.0
    np.testing.assert_allclose(learner.prior(state).loc, data.theta.mean(0), atol=0.3)
    with pytest.raises(ProbkitError, match="episodes"):
        learner.meta_loss(state.raw, linear_gaussian_fit(data.design[0], data.targets[0], 0.5))


def test_a_full_fit_with_a_diagonal_precision_equals_the_diagonal_fit():
    prior = _prior(2.0)
    diagonal = GaussianFit(jnp.array([0.3, 0.7, -1.0]), jnp.array([2.0, 1.0, 5.0]))
    full = GaussianFit(diagonal.mean, jnp.diag(diagonal.precision))
    a, b = local_posterior(prior, diagonal), local_posterior(prior, full)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-14)
    np.testing.assert_allclose(jnp.diag(a.covariance), b.covariance, rtol=1e-14)
    np.testing.assert_allclose(
        episode_meta_loss(prior, diagonal), episode_meta_loss(prior, full), rtol=1e-13
    )


def test_linear_gaussian_fit_masks_padded_rows():
    data = linear_gaussian_episodes(jax.random.key(0), 1, 8, jnp.zeros(D), 1.0, 0.5)
    x, y = data.design[0], data.targets[0]
    mask = jnp.arange(8) < 5
    padded = linear_gaussian_fit(x, jnp.where(mask, y, 99.0), 0.5, mask)
    kept = linear_gaussian_fit(x[:5], y[:5], 0.5)
    np.testing.assert_allclose(padded.precision, kept.precision, rtol=1e-13)
    np.testing.assert_allclose(padded.mean, kept.mean, rtol=1e-10)


def test_laplace_fit_of_a_quadratic_loss_is_exact():
    centre, precision = jnp.array([1.0, -0.5, 2.0]), jnp.array([0.5, 2.0, 8.0])

    def loss(theta):
        return 0.5 * jnp.sum(precision * (theta - centre) ** 2)

    fit = laplace_fit(loss, jnp.zeros(D), num_steps=3000, learning_rate=0.05)
    np.testing.assert_allclose(fit.precision, precision, rtol=1e-12)
    np.testing.assert_allclose(fit.mean, centre, atol=1e-6)


def test_sgld_fit_is_clamped_and_refuses_too_few_draws():
    def loss(theta):
        return 0.5 * jnp.sum(1e6 * theta**2)  # a very sharp loss: the precision hits the cap

    fit = sgld_fit(loss, jax.random.key(0), jnp.zeros(D), num_steps=50, step_size=1e-7, burnin=10)
    assert np.all(np.asarray(fit.precision) <= 1e3)
    assert np.all(np.isfinite(fit.mean))
    with pytest.raises(ProbkitError, match="num_steps"):
        sgld_fit(loss, jax.random.key(0), jnp.zeros(D), num_steps=11, step_size=1e-3, burnin=10)


def _mlp_loss(params, episode):
    x, y = episode
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    prediction = (hidden @ params["w2"])[..., 0]
    return 0.5 * jnp.sum((prediction - y) ** 2)


def _mlp_params(width=8):
    key1, key2 = jax.random.split(jax.random.key(1))
    return {
        "w1": jax.random.normal(key1, (1, width)) * 0.5,
        "b1": jnp.zeros(width),
        "w2": jax.random.normal(key2, (width, 1)) * 0.5,
    }


def test_the_learner_trains_on_pytree_parameters_and_adapts_to_a_new_episode():
    tasks = sinusoid_episodes(jax.random.key(2), 16, shots=5)
    learner = NIWMeta(
        _mlp_loss,
        _mlp_params(),
        fit="sgld",
        fit_options={"num_steps": 6, "burnin": 2, "step_size": 1e-3},
        optimizer=optax.adam(1e-2),
        num_episodes=16,
    )
    state = learner.init()
    episodes = (tasks.support_x, tasks.support_y)
    losses = []
    for step in range(3):
        state, info = learner.update(jax.random.key(step), state, episodes)
        losses.append(float(info["meta_loss"]))
    assert all(np.isfinite(losses))
    assert int(state.step) == 3
    prior = learner.prior(state)
    assert prior.loc.shape == (learner.dimension,)
    posterior = learner.adapt(jax.random.key(9), state, (tasks.query_x[0], tasks.query_y[0]))
    draws = learner.sample_parameters(jax.random.key(3), posterior, 4)
    assert draws["w1"].shape == (4, 1, 8)
    assert jax.tree.structure(draws) == jax.tree.structure(_mlp_params())


def test_the_update_does_not_grow_with_the_number_of_inner_steps():
    # The fits are constants of the meta-loss and the Langevin draws are summarised on the fly:
    # the compiled update's temporary memory is the same for 16 and 256 inner steps
    # (storing the draws would take 16 times more; MAML's graph grows with its inner steps).
    tasks = sinusoid_episodes(jax.random.key(5), 8, shots=5)
    episodes = (tasks.support_x, tasks.support_y)
    sizes = []
    for steps in (16, 256):
        learner = NIWMeta(
            _mlp_loss,
            _mlp_params(32),
            fit_options={"num_steps": steps, "burnin": 2, "step_size": 1e-3},
        )
        state = learner.init()
        compiled = jax.jit(learner._update_impl).lower(jax.random.key(0), state, episodes).compile()
        analysis = compiled.memory_analysis()
        if analysis is None:
            pytest.skip("this backend reports no memory analysis")
        sizes.append(analysis.temp_size_in_bytes)
    assert sizes[1] <= sizes[0] * 1.02


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": None}, "loss"),
        ({"fit": "maml"}, "fit"),
        ({"fit": 3}, "fit"),
        ({"init_precision": -1.0}, "init_precision"),
        ({"init_df": 0.0}, "init_df"),
        ({"df_bounds": (5.0, 1.0)}, "df_bounds"),
        ({"num_episodes": 0}, "num_episodes"),
    ],
)
def test_bad_learner_settings_are_refused(kwargs, match):
    arguments = {"loss": _mlp_loss, **kwargs}
    loss = arguments.pop("loss")
    with pytest.raises(ProbkitError, match=match):
        NIWMeta(loss, _mlp_params(), **arguments)


def test_bad_episodes_are_refused():
    learner = NIWMeta(_mlp_loss, _mlp_params())
    state = learner.init()
    with pytest.raises(ProbkitError, match="leading"):
        learner.update(jax.random.key(0), state, (jnp.ones((4, 5, 1)), jnp.ones((3, 5))))
    with pytest.raises(ProbkitError, match="empty"):
        learner.adapt(jax.random.key(0), state, (jnp.ones((0, 1)), jnp.ones((0,))))
    with pytest.raises(ProbkitError, match="parameters"):
        NIWMeta(_mlp_loss, {})
