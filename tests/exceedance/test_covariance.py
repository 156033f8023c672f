"""StationaryCovariance: spectral moments, presets, stable 1 - r, and the refusals."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.exceedance import (
    StationaryCovariance,
    cauchy,
    crossing_intensity,
    damped_cosine,
    gaussian,
    jonswap,
    matern,
    mean_excursion_length,
    random_acceleration,
    sech_diffusion,
)

# One preset of each kind of closed form (the suite is compile-bound: each family compiles).
PRESETS = {
    "sech_diffusion": lambda: sech_diffusion(3.0),
    "random_acceleration": random_acceleration,
    "matern72": lambda: matern(3.5, 1.3),
    "damped_cosine": lambda: damped_cosine(1.3, 0.9),
    "cauchy": lambda: cauchy(2.0, 0.7),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_closed_form_moments_equal_autodiff(name, x64):
    cov = PRESETS[name]()
    zero = jnp.zeros(())
    lam2 = -float(cov.derivative(zero, 2))
    assert float(cov.lam2) == pytest.approx(lam2, rel=1e-10)
    if math.isfinite(float(cov.lam4)):
        assert float(cov.lam4) == pytest.approx(float(cov.derivative(zero, 4)), rel=1e-8)
    else:  # a third-order kink: r'''(0+) != 0
        assert abs(float(cov.derivative(zero, 3))) > 1e-3
    assert float(cov(0.0)) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("name", list(PRESETS))
def test_one_minus_r_has_full_relative_precision_near_zero(name, x64):
    import mpmath

    cov = PRESETS[name]()
    t = 1e-5 / math.sqrt(float(cov.lam2))
    # 1 - r ≈ λ₂t²/2 (1 + O(t)); the subtraction 1 - r(t) would keep only ~6 digits here.
    approx = float(cov.one_minus(t))
    assert approx == pytest.approx(float(cov.lam2) * t**2 / 2, rel=1e-4)
    if name == "cauchy":
        exact = float(-mpmath.expm1(-0.7 * mpmath.log1p((mpmath.mpf(t) / 2) ** 2)))
        assert approx == pytest.approx(exact, rel=1e-13)


def test_generic_function_gets_stable_one_minus_from_its_slope(x64):
    generic = StationaryCovariance(lambda t: 1.5 * jnp.exp(-t / 2) - 0.5 * jnp.exp(-1.5 * t))
    closed = random_acceleration()
    t = jnp.array([1e-7, 1e-4, 0.05, 0.2, 0.5, 3.0])
    np.testing.assert_allclose(generic.one_minus(t), closed.one_minus(t), rtol=1e-9)
    assert float(generic.lam2) == pytest.approx(0.75)
    assert math.isinf(float(generic.lam4))


def test_parameters_are_differentiable_leaves(x64):
    def lam2(scale):
        return StationaryCovariance(lambda t, p: jnp.exp(-0.5 * (t / p) ** 2), scale).lam2

    assert float(jax.jit(lam2)(2.0)) == pytest.approx(0.25)
    assert float(jax.grad(lam2)(2.0)) == pytest.approx(-2 / 2.0**3)


def test_spectrum_input_matches_its_cosine_transform(x64):
    cov = jonswap(10.0)
    assert float(cov.lam2) == pytest.approx(-float(cov.derivative(0.0, 2)), rel=1e-10)
    # DNV-RP-C205 (3.5.5): T_z/T_p = 0.6673 + 0.05037γ - 0.006230γ² + 0.0003341γ³ for JONSWAP;
    # T_z = 2π/√λ₂. Our cutoff at 6ω_p drops a little of the ω⁻⁵ tail, hence the 3% tolerance.
    gamma = 3.3
    ratio = 0.6673 + 0.05037 * gamma - 0.006230 * gamma**2 + 0.0003341 * gamma**3
    assert 2 * math.pi / math.sqrt(float(cov.lam2)) == pytest.approx(10.0 * ratio, rel=0.03)
    omega = np.linspace(0.1, 3.0, 500)
    white = StationaryCovariance.from_spectrum(omega, np.ones_like(omega))
    t = 0.7
    expected = (np.sin(3.0 * t) - np.sin(0.1 * t)) / (t * 2.9)
    assert float(white(t)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "function",
    [lambda t: jnp.exp(-t), lambda t: (1 + t) * jnp.exp(-t) * jnp.exp(-0.5 * t)],
    ids=["ornstein_uhlenbeck", "kinked"],
)
def test_non_differentiable_processes_are_refused(function, x64):
    with pytest.raises(ProbkitError, match="infinitely often"):
        StationaryCovariance(function)


@pytest.mark.parametrize("nu", [0.5, 1.0])
def test_rough_matern_is_refused(nu):
    with pytest.raises(ProbkitError, match="ν <= 1"):
        matern(nu)


def test_matern_of_any_order_matches_scipy_and_the_closed_forms(x64):
    from scipy import special

    t = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
    for nu in (1.2, 1.7, 2.0, 3.3):
        x = math.sqrt(2 * nu) * t / 1.3
        expected = 2 ** (1 - nu) / special.gamma(nu) * x**nu * special.kv(nu, x)
        np.testing.assert_allclose(matern(nu, 1.3)(t), expected, rtol=1e-12)
    # The quadrature path against the closed form of ν = 5/2, derivatives included.
    from probkit.exceedance.covariance import _matern_general

    general = StationaryCovariance(_matern_general(2.5), 1.3, check=False)
    closed = matern(2.5, 1.3)
    for order in (1, 2):
        np.testing.assert_allclose(
            general.derivative(t, order), closed.derivative(t, order), rtol=1e-9
        )


def test_variance_other_than_one_is_normalised_with_a_warning_or_refused(x64):
    with pytest.warns(UserWarning, match="dividing"):
        cov = StationaryCovariance(lambda t: 4.0 * jnp.exp(-0.5 * t**2))
    assert float(cov(1.0)) == pytest.approx(math.exp(-0.5))
    assert float(cov.lam2) == pytest.approx(1.0)
    assert float(cov.one_minus(1e-6)) == pytest.approx(0.5e-12, rel=1e-6)
    with pytest.raises(ProbkitError, match="normalize=True"):
        StationaryCovariance(lambda t: 4.0 * jnp.exp(-0.5 * t**2), normalize=False)


def test_invalid_correlations_are_refused(x64):
    # e^{-t²/2}(1 - at²) has spectrum ∝ (1 - a + aω²) e^{-ω²/2}: negative near 0 for a > 1.
    with pytest.raises(ProbkitError, match="positive semi-definite"):
        StationaryCovariance(lambda t: jnp.exp(-0.5 * t**2) * (1 - 1.2 * t**2))
    StationaryCovariance(lambda t: jnp.exp(-0.5 * t**2) * (1 - 0.9 * t**2))  # a < 1: valid
    with pytest.raises(ProbkitError, match="r\\(0\\)"):
        StationaryCovariance(lambda t: -jnp.exp(-(t**2)))


def test_rice_intensities_and_mean_length(x64):
    cov = gaussian(2.0)  # λ₂ = 1/4
    assert float(crossing_intensity(cov)) == pytest.approx(0.5 / (2 * math.pi))
    assert float(crossing_intensity(cov, direction="both")) == pytest.approx(0.5 / math.pi)
    level = 1.3
    up = float(crossing_intensity(cov, level))
    assert up == pytest.approx(0.5 / (2 * math.pi) * math.exp(-(level**2) / 2))
    assert float(mean_excursion_length(cov)) == pytest.approx(2 * math.pi)
    from scipy import stats

    assert float(mean_excursion_length(cov, level)) == pytest.approx(stats.norm.sf(level) / up)
    # Far levels stay finite (the ratio is taken in log space).
    assert math.isfinite(float(mean_excursion_length(cov, 40.0)))
    with pytest.raises(ProbkitError, match="level"):
        crossing_intensity(cov, float("nan"))
    with pytest.raises(ProbkitError, match="direction"):
        crossing_intensity(cov, 0.0, direction="sideways")
