"""Boltzmann torsion targets: torsion potentials, their exact densities, and von Mises mixture fits.

A torsion potential ``V(φ)`` at temperature ``T`` defines the Boltzmann density
``p(φ) ∝ exp(-V(φ)/kT)`` on the circle (or the torus, for several torsions). This module gives

- the Ryckaert–Bellemans potential and its butane parameters (the classic 1-D oracle),
- :func:`boltzmann_grid`: the exact density on a periodic grid, on which the trapezoid rule is
  spectrally accurate for smooth potentials,
- :func:`fit_to_energy`: the von Mises mixture closest to the Boltzmann density, either in
  forward KL ``KL(p‖q)`` (mass-covering: EM on the grid with the density as quadrature weights,
  the fit VonMisesNet's maximum-likelihood training converges to) or in reverse KL ``KL(q‖p)``
  (mode-seeking, energy-based: needs only ``V``, by quadrature for one or two torsions and by
  reparameterised samples of ``q`` beyond).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_positive_int
from probkit.circular.fit import VonMisesMixtureFit, fit_vonmises_mixture
from probkit.circular.mixture import VonMisesMixture
from probkit.circular.vonmises import VonMises

__all__ = [
    "BUTANE_RYCKAERT_BELLEMANS",
    "GAS_CONSTANT",
    "BoltzmannGrid",
    "EnergyFit",
    "boltzmann_grid",
    "butane_energy",
    "fit_to_energy",
    "ryckaert_bellemans",
    "thermal_energy",
]

GAS_CONSTANT = {"kJ/mol": 8.314462618e-3, "kcal/mol": 1.987204259e-3}
"""The molar gas constant R in kJ/(mol K) and kcal/(mol K) (CODATA 2018, exact since 2019)."""

BUTANE_RYCKAERT_BELLEMANS = (9.28, 12.16, -13.12, -3.06, 26.24, -31.5)
"""Ryckaert–Bellemans coefficients ``C₀ … C₅`` (kJ/mol) of united-atom butane's C-C-C-C torsion,
in the polymer convention ``ψ = φ - 180°`` (GROMACS reference manual, "Proper dihedrals:
Ryckaert-Bellemans function")."""


def thermal_energy(temperature: float, unit: str = "kJ/mol") -> float:
    """``kT = R T`` in ``unit`` (``"kJ/mol"`` or ``"kcal/mol"``) at ``temperature`` kelvin."""
    unit = check_choice("unit", unit, tuple(GAS_CONSTANT))
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ProbkitError(f"temperature must be a positive number of kelvin; got {temperature!r}.")
    return GAS_CONSTANT[unit] * temperature


def ryckaert_bellemans(coefficients: Sequence[float]) -> Callable[[Any], jax.Array]:
    """The Ryckaert–Bellemans torsion potential ``V(φ) = Σ_n C_n cos^n(φ - π)``.

    Parameters
    ----------
    coefficients : sequence of float
        ``C₀, C₁, …`` in the polymer convention (``ψ = φ - 180°``, trans at ``ψ = 0``), as
        tabulated by GROMACS.

    Returns
    -------
    callable
        ``V(φ)`` for IUPAC dihedral angles ``φ`` in radians (trans at ``φ = ±π``), elementwise,
        in the units of the coefficients. ``cos(φ - π) = -cos φ`` maps the conventions.
    """
    coefficients = tuple(float(c) for c in coefficients)
    if not coefficients or not all(math.isfinite(c) for c in coefficients):
        raise ProbkitError(
            f"coefficients must be a non-empty sequence of finite numbers; got {coefficients}."
        )

    def energy(phi):
        x = -jnp.cos(phi)
        total = jnp.zeros_like(x)
        for c in reversed(coefficients):  # Horner's rule in cos ψ
            total = total * x + c
        return total

    return energy


butane_energy = ryckaert_bellemans(BUTANE_RYCKAERT_BELLEMANS)
"""Butane's C-C-C-C torsion potential ``V(φ)`` in kJ/mol (united-atom Ryckaert–Bellemans)."""


@dataclasses.dataclass(frozen=True)
class BoltzmannGrid:
    """A Boltzmann density tabulated on a periodic grid of the circle or torus.

    Attributes
    ----------
    angles : numpy.ndarray
        Grid points in ``[-π, π)``: shape ``(N,)`` for one torsion, ``(N**D, D)`` for ``D``.
    log_density : numpy.ndarray
        ``log p`` at the grid points (normalised: ``Σ cell · p = 1``).
    cell : float
        The grid cell's measure ``(2π/N)**D``: the trapezoid (here: rectangle) quadrature weight.
    log_partition : float
        ``log ∫ exp(-V/kT)``.
    kT : float
        The thermal energy the density is at.
    """

    angles: np.ndarray
    log_density: np.ndarray
    cell: float
    log_partition: float
    kT: float  # noqa: N815 (the physics name)

    @property
    def probabilities(self) -> np.ndarray:
        """``cell · p`` at each grid point: quadrature weights that sum to 1."""
        return self.cell * np.exp(self.log_density)

    def expectation(self, function: Callable[[np.ndarray], np.ndarray]) -> float:
        """``E_p[f(φ)]`` by the periodic trapezoid rule (spectrally accurate for smooth ``f``)."""
        return float(np.sum(self.probabilities * np.asarray(function(self.angles))))

    def entropy(self) -> float:
        """Differential entropy ``-E_p[log p]`` in nats."""
        return -float(np.sum(self.probabilities * self.log_density))

    def kl_from(self, log_q: Callable[[Any], Any]) -> float:
        """``KL(p‖q) = E_p[log p - log q]`` for a log density ``log_q`` of the grid's angles."""
        log_q_values = np.asarray(log_q(self.angles), dtype=float)
        return float(np.sum(self.probabilities * (self.log_density - log_q_values)))

    def kl_to(self, log_q: Callable[[Any], Any]) -> float:
        """``KL(q‖p) = E_q[log q - log p]`` for a log density ``log_q``, by the same quadrature."""
        log_q_values = np.asarray(log_q(self.angles), dtype=float)
        q = self.cell * np.exp(log_q_values)
        return float(np.sum(q * (log_q_values - self.log_density)))


def _grid(n_points: int, dimension: int) -> np.ndarray:
    axis = -np.pi + 2 * np.pi * np.arange(n_points) / n_points
    if dimension == 1:
        return axis
    mesh = np.meshgrid(*([axis] * dimension), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1)


def _energy_values(energy, angles: np.ndarray, dimension: int) -> np.ndarray:
    with jax.enable_x64(True):
        values = np.asarray(jax.vmap(energy)(jnp.asarray(angles, jnp.float64)), dtype=float)
    if values.shape != angles.shape[:1]:
        raise ProbkitError(
            f"energy must map one configuration (a scalar angle for dimension=1, a vector of "
            f"{dimension} angles otherwise) to a scalar; it returned shape {values.shape[1:]} "
            "per configuration."
        )
    if not np.all(np.isfinite(values)):
        raise ProbkitError(
            "energy returned non-finite values on the grid; torsion potentials must be finite "
            "on the whole circle (use a large finite barrier instead of inf)."
        )
    return values


def _check_thermal_energy(kT) -> float:
    kT = float(kT)
    if not (math.isfinite(kT) and kT > 0):
        raise ProbkitError(
            f"kT must be a positive energy in the units of the potential; got {kT!r}. "
            "Use thermal_energy(temperature) for kT at a temperature in kelvin."
        )
    return kT


def boltzmann_grid(
    energy: Callable[[Any], Any], kT: float, *, dimension: int = 1, n_points: int | None = None
) -> BoltzmannGrid:
    """The Boltzmann density ``exp(-V/kT)/Z`` of a torsion potential on a periodic grid.

    Parameters
    ----------
    energy : callable
        ``V`` of one configuration: a scalar angle (``dimension=1``) or a ``(D,)`` vector of
        angles, returning a scalar in the units of ``kT``. It is vmapped and evaluated in
        float64.
    kT : float
        Thermal energy (see :func:`thermal_energy`).
    dimension : int
        Number of torsions ``D`` (at most 3: the grid has ``n_points**D`` points).
    n_points : int, optional
        Points per torsion; default 4096 for one torsion, 256 for two, 64 for three.

    Returns
    -------
    BoltzmannGrid
        The normalised density; for a smooth ``V`` the periodic trapezoid rule converges
        exponentially in ``n_points``.

    Examples
    --------
    >>> from probkit.circular import boltzmann_grid, butane_energy, thermal_energy
    >>> grid = boltzmann_grid(butane_energy, thermal_energy(300.0))
    >>> round(grid.expectation(lambda phi: abs(phi) > 2 * 3.141592653589793 / 3), 4)
    0.6504
    """
    kT = _check_thermal_energy(kT)
    dimension = check_positive_int("dimension", dimension)
    if dimension > 3:
        raise ProbkitError(
            f"dimension={dimension}: a grid of more than three torsions is too large; fit "
            "higher-dimensional energies with fit_to_energy(..., divergence='reverse')."
        )
    if n_points is None:
        n_points = {1: 4096, 2: 256, 3: 64}[dimension]
    n_points = check_positive_int("n_points", n_points)
    angles = _grid(n_points, dimension)
    log_weights = -_energy_values(energy, angles, dimension) / kT
    cell = (2 * np.pi / n_points) ** dimension
    shift = np.max(log_weights)
    log_partition = float(shift + np.log(cell * np.sum(np.exp(log_weights - shift))))
    return BoltzmannGrid(angles, log_weights - log_partition, cell, log_partition, kT)


@dataclasses.dataclass(frozen=True)
class EnergyFit:
    """A von Mises mixture fitted to a Boltzmann density.

    Attributes
    ----------
    distribution : VonMisesMixture
        The fitted mixture (float64 parameters).
    divergence : {"forward", "reverse"}
        The divergence minimised: ``KL(p‖q)`` or ``KL(q‖p)``.
    kl : float
        The minimised divergence at the fit, by quadrature on the grid (``D ≤ 3``); for
        reverse fits of more torsions, the Monte Carlo estimate of ``KL(q‖p) - log Z``.
    kT : float
        The thermal energy of the target.
    grid : BoltzmannGrid or None
        The target's grid (``None`` beyond three torsions).
    mixture_fit : VonMisesMixtureFit or None
        The EM result of a forward fit (iterations, convergence, degeneracy flags).
    loss_trace : numpy.ndarray or None
        The objective at each optimiser step of a reverse fit (best restart).
    """

    distribution: VonMisesMixture
    divergence: str
    kl: float
    kT: float  # noqa: N815 (the physics name)
    grid: BoltzmannGrid | None = None
    mixture_fit: VonMisesMixtureFit | None = None
    loss_trace: np.ndarray | None = None


def fit_to_energy(
    energy: Callable[[Any], Any],
    kT: float,
    n_components: int,
    *,
    divergence: str = "forward",
    dimension: int = 1,
    n_points: int | None = None,
    n_init: int = 16,
    seed: int = 0,
    concentration_bounds: tuple[float, float] = (0.0, 1e6),
    steps: int = 2000,
    learning_rate: float = 0.05,
    n_samples: int = 256,
) -> EnergyFit:
    """Fit a von Mises mixture to the Boltzmann density ``p ∝ exp(-V/kT)`` of a torsion energy.

    Parameters
    ----------
    energy : callable
        ``V`` of one configuration (a scalar angle, or a ``(D,)`` vector of angles for
        ``dimension=D``), in the units of ``kT``; vmapped by this function.
    kT : float
        Thermal energy; the temperature enters only through it (see :func:`thermal_energy`).
    n_components : int
        ``K``.
    divergence : {"forward", "reverse"}
        ``"forward"`` minimises ``KL(p‖q)`` by EM on the grid of :func:`boltzmann_grid`, with
        the Boltzmann probabilities as data weights (``D ≤ 3``): the limit of maximum
        likelihood on Boltzmann samples, mass-covering. ``"reverse"`` minimises ``KL(q‖p)``
        with Adam: by quadrature on the grid for ``D ≤ 2``, and for ``D ≥ 3`` by
        ``n_samples`` reparameterised draws per component and step (implicit
        reparameterisation of the von Mises sampler; the component index is summed out
        exactly). Reverse KL is mode-seeking: with too few components it locks onto the
        deepest wells.
    dimension : int
        Number of torsions ``D``.
    n_points : int, optional
        Grid points per torsion (see :func:`boltzmann_grid`).
    n_init : int
        Restarts (vmapped); the best objective wins.
    seed : int
        Seeds the restarts (and the samples of Monte Carlo reverse fits).
    concentration_bounds : (float, float)
        Bounds on ``κ`` for forward fits (EM's M-step is clipped to them).
    steps, learning_rate : int, float
        Adam steps and step size of reverse fits.
    n_samples : int
        Draws per component and step of Monte Carlo reverse fits.

    Returns
    -------
    EnergyFit
        Its ``distribution`` is the fitted :class:`VonMisesMixture`.

    Examples
    --------
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> from probkit.circular import butane_energy, fit_to_energy, thermal_energy
    >>> fit = fit_to_energy(butane_energy, thermal_energy(300.0), n_components=3)
    >>> fit.kl < 0.05
    True
    """
    kT = _check_thermal_energy(kT)
    n_components = check_positive_int("n_components", n_components)
    divergence = check_choice("divergence", divergence, ("forward", "reverse"))
    dimension = check_positive_int("dimension", dimension)
    n_init = check_positive_int("n_init", n_init)
    if divergence == "forward" and dimension > 3:
        raise ProbkitError(
            f"divergence='forward' needs the density on a grid, at most 3 torsions; got "
            f"dimension={dimension}. Use divergence='reverse', or fit Boltzmann samples with "
            "fit_vonmises_mixture."
        )
    with jax.enable_x64(True):
        if divergence == "forward":
            return _fit_forward(
                energy, kT, n_components, dimension, n_points, n_init, seed, concentration_bounds
            )
        steps = check_positive_int("steps", steps)
        if dimension <= 2:
            return _fit_reverse_quadrature(
                energy, kT, n_components, dimension, n_points, n_init, seed, steps, learning_rate
            )
        n_samples = check_positive_int("n_samples", n_samples)
        return _fit_reverse_samples(
            energy, kT, n_components, dimension, n_init, seed, steps, learning_rate, n_samples
        )


def _mixture(weights, loc, concentration, dimension: int) -> VonMisesMixture:
    if dimension == 1:
        return VonMisesMixture(weights, loc[..., 0], concentration[..., 0])
    return VonMisesMixture(weights, loc, concentration)


def _fit_forward(energy, kT, n_components, dimension, n_points, n_init, seed, bounds):
    grid = boltzmann_grid(energy, kT, dimension=dimension, n_points=n_points)
    n = grid.angles.shape[0]
    # Weights scaled to sum to the number of grid points, so that EM's sample size (used for
    # its convergence tolerance and degeneracy flags) is that of the quadrature rule.
    fit = fit_vonmises_mixture(
        jnp.asarray(grid.angles),
        n_components,
        weights=jnp.asarray(n * grid.probabilities),
        n_init=n_init,
        seed=seed,
        tol=1e-12,
        max_iter=2000,
        concentration_bounds=bounds,
        warn_degenerate=False,
    )
    distribution = fit.distribution
    kl = grid.kl_from(lambda angles: distribution.log_prob(jnp.asarray(angles)))
    return EnergyFit(distribution, "forward", kl, kT, grid=grid, mixture_fit=fit)


# Unconstrained parameters of a reverse fit: logits (K,), loc (K, D), log κ (K, D).
def _unpack(params):
    logits, loc, log_kappa = params
    return jax.nn.softmax(logits), loc, jnp.exp(log_kappa)


def _log_q(params, angles):
    """Mixture log density of ``angles`` (..., D) for unconstrained ``params``."""
    weights, loc, kappa = _unpack(params)
    component = VonMises(loc, kappa).log_prob(angles[..., None, :]).sum(-1)  # (..., K)
    return jax.nn.logsumexp(component + jnp.log(weights), axis=-1)


def _initial_params(key, n_init, n_components, dimension):
    loc = jax.random.uniform(key, (n_init, n_components, dimension), minval=-jnp.pi, maxval=jnp.pi)
    logits = jnp.zeros((n_init, n_components))
    log_kappa = jnp.zeros((n_init, n_components, dimension))
    return logits, loc, log_kappa


def _optimise(loss, initial, steps, learning_rate, key):
    """Adam on ``loss(params, key)`` for each restart (vmapped), one compiled ``lax.scan``."""
    optimiser = optax.adam(learning_rate)

    def run(params, key):
        def step(carry, key):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, key)
            updates, state = optimiser.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, _), trace = jax.lax.scan(
            step, (params, optimiser.init(params)), jax.random.split(key, steps)
        )
        return params, trace

    keys = jax.random.split(key, initial[0].shape[0])
    return jax.jit(jax.vmap(run))(initial, keys)


def _best(params, traces, final_losses):
    best = int(np.nanargmin(np.asarray(final_losses)))
    return jax.tree.map(lambda leaf: leaf[best], params), np.asarray(traces[best])


def _fit_reverse_quadrature(
    energy, kT, n_components, dimension, n_points, n_init, seed, steps, learning_rate
):
    grid = boltzmann_grid(energy, kT, dimension=dimension, n_points=n_points)
    angles = jnp.asarray(grid.angles).reshape(-1, dimension)
    log_p = jnp.asarray(grid.log_density)
    cell = grid.cell

    def loss(params, _key):
        log_q = _log_q(params, angles)
        return cell * jnp.sum(jnp.exp(log_q) * (log_q - log_p))

    key = jax.random.PRNGKey(seed)
    initial = _initial_params(key, n_init, n_components, dimension)
    params, traces = _optimise(loss, initial, steps, learning_rate, key)
    final = jax.vmap(lambda p: loss(p, None))(params)
    best, trace = _best(params, traces, final)
    distribution = _mixture(*_unpack(best), dimension)
    kl = grid.kl_to(lambda a: distribution.log_prob(jnp.asarray(a)))
    return EnergyFit(distribution, "reverse", kl, kT, grid=grid, loss_trace=trace)


def _fit_reverse_samples(
    energy, kT, n_components, dimension, n_init, seed, steps, learning_rate, n_samples
):
    def loss(params, key):
        weights, loc, kappa = _unpack(params)
        # n_samples reparameterised draws from every component; the index is summed exactly.
        draws = VonMises(loc, kappa).sample(key, (n_samples,))  # (S, K, D)
        log_q = _log_q(params, draws)  # (S, K)
        reduced_energy = jax.vmap(jax.vmap(energy))(draws) / kT  # (S, K)
        return jnp.sum(weights * jnp.mean(log_q + reduced_energy, axis=0))

    key = jax.random.PRNGKey(seed)
    init_key, run_key, eval_key = jax.random.split(key, 3)
    initial = _initial_params(init_key, n_init, n_components, dimension)
    params, traces = _optimise(loss, initial, steps, learning_rate, run_key)
    # Compare the restarts on common random numbers.
    final = jax.vmap(lambda p: loss(p, eval_key))(params)
    best, trace = _best(params, traces, final)
    distribution = _mixture(*_unpack(best), dimension)
    return EnergyFit(distribution, "reverse", float(loss(best, eval_key)), kT, loss_trace=trace)
