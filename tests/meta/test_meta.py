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
    LocalPosterior,
    NIWMeta,
    episode_meta_loss,
    ggn_fit,
    laplace_fit,
    linear_gaussian_episodes,
    linear_gaussian_fit,
    local_posterior,
    monte_carlo_episode_meta_loss,
    sgld_fit,
    sinusoid_episodes,
)
from probkit.meta.core import _expected_fit_loss

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


def test_ggn_fit_of_a_linear_model_is_the_exact_least_squares_fit():
    # f(θ) = Xθ under squared error: JᵀHJ = XᵀX/σ², the Hessian, whose diagonal the fit keeps.
    x = jax.random.normal(jax.random.key(3), (12, D))
    y = x @ jnp.array([0.5, -1.0, 2.0]) + 0.1 * jax.random.normal(jax.random.key(4), (12,))
    fit = ggn_fit(
        lambda theta: x @ theta,
        lambda z: 0.5 * jnp.sum((z - y) ** 2) / 0.25,
        jnp.zeros(D),
        num_steps=3000,
        learning_rate=0.05,
    )
    exact = linear_gaussian_fit(x, y, 0.25)
    np.testing.assert_allclose(fit.precision, jnp.diag(exact.precision), rtol=1e-12)
    np.testing.assert_allclose(fit.mean, exact.mean, atol=1e-6)


def test_fits_take_the_optimiser_they_are_given():
    # Three plain gradient steps of 0.1 on ½‖θ − c‖²: θ₃ = c − 0.9³ c from 0.
    centre = jnp.array([1.0, -2.0, 0.5])
    fit = ggn_fit(
        lambda theta: theta,
        lambda z: 0.5 * jnp.sum((z - centre) ** 2),
        jnp.zeros(D),
        num_steps=3,
        optimizer=optax.sgd(0.1),
    )
    np.testing.assert_allclose(fit.mean, centre * (1 - 0.9**3), rtol=1e-12)
    np.testing.assert_allclose(fit.precision, jnp.ones(D), rtol=1e-12)


def test_ggn_fit_of_a_softmax_network_is_its_fisher_information():
    # Under cross-entropy the Gauss-Newton matrix is the Fisher information of the model's own
    # labels: diag GGN = Σ_n Σ_c p_nc (∂ log p_nc / ∂θ)², computed here label by label.
    x = jax.random.normal(jax.random.key(5), (6, 2))
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    size = 2 * 4 + 4 * 3

    def logits(theta):
        w1, w2 = theta[:8].reshape(2, 4), theta[8:].reshape(4, 3)
        return jnp.tanh(x @ w1) @ w2

    def output_loss(z):
        return -jnp.sum(jax.nn.log_softmax(z)[jnp.arange(6), labels])

    theta = 0.7 * jax.random.normal(jax.random.key(6), (size,))
    fit = ggn_fit(logits, output_loss, theta, num_steps=0, learning_rate=0.1, min_precision=0.0)

    def log_probability(point, n, c):
        return jax.nn.log_softmax(logits(point))[n, c]

    fisher = jnp.zeros(size)
    probabilities = jax.nn.softmax(logits(theta))
    for n in range(6):
        for c in range(3):
            score = jax.grad(log_probability)(theta, n, c)
            fisher = fisher + probabilities[n, c] * score**2
    np.testing.assert_allclose(fit.mean, theta, rtol=0, atol=0)
    np.testing.assert_allclose(fit.precision, fisher, rtol=1e-10)


def _logistic_episode():
    x = jax.random.normal(jax.random.key(11), (8, D))
    labels = jnp.array([0, 1, 1, 0, 1, 0, 0, 1])
    return x, labels


def _bfgs_minimum(objective, start, gtol=1e-12):
    # An independent optimiser for the references: scipy's BFGS with JAX's gradient.
    from scipy.optimize import minimize

    value_and_grad = jax.jit(jax.value_and_grad(objective))
    return minimize(
        lambda t: tuple(np.asarray(v) for v in value_and_grad(jnp.asarray(t))),
        np.asarray(start),
        jac=True,
        method="BFGS",
        options={"gtol": gtol},
    ).x


def _logistic_map(x, labels, start, pull):
    def objective(theta):
        logits = x @ theta
        nll = jnp.sum(jax.nn.softplus(logits) - labels * logits)
        return nll + 0.5 * jnp.sum(pull * (theta - start) ** 2)

    return _bfgs_minimum(objective, start)


@pytest.mark.parametrize("fit_name", ["laplace", "ggn"])
def test_a_posterior_target_fit_puts_the_closed_form_mean_at_the_map(fit_name):
    # The fit minimises L + ½P‖θ − m₀‖² and returns m̄ = θ* + P(θ* − m₀)/Ā, for which the closed
    # form (Ām̄ + Pm₀)/(Ā + P) is θ*. Logistic regression is not quadratic, so this is not the
    # trivial case; the MAP comes from scipy.
    x, labels = _logistic_episode()
    prior = _prior(2.0)
    pull = prior.prior_precision()

    def logits(theta):
        return x @ theta

    def output_loss(z):
        return jnp.sum(jax.nn.softplus(z) - labels * z)

    options = {"num_steps": 4000, "learning_rate": 0.02, "prior_precision": pull}
    if fit_name == "laplace":
        fit = laplace_fit(lambda t: output_loss(logits(t)), prior.loc, **options)
    else:
        fit = ggn_fit(logits, output_loss, prior.loc, **options)
    expected = _logistic_map(x, labels, prior.loc, pull)
    np.testing.assert_allclose(local_posterior(prior, fit).mean, expected, atol=1e-6)
    # The fit's mean is not the MAP itself but, there, the centre of the loss's quadratic model
    # (∇L = −P(θ* − m₀) at the MAP).
    gradient = jax.grad(lambda t: output_loss(logits(t)))(jnp.asarray(expected))
    np.testing.assert_allclose(fit.mean, expected - gradient / fit.precision, atol=1e-5)
    assert np.max(np.abs(np.asarray(fit.mean) - expected)) > 0.05


def test_on_separable_data_only_the_posterior_target_fit_has_somewhere_to_stop():
    # Separable labels: the loss has no minimum (the weights grow for ever along the separating
    # direction), so a fit of the loss alone depends on when its steps stop and its closed form
    # never reaches the MAP; the posterior objective has a minimum, which the fit reaches.
    x, _ = _logistic_episode()
    labels = (x[:, 0] > 0).astype(x.dtype)
    prior = _prior(2.0)
    pull = prior.prior_precision()

    def loss(theta):
        logits = x @ theta
        return jnp.sum(jax.nn.softplus(logits) - labels * logits)

    expected = _logistic_map(x, labels, prior.loc, pull)
    norms, errors = [], []
    for steps in (300, 4000):
        fit = laplace_fit(loss, prior.loc, num_steps=steps, learning_rate=0.02)
        norms.append(float(jnp.linalg.norm(fit.mean)))
        errors.append(float(jnp.linalg.norm(local_posterior(prior, fit).mean - expected)))
        aware = laplace_fit(
            loss, prior.loc, num_steps=steps, learning_rate=0.02, prior_precision=pull
        )
        np.testing.assert_allclose(local_posterior(prior, aware).mean, expected, atol=1e-5)
    assert norms[1] > 2 * norms[0]  # 4.0 and 11.5 when written
    assert min(errors) > 0.5  # 0.80 and 1.25


def test_a_quadratic_loss_posterior_target_fit_is_exact():
    centre, curvature = jnp.array([0.4, -1.0, 2.0]), jnp.array([3.0, 0.5, 8.0])

    def loss(theta):
        return 0.5 * jnp.sum(curvature * (theta - centre) ** 2)

    fit = laplace_fit(
        loss, jnp.zeros(D), num_steps=3000, learning_rate=0.05, prior_precision=jnp.full(D, 1.5)
    )
    np.testing.assert_allclose(fit.precision, curvature, rtol=1e-12)
    np.testing.assert_allclose(fit.mean, centre, atol=1e-8)


def test_a_posterior_target_fit_refuses_a_zero_precision_floor():
    with pytest.raises(ProbkitError, match="min_precision"):
        laplace_fit(
            lambda t: jnp.sum(t**2),
            jnp.zeros(D),
            num_steps=1,
            prior_precision=1.0,
            min_precision=0.0,
        )


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


def _mlp_outputs(params, episode):
    x, _ = episode
    return (jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"])[..., 0]


def test_the_ggn_learner_fits_through_the_model_outputs():
    tasks = sinusoid_episodes(jax.random.key(2), 8, shots=5)
    episodes = (tasks.support_x, tasks.support_y)
    learner = NIWMeta(
        _mlp_loss,
        _mlp_params(),
        fit="ggn",
        fit_target="loss",
        outputs=_mlp_outputs,
        output_loss=lambda z, episode: 0.5 * jnp.sum((z - episode[1]) ** 2),
        fit_options={"num_steps": 5, "min_precision": -np.inf, "max_precision": np.inf},
    )
    state = learner.init()
    one = jax.tree.map(lambda leaf: leaf[0], episodes)
    fit = learner.fit_episode(jax.random.key(0), state.raw["loc"], one)
    # The Hessian of ½Σ(f_n − y_n)² is JᵀJ + Σ_n r_n ∇²f_n: the fit's diag(JᵀJ) is the
    # Laplace fit's Hessian diagonal less the residual-weighted curvature of the outputs.
    flat_loss = lambda theta: _mlp_loss(learner.unravel(theta), one)  # noqa: E731
    laplace = laplace_fit(
        flat_loss,
        state.raw["loc"],
        num_steps=5,
        min_precision=-np.inf,
        max_precision=np.inf,
    )
    np.testing.assert_allclose(fit.mean, laplace.mean, rtol=1e-12)
    output = lambda theta: _mlp_outputs(learner.unravel(theta), one)  # noqa: E731
    residuals = output(fit.mean) - one[1]
    curvature = jnp.einsum("n,ndd->d", residuals, jax.hessian(output)(fit.mean))
    np.testing.assert_allclose(fit.precision, laplace.precision - curvature, atol=1e-10)
    state, info = learner.update(jax.random.key(1), state, episodes)
    assert bool(info["applied"])
    assert int(info["rejected_episodes"]) == 0


def test_a_posterior_target_learner_adapts_to_the_map_under_the_mode():
    # adapt() fits the support loss plus the mode's precision γ₀(n₀ + 3): the local posterior's
    # mean is the MAP of that objective, which an independent optimiser finds from scratch.
    tasks = sinusoid_episodes(jax.random.key(2), 8, shots=5)
    episodes = (tasks.support_x, tasks.support_y)
    learner = NIWMeta(
        _mlp_loss,
        _mlp_params(),
        fit="ggn",
        fit_target="posterior",
        outputs=_mlp_outputs,
        output_loss=lambda z, episode: 0.5 * jnp.sum((z - episode[1]) ** 2),
        fit_options={"num_steps": 3000, "learning_rate": 1e-2},
        init_precision=0.05,
        optimizer=optax.adam(1e-2),
    )
    state, info = learner.update(jax.random.key(1), learner.init(), episodes)
    assert bool(info["applied"])
    assert int(info["rejected_episodes"]) == 0
    support = (tasks.query_x[0], tasks.query_y[0])
    posterior = learner.adapt(jax.random.key(9), state, support)
    loc, variance = learner.prior(state).mode()

    def objective(theta):
        return _mlp_loss(learner.unravel(theta), support) + 0.5 * jnp.sum(
            (theta - loc) ** 2 / variance
        )

    expected = _bfgs_minimum(objective, loc, gtol=1e-10)
    np.testing.assert_allclose(posterior.mean, expected, atol=1e-5)
    assert np.max(np.abs(expected - np.asarray(loc))) > 0.05  # the support set moved it


def test_the_posterior_target_meta_loss_is_the_loss_model_about_the_mode():
    # With fit_target="posterior" an episode's quadratic meta-loss is E_q[∇L(θ*)ᵀ(θ − θ*) +
    # ½(θ − θ*)ᵀĀ(θ − θ*)] + E KL: the loss's own second-order model about the mode, built
    # here from the loss's autodiff gradient at θ* (which the learner never sees).
    tasks = sinusoid_episodes(jax.random.key(2), 4, shots=5)
    episodes = (tasks.support_x, tasks.support_y)
    learner = NIWMeta(
        _mlp_loss,
        _mlp_params(),
        fit="laplace",
        fit_target="posterior",
        # Converged tightly: the learner's linear term is −P(θ* − m₀), the reference's ∇L(θ*).
        fit_options={
            "num_steps": 6000,
            "optimizer": optax.adam(optax.exponential_decay(1e-2, 1000, 0.3)),
        },
        init_precision=0.5,
    )
    state = learner.init()
    prior = learner.prior(state)
    fits = jax.vmap(
        lambda e: learner.fit_episode(jax.random.key(0), prior.loc, e, prior.prior_precision())
    )(episodes)
    value, grads = jax.value_and_grad(learner.meta_loss)(state.raw, fits)

    def expected(raw):
        law = learner.prior(raw)
        total = 0.0
        for i in range(4):
            fit = jax.tree.map(lambda leaf, i=i: leaf[i], fits)
            episode = jax.tree.map(lambda leaf, i=i: leaf[i], episodes)
            mode = jax.lax.stop_gradient(local_posterior(prior, fit).mean)
            gradient = jax.grad(lambda t, e=episode: _mlp_loss(learner.unravel(t), e))(mode)
            post = local_posterior(law, fit)
            shift = post.mean - mode
            model = gradient @ shift + 0.5 * jnp.sum(fit.precision * (shift**2 + post.covariance))
            total = total + model + episode_meta_loss(law, fit) - _expected_fit_loss(fit, post)
        return total / 4

    np.testing.assert_allclose(value, expected(state.raw), rtol=1e-6)
    expected_grads = jax.grad(expected)(state.raw)
    for name in ("loc", "log_precision", "log_df"):
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-5, atol=1e-8)


def test_sampled_outputs_are_the_model_at_the_draws_or_its_linearisation():
    learner = NIWMeta(_mlp_loss, _mlp_params())
    d = learner.dimension
    posterior = LocalPosterior(
        jax.random.normal(jax.random.key(4), (d,)), jnp.linspace(0.01, 0.2, d)
    )
    x = jnp.linspace(-2.0, 2.0, 7)[:, None]

    def outputs(params):
        return _mlp_outputs(params, (x, None))

    key = jax.random.key(8)
    thetas = LocalPosterior(*posterior).sample(key, 5)
    direct = learner.sample_outputs(key, posterior, outputs, 5, linearized=False)
    params = learner.sample_parameters(key, posterior, 5)
    np.testing.assert_allclose(direct, jax.vmap(outputs)(params), rtol=1e-12)
    linear = learner.sample_outputs(key, posterior, outputs, 5, linearized=True)
    flat_outputs = lambda theta: outputs(learner.unravel(theta))  # noqa: E731
    jacobian = jax.jacfwd(flat_outputs)(posterior.mean)
    expected = flat_outputs(posterior.mean) + (thetas - posterior.mean) @ jacobian.T
    np.testing.assert_allclose(linear, expected, rtol=1e-10, atol=1e-12)
    assert linear.shape == direct.shape == (5, 7)
    assert np.max(np.abs(np.asarray(linear - direct))) > 1e-3  # the network is not linear


@pytest.mark.parametrize("fit", ["sgld", "laplace"])
def test_the_update_does_not_grow_with_the_number_of_inner_steps(fit):
    # The fits are constants of the meta-loss and the Langevin draws are summarised on the fly:
    # the compiled update's temporary memory is the same for 16 and 256 inner steps
    # (storing the draws would take 16 times more; MAML's graph grows with its inner steps).
    # The default fit (Laplace at the MAP) unrolls up to 32 steps: 256 are a rolled loop.
    tasks = sinusoid_episodes(jax.random.key(5), 8, shots=5)
    episodes = (tasks.support_x, tasks.support_y)
    sizes = []
    for steps in (16, 256):
        options = {"num_steps": steps}
        if fit == "sgld":
            options.update(burnin=2, step_size=1e-3)
        learner = NIWMeta(_mlp_loss, _mlp_params(32), fit=fit, fit_options=options)
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
        ({"fit": "ggn"}, "outputs"),
        ({"fit_target": "map"}, "fit_target"),
        ({"fit": "sgld", "fit_target": "posterior"}, "fit_target"),
        ({"init_precision": -1.0}, "init_precision"),
        ({"init_df": 0.0}, "init_df"),
        ({"df_bounds": (5.0, 1.0)}, "df_bounds"),
        ({"num_episodes": 0}, "num_episodes"),
        ({"max_loss_increase": 0.0}, "max_loss_increase"),
        ({"max_loss_increase": np.inf}, "max_loss_increase"),
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


# --- failed fits and non-finite updates --------------------------------------------------------


def _bowl_loss(params, episode):
    # A quadratic bowl per episode: episode = (centre (D,), curvature ()).
    centre, curvature = episode
    return 0.5 * curvature * jnp.sum((params["w"] - centre) ** 2)


def _exact_bowl_fit(key, start, episode):
    centre, curvature = episode
    return GaussianFit(centre, jnp.full(D, curvature))


def _bowl_episodes(centres, curvatures):
    return jnp.asarray(centres, jnp.float64), jnp.asarray(curvatures, jnp.float64)


def _bowl_learner(**kwargs):
    options = {"fit": _exact_bowl_fit, "optimizer": optax.adam(1e-1), **kwargs}
    return NIWMeta(_bowl_loss, {"w": jnp.zeros(D)}, **options)


def test_a_failed_fit_is_left_out_of_its_batch():
    learner = _bowl_learner()
    good = [[1.0, 2.0, 3.0], [-1.0, 0.0, 0.5]]
    bad = [[np.nan, 0.0, 0.0]]
    state = learner.init()
    kept, info_kept = learner.update(jax.random.key(0), state, _bowl_episodes(good, [1.0, 2.0]))
    mixed, info = learner.update(
        jax.random.key(0), state, _bowl_episodes(good + bad, [1.0, 2.0, 1.0])
    )
    assert int(info["rejected_episodes"]) == 1
    assert bool(info["applied"])
    np.testing.assert_allclose(info["meta_loss"], info_kept["meta_loss"], rtol=1e-12)
    for name in mixed.raw:
        np.testing.assert_allclose(mixed.raw[name], kept.raw[name], rtol=1e-12)
    assert (int(mixed.step), int(mixed.rejected_episodes), int(mixed.skipped_updates)) == (1, 1, 0)


def test_a_diverging_langevin_chain_is_rejected():
    # ε·curvature = 10 > 2: the chain on the stiff bowl grows ninefold per step, to a loss of
    # about 1e42 after 20 steps (finite in float64, so only the loss-increase test can see it);
    # ε·curvature = 1e-4 on the others is stable.
    learner = NIWMeta(
        _bowl_loss,
        {"w": jnp.zeros(D)},
        fit="sgld",
        fit_options={"num_steps": 20, "burnin": 10, "step_size": 1e-4},
    )
    episodes = _bowl_episodes([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [1.0, 0.0, 0.0]], [1.0, 1.0, 1e5])
    fit = learner.fit_episode(
        jax.random.key(1), jnp.zeros(D), jax.tree.map(lambda x: x[2], episodes)
    )
    assert np.all(np.isfinite(fit.mean))
    assert np.max(np.abs(fit.mean)) > 1e15
    state, info = learner.update(jax.random.key(1), learner.init(), episodes)
    assert int(info["rejected_episodes"]) == 1
    assert bool(info["applied"])
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))


def test_an_update_without_a_sound_episode_or_with_an_overflowing_state_is_skipped():
    learner = _bowl_learner()
    start = learner.init()
    state, info = learner.update(
        jax.random.key(0), start, _bowl_episodes([[np.nan, 0.0, 0.0]], [1.0])
    )
    assert not bool(info["applied"])
    assert int(state.skipped_updates) == 1
    assert int(state.step) == 0
    for new, old in zip(jax.tree.leaves(state.raw), jax.tree.leaves(start.raw), strict=True):
        np.testing.assert_array_equal(new, old)

    # A sound but enormous fit: its gradient is finite, its square (Adam's second moment)
    # overflows. Applying it would freeze m₀ for good; the update is skipped instead.
    learner = NIWMeta(
        lambda params, episode: 0.0 * jnp.sum(params["w"]),
        {"w": jnp.zeros(D)},
        fit=_exact_bowl_fit,
        optimizer=optax.adam(1e-1),
    )
    state, info = learner.update(
        jax.random.key(0), learner.init(), _bowl_episodes([[1e200, 0.0, 0.0]], [1.0])
    )
    assert int(info["rejected_episodes"]) == 0
    assert not bool(info["applied"])
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state))


def test_strict_learners_raise_on_a_failed_fit():
    learner = _bowl_learner(strict=True)
    episodes = _bowl_episodes([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]], [1.0, 1.0])
    with pytest.raises(ProbkitError, match="1 of 2 episode fits failed"):
        learner.update(jax.random.key(0), learner.init(), episodes)
    state, _ = learner.update(
        jax.random.key(0), learner.init(), _bowl_episodes([[1.0, 2.0, 3.0]], [1.0])
    )
    assert int(state.step) == 1
