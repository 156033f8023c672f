"""Stationary covariances of mean-square differentiable Gaussian processes.

A :class:`StationaryCovariance` wraps a correlation function ``r(t)`` (with ``r(0) = 1``) written
in JAX, so that its derivatives and spectral moments come from automatic differentiation and
every quantity computed from it (Rice intensities, the Slepian IIA, its persistence exponent)
is differentiable with respect to the covariance's parameters. The parameters live in a pytree
(``params``), the function itself is static: a covariance can be built inside ``jit`` or a
NumPyro model from traced parameters.

Spectral moments use WAFO's one-sided convention: ``r(t) = ∫₀^∞ cos(ωt) S(ω) dω`` and
``λ_k = ∫₀^∞ ω^k S(ω) dω``, so that ``λ₂ = -r''(0)`` and ``λ₄ = r''''(0)``.

Processes with ``λ₂ = ∞`` (a kink of ``r`` at 0: Ornstein–Uhlenbeck, Matérn ν ≤ 1) cross zero
infinitely often in every interval and have no excursion-length distribution: they are refused.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import is_concrete

__all__ = [
    "StationaryCovariance",
    "cauchy",
    "damped_cosine",
    "gaussian",
    "jonswap",
    "matern",
    "random_acceleration",
    "sech_diffusion",
]

CorrelationFunction = Callable[[jax.Array, Any], jax.Array]

# Gauss–Legendre nodes and weights on [0, 1]: 1 - r(t) = ∫₀ᵗ -r'(s) ds near t = 0.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(10)
_GL_NODES = (_GL_NODES + 1.0) / 2.0
_GL_WEIGHTS = _GL_WEIGHTS / 2.0

_SMALL_T = 0.25
"""Below t·√λ₂ = 0.25, 1 - r(t) is integrated from r' instead of subtracted (see `one_minus`)."""

_KINK_TOLERANCE = 1e-7
"""A right derivative r'(0⁺) larger than this (in units of √|r''(0)|) is a kink: λ₂ = ∞."""


def _derivative(function: Callable[[jax.Array], jax.Array], order: int):
    for _ in range(order):
        function = jax.grad(function)
    return function


@jax.tree_util.register_pytree_node_class
class StationaryCovariance:
    """The correlation function of a stationary, mean-square differentiable Gaussian process.

    Parameters
    ----------
    r : callable
        ``r(t)`` or, with ``params``, ``r(t, params)``: the correlation at lag ``t >= 0``, written
        in JAX for scalar ``t`` (it is vectorised with ``vmap``) and smooth on ``t >= 0``: write
        ``t``, not ``jnp.abs(t)``, since derivatives at 0 are right derivatives.
    params : pytree, optional
        Parameters of ``r``; gradients of everything computed from the covariance flow to them.
    one_minus_r : callable, optional
        ``1 - r(t)`` (same signature as ``r``) computed without cancellation, where a closed form
        is available. Otherwise it is integrated from ``r'`` near 0.
    lam2, lam4 : float, optional
        The spectral moments, when known in closed form (otherwise from autodiff at 0).
    name : str, optional
        A short label for reports.
    normalize : bool, default True
        If ``r(0) != 1``, divide by ``r(0)`` with a warning (``True``) or raise (``False``).
    check : bool, default True
        Validate the covariance when its parameters are concrete: ``r(0) > 0`` finite,
        ``λ₂ < ∞``, ``|r| <= 1`` and a positive semi-definite Toeplitz matrix on a grid.

    Attributes
    ----------
    lam2 : jax.Array
        The second spectral moment ``-r''(0)`` (finite, positive).
    lam4 : jax.Array
        The fourth spectral moment ``r''''(0)``; ``inf`` when ``r`` has a third-order kink at
        0 (random acceleration, Matérn 3/2).

    Raises
    ------
    ProbkitError
        If ``r`` has a kink at 0 (``λ₂ = ∞``), ``r(0)`` is not positive and finite (or not 1 with
        ``normalize=False``), or ``r`` is not a valid correlation on the tested grid.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> cov = StationaryCovariance(lambda t, p: jnp.exp(-0.5 * (t / p) ** 2), params=2.0)
    >>> float(cov.lam2)
    0.25
    """

    def __init__(
        self,
        r: Callable[..., jax.Array],
        params: Any = None,
        *,
        one_minus_r: Callable[..., jax.Array] | None = None,
        lam2: Any = None,
        lam4: Any = None,
        name: str | None = None,
        normalize: bool = True,
        check: bool = True,
    ):
        if not callable(r):
            raise ProbkitError(f"`r` must be a callable r(t) or r(t, params); got {type(r)!r}.")
        function = r if params is not None else _ignore_params(r)
        complement = None
        if one_minus_r is not None:
            complement = one_minus_r if params is not None else _ignore_params(one_minus_r)
        self._function = function
        self._complement = complement
        self.params = params
        self.name = name or getattr(r, "__name__", "r")
        self._scale = None
        self._lam2_given = lam2
        self._lam4_given = lam4
        if check and is_concrete(params, lam2, lam4):
            self._validate(normalize)

    # --- pytree -----------------------------------------------------------------------------
    def tree_flatten(self):
        """Parameters and given moments are leaves; the functions and name are static."""
        children = (self.params, self._lam2_given, self._lam4_given, self._scale)
        return children, (self._function, self._complement, self.name)

    @classmethod
    def tree_unflatten(cls, aux, children):
        """Rebuild without validating (the leaves may be tracers)."""
        obj = object.__new__(cls)
        obj._function, obj._complement, obj.name = aux
        obj.params, obj._lam2_given, obj._lam4_given, obj._scale = children
        return obj

    # --- evaluation ---------------------------------------------------------------------------
    def _scalar(self, t: jax.Array) -> jax.Array:
        value = self._function(t, self.params)
        return value if self._scale is None else value / self._scale

    def __call__(self, t: Any) -> jax.Array:
        """Evaluate ``r(t)`` elementwise for ``t >= 0``."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return jnp.vectorize(self._scalar)(t)

    def derivative(self, t: Any, order: int = 1) -> jax.Array:
        """The ``order``-th derivative of ``r`` at ``t >= 0`` (right derivative at 0), by autodiff."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return jnp.vectorize(_derivative(self._scalar, order))(t)

    def one_minus(self, t: Any) -> jax.Array:
        """``1 - r(t)`` without the cancellation of the subtraction near ``t = 0``.

        Uses the covariance's closed form when it has one; otherwise, for ``t·√λ₂ < 0.25``, the
        integral ``∫₀ᵗ -r'(s) ds`` by 10-point Gauss–Legendre quadrature (``r'`` is computed
        to full relative precision there, while ``1 - r`` would lose ``-log10(λ₂t²)`` digits).
        """
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        if self._complement is not None:
            complement = self._complement

            def scalar(s):
                value = complement(s, self.params)
                if self._scale is None:
                    return value
                return 1.0 - (1.0 - value) / self._scale

            return jnp.vectorize(scalar)(t)
        slope = _derivative(self._scalar, 1)
        nodes = jnp.asarray(_GL_NODES, dtype=t.dtype)
        weights = jnp.asarray(_GL_WEIGHTS, dtype=t.dtype)
        threshold = _SMALL_T / jnp.sqrt(self.lam2)

        def scalar(s):
            small = s < threshold
            s_small = jnp.where(small, s, 0.0)  # keeps the unused branch's gradient finite
            integral = -s_small * jnp.sum(weights * jax.vmap(slope)(s_small * nodes))
            return jnp.where(small, integral, 1.0 - self._scalar(s))

        return jnp.vectorize(scalar)(t)

    # --- spectral moments ---------------------------------------------------------------------
    @property
    def lam2(self) -> jax.Array:
        """Second spectral moment ``λ₂ = -r''(0)``."""
        if self._lam2_given is not None:
            return jnp.asarray(self._lam2_given, dtype=jnp.result_type(float))
        return -_derivative(self._scalar, 2)(jnp.zeros((), jnp.result_type(float)))

    @property
    def lam4(self) -> jax.Array:
        """Fourth spectral moment ``λ₄ = r''''(0)`` (``inf`` if ``r'''(0⁺) != 0``)."""
        if self._lam4_given is not None:
            return jnp.asarray(self._lam4_given, dtype=jnp.result_type(float))
        zero = jnp.zeros((), jnp.result_type(float))
        third = _derivative(self._scalar, 3)(zero)
        fourth = _derivative(self._scalar, 4)(zero)
        kink = jnp.abs(third) > _KINK_TOLERANCE * self.lam2**1.5
        return jnp.where(kink | ~jnp.isfinite(fourth), jnp.inf, fourth)

    def crossing_intensity(self, level: float = 0.0, direction: str = "up") -> jax.Array:
        """Rice's expected number of crossings of ``level`` per unit time (see :func:`~probkit.exceedance.crossing_intensity`)."""
        from probkit.exceedance.rice import crossing_intensity

        return crossing_intensity(self, level, direction)

    def __repr__(self) -> str:
        if is_concrete(self.params, self._lam2_given):
            return f"StationaryCovariance({self.name}, lam2={float(self.lam2):.6g})"
        return f"StationaryCovariance({self.name})"

    # --- validation ---------------------------------------------------------------------------
    def _validate(self, normalize: bool) -> None:
        zero = jnp.zeros((), jnp.result_type(float))
        r0 = float(self._function(zero, self.params))
        if not math.isfinite(r0) or r0 <= 0.0:
            raise ProbkitError(
                f"covariance {self.name!r}: r(0) = {r0}; a correlation function has r(0) = 1 "
                "(the variance, positive and finite)."
            )
        if abs(r0 - 1.0) > 1e-10:
            if not normalize:
                raise ProbkitError(
                    f"covariance {self.name!r}: r(0) = {r0:.12g}, not 1. Pass a correlation "
                    "function (r(0) = 1) or normalize=True to divide by r(0)."
                )
            warnings.warn(
                f"covariance {self.name!r}: r(0) = {r0:.6g}; dividing by it (zero-level "
                "crossings do not depend on the variance).",
                UserWarning,
                stacklevel=3,
            )
            self._scale = r0
        first = float(_derivative(self._scalar, 1)(zero))
        second = float(_derivative(self._scalar, 2)(zero))
        if not math.isfinite(second) or abs(first) > _KINK_TOLERANCE * math.sqrt(abs(second)):
            raise ProbkitError(
                f"covariance {self.name!r}: r'(0+) = {first:.6g}, r''(0) = {second:.6g}. The "
                "correlation has a kink at 0, so λ₂ = -r''(0) is infinite: the process is not "
                "mean-square differentiable (as Ornstein–Uhlenbeck or Matérn with ν <= 1) and "
                "crosses zero infinitely often in every interval, so excursion lengths do not "
                "exist. Use a smooth covariance (Matérn ν > 1, Gaussian, ...)."
            )
        lam2 = float(self.lam2)
        if not math.isfinite(lam2) or lam2 <= 0.0:
            raise ProbkitError(
                f"covariance {self.name!r}: λ₂ = -r''(0) = {lam2:.6g}; a non-constant smooth "
                "correlation has 0 < λ₂ < ∞ (check the sign and scale of r)."
            )
        self._check_positive_definite(lam2)

    def _check_positive_definite(self, lam2: float, points: int = 256) -> None:
        step = 0.5 / math.sqrt(lam2)
        lags = step * np.arange(points)
        values = np.asarray(self(lags), dtype=float)
        if not np.all(np.isfinite(values)):
            bad = lags[~np.isfinite(values)][0]
            raise ProbkitError(
                f"covariance {self.name!r}: r({bad:.4g}) is not finite; r must be finite for t >= 0."
            )
        if np.max(np.abs(values)) > 1.0 + 1e-9:
            where = lags[np.argmax(np.abs(values))]
            raise ProbkitError(
                f"covariance {self.name!r}: |r({where:.4g})| = {np.max(np.abs(values)):.6g} > 1 "
                "= r(0); it is not a valid correlation function."
            )
        toeplitz = values[np.abs(np.subtract.outer(np.arange(points), np.arange(points)))]
        smallest = float(np.linalg.eigvalsh(toeplitz)[0])
        if smallest < -1e-8 * points:
            raise ProbkitError(
                f"covariance {self.name!r} is not positive semi-definite: the correlation "
                f"matrix of {points} points spaced {step:.4g} apart has eigenvalue "
                f"{smallest:.3g} < 0, so no Gaussian process has this covariance."
            )

    # --- spectrum input -----------------------------------------------------------------------
    @classmethod
    def from_spectrum(
        cls, omega: Any, density: Any, *, name: str = "spectrum", check: bool = True
    ) -> StationaryCovariance:
        """A covariance from a one-sided spectral density on a grid of angular frequencies.

        ``r(t) = Σ_j w_j S(ω_j) cos(ω_j t) / Σ_j w_j S(ω_j)`` with trapezoid weights ``w_j``;
        ``λ₂`` and ``λ₄`` are the matching sums, so both are finite (the spectrum is truncated
        at the grid's last frequency). A cosine sum is almost periodic: ``r`` is accurate for
        lags below about ``2π / Δω``, so choose a fine frequency grid for long lags.

        Parameters
        ----------
        omega : array, shape (m,)
            Increasing angular frequencies ``>= 0`` (rad per unit time).
        density : array, shape (m,)
            The spectral density ``S(ω) >= 0`` (any scale: it is normalised to variance 1).
        """
        omega_np, density_np = np.asarray(omega, float), np.asarray(density, float)
        if omega_np.ndim != 1 or omega_np.shape != density_np.shape or omega_np.size < 3:
            raise ProbkitError(
                "`omega` and `density` must be 1-D arrays of the same length (at least 3); got "
                f"shapes {omega_np.shape} and {density_np.shape}."
            )
        if not (np.all(np.isfinite(omega_np)) and np.all(np.isfinite(density_np))):
            raise ProbkitError("`omega` and `density` must be finite.")
        if omega_np[0] < 0 or np.any(np.diff(omega_np) <= 0):
            raise ProbkitError("`omega` must be increasing and non-negative (one-sided spectrum).")
        if np.any(density_np < 0) or not np.any(density_np > 0):
            raise ProbkitError("`density` must be non-negative and not all zero.")
        widths = np.diff(omega_np)
        weights = np.zeros_like(omega_np)
        weights[:-1] += widths / 2
        weights[1:] += widths / 2
        mass = weights * density_np
        mass = mass / mass.sum()
        params = {"omega": jnp.asarray(omega_np), "mass": jnp.asarray(mass)}
        return cls(
            _cosine_sum,
            params,
            one_minus_r=_cosine_sum_complement,
            lam2=float(np.sum(mass * omega_np**2)),
            lam4=float(np.sum(mass * omega_np**4)),
            name=name,
            check=check,
        )


def _ignore_params(function):
    def wrapped(t, params):
        del params
        return function(t)

    wrapped.__name__ = getattr(function, "__name__", "r")
    return wrapped


def _cosine_sum(t, params):
    return jnp.sum(params["mass"] * jnp.cos(params["omega"] * t))


def _cosine_sum_complement(t, params):
    return jnp.sum(params["mass"] * 2.0 * jnp.sin(0.5 * params["omega"] * t) ** 2)


def _as_float(name: str, value: Any, *, positive: bool = True) -> Any:
    if is_concrete(value):
        number = float(value)
        if not math.isfinite(number) or (positive and number <= 0):
            raise ProbkitError(f"`{name}` must be a finite positive number; got {value!r}.")
    return jnp.asarray(value, dtype=jnp.result_type(float))


# --- presets ----------------------------------------------------------------------------------
# The correlation functions are module-level (or cached) so that covariances of one family share
# their compiled computations: the function is static in the pytree, the parameters are leaves.


def _sech_r(t, q):
    return jnp.exp(-q * _log_cosh(t / 2))


def _sech_complement(t, q):
    return -jnp.expm1(-q * _log_cosh(t / 2))


def _random_acceleration_r(t, _):
    return 1.5 * jnp.exp(-t / 2) - 0.5 * jnp.exp(-1.5 * t)


def _random_acceleration_complement(t, _):
    # 1 - r = 1.5(1 - e^{-t/2}) - 0.5(1 - e^{-3t/2}) cancels at O(t); in a = 1 - e^{-t/2} it is
    # the polynomial a²(3 - a)/2, with no cancellation.
    a = -jnp.expm1(-t / 2)
    return 0.5 * a * a * (3.0 - a)


def _gaussian_r(t, ell):
    return jnp.exp(-0.5 * (t / ell) ** 2)


def _gaussian_complement(t, ell):
    return -jnp.expm1(-0.5 * (t / ell) ** 2)


def _damped_cosine_r(t, p):
    ell, w = p
    return jnp.exp(-0.5 * (t / ell) ** 2) * jnp.cos(w * t)


def _damped_cosine_complement(t, p):
    # 1 - g cos ωt = (1 - g) + g (1 - cos ωt) = -expm1(...) + 2 g sin²(ωt/2).
    ell, w = p
    g = jnp.exp(-0.5 * (t / ell) ** 2)
    return -jnp.expm1(-0.5 * (t / ell) ** 2) + g * 2.0 * jnp.sin(0.5 * w * t) ** 2


def _cauchy_r(t, p):
    ell, b = p
    return jnp.exp(-b * jnp.log1p((t / ell) ** 2))


def _cauchy_complement(t, p):
    ell, b = p
    return -jnp.expm1(-b * jnp.log1p((t / ell) ** 2))


@functools.cache
def _matern_half_integer(p: int):
    """``r(t, ℓ)`` of the Matérn correlation with ``ν = p + 1/2`` (Rasmussen & Williams, eq. 4.16)."""
    nu = p + 0.5
    coefficients = [
        math.factorial(p)
        / math.factorial(2 * p)
        * math.factorial(p + i)
        / (math.factorial(i) * math.factorial(p - i))
        * 2.0 ** (p - i)
        for i in range(p + 1)
    ]
    rate = math.sqrt(2 * nu)

    def r(t, ell):
        x = rate * t / ell
        return jnp.exp(-x) * jnp.polyval(jnp.asarray(coefficients, dtype=x.dtype), x)

    r.__name__ = f"matern_{2 * p + 1}_2"
    return r


def _log_cosh(x):
    # log cosh x = log1p(2 sinh²(x/2)) is exact near 0; x + log1p(e^{-2x}) - log 2 for large x.
    small = x < 20.0
    xs = jnp.where(small, x, 0.0)
    return jnp.where(
        small, jnp.log1p(2.0 * jnp.sinh(xs / 2) ** 2), x + jnp.log1p(jnp.exp(-2 * x)) - jnp.log(2.0)
    )


def sech_diffusion(d: float) -> StationaryCovariance:
    """The clipped-diffusion correlator ``r(T) = sech(T/2)^{d/2}`` in logarithmic time ``T = ln t``.

    The sign of a field evolving by the d-dimensional diffusion equation from random initial
    conditions, seen at a fixed point in log-time, is this stationary process; its persistence
    exponent θ gives the power law ``P(no sign change up to t) ~ t^{-θ}`` (Majumdar, Sire, Bray
    and Cornell, PRL 77, 2867, 1996). ``λ₂ = d/8``, ``λ₄ = q(3q + 2)/16`` with ``q = d/2``.

    Parameters
    ----------
    d : float
        The spatial dimension (any positive real).
    """
    d = _as_float("d", d)
    q = d / 2
    return StationaryCovariance(
        _sech_r,
        q,
        one_minus_r=_sech_complement,
        lam2=q / 4,
        lam4=q * (3 * q + 2) / 16,
        name="sech_diffusion",
        check=False,
    )


def random_acceleration() -> StationaryCovariance:
    """The random-acceleration process ``x'' = η`` in logarithmic time.

    ``r(T) = (3/2)e^{-T/2} - (1/2)e^{-3T/2}``: ``λ₂ = 3/4`` and ``λ₄ = ∞`` (a third-order kink at
    0). Its exact persistence exponent is 1/4 (Sinai 1992).
    """
    return StationaryCovariance(
        _random_acceleration_r,
        0.0,
        one_minus_r=_random_acceleration_complement,
        lam2=0.75,
        lam4=jnp.inf,
        name="random_acceleration",
        check=False,
    )


def gaussian(length_scale: float = 1.0) -> StationaryCovariance:
    """The squared-exponential correlation ``r(t) = exp(-t²/(2ℓ²))``: ``λ₂ = 1/ℓ²``, ``λ₄ = 3/ℓ⁴``."""
    scale = _as_float("length_scale", length_scale)
    return StationaryCovariance(
        _gaussian_r,
        scale,
        one_minus_r=_gaussian_complement,
        lam2=1.0 / scale**2,
        lam4=3.0 / scale**4,
        name="gaussian",
        check=False,
    )


def matern(nu: float, length_scale: float = 1.0) -> StationaryCovariance:
    """The Matérn correlation with smoothness ``ν > 1``.

    ``r(t) = 2^{1-ν}/Γ(ν) · x^ν K_ν(x)`` with ``x = √(2ν) t/ℓ``: in closed form for half-integer
    ``ν = p + 1/2`` (3/2, 5/2, ...), otherwise with ``K_ν`` by quadrature of its integral
    representation (see :func:`_matern_general`). ``λ₂ = ν/((ν-1)ℓ²)``;
    ``λ₄ = 3ν²/((ν-1)(ν-2)ℓ⁴)`` for ``ν > 2`` and ``∞`` otherwise. ``ν <= 1`` is refused: the
    process is not differentiable (``λ₂ = ∞``).
    """
    nu_value = float(nu)
    if not math.isfinite(nu_value) or nu_value <= 1.0:
        raise ProbkitError(
            f"`nu` = {nu!r}: a Matérn process with ν <= 1 is not mean-square differentiable "
            "(λ₂ = ∞) and crosses zero infinitely often; use ν > 1 (3/2, 5/2, ...)."
        )
    scale = _as_float("length_scale", length_scale)
    p = nu_value - 0.5
    if abs(p - round(p)) < 1e-12:
        r, name = _matern_half_integer(round(p)), f"matern{2 * round(p) + 1}/2"
    else:
        r, name = _matern_general(nu_value), f"matern(nu={nu_value:g})"
    lam2 = nu_value / ((nu_value - 1) * scale**2)
    lam4 = (
        3 * nu_value**2 / ((nu_value - 1) * (nu_value - 2) * scale**4) if nu_value > 2 else jnp.inf
    )
    return StationaryCovariance(r, scale, lam2=lam2, lam4=lam4, name=name, check=False)


_BESSEL_NODES = 256
"""Trapezoid nodes for K_ν: the integrand is even and analytic in u, so the rule converges
geometrically (to rounding at this count for the smoothness used here)."""


@functools.cache
def _matern_general(nu: float):
    """``r(t, ℓ)`` of the Matérn correlation for any ``ν > 1`` by quadrature of ``K_ν``.

    ``e^x K_ν(x) = ∫₀^∞ exp(-2x sinh²(u/2)) cosh(νu) du`` (Abramowitz & Stegun 9.6.24), by the
    trapezoid rule on ``[0, U(x)]`` where the integrand has fallen below ``e^{-40}`` of its peak.
    JAX has no Bessel K of real order; the integral is differentiable in ``x`` (and therefore
    in ``t`` and ``ℓ``) to every order. At ``t = 0`` the function returns ``r(0) = 1`` through
    a double ``where``, so that no NaN reaches gradients; its derivatives there are not the
    right derivatives (use ``lam2``/``lam4``, which are closed forms).
    """
    rate = math.sqrt(2 * nu)
    log_constant = (1 - nu) * math.log(2.0) - math.lgamma(nu)

    def r(t, ell):
        x = rate * t / ell
        positive = x > 0
        x_safe = jnp.where(positive, x, 1.0)
        upper = jax.lax.stop_gradient(jnp.log(4 * (50 + 10 * nu) / x_safe + 4))
        u = upper * jnp.linspace(0.0, 1.0, _BESSEL_NODES, dtype=x_safe.dtype)
        log_terms = (
            -2 * x_safe * jnp.sinh(u / 2) ** 2
            + nu * u
            + jnp.log1p(jnp.exp(-2 * nu * u))
            - math.log(2.0)
        )
        weights = jnp.full((_BESSEL_NODES,), 1.0).at[0].set(0.5).at[-1].set(0.5)
        log_integral = jax.scipy.special.logsumexp(log_terms, b=weights) + jnp.log(
            upper / (_BESSEL_NODES - 1)
        )
        value = jnp.exp(log_constant + nu * jnp.log(x_safe) - x_safe + log_integral)
        return jnp.where(positive, value, 1.0)

    r.__name__ = f"matern_nu_{nu:g}"
    return r


def damped_cosine(omega: float, length_scale: float = 1.0) -> StationaryCovariance:
    """``r(t) = exp(-t²/(2ℓ²)) cos(ωt)``: a non-monotone correlation (``λ₂ = 1/ℓ² + ω²``).

    Its Slepian IIA fails (a negative density) for ``ω >= 2`` at ``ℓ = 1``.
    """
    scale = _as_float("length_scale", length_scale)
    omega = _as_float("omega", omega, positive=False)

    lam2 = 1.0 / scale**2 + omega**2
    lam4 = 3.0 / scale**4 + 6.0 * omega**2 / scale**2 + omega**4
    return StationaryCovariance(
        _damped_cosine_r,
        (scale, omega),
        one_minus_r=_damped_cosine_complement,
        lam2=lam2,
        lam4=lam4,
        name="damped_cosine",
        check=False,
    )


def cauchy(length_scale: float = 1.0, beta: float = 1.0) -> StationaryCovariance:
    """The generalised Cauchy correlation ``r(t) = (1 + (t/ℓ)²)^{-β}``: polynomial tails.

    ``λ₂ = 2β/ℓ²`` and ``λ₄ = 12β(β+1)/ℓ⁴``. Its excursion lengths have a power-law tail, not
    an exponential one: there is no persistence exponent.
    """
    scale = _as_float("length_scale", length_scale)
    beta = _as_float("beta", beta)

    return StationaryCovariance(
        _cauchy_r,
        (scale, beta),
        one_minus_r=_cauchy_complement,
        lam2=2 * beta / scale**2,
        lam4=12 * beta * (beta + 1) / scale**4,
        name="cauchy",
        check=False,
    )


def jonswap(
    peak_period: float,
    gamma: float = 3.3,
    *,
    cutoff: float = 6.0,
    points: int = 4096,
) -> StationaryCovariance:
    """The JONSWAP wave spectrum, normalised to unit variance, as a covariance.

    ``S(ω) ∝ ω⁻⁵ exp(-(5/4)(ω_p/ω)⁴) γ^{exp(-(ω-ω_p)²/(2σ²ω_p²))}`` with ``ω_p = 2π/T_p`` and
    ``σ = 0.07`` below the peak, ``0.09`` above (Hasselmann et al. 1973). The significant wave
    height only scales the variance and does not enter zero-level crossings.

    Parameters
    ----------
    peak_period : float
        ``T_p`` in seconds (or any time unit; lags are in the same unit).
    gamma : float, default 3.3
        Peak enhancement factor (1 gives Pierson–Moskowitz).
    cutoff : float, default 6.0
        The spectrum is truncated at ``cutoff · ω_p`` (the ``ω⁻⁵`` tail makes ``λ₄`` diverge
        logarithmically without a cutoff).
    points : int, default 4096
        Frequencies on ``(0, cutoff·ω_p]``.
    """
    peak = float(peak_period)
    if not math.isfinite(peak) or peak <= 0:
        raise ProbkitError(f"`peak_period` must be a positive number; got {peak_period!r}.")
    if not float(gamma) >= 1.0:
        raise ProbkitError(f"`gamma` must be >= 1 (1 is Pierson–Moskowitz); got {gamma!r}.")
    omega_p = 2 * math.pi / peak
    omega = np.linspace(omega_p * 0.2, cutoff * omega_p, points)
    sigma = np.where(omega <= omega_p, 0.07, 0.09)
    peak_enhancement = float(gamma) ** np.exp(
        -((omega - omega_p) ** 2) / (2 * sigma**2 * omega_p**2)
    )
    density = omega**-5.0 * np.exp(-1.25 * (omega_p / omega) ** 4) * peak_enhancement
    return StationaryCovariance.from_spectrum(omega, density, name="jonswap")
