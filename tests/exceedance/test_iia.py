"""SlepianIIA: the divisor, the solver, moments, persistence, sampling, jit and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from probkit import ProbkitError
from probkit.exceedance import (
    ExcursionLength,
    SlepianIIA,
    damped_cosine,
    gaussian,
    sech_diffusion,
)


@pytest.fixture(scope="module")
def diffusion():
    with jax.enable_x64(True):
        yield SlepianIIA(sech_diffusion(2.0))


def test_needs_float64():
    with jax.enable_x64(False), pytest.raises(ProbkitError, match="float64"):
        SlepianIIA(sech_diffusion(2.0))


def test_divisor_is_arccos_derivative_to_full_precision_near_zero(diffusion, x64):
    import mpmath

    mpmath.mp.dps = 40
    # E₀ = (1/√λ₂) d/dt arccos r(t), r = sech(t/2), √λ₂ = 1/2: evaluated in 40 digits.
    for t in (1e-6, 1e-3, 0.5, 5.0):
        exact = 2 * mpmath.diff(lambda s: mpmath.acos(mpmath.sech(s / 2)), mpmath.mpf(t))
        assert float(diffusion.divisor_sf(t)) == pytest.approx(float(exact), rel=1e-10)
    t = np.asarray(diffusion.grid)
    # Q >= 0 for the diffusion correlator: E₀ = sech(t/2) falls from 1 to 0, f_D = -E₀'.
    assert float(diffusion.divisor_sf(0.0)) == 1.0
    assert np.all(np.diff(np.asarray(diffusion.divisor_sf(t))) <= 0)
    expected = 0.5 * np.tanh(t / 2) / np.cosh(t / 2)
    np.testing.assert_allclose(diffusion.divisor_pdf(t), expected, rtol=1e-9, atol=1e-300)


def test_laplace_transform_matches_the_formula_and_the_density(diffusion, x64):
    import mpmath

    t = np.asarray(diffusion.grid)
    density = np.asarray(diffusion.pdf(t))
    for s in (0.0, 0.1, 1.0, -0.1):
        # Ψ = (1 - sL)/(1 + sL) with L = ∫ e^{-st} sech(t/2) dt in 15 digits.
        transform = mpmath.quad(
            lambda u, s=s: mpmath.exp(-s * u) * mpmath.sech(u / 2), [0, 20, mpmath.inf]
        )
        exact = float((1 - s * transform) / (1 + s * transform))
        assert float(diffusion.laplace(s)) == pytest.approx(exact, rel=1e-7)
        # The solver's density has the same transform to its O(h²) accuracy.
        numeric = integrate.simpson(np.exp(-s * t) * density, x=t)
        assert numeric == pytest.approx(exact, rel=1e-4)


def test_moments_and_persistence(diffusion, x64):
    t = np.asarray(diffusion.grid)
    sf = np.asarray(diffusion.sf(t))
    second_moment = 2 * integrate.trapezoid(t * sf, t)
    variance = second_moment - float(diffusion.mean()) ** 2
    # Var T = 4∫tE₀ (the analytic form) against the solver's distribution.
    assert float(diffusion.var()) == pytest.approx(variance, rel=1e-4)
    assert float(diffusion.persistence(0.0)) == pytest.approx(0.5, abs=1e-4)
    persistence = np.asarray(diffusion.persistence(jnp.array([5.0, 10.0, 20.0])))
    assert np.all(np.diff(persistence) < 0)
    # Beyond the grid the tail law continues the solver smoothly.
    t_max = float(t[-1])
    inside, outside = diffusion.sf(t_max * (1 - 1e-9)), diffusion.sf(t_max * (1 + 1e-9))
    assert float(outside) == pytest.approx(float(inside), rel=1e-6)
    assert float(diffusion.sf(2 * t_max)) == pytest.approx(
        float(diffusion.tail_constant() * jnp.exp(-diffusion.theta() * 2 * t_max)), rel=1e-3
    )


def test_grid_refinement_converges_at_second_order(x64):
    cov = sech_diffusion(2.0)
    values = [float(SlepianIIA(cov, points_per_mean=m).sf(10.0)) for m in (64, 128, 256)]
    ratio = (values[0] - values[1]) / (values[1] - values[2])
    assert ratio == pytest.approx(4.0, rel=0.15)


def test_theta_and_density_compile_under_jit(x64):
    @jax.jit
    def summary(d):
        iia = SlepianIIA(sech_diffusion(d), points_per_mean=64, n_means=32)
        return iia.theta(), iia.logpdf(jnp.array([1.0, 10.0]))

    theta, logpdf = summary(2.0)
    assert float(theta) == pytest.approx(0.18621, abs=5e-5)
    assert np.all(np.isfinite(np.asarray(logpdf)))


def test_invalid_covariance_is_reported_and_not_sampled(x64):
    iia = SlepianIIA(damped_cosine(3.0))
    report = iia.validity()
    assert report.status == "invalid"
    assert report.min_density < 0
    assert report.negative_mass > 0.01
    assert "simulate_excursions" in report.message
    assert np.any(np.isneginf(np.asarray(iia.logpdf(iia.grid))))
    with pytest.raises(ProbkitError, match="not a distribution"):
        iia.sample(jax.random.key(0), (10,))
    with pytest.raises(ProbkitError, match="not monotone"):
        iia.sample_divisor(jax.random.key(0), (10,))
    with pytest.raises(ProbkitError, match=r"invalid|negative"):
        ExcursionLength(damped_cosine(3.0))


def test_numerically_valid_covariance_samples_from_the_solver(x64):
    from scipy import stats

    iia = SlepianIIA(damped_cosine(1.0))
    assert iia.validity().status == "numerically_valid"
    draws = np.asarray(iia.sample(jax.random.key(3), (4000,)))
    # A 1e-3 false-alarm KS test of the inverse-cdf draws against the solver's cdf.
    assert stats.kstest(draws, lambda t: np.asarray(iia.cdf(jnp.asarray(t)))).pvalue > 1e-3


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_times_are_refused(diffusion, bad, x64):
    with pytest.raises(ProbkitError, match="`t` must be"):
        diffusion.sf(bad)


def test_bad_grid_and_covariance_are_refused(x64):
    with pytest.raises(ProbkitError, match="points_per_mean"):
        SlepianIIA(gaussian(), points_per_mean=4)
    with pytest.raises(ProbkitError, match="StationaryCovariance"):
        SlepianIIA(lambda t: jnp.exp(-(t**2)))


def test_excursion_length_score_has_mean_zero(x64):
    # The score d/dℓ log p(T | ℓ) has mean 0 at the true ℓ: a z-test over n draws with a
    # 1e-4 two-sided false-alarm rate (|z| < 3.9) checks that gradients flow through the IIA.
    distribution = ExcursionLength(gaussian(1.5), points_per_mean=64, n_means=24)
    draws = distribution.sample(jax.random.key(7), (2000,))

    def log_likelihood(scale, value):
        return ExcursionLength(gaussian(scale), points_per_mean=64, n_means=24).log_prob(value)

    # Forward mode: one tangent through the IIA gives every per-draw score at once.
    scores = np.asarray(jax.jacfwd(log_likelihood)(1.5, draws))
    z = scores.mean() / (scores.std(ddof=1) / math.sqrt(scores.size))
    assert abs(z) < 3.9
    # T scales with ℓ for the Gaussian correlation, so the score is (-1 - t f'(t)/f(t))/ℓ: its
    # spread is of order 1/ℓ, and a wrong gradient (e.g. zero) would fail.
    assert 0.1 < scores.std() < 10
    assert float(distribution.mean) == pytest.approx(1.5 * math.pi)
    with pytest.warns(UserWarning, match="support"):
        assert float(distribution.log_prob(-1.0)) == -math.inf


def test_second_derivatives_of_the_log_density_are_finite(x64):
    # Laplace approximations need the Hessian of log p(T | ℓ); E₀ underflows at the grid's end.
    def log_density(scale):
        return SlepianIIA(gaussian(scale), points_per_mean=64, n_means=24).logpdf(3.0)

    # Compiled whole: op-by-op evaluation of the solver's derivatives compiles every op apart.
    curvature = float(jax.jit(jax.grad(jax.grad(log_density)))(1.5))
    eps = 1e-4
    gradient = jax.jit(jax.grad(log_density))
    finite = float((gradient(1.5 + eps) - gradient(1.5 - eps)) / (2 * eps))
    assert curvature == pytest.approx(finite, rel=1e-5)


def test_theta_does_not_depend_on_the_grid_length_for_slow_exponential_tails(x64):
    # r = sech(t/2)^{0.1} decays at rate 0.05 and θ = 0.036 is close to it: the moment beyond
    # the grid is added in closed form, so a grid of 8 mean lengths gives the same θ as 48.
    thetas = [float(SlepianIIA(sech_diffusion(0.2), n_means=n).theta()) for n in (8, 48)]
    assert thetas[0] == pytest.approx(thetas[1], rel=1e-6)
    assert SlepianIIA(sech_diffusion(0.2), n_means=8).tail().kind == "exponential"
