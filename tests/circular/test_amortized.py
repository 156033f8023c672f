"""Amortised von Mises mixtures: concentration transforms, the raw-head likelihood, training.

Synthetic data come from ``scipy.stats.vonmises.rvs`` with fixed numpy seeds, so these tests do
not depend on probkit's samplers. Tolerances on fitted parameters are derived from the Fisher
information of the sample (standard errors), not tuned to what happened to pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize, special, stats

from probkit._errors import ProbkitError
from probkit.circular.amortized import (
    VONMISESNET_CONCENTRATION,
    AmortizedVonMisesMixture,
    ConcentrationTransform,
    apply_mlp,
    init_mlp,
    mixture_log_likelihood,
    mixture_parameters,
)

TRANSFORMS = [
    ConcentrationTransform("softplus", minimum=0.5),
    ConcentrationTransform("exp"),
    VONMISESNET_CONCENTRATION,
]


def _bessel_ratio(kappa):
    return special.i1e(kappa) / special.i0e(kappa)


def _bessel_ratio_derivative(kappa):
    ratio = _bessel_ratio(kappa)
    return 1.0 - ratio**2 - ratio / kappa


def _scipy_mixture_logpdf(theta, weights, loc, kappa):
    """log Σ_k w_k vM(θ | μ_k, κ_k) in float64 by scipy (the reference)."""
    theta = np.asarray(theta, float)[..., None]
    # scipy's support is [loc - π, loc + π]: wrap θ into it first.
    wrapped = loc + np.mod(theta - loc + np.pi, 2 * np.pi) - np.pi
    log_components = stats.vonmises.logpdf(wrapped, kappa, loc=loc)
    return special.logsumexp(np.log(weights) + log_components, axis=-1)


def _wrap(angle):
    return np.mod(np.asarray(angle) + np.pi, 2 * np.pi) - np.pi


# ---------------------------------------------------------------------------------------------
# Concentration transforms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: t.kind)
def test_concentration_transform_inverse_undoes_forward(x64, transform):
    raw = np.linspace(-6.0, 6.0, 25)
    np.testing.assert_allclose(transform.inverse(transform.forward(raw)), raw, atol=1e-9)
    upper = 21.0 if transform.maximum is not None else 1e6
    kappa = np.geomspace(transform.minimum + 1e-3, upper - 1e-3, 25)
    np.testing.assert_allclose(transform.forward(transform.inverse(kappa)), kappa, rtol=1e-10)


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: t.kind)
def test_concentration_transform_respects_its_bounds_in_float32(transform):
    raw = np.linspace(-80.0, 80.0, 401, dtype=np.float32)
    kappa = np.asarray(transform.forward(raw))
    assert kappa.dtype == np.float32
    assert np.all(np.isfinite(kappa))
    assert np.all(kappa >= transform.minimum)
    assert np.all(np.diff(kappa) >= 0)  # monotone, so inverse is well defined
    if transform.maximum is not None:
        assert np.all(kappa <= transform.maximum)
    else:
        assert kappa[-1] > 80.0  # unbounded above: softplus grows linearly, exp exponentially


def test_vonmisesnet_transform_is_twenty_sigmoid_plus_one(x64):
    raw = np.linspace(-5.0, 5.0, 11)
    np.testing.assert_allclose(
        VONMISESNET_CONCENTRATION.forward(raw), 20.0 * special.expit(raw) + 1.0, rtol=1e-14
    )


# ---------------------------------------------------------------------------------------------
# The log-likelihood from raw heads
# ---------------------------------------------------------------------------------------------


def test_raw_head_log_likelihood_matches_scipy_mixture_and_integrates_to_one(x64):
    rng = np.random.default_rng(0)
    batch, k = 6, 3
    transform = ConcentrationTransform("softplus", minimum=0.0)
    logits = rng.normal(size=(batch, k))
    loc = rng.uniform(-10, 10, size=(batch, k))  # unconstrained: beyond ±π on purpose
    kappa = np.geomspace(0.01, 500.0, batch * k).reshape(batch, k)
    raw = transform.inverse(kappa)
    theta = rng.uniform(-7, 7, size=batch)

    weights, wrapped_loc, concentration = mixture_parameters(logits, loc, raw, transform)
    np.testing.assert_allclose(weights, special.softmax(logits, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(concentration, kappa, rtol=1e-10)
    assert np.all((wrapped_loc >= -np.pi) & (wrapped_loc < np.pi))
    np.testing.assert_allclose(np.cos(wrapped_loc - loc), 1.0, atol=1e-12)

    log_density = mixture_log_likelihood(logits, loc, raw, theta, transform)
    expected = _scipy_mixture_logpdf(theta, np.asarray(weights), loc, kappa)
    np.testing.assert_allclose(log_density, expected, rtol=1e-10, atol=1e-10)

    # Normalisation by the periodic trapezoid rule (spectrally accurate; 4096 points resolve
    # κ = 500, σ ≈ 0.045 rad, with 30 points per σ).
    grid = np.linspace(-np.pi, np.pi, 4096, endpoint=False)
    heads = [
        np.broadcast_to(np.asarray(h)[:, None, :], (batch, 4096, k)) for h in (logits, loc, raw)
    ]
    density = np.exp(
        mixture_log_likelihood(*heads, np.broadcast_to(grid, (batch, 4096)), transform)
    )
    np.testing.assert_allclose(density.sum(axis=-1) * (2 * np.pi / 4096), 1.0, rtol=1e-12)


def test_raw_head_log_likelihood_is_accurate_at_kappa_1e4_in_float32():
    # κ = 1e4 (σ = 0.01 rad): log I₀ alone overflows float32 at κ ≈ 90; the scaled form must not.
    transform = ConcentrationTransform()  # the default, exp
    kappa = np.array([1e4, 3.0])
    loc = np.array([0.7, -2.0])
    logits = np.array([0.3, -0.3], np.float32)
    raw = np.asarray(transform.inverse(kappa), np.float32)
    theta = np.linspace(0.7 - 0.04, 0.7 + 0.04, 41)  # ±4σ around the sharp mode
    heads = [np.broadcast_to(np.asarray(h, np.float32), (41, 2)) for h in (logits, loc, raw)]
    log_density = mixture_log_likelihood(*heads, theta.astype(np.float32), transform)
    assert log_density.dtype == jnp.float32
    weights = special.softmax(logits.astype(float))
    expected = _scipy_mixture_logpdf(theta, weights, loc, kappa)
    # float32 rounding of θ - μ (≈ 6e-8 absolute) moves 2κ sin²(d/2) by ≲ 2κ·d·6e-8 ≈ 5e-5.
    np.testing.assert_allclose(log_density, expected, atol=2e-4)

    # Finite gradients with respect to every head, and the density still integrates to one.
    gradients = jax.grad(
        lambda heads: mixture_log_likelihood(*heads, jnp.float32(0.705), transform)
    )(tuple(np.array(h[0]) for h in heads))
    assert all(np.all(np.isfinite(g)) for g in gradients)
    n = 2**16
    grid = np.linspace(-np.pi, np.pi, n, endpoint=False, dtype=np.float32)
    full = [np.broadcast_to(h[:1], (n, 2)) for h in heads]
    density = np.exp(np.asarray(mixture_log_likelihood(*full, grid, transform), float))
    np.testing.assert_allclose(density.sum() * 2 * np.pi / n, 1.0, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# The MLP and the model's shapes
# ---------------------------------------------------------------------------------------------


def test_mlp_uses_glorot_limits_and_a_linear_output_layer():
    params = init_mlp(jax.random.key(0), (3, 50, 7))
    assert [w.shape for w, _ in params] == [(3, 50), (50, 7)]
    for (w, b), (fan_in, fan_out) in zip(params, [(3, 50), (50, 7)], strict=True):
        assert np.abs(np.asarray(w)).max() <= np.sqrt(6 / (fan_in + fan_out))
        assert np.all(np.asarray(b) == 0)
    x = np.ones((4, 3), np.float32)
    expected = np.tanh(x @ np.asarray(params[0][0])) @ np.asarray(params[1][0])
    np.testing.assert_allclose(apply_mlp(params, x, "tanh"), expected, rtol=1e-6)


# One small model shared by the shape, weight and distribution tests (equal models share
# their compiled programs).
SMALL = AmortizedVonMisesMixture(n_components=4, hidden_sizes=(5,))


def _small_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 2))
    theta = stats.vonmises.rvs(4.0, loc=0.5 * x[:, 0], size=40, random_state=rng)
    return x, theta


def test_model_heads_have_one_k_axis_per_angle_and_spread_initial_locations():
    params = SMALL.init(jax.random.key(1), 2)
    heads = SMALL.apply(params, np.zeros((40, 2)))
    assert all(h.shape == (40, 4) for h in heads)
    # Zero features: the heads equal the output biases: evenly spread locations, equal weights.
    np.testing.assert_allclose(
        heads.loc[0], np.pi * np.array([-0.75, -0.25, 0.25, 0.75]), rtol=1e-6
    )
    np.testing.assert_allclose(heads.logits, 0.0)

    several = AmortizedVonMisesMixture(n_components=2, hidden_sizes=(), n_angles=3)
    params = several.init(jax.random.key(2), 2)
    x = np.random.default_rng(0).normal(size=(5, 2))
    heads = several.apply(params, x)
    assert all(h.shape == (5, 3, 2) for h in heads)
    angles = np.zeros((5, 3))
    per_angle = several.log_likelihood(params, x, angles)
    assert per_angle.shape == (5, 3)
    # Independent angles: a row's loss term is the sum over its angles.
    np.testing.assert_allclose(
        several.loss(params, x, angles), -per_angle.sum(axis=1).mean(), rtol=1e-6
    )


def test_sample_weights_act_as_row_counts_in_the_loss():
    x, theta = _small_data()
    counts = np.random.default_rng(4).integers(0, 4, size=40)
    counts[0] = 1
    params = SMALL.init(jax.random.key(1), 2)
    weighted = SMALL.loss(params, x, theta, sample_weight=counts)
    duplicated = SMALL.loss(params, np.repeat(x, counts, axis=0), np.repeat(theta, counts))
    np.testing.assert_allclose(weighted, duplicated, rtol=1e-5)


def test_distribution_is_the_mixture_of_the_predicted_parameters():
    mixture = pytest.importorskip("probkit.circular.mixture")
    if not hasattr(mixture, "VonMisesMixture"):
        pytest.skip("probkit.circular.mixture.VonMisesMixture is not available yet")
    x, theta = _small_data()
    params = SMALL.init(jax.random.key(1), 2)
    distribution = SMALL.distribution(params, x)
    assert isinstance(distribution, mixture.VonMisesMixture)
    assert distribution.batch_shape == (40,)
    # One compiled program instead of numpyro's many eager operations.
    log_prob = jax.jit(lambda p: SMALL.distribution(p, x).log_prob(theta))(params)
    np.testing.assert_allclose(
        log_prob, SMALL.log_likelihood(params, x, theta), rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def test_fit_recovers_a_feature_controlled_von_mises_within_fisher_standard_errors():
    # θ | x ~ vM(x + 0.5, κ = 10). A linear head (hidden_sizes=()) with K = 1 contains the truth,
    # so the maximum-likelihood estimates are asymptotically normal with Fisher standard errors:
    # loc(x) and κ(x) are orthogonal, with information κA(κ) and A'(κ) per row times the design.
    rng = np.random.default_rng(11)
    n, kappa = 2000, 10.0
    x = rng.uniform(-1.5, 1.5, size=n)
    theta = _wrap(stats.vonmises.rvs(kappa, loc=x + 0.5, size=n, random_state=rng))
    model = AmortizedVonMisesMixture(n_components=1, hidden_sizes=())
    steps = 1500
    result = model.fit(
        jax.random.key(0),
        x[:, None],
        theta,
        optimizer=optax.adam(optax.cosine_decay_schedule(0.1, steps)),
        steps=steps,
    )
    trace = np.asarray(result.loss_trace)
    assert trace[-1] < trace[0] - 0.5

    # The fit reaches the maximum-likelihood optimum of the same parametric family (float64).
    def negative_log_likelihood(p):
        loc = p[0] * x + p[1]
        k = np.exp(p[2] * x + p[3])  # the default transform: exp, κ_min = 0
        return -np.mean(k * np.cos(theta - loc) - np.log(2 * np.pi * special.i0e(k)) - k)

    mle = optimize.minimize(negative_log_likelihood, [1.0, 0.0, 0.0, 1.0], method="BFGS")
    fitted_nll = float(model.loss(result.params, x[:, None], theta))
    assert fitted_nll <= mle.fun + 2e-5  # float32 loss evaluation

    design = np.stack([x, np.ones(n)], axis=1)
    points = np.array([-1.0, 0.0, 1.0])
    leverage = np.einsum(
        "pi,ij,pj->p",
        np.stack([points, np.ones(3)], 1),
        np.linalg.inv(design.T @ design),
        np.stack([points, np.ones(3)], 1),
    )
    se_loc = np.sqrt(leverage / (kappa * _bessel_ratio(kappa)))
    se_kappa = np.sqrt(leverage / _bessel_ratio_derivative(kappa))
    weights, loc, concentration = mixture_parameters(
        *model.apply(result.params, points[:, None]), model.concentration
    )
    # 4 standard errors: a two-sided false-alarm rate of 6e-5 per comparison.
    assert np.all(np.abs(_wrap(np.asarray(loc[:, 0]) - (points + 0.5))) < 4 * se_loc)
    assert np.all(np.abs(np.asarray(concentration[:, 0]) - kappa) < 4 * se_kappa)
    np.testing.assert_allclose(weights, 1.0)


def test_fit_learns_feature_dependent_mixture_weights_with_minibatches():
    # θ | x ~ σ(3x)·vM(1 + x, 15) + (1 - σ(3x))·vM(-2, 4): the feature moves one component and
    # shifts the weights. An MLP with K = 2 is trained on minibatches of 256 rows.
    rng = np.random.default_rng(5)

    def draw(size):
        x = rng.uniform(-1, 1, size=size)
        first = rng.uniform(size=size) < special.expit(3 * x)
        theta = np.where(
            first,
            stats.vonmises.rvs(15.0, loc=1 + x, size=size, random_state=rng),
            stats.vonmises.rvs(4.0, loc=-2.0, size=size, random_state=rng),
        )
        return x, _wrap(theta)

    def true_log_density(x, theta):
        w = special.expit(3 * x)
        weights = np.stack([w, 1 - w], axis=-1)
        loc = np.stack([1 + x, np.full_like(x, -2.0)], axis=-1)
        return _scipy_mixture_logpdf(theta, weights, loc, np.array([15.0, 4.0]))

    n = m = 4000
    x, theta = draw(n)
    x_test, theta_test = draw(m)
    model = AmortizedVonMisesMixture(n_components=2, hidden_sizes=(16,))
    steps = 2000
    result = model.fit(
        jax.random.key(1),
        x[:, None],
        theta,
        optimizer=optax.adam(optax.cosine_decay_schedule(0.02, steps)),
        steps=steps,
        batch_size=256,
    )
    trace = np.asarray(result.loss_trace)
    assert trace[-100:].mean() < trace[0] - 0.5

    # Held-out excess NLL over the truth: for a well-specified model with p parameters its
    # expectation is about p/(2n) (the AIC argument); add 4 standard errors of the held-out mean.
    fitted = np.asarray(model.log_likelihood(result.params, x_test[:, None], theta_test), float)
    log_ratio = true_log_density(x_test, theta_test) - fitted
    p = sum(w.size + b.size for w, b in result.params)
    tolerance = p / (2 * n) + 4 * log_ratio.std() / np.sqrt(m)
    assert log_ratio.mean() < tolerance

    # The dominant component at each end of the feature range sits at the true location.
    weights, loc, _ = mixture_parameters(
        *model.apply(result.params, np.array([[1.0], [-1.0]])), model.concentration
    )
    top = np.argmax(np.asarray(weights), axis=1)
    assert abs(_wrap(loc[0, top[0]] - 2.0)) < 0.1
    assert abs(_wrap(loc[1, top[1]] + 2.0)) < 0.2
    np.testing.assert_allclose(weights[0, top[0]], special.expit(3.0), atol=0.05)


def test_bounded_vonmisesnet_transform_cannot_fit_a_kappa_100_well():
    # θ ~ vM(0.3, 100) (σ ≈ 5.7°, a stiff torsion well), rows weighted by counts 1-3 (which act
    # as repeated rows). The (1, 21) head can reach at best κ = 21 at the weighted mean
    # direction: its NLL floor is log 2π + log I₀(21) - 21·R̄. The default (exp) head reaches the
    # unconstrained MLE. The population gap between the two is KL(vM(100) ‖ vM(21)) = 0.39.
    rng = np.random.default_rng(7)
    n, kappa = 2000, 100.0
    theta = stats.vonmises.rvs(kappa, loc=0.3, size=n, random_state=rng)
    counts = rng.integers(1, 4, size=n)
    frequency = counts / counts.sum()
    features = np.zeros((n, 1))
    mean_cos, mean_sin = frequency @ np.cos(theta), frequency @ np.sin(theta)
    resultant = np.hypot(mean_cos, mean_sin)

    def nll_at(k):
        return np.log(2 * np.pi * special.i0e(k)) + k - k * resultant

    kappa_hat = optimize.brentq(lambda k: _bessel_ratio(k) - resultant, 1.0, 1e4)
    floor_bounded, floor_free = nll_at(21.0), nll_at(kappa_hat)

    steps = 1500
    nll = {}
    for name, transform in [
        ("exp", ConcentrationTransform()),
        ("bounded", VONMISESNET_CONCENTRATION),
    ]:
        model = AmortizedVonMisesMixture(n_components=1, hidden_sizes=(), concentration=transform)
        start = model.init(jax.random.key(0), 1)
        result = model.fit(
            jax.random.key(0),
            features,
            theta,
            sample_weight=counts,
            optimizer=optax.adam(optax.cosine_decay_schedule(0.1, steps)),
            steps=steps,
            params=start,
        )
        # The trace starts at the weighted loss of the starting parameters.
        initial = model.loss(start, features, theta, sample_weight=counts)
        np.testing.assert_allclose(result.loss_trace[0], initial, rtol=1e-5)
        nll[name] = float(model.loss(result.params, features, theta, sample_weight=counts))
        _, _, fitted = mixture_parameters(*model.apply(result.params, features[:1]), transform)
        if name == "bounded":
            assert float(fitted[0, 0]) <= 21.0

    assert nll["bounded"] >= floor_bounded - 1e-5  # it cannot beat its bound
    assert nll["bounded"] <= floor_bounded + 1e-3  # and it does reach it
    assert nll["exp"] <= floor_free + 1e-4
    kl = (
        (21.0 - kappa)
        + np.log(special.i0e(21.0) / special.i0e(kappa))
        + (kappa - 21.0) * _bessel_ratio(kappa)
    )
    # The empirical gap is a weighted mean of (κ̂ - 21)·cos(θ - μ̂) + const: 4 standard errors.
    per_row = (kappa_hat - 21.0) * np.cos(theta - np.arctan2(mean_sin, mean_cos))
    standard_error = np.sqrt(frequency**2 @ (per_row - frequency @ per_row) ** 2)
    margin = kl - 4 * standard_error
    assert margin > 0.3
    assert nll["bounded"] - nll["exp"] > margin


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"kind": "sigmoid"}, "kind"),
        ({"minimum": -1.0}, "minimum"),
        ({"minimum": float("nan")}, "minimum"),
        ({"kind": "bounded", "minimum": 1.0}, "maximum"),
        ({"kind": "bounded", "minimum": 5.0, "maximum": 5.0}, "maximum"),
        ({"kind": "softplus", "maximum": 21.0}, "maximum"),
    ],
)
def test_bad_concentration_transform_raises_naming_the_argument(kwargs, named):
    with pytest.raises(ProbkitError, match=named):
        ConcentrationTransform(**kwargs)


def test_inverse_outside_the_range_raises():
    with pytest.raises(ProbkitError, match="concentration"):
        VONMISESNET_CONCENTRATION.inverse(50.0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n_components": 0}, "n_components"),
        ({"hidden_sizes": (8, 0)}, "hidden_sizes"),
        ({"activation": "sigmoidal"}, "activation"),
        ({"concentration": "softplus"}, "concentration"),
        ({"n_angles": 0}, "n_angles"),
    ],
)
def test_bad_model_hyper_parameters_raise(kwargs, named):
    with pytest.raises(ProbkitError, match=named):
        AmortizedVonMisesMixture(**kwargs)


def test_bad_training_data_raises_before_tracing():
    model = SMALL
    key = jax.random.key(0)
    x = np.zeros((10, 2))
    theta = np.zeros(10)
    bad_x = x.copy()
    bad_x[3, 1] = np.nan
    bad_theta = theta.copy()
    bad_theta[2] = np.inf
    cases = [
        ((bad_x, theta), {}, "features"),
        ((x, bad_theta), {}, "angles"),
        ((x[:, 0], theta), {}, "features"),
        ((x, theta[:9]), {}, "angles"),
        ((x, theta), {"sample_weight": -np.ones(10)}, "sample_weight"),
        ((x, theta), {"sample_weight": np.ones(9)}, "sample_weight"),
        ((x, theta), {"steps": 0}, "steps"),
        ((x, theta), {"batch_size": 0}, "batch_size"),
        ((x, theta), {"gradient_clip": -1.0}, "gradient_clip"),
    ]
    for args, kwargs, named in cases:
        with pytest.raises(ProbkitError, match=named):
            model.fit(key, *args, **kwargs)
    params = model.init(key, 2)
    with pytest.raises(ProbkitError, match="features"):
        model.apply(params, np.zeros((10, 3)))
    with pytest.raises(ProbkitError, match="angles"):
        mixture_log_likelihood(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ProbkitError, match="raw_concentration"):
        mixture_parameters(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 2)))
