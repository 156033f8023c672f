"""Specification of probkit.circular.mixture.VonMisesMixture.

Oracles come from scipy (``scipy.stats.vonmises``) and periodic-trapezoid quadrature, never from
the code under test. Statistical tests use fixed seeds and Bonferroni corrections at the
family-wise false-alarm rate FAMILY_WISE.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from scipy.special import logsumexp

from probkit._errors import ProbkitError
from probkit.circular.mixture import VonMisesMixture

FAMILY_WISE = 1e-3
N_DRAWS = 20_000
GRID = 4096  # periodic trapezoid points per angle (spectrally accurate here)
PRODUCT_GRID = 256

# Univariate: a batch of two mixtures with K = 3 (one zero weight, a very concentrated component).
WEIGHTS = np.array([[0.2, 0.5, 0.3], [0.6, 0.4, 0.0]])
LOC = np.array([[-2.0, 0.5, 3.0], [1.0, -1.0, 0.0]])
KAPPA = np.array([[3.0, 20.0, 0.5], [1e3, 2.0, 1.0]])
# Torsion vectors: K = 2 components over D = 2 torsions.
VECTOR_WEIGHTS = np.array([0.3, 0.7])
VECTOR_LOC = np.array([[-1.0, 2.0], [1.5, -2.5]])
VECTOR_KAPPA = np.array([[4.0, 1.0], [10.0, 30.0]])


def _grid(points):
    return np.linspace(-math.pi, math.pi, points, endpoint=False)


def _reference_component_log_probs(theta, weights, loc, kappa):
    """log w_k + log f_k(θ) from scipy; θ broadcasts against the component axis."""
    with np.errstate(divide="ignore"):
        return np.log(weights) + st.vonmises.logpdf(theta, kappa, loc=loc)


def _reference_mixture_cdf(x, weights, loc, kappa):
    """Σ_k w_k P_k([-π, x]) from scipy's cdf, which accumulates whole turns."""
    mass = st.vonmises.cdf(x[..., None], kappa, loc=loc) - st.vonmises.cdf(-math.pi, kappa, loc=loc)
    return (weights * mass).sum(-1)


@jax.jit
def _evaluate(key):
    """Everything the tests inspect, from one compilation (the suite's time is XLA's)."""
    uni = VonMisesMixture(WEIGHTS, LOC, KAPPA)
    vec = VonMisesMixture(VECTOR_WEIGHTS, VECTOR_LOC, VECTOR_KAPPA)
    theta = jnp.asarray(_grid(GRID))[:, None]
    phi, psi = jnp.meshgrid(*(2 * [jnp.asarray(_grid(PRODUCT_GRID))]), indexing="ij")
    torsions = jnp.stack([phi, psi], -1)
    key_uni, key_vec = jax.random.split(key)
    vec_draws, (vec_indices,) = vec.sample_with_intermediates(key_vec, (N_DRAWS,))

    # The univariate draws come out of the gradient computation (has_aux), so the sampler is
    # compiled once for both.
    def draw_sum(loc, kappa):
        mixture = VonMisesMixture(WEIGHTS, loc, kappa)
        draws, (indices,) = mixture.sample_with_intermediates(key_uni, (N_DRAWS,))
        return draws.sum(), (draws, indices)

    gradient = jax.grad(draw_sum, argnums=(0, 1), has_aux=True)
    (by_loc, by_kappa), (uni_draws, uni_indices) = gradient(jnp.asarray(LOC), jnp.asarray(KAPPA))
    return {
        "log_prob": uni.log_prob(theta),
        "cdf": uni.cdf(jnp.concatenate([theta, jnp.full((1, 1), math.pi)])),
        "posterior": uni.posterior_probs(theta),
        "component_log_probs": uni.component_log_probs(theta),
        "mean": uni.mean,
        "variance": uni.variance,
        "moment": jnp.stack([uni.trigonometric_moment(p) for p in (1, 2)]),
        "uni_draws": uni_draws,
        "uni_indices": uni_indices,
        "by_loc": by_loc,
        "by_kappa": by_kappa,
        "vec_log_prob": vec.log_prob(torsions),
        "vec_points": vec.log_prob(jnp.array([[0.3, -2.0], [3.0, 3.0], [-1.0, 2.0]])),
        "vec_mean": vec.mean,
        "vec_moment": vec.trigonometric_moment(1),
        "vec_draws": vec_draws,
        "vec_indices": vec_indices,
    }


@pytest.fixture(scope="module")
def results():
    with jax.enable_x64(True):
        return {k: np.asarray(v) for k, v in _evaluate(jax.random.PRNGKey(2024)).items()}


def test_univariate_log_prob_matches_scipy_and_integrates_to_one(results):
    theta = _grid(GRID)[:, None, None]
    reference = logsumexp(_reference_component_log_probs(theta, WEIGHTS, LOC, KAPPA), axis=-1)
    np.testing.assert_allclose(results["log_prob"], reference, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        results["component_log_probs"],
        _reference_component_log_probs(theta, WEIGHTS, LOC, KAPPA),
        rtol=1e-12,
        atol=1e-12,
    )
    mass = np.exp(results["log_prob"]).mean(0) * 2 * math.pi
    np.testing.assert_allclose(mass, 1.0, atol=1e-12)


def test_vector_log_prob_is_a_mixture_of_products_and_integrates_to_one(results):
    points = np.array([[0.3, -2.0], [3.0, 3.0], [-1.0, 2.0]])
    per_torsion = st.vonmises.logpdf(points[:, None, :], VECTOR_KAPPA, loc=VECTOR_LOC)
    reference = logsumexp(np.log(VECTOR_WEIGHTS) + per_torsion.sum(-1), axis=-1)
    np.testing.assert_allclose(results["vec_points"], reference, rtol=1e-12)
    mass = np.exp(results["vec_log_prob"]).mean() * (2 * math.pi) ** 2
    assert mass == pytest.approx(1.0, abs=1e-12)


def test_cdf_is_the_weighted_sum_of_component_cdfs(results):
    theta = _grid(GRID)[:, None]
    reference = _reference_mixture_cdf(np.broadcast_to(theta, (GRID, 2)), WEIGHTS, LOC, KAPPA)
    # scipy's own cdf errs ~1e-6 above κ = 50 (uncorrected normal approximation).
    np.testing.assert_allclose(results["cdf"][:-1], reference, atol=1e-5)
    np.testing.assert_allclose(results["cdf"][0], 0.0, atol=1e-12)
    np.testing.assert_allclose(results["cdf"][-1], 1.0, atol=1e-12)
    assert np.all(np.diff(results["cdf"], axis=0) >= -1e-15)


def test_posterior_probabilities_are_bayes_rule(results):
    theta = _grid(GRID)[:, None, None]
    joint = _reference_component_log_probs(theta, WEIGHTS, LOC, KAPPA)
    reference = np.exp(joint - logsumexp(joint, axis=-1, keepdims=True))
    np.testing.assert_allclose(results["posterior"], reference, atol=1e-12)
    np.testing.assert_allclose(results["posterior"].sum(-1), 1.0, atol=1e-12)


def test_mean_direction_variance_and_moments_match_quadrature(results):
    theta = _grid(GRID)[:, None]
    density = np.exp(results["log_prob"])
    moments = {p: (density * np.exp(1j * p * theta)).mean(0) * 2 * math.pi for p in (1, 2)}
    np.testing.assert_allclose(results["mean"], np.angle(moments[1]), atol=1e-12)
    np.testing.assert_allclose(results["variance"], 1 - np.abs(moments[1]), atol=1e-12)
    for row, p in enumerate((1, 2)):
        np.testing.assert_allclose(results["moment"][row], moments[p], atol=1e-12)
    # Torsion vectors: each torsion's marginal is a univariate mixture with the same weights.
    for d in range(2):
        marginal = _reference_component_log_probs(
            theta, VECTOR_WEIGHTS, VECTOR_LOC[:, d], VECTOR_KAPPA[:, d]
        )
        moment = (np.exp(logsumexp(marginal, -1)) * np.exp(1j * theta[:, 0])).mean() * 2 * math.pi
        assert results["vec_moment"][d] == pytest.approx(moment, abs=1e-12)
        assert results["vec_mean"][d] == pytest.approx(np.angle(moment), abs=1e-12)


def test_samples_match_the_mixture_law(results):
    # KS of each univariate batch member and of each torsion marginal against scipy's mixture
    # cdf, KS of each torsion given its component (so components are shared across torsions),
    # and χ² of component counts: 2 + 2 + 4 + 3 = 11 tests, Bonferroni at family-wise 1e-3.
    alpha = FAMILY_WISE / 11
    draws, indices = results["uni_draws"], results["uni_indices"]
    assert draws.shape == (N_DRAWS, 2)
    assert np.all(np.abs(draws) <= math.pi)
    p_values = []
    for b in range(2):
        cdf = lambda x, b=b: _reference_mixture_cdf(x, WEIGHTS[b], LOC[b], KAPPA[b])  # noqa: E731
        p_values.append(st.kstest(draws[:, b], cdf).pvalue)
    vec_draws, vec_indices = results["vec_draws"], results["vec_indices"]
    assert vec_draws.shape == (N_DRAWS, 2)
    for d in range(2):
        args = (VECTOR_WEIGHTS, VECTOR_LOC[:, d], VECTOR_KAPPA[:, d])
        p_values.append(
            st.kstest(vec_draws[:, d], lambda x, a=args: _reference_mixture_cdf(x, *a)).pvalue
        )
        for k in range(2):
            given = vec_draws[vec_indices == k, d]
            p_values.append(
                st.kstest(
                    given,
                    lambda x, k=k, d=d: _reference_mixture_cdf(
                        x, np.array([1.0]), VECTOR_LOC[k : k + 1, d], VECTOR_KAPPA[k : k + 1, d]
                    ),
                ).pvalue
            )
    for b, weights in enumerate(WEIGHTS):
        counts = np.bincount(indices[:, b], minlength=3)
        assert counts[weights == 0].sum() == 0  # a zero weight is never drawn
        positive = weights > 0
        p_values.append(st.chisquare(counts[positive], N_DRAWS * weights[positive]).pvalue)
    counts = np.bincount(vec_indices, minlength=2)
    p_values.append(st.chisquare(counts, N_DRAWS * VECTOR_WEIGHTS).pvalue)
    assert min(p_values) > alpha, p_values


def test_draws_are_reparameterised_in_loc_and_concentration_given_the_component(results):
    # Σθ over the draws moves one-for-one with the loc of the component each draw came from.
    counts = np.stack([np.bincount(results["uni_indices"][:, b], minlength=3) for b in range(2)])
    np.testing.assert_array_equal(results["by_loc"], counts)
    assert np.all(np.isfinite(results["by_kappa"]))
    np.testing.assert_array_equal(results["by_kappa"][counts == 0], 0.0)


def test_mixture_is_a_pytree_usable_under_jit_and_vmap_in_float32():
    d = VonMisesMixture(*(a.astype(np.float32) for a in (WEIGHTS, LOC, KAPPA)))
    assert (d.batch_shape, d.event_shape, d.mixture_size) == ((2,), (), 3)
    jitted = jax.jit(lambda dist, x: dist.log_prob(x))(d, jnp.float32(0.25))
    mapped = jax.jit(jax.vmap(lambda w, m, k: VonMisesMixture(w, m, k).log_prob(0.25)))(
        d.weights, d.loc, d.concentration
    )
    reference = logsumexp(_reference_component_log_probs(0.25, WEIGHTS, LOC, KAPPA), axis=-1)
    np.testing.assert_allclose(jitted, reference, rtol=1e-5)
    np.testing.assert_allclose(mapped, reference, rtol=1e-5)
    vector = VonMisesMixture(
        *(a.astype(np.float32) for a in (VECTOR_WEIGHTS, VECTOR_LOC, VECTOR_KAPPA[0]))
    )  # κ of shape (D,) broadcasts over the K components
    assert (vector.batch_shape, vector.event_shape) == ((), (2,))


@pytest.mark.parametrize(
    ("weights", "loc", "concentration", "message"),
    [
        ([0.3, 0.6], [0.0, 1.0], [1.0, 1.0], "sum to 1"),
        ([1.2, -0.2], [0.0, 1.0], [1.0, 1.0], "non-negative"),
        ([0.5, float("nan")], [0.0, 1.0], [1.0, 1.0], "`weights`"),
        ([0.5, 0.5], [0.0, 1.0], [1.0, -2.0], "`concentration`"),
        ([0.5, 0.5], [0.0, 1.0], [1.0, float("inf")], "`concentration`"),
        ([0.5, 0.5], [0.0, float("nan")], [1.0, 1.0], "`loc`"),
        ([0.5, 0.5], [0.0, 1.0, 2.0], [1.0, 1.0, 1.0], r"weights \(2,\), loc \(3,\)"),
        ([0.5, 0.5], np.zeros((2, 2, 2)), 1.0, r"batch \+ \(K, D\)"),
        (0.5, [0.0], [1.0], "component axis"),
    ],
)
def test_bad_arguments_raise_a_probkit_error_that_names_them(weights, loc, concentration, message):
    with pytest.raises(ProbkitError, match=message):
        VonMisesMixture(weights, loc, concentration)


def test_cdf_of_torsion_vectors_raises_a_probkit_error():
    arguments = (a.astype(np.float32) for a in (VECTOR_WEIGHTS, VECTOR_LOC, VECTOR_KAPPA))
    mixture = VonMisesMixture(*arguments)
    with pytest.raises(ProbkitError, match="univariate"):
        mixture.cdf(jnp.zeros(2, jnp.float32))
