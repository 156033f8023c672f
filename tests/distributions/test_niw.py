"""NormalInverseWishart and NormalInverseGamma: validation, shapes, updates, modes and limits.

The agreement with scipy, Bayes' identity and the Monte Carlo KL values are the registered checks
(``probkit check --capability meta``); these tests cover the API around them. Every comparison
here is exact up to float64 rounding (no Monte Carlo).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from jax.scipy.special import digamma
from numpyro.distributions.kl import kl_divergence
from numpyro.infer.util import log_density

from probkit import ProbkitError
from probkit.distributions import NormalInverseGamma, NormalInverseWishart, multivariate_digamma

D = 3


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _scale(rng, d=D):
    a = rng.standard_normal((d, d))
    return a @ a.T + d * np.eye(d)


@pytest.fixture
def niw():
    rng = np.random.default_rng(0)
    return NormalInverseWishart(rng.standard_normal(D), 1.5, D + 2.5, _scale(rng))


@pytest.fixture
def nig():
    rng = np.random.default_rng(1)
    return NormalInverseGamma(
        rng.standard_normal(D), 2.0, rng.uniform(2, 4, D), rng.uniform(0.5, 2, D)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kappa": 0.0}, "kappa"),
        ({"kappa": -1.0}, "kappa"),
        ({"df": D - 1.0}, "df"),
        ({"scale_matrix": -np.eye(D)}, "positive definite"),
        ({"scale_matrix": np.triu(np.ones((D, D))) + np.eye(D)}, "symmetric"),
        ({"scale_matrix": np.eye(D + 1)}, "shape"),
        ({"loc": np.array([0.0, np.nan, 0.0])}, "loc"),
        ({"loc": 0.0}, "vector"),
    ],
)
def test_bad_parameters_are_refused_with_the_argument_named(kwargs, match):
    arguments = {"loc": np.zeros(D), "kappa": 1.0, "df": D + 1.0, "scale_matrix": np.eye(D)}
    with pytest.raises(ProbkitError, match=match):
        NormalInverseWishart(**{**arguments, **kwargs})


@pytest.mark.parametrize("name", ["kappa", "concentration", "rate"])
def test_bad_normal_inverse_gamma_parameters_are_refused(name):
    arguments = {"loc": np.zeros(D), "kappa": 1.0, "concentration": 2.0, "rate": 1.0}
    with pytest.raises(ProbkitError, match=name):
        NormalInverseGamma(**{**arguments, name: np.array([1.0, 0.0, 1.0])})


def test_bad_data_is_refused(niw, nig):
    x = np.ones((4, D))
    with pytest.raises(ProbkitError, match=r"shape \(\.\.\., n, 3\)"):
        niw.posterior(np.ones((4, D + 1)))
    with pytest.raises(ProbkitError, match="NaN"):
        niw.log_marginal_likelihood(np.where(np.eye(4, D) > 0, np.nan, x))
    with pytest.raises(ProbkitError, match="weights"):
        nig.posterior(x, weights=-np.ones(4))
    with pytest.raises(ProbkitError, match="weights"):
        nig.posterior(x, weights=np.ones(5))


def test_parameters_are_traced_under_jit_and_the_laws_are_pytrees(niw, nig):
    x = np.random.default_rng(2).standard_normal((6, D))

    @jax.jit
    def evidence(prior, x):
        return prior.log_marginal_likelihood(x)

    assert np.isclose(evidence(niw, x), niw.log_marginal_likelihood(x), rtol=1e-13)
    assert np.isclose(evidence(nig, x), nig.log_marginal_likelihood(x), rtol=1e-13)
    kappas = jnp.array([0.5, 1.0, 2.0])
    batched = jax.vmap(lambda k: NormalInverseWishart(niw.loc, k, niw.df, niw.scale_matrix).kappa)
    np.testing.assert_array_equal(batched(kappas), kappas)


def test_shapes_broadcast_over_batches_and_samples(niw):
    batch = NormalInverseWishart(np.zeros((4, 1, D)), np.ones(5), D + 1.0, np.eye(D))
    assert batch.batch_shape == (4, 5)
    assert batch.predictive().batch_shape == (4, 5)
    x = np.random.default_rng(3).standard_normal((4, 5, 7, D))

    @jax.jit  # one compilation instead of one per operation
    def shapes(key):
        loc, cov = batch.sample(key, (2,))
        return loc, cov, batch.log_prob((loc, cov)), batch.log_marginal_likelihood(x)

    loc, cov, log_prob, evidence = shapes(jax.random.key(0))
    assert loc.shape == (2, 4, 5, D)
    assert cov.shape == (2, 4, 5, D, D)
    assert log_prob.shape == (2, 4, 5)
    assert evidence.shape == (4, 5)


def test_float32_parameters_stay_float32():
    with jax.enable_x64(False):
        prior = NormalInverseWishart(jnp.zeros(2), 1.0, 4.0, jnp.eye(2))
        post = prior.posterior(jnp.ones((5, 2)))
        assert post.scale_matrix.dtype == jnp.float32
        assert np.isfinite(prior.log_marginal_likelihood(jnp.ones((5, 2))))


def test_zero_weights_drop_rows_and_updates_compose(niw, nig):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, D))
    keep = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0], float)
    for prior in (niw, nig):
        padded, dropped = prior.posterior(x, keep), prior.posterior(x[keep > 0])
        for a, b in zip(jax.tree.leaves(padded), jax.tree.leaves(dropped), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            prior.log_marginal_likelihood(x, keep),
            prior.log_marginal_likelihood(x[keep > 0]),
            rtol=1e-12,
        )
        # No data: the posterior is the prior; two updates equal one on all the data.
        empty = prior.posterior(x, np.zeros(9))
        for a, b in zip(jax.tree.leaves(empty), jax.tree.leaves(prior), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)
        sequential = prior.posterior(x[:4]).posterior(x[4:])
        for a, b in zip(
            jax.tree.leaves(sequential), jax.tree.leaves(prior.posterior(x)), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        # The evidence chains the same way: p(x) = p(x₁) p(x₂ | x₁).
        np.testing.assert_allclose(
            prior.log_marginal_likelihood(x),
            prior.log_marginal_likelihood(x[:4])
            + prior.posterior(x[:4]).log_marginal_likelihood(x[4:]),
            rtol=1e-12,
        )


def test_the_mode_is_a_stationary_point_of_the_log_density(niw, nig):
    loc, cov = niw.mode()
    # Differentiate along symmetric directions: log p(m, Σ* + S) for symmetric S.
    grad_loc, grad_cov = jax.grad(lambda m, s: niw.log_prob((m, s + s.T)), argnums=(0, 1))(
        loc, cov / 2
    )
    assert np.max(np.abs(grad_loc)) < 1e-12
    assert np.max(np.abs(grad_cov)) < 1e-10
    loc, var = nig.mode()
    grad_loc, grad_var = jax.grad(lambda m, v: nig.log_prob((m, v)), argnums=(0, 1))(loc, var)
    assert np.max(np.abs(grad_loc)) < 1e-12
    assert np.max(np.abs(grad_var)) < 1e-10


def test_kl_is_zero_for_equal_laws_and_positive_otherwise(niw, nig):
    assert abs(float(kl_divergence(niw, niw))) < 1e-12
    assert abs(float(kl_divergence(nig, nig))) < 1e-12
    other = NormalInverseWishart(niw.loc + 0.1, niw.kappa * 2, niw.df + 1, niw.scale_matrix)
    assert float(kl_divergence(niw, other)) > 0


def test_expected_gaussian_kl_is_minimised_at_the_prior_mean_and_expected_precision(niw, nig):
    # d/dm and d/dV vanish at m = m₀ and V = (ν Ψ⁻¹)⁻¹ = Ψ/ν (NIW), V = b/a (NIG).
    grad_m, grad_v = jax.grad(niw.expected_gaussian_kl, argnums=(0, 1))(
        niw.loc, niw.scale_matrix / niw.df
    )
    assert np.max(np.abs(grad_m)) < 1e-12
    assert np.max(np.abs(grad_v)) < 1e-12
    grad_m, grad_v = jax.grad(nig.expected_gaussian_kl, argnums=(0, 1))(
        nig.loc, nig.rate / nig.concentration
    )
    assert np.max(np.abs(grad_m)) < 1e-12
    assert np.max(np.abs(grad_v)) < 1e-12


def test_the_meta_prior_parameterisation_gives_the_research_regulariser():
    # The diagonal NIW with df n₀ and precisions γ₀; its expected KL written out by hand.
    rng = np.random.default_rng(5)
    m0, kappa0, n0, gamma0 = rng.standard_normal(D), 3.0, 7.0, rng.uniform(0.5, 2.0, D)
    prior = NormalInverseGamma.from_meta_prior(m0, kappa0, n0, gamma0)
    m, v = rng.standard_normal(D), rng.uniform(0.1, 1.0, D)
    by_hand = 0.5 * np.sum(
        n0 * gamma0 * v
        + n0 * gamma0 * (m - m0) ** 2
        + 1 / kappa0
        - np.log(v)
        - digamma(n0 / 2)
        - np.log(2)
        - np.log(gamma0)
        - 1
    )
    np.testing.assert_allclose(prior.expected_gaussian_kl(m, v), by_hand, rtol=1e-13)


def test_multivariate_digamma_is_the_derivative_of_log_multigamma():
    from jax.scipy.special import multigammaln

    x = jnp.array([2.3, 5.0, 11.7])
    derivative = jax.vmap(jax.grad(lambda t: multigammaln(t, 4)))(x)
    np.testing.assert_allclose(multivariate_digamma(x, 4), derivative, rtol=1e-13)


def test_sample_in_model_gives_two_sites_with_the_joint_density(niw):
    def model():
        niw.sample_in_model("phi")

    seeded = numpyro.handlers.seed(model, jax.random.key(0))
    trace = numpyro.handlers.trace(seeded).get_trace()
    loc, cov = trace["phi_loc"]["value"], trace["phi_covariance"]["value"]
    assert loc.shape == (D,)
    assert cov.shape == (D, D)
    log_joint, _ = log_density(model, (), {}, {"phi_loc": loc, "phi_covariance": cov})
    np.testing.assert_allclose(log_joint, niw.log_prob((loc, cov)), rtol=1e-12)
