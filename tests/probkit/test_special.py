"""The stable special functions against 60-digit mpmath values."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from probkit import special

mpmath.mp.dps = 60  # 1 - A² - A/κ cancels 17 digits at κ = 1e8

# From the uniform limit to beyond float32's acos resolution, across both series switch-overs
# (20 in float32, 100 in float64) and the asymptotic switch of the higher ratios (500).
KAPPAS = np.array([1e-8, 1e-4, 1e-2, 0.5, 1, 2, 10, 19, 21, 30, 100, 499, 501, 999, 1001, 1e4, 1e8])

# Relative tolerances: float64 to a few hundred ulps (A' loses up to log10(2κ) digits to the
# cancellation in 1 - A² - A/κ below its series switch); float32 to a few hundred ulps of 6e-8.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def _ratio(kappa, p=1):
    kappa = mpmath.mpf(kappa)
    return mpmath.besseli(p, kappa) / mpmath.besseli(0, kappa)


@pytest.fixture(scope="module")
def oracle():
    ratio = np.array([float(_ratio(k)) for k in KAPPAS])
    complement = np.array([float(1 - _ratio(k)) for k in KAPPAS])
    derivative = np.array([float(1 - _ratio(k) ** 2 - _ratio(k) / mpmath.mpf(k)) for k in KAPPAS])
    log_i0 = np.array([float(mpmath.log(mpmath.besseli(0, mpmath.mpf(k)))) for k in KAPPAS])
    ratios = np.array([[float(_ratio(k, p)) for p in range(1, 5)] for k in KAPPAS])
    return {
        "ratio": ratio,
        "complement": complement,
        "derivative": derivative,
        "log_i0": log_i0,
        "ratios": ratios,
    }


def _relative_error(value, reference):
    return np.max(np.abs(np.asarray(value, dtype=float) / reference - 1))


def test_bessel_ratio_and_complement(dtype, oracle):
    kappa = jnp.asarray(KAPPAS, dtype)
    tolerance = TOLERANCE[dtype.name]
    assert special.bessel_ratio(kappa).dtype == dtype
    assert _relative_error(special.bessel_ratio(kappa), oracle["ratio"]) < tolerance
    # The complement keeps relative precision where A rounds to 1 (float32 beyond κ ≈ 1e7).
    assert _relative_error(special.bessel_ratio_complement(kappa), oracle["complement"]) < tolerance
    assert _relative_error(special.bessel_ratio_derivative(kappa), oracle["derivative"]) < tolerance
    log_i0 = np.asarray(special.log_i0(kappa), dtype=float)
    assert np.max(np.abs(log_i0 - oracle["log_i0"]) / np.maximum(1, oracle["log_i0"])) < tolerance


def test_odd_and_even_symmetry(x64):
    kappa = jnp.asarray([0.3, 7.0, 2e3])
    np.testing.assert_allclose(special.bessel_ratio(-kappa), -special.bessel_ratio(kappa))
    np.testing.assert_allclose(special.log_i0(-kappa), special.log_i0(kappa))


def test_inverse_round_trips(dtype, oracle):
    # Inputs from mpmath, so the only error is the solver's and the input's rounding; below
    # κ = 1e-2 the circular variance 1 - κ/2 is 1 to float32 rounding, so start there.
    start = 2 if dtype == jnp.float32 else 0
    complement = jnp.asarray(oracle["complement"][start:], dtype)
    kappa = special.bessel_ratio_complement_inverse(complement)
    tolerance = {"float64": 1e-7, "float32": 1e-5}[dtype.name]  # κ=1e-8: v's rounding in f64
    assert _relative_error(kappa, KAPPAS[start:]) < tolerance
    ratio = jnp.asarray(oracle["ratio"][3:12], dtype)
    assert _relative_error(special.bessel_ratio_inverse(ratio), KAPPAS[3:12]) < 1e3 * tolerance


def test_inverse_limits(x64):
    kappa = special.bessel_ratio_inverse(jnp.asarray([-0.1, 0.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(kappa), [0.0, 0.0, np.inf])


def test_derivatives_are_closed_forms(x64, oracle):
    kappa = jnp.asarray(KAPPAS[3:])
    grad_log_i0 = jax.vmap(jax.grad(special.log_i0))(kappa)
    assert _relative_error(grad_log_i0, oracle["ratio"][3:]) < 1e-12
    grad_ratio = jax.vmap(jax.grad(special.bessel_ratio))(kappa)
    assert _relative_error(grad_ratio, oracle["derivative"][3:]) < 1e-10
    # Implicit-function derivative of the inverse: dκ/dv = -1/A'(κ).
    complement = jnp.asarray(oracle["complement"][3:])
    grad_inverse = jax.vmap(jax.grad(special.bessel_ratio_complement_inverse))(complement)
    assert _relative_error(-grad_inverse, 1 / oracle["derivative"][3:]) < 1e-9
    # The derivative at 0 is the Taylor limit 1/2, not 0/0.
    assert float(jax.grad(special.bessel_ratio)(0.0)) == 0.5


def test_bessel_ratios(dtype, oracle):
    ratios = special.bessel_ratios(jnp.asarray(KAPPAS, dtype), 4)
    assert ratios.shape == (len(KAPPAS), 4)
    # Relative error of I_p/I_0, which itself is as small as (κ/2)^p/p! near 0.
    assert _relative_error(ratios, oracle["ratios"]) < TOLERANCE[dtype.name]


def test_bessel_ratios_rejects_orders_out_of_range():
    with pytest.raises(ValueError, match="order"):
        special.bessel_ratios(1.0, 17)
