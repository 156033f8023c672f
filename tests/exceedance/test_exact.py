"""Exact cross-checks: the Rice first-order bound and grid orthant persistence probabilities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from probkit._errors import ProbkitError
from probkit.exceedance.covariance import gaussian, random_acceleration, sech_diffusion
from probkit.exceedance.exact import (
    MAX_GRID_POINTS,
    orthant_persistence,
    persistence_extrapolated,
    rice_bound_pdf,
)

# --- Rice first-order bound -------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: sech_diffusion(2.0), gaussian], ids=["sech2", "gauss"])
def test_rice_bound_small_t_slope(x64, make):
    # f(t)/t -> (λ₄ - λ₂²)/(8λ₂) (0.125 for d = 2, 0.25 for the Gaussian). The O(t²) correction
    # is -0.83e-6 at t√λ₂ = 1e-3 for both, -0.83e-12 at 1e-6: the second point shows the
    # cancellations are handled (direct evaluation is rounding noise there).
    cov = make()
    lam2, lam4 = float(cov.lam2), float(cov.lam4)
    slope = (lam4 - lam2**2) / (8 * lam2)
    t = np.array([1e-3, 1e-6]) / math.sqrt(lam2)
    ratio = np.asarray(rice_bound_pdf(cov, t)) / t / slope
    assert abs(ratio[0] - 1) < 1e-6
    assert abs(ratio[1] - 1) < 1e-10


def _oracle_bound_sech2(t):
    """The bound for r = sech(t/2) by conditioning the 4x4 covariance and 2-D quadrature."""
    sech, tanh = 1 / np.cosh(t / 2), np.tanh(t / 2)
    r, r1, r2 = sech, -0.5 * sech * tanh, 0.25 * sech * tanh**2 - 0.25 * sech**3
    lam2 = 0.25
    # (X(0), X(t), X'(0), X'(t)); Cov(X(s), X'(u)) = r'(u - s), Cov(X'(s), X'(u)) = -r''(u - s).
    full = np.array(
        [[1, r, 0, r1], [r, 1, -r1, 0], [0, -r1, lam2, -r2], [r1, 0, -r2, lam2]], dtype=float
    )
    s11, s12, s22 = full[:2, :2], full[:2, 2:], full[2:, 2:]
    cond = s22 - s12.T @ np.linalg.solve(s11, s12)
    inverse, det = np.linalg.inv(cond), np.linalg.det(cond)

    def integrand(y2, y1):  # y1 = X'(0) > 0, y2 = X'(t) < 0
        y = np.array([y1, y2])
        return y1 * (-y2) * np.exp(-0.5 * y @ inverse @ y) / (2 * np.pi * np.sqrt(det))

    expectation, _ = integrate.dblquad(integrand, 0, np.inf, -np.inf, 0, epsabs=1e-13)
    density00 = 1 / (2 * np.pi * np.sqrt(np.linalg.det(s11)))
    return expectation * density00 / (np.sqrt(lam2) / (2 * np.pi))


def test_rice_bound_matches_conditioning_oracle(x64):
    t = np.array([1.0, 8.0])
    values = np.asarray(rice_bound_pdf(sech_diffusion(2.0), t))
    oracle = np.array([_oracle_bound_sech2(s) for s in t])
    np.testing.assert_allclose(values, oracle, rtol=1e-7)
    # The research note's values (simulated densities there: 0.1022 and 0.0511).
    np.testing.assert_allclose(values, [0.1038, 0.0842], atol=5e-5)


def test_rice_bound_kink_and_zero(x64):
    # λ₄ = ∞ (random acceleration, r'''(0⁺) = 3/2): A ~ (2/3)λ₂r'''t³, Q ~ A/2, so ρ -> 1/2 and
    # f₁(0⁺) = (2/3) r'''(0⁺) g(1/2) / λ₂ with g(1/2) = (√3/2 + π/3)/(2π).
    g_half = (math.sqrt(3) / 2 + math.pi / 3) / (2 * math.pi)
    value = rice_bound_pdf(random_acceleration(), jnp.array([0.0, 1e-9]))
    assert float(value[0]) == 0.0
    assert float(value[1]) == pytest.approx((2 / 3) * 1.5 * g_half / 0.75, rel=1e-7)


def test_rice_bound_gradients(x64):
    # One reverse-mode pass for both arguments (each derivative costs seconds of compilation).
    def total(d, t):
        return jnp.sum(rice_bound_pdf(sech_diffusion(d), t))

    t = jnp.array([1e-7, 1.0])
    grad_d, grad_t = jax.grad(total, argnums=(0, 1))(2.0, t)
    h = 1e-5
    finite = (float(total(2.0 + h, t)) - float(total(2.0 - h, t))) / (2 * h)
    assert float(grad_d) == pytest.approx(finite, rel=1e-6)
    # d f₁/dt at t -> 0 is the slope 0.125.
    assert float(grad_t[0]) == pytest.approx(0.125, rel=1e-6)
    assert np.all(np.isfinite(np.asarray(grad_t)))


def test_rice_bound_float32():
    with jax.enable_x64(False):
        value = rice_bound_pdf(sech_diffusion(2.0), jnp.array([1e-6, 1.0]))
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(value), [1.25e-7, 0.1037813], rtol=2e-5)


# --- orthant probabilities ----------------------------------------------------------------------


def test_orthant_closed_forms(x64):
    cov = gaussian()
    assert orthant_persistence(cov, 0.0, 1.0).probability == 0.5
    r1, r2 = math.exp(-0.5), math.exp(-2.0)
    two = orthant_persistence(cov, 1.0, 1.0)
    assert two.points == 2
    assert two.probability == pytest.approx(0.25 + math.asin(r1) / (2 * math.pi), rel=1e-14)
    # Three points go through Genz; trivariate orthant: 1/8 + Σ arcsin(r_ij)/(4π).
    three = orthant_persistence(cov, 2.0, 1.0, abseps=1e-7, releps=1e-6)
    exact = 0.125 + (2 * math.asin(r1) + math.asin(r2)) / (4 * math.pi)
    assert three.points == 3
    assert abs(three.probability - exact) < max(three.error, 1e-6)
    # t/step not an integer: the grid is refined to ceil(t/step) intervals.
    uneven = orthant_persistence(cov, 1.0, 0.4)
    assert uneven.points == 4
    assert uneven.step == pytest.approx(1 / 3)


def test_orthant_against_monte_carlo(x64):
    # The same grid probability by plain Monte Carlo from the grid covariance (an independent
    # estimator): t = 10, step 1 for d = 2 (11 points). Tolerance: 4 combined standard errors
    # (Genz's error is 3 of its standard errors).
    cov = sech_diffusion(2.0)
    result = orthant_persistence(cov, 10.0, 1.0)
    lags = np.arange(11.0)
    r = 1 / np.cosh(lags / 2)
    matrix = r[np.abs(np.subtract.outer(np.arange(11), np.arange(11)))]
    rng = np.random.default_rng(20240101)
    draws = rng.standard_normal((400_000, 11)) @ np.linalg.cholesky(matrix).T
    hits = np.all(draws > 0, axis=1)
    estimate = hits.mean()
    standard_error = math.sqrt(estimate * (1 - estimate) / hits.size)
    combined = math.sqrt(standard_error**2 + (result.error / 3) ** 2)
    assert abs(result.probability - estimate) < 4 * combined
    assert result.error < 2e-4


def test_extrapolation_moves_towards_the_continuum(x64):
    # P(X > 0 on [0, 10]) for d = 2: 0.0791 ± 0.0003 by simulation. The grid values are biased
    # upward (0.0827 at step 1); the O(step²) Richardson step from (1, 0.5) removes most of it.
    result = persistence_extrapolated(sech_diffusion(2.0), 10.0, steps=(1.0, 0.5))
    reference, reference_sd = 0.0791, 0.0003
    coarse = result.probabilities[0]
    assert result.order == 2.0
    np.testing.assert_array_equal(result.points, [11, 21])
    assert result.probabilities[1] < coarse
    assert abs(result.value - reference) < 0.25 * abs(coarse - reference)
    assert abs(result.value - reference) < result.error + 3 * reference_sd


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [-1.0, float("nan"), float("inf"), [0.5, -0.1]])
def test_rice_bound_refuses_bad_t(x64, t):
    with pytest.raises(ProbkitError, match="`t`"):
        rice_bound_pdf(sech_diffusion(2.0), t)


def test_bad_covariance():
    with pytest.raises(ProbkitError, match="`covariance`"):
        rice_bound_pdf(lambda t: jnp.exp(-(t**2)), 1.0)
    with pytest.raises(ProbkitError, match="`covariance`"):
        orthant_persistence("gaussian", 1.0, 0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t": -1.0, "step": 0.5}, "`t`"),
        ({"t": float("inf"), "step": 0.5}, "`t`"),
        ({"t": 1.0, "step": 0.0}, "`step`"),
        ({"t": 1.0, "step": -0.5}, "`step`"),
        ({"t": 1.0, "step": float("nan")}, "`step`"),
        ({"t": 100.0, "step": 100.0 / MAX_GRID_POINTS}, "more than the limit"),
        ({"t": 2.0, "step": 1.0, "releps": -1.0}, "`releps`"),
        ({"t": 2.0, "step": 1.0, "maxpts": 0}, "`maxpts`"),
    ],
)
def test_orthant_refuses_bad_input(x64, kwargs, match):
    with pytest.raises(ProbkitError, match=match):
        orthant_persistence(gaussian(), **kwargs)


def test_orthant_needs_float64():
    with jax.enable_x64(False), pytest.raises(ProbkitError, match="float64"):
        orthant_persistence(gaussian(), 2.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t": 0.0}, "`t`"),
        ({"t": 2.0, "steps": (1.0,)}, "at least two"),
        ({"t": 2.0, "steps": (1.0, 0.0)}, "`steps`"),
        ({"t": 2.0, "steps": "fine"}, "`steps`"),
        ({"t": 2.0, "steps": (1.0, 0.5), "order": -1.0}, "`order`"),
    ],
)
def test_extrapolation_refuses_bad_input(x64, kwargs, match):
    with pytest.raises(ProbkitError, match=match):
        persistence_extrapolated(gaussian(), **kwargs)
