"""Specification of probkit.circular.vonmises: density, cdf, quantile, sampler, gradients, KL.

Oracles are independent of the code under test: scipy (``scipy.stats.vonmises``,
``scipy.special.ive``), quadrature (periodic trapezoid, spectrally accurate for periodic
analytic integrands; mpmath where more digits are needed), and the numbers of the research note
``shared/research/vonmises.md`` §5. Statistical tests use fixed seeds and Bonferroni corrections
at the family-wise false-alarm rate stated on each.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import numpyro.distributions as npd
import pytest
import scipy.special as sp
import scipy.stats as st
from numpyro.distributions import kl_divergence

from probkit._errors import ProbkitError
from probkit.circular.vonmises import VonMises, vonmises_cdf, vonmises_ppf

# The concentrations of the note's recommended test matrix (§5).
KAPPAS = np.array([0.0, 1e-8, 1e-4, 1e-2, 0.1, 1.0, 10.0, 21.0, 100.0, 1e3, 1e4, 1e6, 1e8])
N_DRAWS = 20_000
DTYPES = ["float32", "float64"]
FAMILY_WISE = 1e-3  # false-alarm rate of each family of statistical tests below

# Jitted entry points shared by the tests: the suite's time is XLA compilation, so each test
# reuses these (and few distinct shapes) instead of running op by op.
_sample_grid = jax.jit(lambda key, kappa: VonMises(0.0, kappa).sample(key, (N_DRAWS,)))
_cdf = jax.jit(vonmises_cdf)
_ppf = jax.jit(vonmises_ppf)
_log_prob = jax.jit(lambda loc, kappa, x: VonMises(loc, kappa).log_prob(x))
_cdf_with_loc = jax.jit(lambda loc, kappa, x: VonMises(loc, kappa).cdf(x))
_icdf_with_loc = jax.jit(lambda loc, kappa, q: VonMises(loc, kappa).icdf(q))
_kl = jax.jit(lambda p, q: kl_divergence(VonMises(*p), VonMises(*q)))


@jax.jit
def _summaries(loc, kappa):
    d = VonMises(loc, kappa)
    moments = jnp.stack([d.trigonometric_moment(p) for p in (-2, 0, 1, 2)])
    return d.entropy(), d.variance, moments


def _mean_resultant_complement(kappa):
    """1 - A(κ) from scipy's exponentially scaled Bessel functions (float64)."""
    return 1.0 - sp.ive(1, kappa) / sp.ive(0, kappa)


def _trapezoid_on_circle(values, axis=-1):
    """∫_{-π}^{π} of a periodic function sampled on the left-closed uniform grid."""
    return values.mean(axis) * 2.0 * math.pi


def _unnormalised_density(kappa, t):
    return mpmath.exp(kappa * (mpmath.cos(t) - 1))


def _grid(points):
    return np.linspace(-math.pi, math.pi, points, endpoint=False)


@pytest.fixture(scope="module", params=DTYPES)
def draws(request):
    """N_DRAWS centred draws per concentration of KAPPAS, in one dtype: (dtype, array (n, 13))."""
    with jax.enable_x64(request.param == "float64"):
        kappa = jnp.asarray(KAPPAS, request.param)
        samples = _sample_grid(jax.random.PRNGKey(20240611), kappa)
        assert samples.dtype == jnp.dtype(request.param)
        return request.param, np.asarray(samples, np.float64)


# --- density ---------------------------------------------------------------------------------


def test_log_prob_matches_scipy_and_integrates_to_one(x64):
    kappa = np.array([0.0, 1e-8, 0.5, 2.0, 30.0, 700.0, 1e4])
    loc = np.array([0.0, 1.0, -2.0, 3.0, -3.1, 0.3, 2.0])
    theta = _grid(2**15)
    log_density = np.asarray(_log_prob(loc, kappa, theta[:, None]))
    reference = st.vonmises.logpdf(theta[:, None], np.maximum(kappa, 1e-300), loc=loc)
    np.testing.assert_allclose(log_density, reference, rtol=1e-12, atol=1e-12)
    # σ = 0.01 at κ = 1e4 spans 50 grid points: the trapezoid is exact to rounding.
    np.testing.assert_allclose(_trapezoid_on_circle(np.exp(log_density), axis=0), 1.0, atol=1e-12)


def test_log_prob_stays_accurate_at_extreme_concentrations_in_float32():
    # Note §5: log_prob at κ = 1e6 (float32) is 5.98882 = -log(2π) + ½ log(κ/2π) + O(1/κ);
    # at κ = 1e-30 it is -log 2π. Far from the mode the cos-1 form keeps relative precision.
    kappa = jnp.array([1e6, 1e-30, 1e8, 1e8], jnp.float32)
    value = jnp.array([0.0, 1.0, 0.0, 1e-4], jnp.float32)
    log_density = np.asarray(_log_prob(jnp.zeros(4, jnp.float32), kappa, value))
    assert log_density[0] == pytest.approx(5.98882, abs=2e-5)
    assert log_density[1] == pytest.approx(-math.log(2 * math.pi))
    # At κ = 1e8 a deviation of 1e-4 (one standard deviation) costs exactly 1/2 nat.
    assert log_density[2] - log_density[3] == pytest.approx(0.5, rel=1e-4)


# --- cdf and quantile ------------------------------------------------------------------------


def test_cdf_matches_note_oracles_and_scipy_below_the_switch(x64):
    # scipy's series (12 digits) is exact for κ < 50; above, scipy uses an uncorrected normal
    # approximation (errors ~1e-6), so larger κ are checked against mpmath below.
    kappa = np.array([0.0, 1e-8, 1e-3, 0.5, 1.0, 2.0, 10.49, 10.51, 20.0, 49.0])
    x = np.concatenate([np.linspace(-math.pi, math.pi, 49), [1.0]])
    values = np.asarray(_cdf(*np.broadcast_arrays(x[:, None], kappa)))
    reference = st.vonmises.cdf(x[:, None], np.maximum(kappa, 1e-300))
    np.testing.assert_allclose(values, reference, atol=2e-13)
    assert values[-1, 4] == pytest.approx(0.7943553074, abs=1e-10)  # note §5, κ = 1
    assert values[-1, 5] == pytest.approx(0.8895777370, abs=1e-10)  # κ = 2


def test_cdf_matches_high_precision_quadrature_above_the_switch(x64):
    kappa = np.array([51.0, 119.0, 121.0, 1e4])
    scale = 1 / np.sqrt(kappa)
    x = np.array([-4.0, -1.0, 0.3, 2.5])[:, None] * scale
    values = np.asarray(_cdf(*np.broadcast_arrays(x, kappa)))
    with mpmath.workdps(30):
        for column, k in enumerate(kappa):
            density = partial(_unnormalised_density, mpmath.mpf(k))
            ends = [-mpmath.pi, -10 * scale[column], 0, 10 * scale[column], mpmath.pi]
            norm = mpmath.quad(density, ends)
            for row in range(x.shape[0]):
                exact = mpmath.quad(density, [-mpmath.pi, -10 * scale[column], x[row, column]])
                assert values[row, column] == pytest.approx(float(exact / norm), abs=2e-13)


def test_cdf_runs_from_zero_to_one_monotonically(dtype):
    kappa = jnp.asarray(KAPPAS, dtype)[:, None]
    x = jnp.linspace(-math.pi, math.pi, 2001, dtype=dtype)[None, :]
    values = np.asarray(_cdf(*jnp.broadcast_arrays(x, kappa)), np.float64)
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(values[:, 0], 0.0, atol=4 * eps)
    np.testing.assert_allclose(values[:, -1], 1.0, atol=4 * eps)
    assert np.all(np.diff(values, axis=1) >= -2 * eps)


def test_cdf_with_location_is_the_mass_of_minus_pi_to_x_and_icdf_inverts_it(x64):
    loc = np.array([0.0, 1.0, -2.5, 3.1, -3.1, 7.0])
    kappa = np.array([2.0, 0.5, 8.0, 60.0, 1.0, 400.0])
    x = np.broadcast_to(np.linspace(-math.pi, math.pi, 13)[:, None], (13, 6))
    x = np.concatenate([x, np.full((1, 6), 0.7)])  # κ = 400: one point near its mode
    values = np.asarray(_cdf_with_loc(loc, kappa, x))
    # Where the density is not negligible, x is determined to rounding by q = cdf(x).
    round_trip = np.asarray(_icdf_with_loc(loc, kappa, values))
    resolved = st.vonmises.pdf(x, kappa, loc=loc) > 1e-3
    assert resolved.sum() > 40
    np.testing.assert_allclose(round_trip[resolved], x[resolved], atol=1e-10)
    # scipy's cdf accumulates whole turns, so differences give the mass of an interval.
    lower = st.vonmises.cdf(-math.pi, kappa, loc=loc)
    reference = st.vonmises.cdf(x, kappa, loc=loc) - lower
    tolerance = np.where(kappa > 50, 1e-5, 1e-12)  # scipy's own error above κ = 50
    assert np.all(np.abs(values - reference) <= tolerance)
    np.testing.assert_allclose(values[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(values[12], 1.0, atol=1e-12)  # x = π


def test_ppf_inverts_cdf_for_every_concentration(dtype):
    q = np.concatenate([[1e-6, 1e-3], np.linspace(0.02, 0.98, 25), [1 - 1e-3, 1 - 1e-6]])
    q = jnp.asarray(q, dtype)[None, :]
    kappa = jnp.asarray(KAPPAS, dtype)[:, None]
    q, kappa = jnp.broadcast_arrays(q, kappa)
    x = _ppf(q, kappa)
    assert np.all(np.abs(np.asarray(x)) <= math.pi)
    residual = np.abs(np.asarray(_cdf(x, kappa), np.float64) - np.asarray(q, np.float64))
    # float64: Newton converges to rounding; float32: q itself is rounded to 6e-8.
    assert residual.max() <= (1e-14 if dtype == jnp.float64 else 3e-7)


# --- entropy, moments, KL --------------------------------------------------------------------


def test_entropy_variance_and_moments_match_note_oracles_and_quadrature(x64):
    kappa = np.array([0.5, 1.0, 2.0, 10.0, 21.0, 30.0, 0.0, 0.3, 900.0])
    loc = np.array([0.7, 0.0, 0.5, 0.0, 0.7, 0.7, 0.0, -1.0, 3.0])
    entropy, variance, moments = (np.asarray(a) for a in _summaries(loc, kappa))
    a_oracle = [0.2424996126, 0.4463899659, 0.6977746580, 0.9485998260, 0.9758924139]
    a_oracle.append(0.9831895554)
    np.testing.assert_allclose(1.0 - variance[:6], a_oracle, atol=1e-10)
    assert entropy[1] == pytest.approx(1.6274014590, abs=1e-10)
    assert entropy[3] == pytest.approx(0.2948508900, abs=1e-10)
    assert moments[3, 2] == pytest.approx(0.3022253420 * np.exp(1j * 1.0), abs=1e-10)
    theta = _grid(2**14)[:, None]
    log_p = st.vonmises.logpdf(theta, np.maximum(kappa, 1e-300), loc=loc)
    np.testing.assert_allclose(entropy, -_trapezoid_on_circle(np.exp(log_p) * log_p, 0), atol=1e-11)
    for row, order in enumerate((-2, 0, 1, 2)):
        moment = _trapezoid_on_circle(np.exp(log_p + 1j * order * theta), axis=0)
        np.testing.assert_allclose(moments[row], moment, atol=1e-11)


def test_entropy_does_not_lose_precision_at_large_concentration_in_float32():
    # H = ½ log(2πe/κ) + O(1/κ): the two terms of size κ must cancel in closed form.
    kappa = np.array([1e4, 1e8], np.float32)
    entropy = np.asarray(jax.jit(lambda k: VonMises(0.0, k).entropy())(jnp.asarray(kappa)))
    np.testing.assert_allclose(entropy, 0.5 * np.log(2 * np.pi * np.e / kappa), atol=1e-4)


def test_kl_divergence_matches_note_oracles_and_quadrature(x64):
    oracles = [
        ((0.0, 2.0), (1.0, 5.0), 1.9911912669),
        ((0.0, 50.0), (0.3, 10.0), 0.8555012411),
        ((0.0, 0.0), (1.0, 3.0), 1.5853076218),
        ((2.0, 300.0), (-2.0, 1.0), 4.1584620066),
    ]
    theta = _grid(2**14)
    p, q, expected = (np.array(column) for column in zip(*oracles, strict=True))
    kls = np.asarray(_kl(tuple(p.T), tuple(q.T)))
    np.testing.assert_allclose(kls, expected, atol=1e-9)
    for (loc_p, kappa_p), (loc_q, kappa_q), kl in zip(p, q, kls, strict=True):
        log_p = st.vonmises.logpdf(theta, max(kappa_p, 1e-300), loc=loc_p)
        log_q = st.vonmises.logpdf(theta, kappa_q, loc=loc_q)
        assert kl == pytest.approx(_trapezoid_on_circle(np.exp(log_p) * (log_p - log_q)), abs=1e-9)


def test_kl_divergence_is_zero_for_equal_laws_and_positive_otherwise(dtype):
    rng = np.random.default_rng(7)
    kappa = np.concatenate([KAPPAS, 10 ** rng.uniform(-3, 6, 40)])
    loc = rng.uniform(-math.pi, math.pi, kappa.size)
    p = (jnp.asarray(loc, dtype), jnp.asarray(kappa, dtype))
    assert np.all(np.asarray(_kl(p, p)) == 0.0)
    shuffled = (p[0][::-1], p[1][::-1])
    assert np.all(np.asarray(_kl(p, shuffled)) >= 0.0)


def test_kl_divergence_is_registered_for_numpyro_von_mises_pairs(x64):
    classes = [(p, q) for p in (VonMises, npd.VonMises) for q in (VonMises, npd.VonMises)]
    kls = jax.jit(
        lambda: jnp.stack([kl_divergence(p(0.0, 2.0), q(1.0, 5.0)) for p, q in classes])
    )()
    np.testing.assert_allclose(np.asarray(kls), 1.9911912669, atol=1e-9)  # note §5


# --- sampler ---------------------------------------------------------------------------------


def test_samples_pass_kolmogorov_smirnov_for_every_concentration(draws):
    dtype, samples = draws
    # 13 κ × 2 dtypes = 26 tests at family-wise false-alarm rate 1e-3 (Bonferroni).
    alpha = FAMILY_WISE / (2 * KAPPAS.size)
    assert np.all(samples >= -math.pi)
    assert np.all(samples < math.pi)
    for column, kappa in enumerate(KAPPAS):
        reference = partial(st.vonmises.cdf, kappa=max(kappa, 1e-300))
        p_value = st.kstest(samples[:, column], reference).pvalue
        assert p_value > alpha, f"{dtype} κ={kappa}: KS p-value {p_value:.2e}"


def test_samples_are_not_discretised_at_large_concentration(draws):
    # numpyro's float32 sampler (acos(1 - ε)) gives 253 distinct values in 2e5 draws at κ = 1e6
    # (note §5). Distinct draws of a continuous law collide only by rounding: at the working
    # precision (σ = 1e-3 or 1e-4, spacing ≤ 1e-11) fewer than 1 % of 2e4 draws should.
    _, samples = draws
    for column in (list(KAPPAS).index(1e6), list(KAPPAS).index(1e8)):
        assert np.unique(samples[:, column]).size >= 0.99 * N_DRAWS


def test_sample_moments_match_theory_near_uniform_and_at_large_concentration(draws):
    # KS is blind near the uniform law; E[1 - cos θ] = 1 - A(κ) and E cos 2θ = I₂/I₀ are not.
    # 13 κ × 2 statistics × 2 dtypes = 52 z-tests, Bonferroni at family-wise 1e-3.
    _, samples = draws
    z_critical = st.norm.isf(FAMILY_WISE / (2 * 52))
    half = np.sin(0.5 * samples)
    deviation = 2.0 * half * half  # 1 - cos θ, without cancellation at large κ
    second = np.cos(2.0 * samples)
    expected_deviation = _mean_resultant_complement(np.maximum(KAPPAS, 1e-300))
    expected_second = sp.ive(2, KAPPAS) / sp.ive(0, KAPPAS)
    for statistic, expected in ((deviation, expected_deviation), (second, expected_second)):
        error = np.sqrt(statistic.var(axis=0, ddof=1) / N_DRAWS)
        z = (statistic.mean(axis=0) - expected) / error
        assert np.all(np.abs(z) < z_critical), z
    # The spread of the draws scales as 1/√κ, checked to 2 % at κ = 1e8 (no rounding floor).
    column = list(KAPPAS).index(1e8)
    assert samples[:, column].std() * 1e4 == pytest.approx(1.0, rel=0.02)


# --- gradients -------------------------------------------------------------------------------

_KEY = jax.random.PRNGKey(11)
GRADIENT_KAPPAS = np.array([0.5, 3.0, 50.0, 1e3, 1e6])
N_GRADIENT_DRAWS = 4000


@jax.jit
def _draws_with_tangents(loc, kappa):
    """Draws of shape (N_GRADIENT_DRAWS, 5) and their derivatives in κ."""

    def draw(loc, kappa):
        return VonMises(loc, kappa).sample(_KEY, (N_GRADIENT_DRAWS,))

    return jax.jvp(lambda k: draw(loc, k), (kappa,), (jnp.ones_like(kappa),))


@pytest.fixture(scope="module")
def tangents():
    with jax.enable_x64(True):
        loc = jnp.full(GRADIENT_KAPPAS.shape, 0.4)
        kappa = jnp.asarray(GRADIENT_KAPPAS)
        theta, by_kappa = _draws_with_tangents(loc, kappa)
        # The centred draw θ - μ sits at the uniform u = F(θ - μ; κ); keeping u fixed while κ
        # moves gives dθ/dκ = -(∂F/∂κ)/f (implicit function theorem). ∂F/∂κ by central
        # differences of the cdf and f from scipy: a route independent of the custom derivative.
        centred = (theta - loc + math.pi) % (2 * math.pi) - math.pi
        step = 1e-6 * kappa
        upper = _cdf(*jnp.broadcast_arrays(centred, kappa + step))
        lower = _cdf(*jnp.broadcast_arrays(centred, kappa - step))
        centred, by_kappa, upper, lower = (np.asarray(a) for a in (centred, by_kappa, upper, lower))
        density = st.vonmises.pdf(centred, GRADIENT_KAPPAS)
        differences = -(upper - lower) / (2e-6 * GRADIENT_KAPPAS) / density
        return centred, by_kappa, differences


def test_sample_gradient_is_the_implicit_reparameterisation(tangents):
    centred, by_kappa, differences = tangents
    scale = GRADIENT_KAPPAS**-1.5  # |dθ/dκ| ~ σ/κ
    # Draws more than 6σ out carry cdf differences below rounding; none is expected in 4000.
    assert np.all(np.abs(by_kappa - differences) <= 1e-5 * scale)
    # Normal limit at κ = 1e6: θ = σ z with σ = κ^{-1/2}, so dθ/dκ = -θ/(2κ) to O(1/κ).
    np.testing.assert_allclose(by_kappa[:, -1], -centred[:, -1] / 2e6, rtol=1e-3)


def test_reparameterised_gradient_of_the_mean_cosine_is_unbiased(tangents):
    # d/dκ E[cos(θ - μ)] = A'(κ) = 1 - A² - A/κ: one z-test per κ, five at family-wise 1e-3,
    # standard errors from the per-draw gradients -sin(θ - μ) dθ/dκ.
    centred, by_kappa, _ = tangents
    per_draw = -np.sin(centred) * by_kappa
    a = sp.ive(1, GRADIENT_KAPPAS) / sp.ive(0, GRADIENT_KAPPAS)
    a_prime = 1 - a * a - a / GRADIENT_KAPPAS
    error = per_draw.std(axis=0, ddof=1) / math.sqrt(N_GRADIENT_DRAWS)
    z = (per_draw.mean(axis=0) - a_prime) / error
    assert np.all(np.abs(z) < st.norm.isf(FAMILY_WISE / (2 * 5))), z


def test_float32_draws_have_the_right_shape_range_and_finite_gradients():
    loc = jnp.array([3.0, -3.0, 10.0, 1.0], jnp.float32)
    kappa = jnp.array([50.0, 0.0, 1e-6, 1e8], jnp.float32)

    def draws_and_gradients(loc, kappa):
        draw = lambda loc, kappa: VonMises(loc, kappa).sample(_KEY, (64, 5))  # noqa: E731
        gradients = jax.grad(lambda loc, kappa: draw(loc, kappa).sum(), argnums=(0, 1))
        return draw(loc, kappa), *gradients(loc, kappa)

    samples, by_loc, by_kappa = (np.asarray(a) for a in jax.jit(draws_and_gradients)(loc, kappa))
    assert samples.shape == (64, 5, 4)
    assert samples.dtype == np.float32
    assert np.all(samples >= -math.pi)
    assert np.all(samples < math.pi)
    # Each draw is a shift of loc, so d(Σθ)/dμ counts the draws (320 per column).
    np.testing.assert_array_equal(by_loc, 320.0)
    assert np.all(np.isfinite(by_kappa))


def test_log_prob_gradients_match_finite_differences(x64):
    points = np.array([[0.4, -0.3, 2.0], [3.0, -3.0, 0.05], [0.01, 0.0, 1e3]])

    def log_prob(params):
        value, loc, kappa = params.T
        return _log_prob(loc, kappa, value)

    gradient = np.asarray(jax.jit(jax.vmap(jax.grad(lambda p: log_prob(p[None])[0])))(points))
    step = 1e-6
    differences = np.stack(
        [
            (log_prob(points + step * e) - log_prob(points - step * e)) / (2 * step)
            for e in np.eye(3)
        ],
        axis=1,
    )
    np.testing.assert_allclose(gradient, differences, rtol=1e-6, atol=1e-6)


def test_cdf_gradients_are_the_density_and_match_finite_differences(x64):
    x = np.array([-2.0, -0.1, 0.5, 2.9])[:, None]
    kappa = np.array([0.7, 8.0, 30.0, 200.0])
    x, kappa = np.broadcast_arrays(x, kappa)
    by_x, by_kappa = jax.jit(jax.vmap(jax.grad(vonmises_cdf, argnums=(0, 1))))(
        x.ravel(), kappa.ravel()
    )
    np.testing.assert_allclose(by_x, st.vonmises.pdf(x, kappa).ravel(), rtol=1e-10)
    step = 1e-5 * kappa
    differences = (_cdf(x, kappa + step) - _cdf(x, kappa - step)) / (2 * step)
    np.testing.assert_allclose(by_kappa, np.asarray(differences).ravel(), rtol=1e-6, atol=1e-10)


# --- interop and errors ----------------------------------------------------------------------


def test_distribution_is_a_pytree_usable_under_jit_and_vmap():
    d = VonMises(jnp.array([0.1, 0.2]), jnp.array([1.0, 2.0]))
    log_prob = jax.jit(lambda dist, x: dist.log_prob(x))(d, 0.5)
    np.testing.assert_allclose(
        log_prob, st.vonmises.logpdf(0.5, [1.0, 2.0], loc=[0.1, 0.2]), rtol=1e-6
    )
    built = jax.jit(jax.vmap(lambda m, k: VonMises(m, k).log_prob(0.5)))(d.loc, d.concentration)
    np.testing.assert_allclose(built, log_prob, rtol=1e-6)
    assert d.reparametrized_params == ["loc", "concentration"]


@pytest.mark.parametrize(
    ("loc", "concentration", "named"),
    [
        (0.0, -1.0, "concentration"),
        (0.0, float("nan"), "concentration"),
        (0.0, float("inf"), "concentration"),
        (float("nan"), 1.0, "loc"),
    ],
)
def test_bad_parameters_raise_a_probkit_error_naming_the_argument(loc, concentration, named):
    with pytest.raises(ProbkitError, match=f"`{named}`"):
        VonMises(loc, concentration)


def test_bad_moment_order_raises_a_probkit_error():
    with pytest.raises(ProbkitError, match="order"):
        VonMises(0.0, 1.0).trigonometric_moment(17)
    with pytest.raises(ProbkitError, match="order"):
        VonMises(0.0, 1.0).trigonometric_moment(1.5)
