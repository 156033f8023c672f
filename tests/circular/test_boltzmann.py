"""Boltzmann targets: the butane potential, exact grid densities and energy fits.

The forward-KL fits and the butane reference values are covered by the registered checks
(``theory/checks/circular.py``); these tests cover the conventions, the reverse-KL fits and bad
input.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special

from probkit import ProbkitError
from probkit.circular import (
    BUTANE_RYCKAERT_BELLEMANS,
    boltzmann_grid,
    butane_energy,
    fit_to_energy,
    ryckaert_bellemans,
    thermal_energy,
)

KT_300 = thermal_energy(300.0)


@pytest.fixture(scope="module")
def reverse_optimum():
    """κ of the reverse-KL-optimal single von Mises at the trans well, by NumPy and scipy alone.

    KL(q‖p) = E_q[log q + V/kT] + log Z on a 2048-point periodic grid, minimised over log κ
    with μ = π (the trans well, by symmetry) with Brent's method.
    """
    phi = -np.pi + 2 * np.pi * np.arange(2048) / 2048
    x = -np.cos(phi)
    energy = sum(c * x**n for n, c in enumerate(BUTANE_RYCKAERT_BELLEMANS))

    def reverse_kl(log_kappa):
        kappa = math.exp(log_kappa)
        log_q = kappa * (np.cos(phi - np.pi) - 1) - np.log(2 * np.pi * special.i0e(kappa))
        q = np.exp(log_q) * (2 * np.pi / phi.size)
        return float(np.sum(q * (log_q + energy / KT_300)))

    result = optimize.minimize_scalar(reverse_kl, bracket=(1.0, 4.0), tol=1e-12)
    return math.exp(result.x)


def test_butane_potential_conventions(x64):
    # Polymer convention: V(ψ) = Σ C_n cos^n ψ with ψ = φ - π; trans (φ = π) is the minimum 0
    # of the GROMACS table (Σ C_n = 0) and cis (φ = 0) is Σ C_n (-1)^n.
    coefficients = np.array(BUTANE_RYCKAERT_BELLEMANS)
    signs = (-1.0) ** np.arange(6)
    np.testing.assert_allclose(float(butane_energy(math.pi)), coefficients.sum(), atol=1e-12)
    np.testing.assert_allclose(float(butane_energy(0.0)), (coefficients * signs).sum())
    phi = np.linspace(-np.pi, np.pi, 7)
    np.testing.assert_allclose(butane_energy(phi), butane_energy(-phi), atol=1e-12)
    # A one-term potential is a plain cosine in ψ.
    np.testing.assert_allclose(ryckaert_bellemans([0.0, 2.0])(phi), -2.0 * np.cos(phi), atol=1e-12)


def test_thermal_energy_units():
    assert thermal_energy(300.0) == pytest.approx(2.494338785)
    assert thermal_energy(300.0, "kcal/mol") == pytest.approx(0.5961612777)


def test_grid_density_normalises_and_matches_quadrature():
    grid = boltzmann_grid(lambda phi: 3.0 * jnp.cos(phi), 1.5, n_points=512)
    assert grid.probabilities.sum() == pytest.approx(1.0, abs=1e-13)
    # exp(-2 cos φ): log Z = log(2π I0(2)).
    log_z = math.log(integrate.quad(lambda t: math.exp(-2 * math.cos(t)), -math.pi, math.pi)[0])
    assert grid.log_partition == pytest.approx(log_z, abs=1e-12)
    assert grid.kl_from(lambda a: np.asarray(grid.log_density)) == pytest.approx(0.0, abs=1e-14)


def test_reverse_kl_by_quadrature_is_mode_seeking(x64, reverse_optimum):
    # With one component, reverse KL locks onto the trans well instead of covering all three.
    # 512 points resolve wells of width 1/√κ ≈ 0.2 rad to spectral accuracy.
    fit = fit_to_energy(
        butane_energy,
        KT_300,
        1,
        divergence="reverse",
        n_points=512,
        n_init=4,
        steps=300,
        learning_rate=0.1,
    )
    loc = float(fit.distribution.loc[0])
    assert abs(abs(loc) - math.pi) < 1e-3
    assert float(fit.distribution.concentration[0]) == pytest.approx(reverse_optimum, rel=1e-4)
    assert np.all(np.diff(fit.loss_trace[-50:]) < 1e-6)  # converged: no longer moving up


def test_reverse_kl_by_reparameterised_samples_in_three_torsions(x64, reverse_optimum):
    # A separable energy of three butane torsions: the best single product component puts every
    # torsion in its trans well, with the concentration of the one-torsion reverse optimum.
    def energy(angles):
        return jnp.sum(butane_energy(angles))

    fit = fit_to_energy(
        energy,
        KT_300,
        1,
        divergence="reverse",
        dimension=3,
        n_init=1,
        steps=150,
        learning_rate=0.1,
        n_samples=32,
    )
    loc = np.asarray(fit.distribution.loc)
    assert loc.shape == (1, 3)
    np.testing.assert_allclose(np.abs(loc), math.pi, atol=0.05)
    # Adam on 32-draw gradients ends within a noise ball of the optimum: κ within 25 %.
    np.testing.assert_allclose(
        np.asarray(fit.distribution.concentration), reverse_optimum, rtol=0.25
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kT": 0.0}, "kT"),
        ({"kT": float("nan")}, "kT"),
        ({"n_components": 0}, "n_components"),
        ({"divergence": "both"}, "divergence"),
        ({"dimension": 4}, "dimension"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    arguments = {"energy": butane_energy, "kT": KT_300, "n_components": 2, **kwargs}
    with pytest.raises(ProbkitError, match=match):
        fit_to_energy(**arguments)


def test_bad_energies_and_temperatures_are_refused():
    with pytest.raises(ProbkitError, match="non-finite"):
        boltzmann_grid(lambda phi: jnp.log(jnp.cos(phi)), 1.0, n_points=64)
    with pytest.raises(ProbkitError, match="scalar"):
        boltzmann_grid(lambda phi: jnp.stack([phi, phi]), 1.0, n_points=64)
    with pytest.raises(ProbkitError, match="temperature"):
        thermal_energy(-3.0)
    with pytest.raises(ProbkitError, match="coefficients"):
        ryckaert_bellemans([])
