"""The Slepian-model independent-interval approximation (IIA) of zero-level excursion lengths.

At a zero up-crossing the process is the Slepian process ``X₀(t) = -R r'(t)/√λ₂ + Δ(t)`` with
Rayleigh slope ``R``. Bengtsson and Podgórski (arXiv:2401.01805) match the mean of its sign,

    E₀(t) = E[sign X₀(t)] = -r'(t) / (√λ₂ √(1 - r(t)²)) = (1/√λ₂) d/dt arccos r(t),

to a switch process that starts with a switch at 0 and has independent intervals ``T``. This
gives the Laplace transform ``Ψ_T(s) = (1 - s L[E₀](s)) / (1 + s L[E₀](s))``; at level 0 it is
the classical IIA of McFadden (1956) and Majumdar, Sire, Bray and Cornell (PRL 1996).

When ``E₀`` is non-increasing it is the survival function of a *divisor* ``D`` and
``T = D₁ + ... + D_N`` with ``N ~ Geometric(1/2)`` on ``{1, 2, ...}``: a proper distribution.
Its density is ``f_D = Q / (√λ₂ (1 - r²)^{3/2})`` with ``Q = r''(1 - r²) + r r'²``, so ``Q >= 0``
is a sufficient condition (the ``proven`` status of :meth:`SlepianIIA.validity`).

Everything is computed on a grid ``t_k = k h`` in float64: the renewal equations

    S_T = E₀ + ½ f_D * S_T,        f_T = ½ f_D + ½ f_D * f_T,

are discretised by the trapezoid rule (second order in ``h``) and solved at once by FFT, after an
exponential tilt by nearly the persistence exponent: the tilted solutions vary by about ``e^{10}``
over the grid, so the tail keeps its relative precision and circular aliasing is below ``e^{-40}``.
All of it is differentiable in the covariance's parameters (``theta`` by the implicit-function
theorem) and runs under ``jit``; only :meth:`SlepianIIA.validity` and the tail classification
need concrete values.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import check_positive_int, is_concrete
from probkit.exceedance._checks import check_covariance, check_times
from probkit.exceedance.covariance import StationaryCovariance

__all__ = ["SlepianIIA", "TailReport", "ValidityReport", "solve_renewal"]

_TILT_SPAN = 10.0
"""The tilted solutions decay by about e^{-_TILT_SPAN} over the grid (see `solve_renewal`)."""

_DAMPING = math.log(100.0)
"""Without an exponential tail, sequences are damped by e^{-_DAMPING} over the grid."""


def solve_renewal(
    divisor_sf: jax.Array, divisor_pdf: jax.Array, step: jax.Array, tilt: jax.Array = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Solve the IIA renewal equations for ``S_T`` and ``f_T`` on a grid ``t_k = k·step``.

    With the divisor's survival function ``E₀`` and density ``f_D`` sampled on the grid,

        S_T(t) = E₀(t) + ½ ∫₀ᵗ f_D(s) S_T(t - s) ds,    f_T = ½ f_D + ½ f_D * f_T,

    are discretised by the trapezoid rule, which makes both lower-triangular Toeplitz systems
    ``(1 - ½c) * y = b`` with ``c_0 = ½ h f_D(0)``, ``c_j = h f_D(t_j)``; the last trapezoid
    weight at ``j = k`` is corrected in the right-hand side. The power series ``b(z)/(1 - ½c(z))``
    is evaluated by FFT on four times the grid after multiplying every sequence by
    ``e^{tilt·t_k}`` (exact for convolutions), which moves the wrap-around error far below
    rounding when ``tilt`` is a little below the decay rate of the solution.

    Parameters
    ----------
    divisor_sf, divisor_pdf : array, shape (n,)
        ``E₀(t_k)`` and ``f_D(t_k)`` with ``E₀(0) = 1``.
    step : float
        The grid step ``h``.
    tilt : float, default 0
        The exponential tilt rate (any real; negative values damp).

    Returns
    -------
    sf, pdf : jax.Array, shape (n,)
        ``S_T(t_k)`` and ``f_T(t_k)``.
    """
    n = divisor_sf.shape[0]
    times = step * jnp.arange(n, dtype=divisor_sf.dtype)
    weight = jnp.exp(tilt * times)
    kernel = step * divisor_pdf * weight
    kernel = kernel.at[0].multiply(0.5)
    denominator = 1.0 - 0.5 * jnp.fft.rfft(kernel, 4 * n)

    def solve(rhs, start):
        # y_k = rhs_k + ½ Σ_j c_j y_{k-j} counts the end point s = t_k with weight h instead of
        # h/2: move the excess ½·(h/2) f_D(t_k) y_0 to the right-hand side (y_0 is known). At
        # k = 0 the integral is empty, so y_0 = rhs_0: scale rhs_0 to undo the c_0 term.
        rhs = rhs * weight - 0.25 * step * divisor_pdf * weight * start
        rhs = rhs.at[0].set(start * (1.0 - 0.5 * kernel[0]))
        solution = jnp.fft.irfft(jnp.fft.rfft(rhs, 4 * n) / denominator, 4 * n)[:n]
        return solution / weight

    sf = solve(divisor_sf, 1.0)
    pdf = solve(0.5 * divisor_pdf, 0.5 * divisor_pdf[0])
    return sf, pdf


@dataclasses.dataclass(frozen=True)
class ValidityReport:
    """Whether the Slepian IIA is a proper distribution for a covariance.

    Attributes
    ----------
    status : {"proven", "numerically_valid", "invalid"}
        ``proven``: ``Q(t) >= 0`` on the grid (``arccos r`` concave), so ``E₀`` is a survival
        function and the geometric-sum representation holds. ``numerically_valid``: ``Q < 0``
        somewhere but the computed density of ``T`` is non-negative. ``invalid``: the IIA gives a
        negative density; use simulation instead.
    min_q, argmin_q : float
        The smallest ``Q(t) / λ₂²`` on the grid and where it is.
    min_density, argmin_density : float
        The smallest IIA density ``f_T`` and where it is.
    negative_mass : float
        ``∫ max(-f_T, 0) dt``: the probability mass the IIA gets wrong in sign.
    min_divisor_sf : float
        The smallest ``E₀(t)`` (negative for non-monotone covariances).
    message : str
        A sentence for users.
    """

    status: Literal["proven", "numerically_valid", "invalid"]
    min_q: float
    argmin_q: float
    min_density: float
    argmin_density: float
    negative_mass: float
    min_divisor_sf: float
    message: str


@dataclasses.dataclass(frozen=True)
class TailReport:
    """How ``P(T > t)`` decays.

    Attributes
    ----------
    kind : {"exponential", "power_law", "unresolved"}
        ``exponential``: ``S_T(t) ~ C e^{-θt}`` (Cramér–Lundberg). ``power_law``: the correlation
        decays polynomially, the divisor is subexponential and ``S_T(t) ~ 2 E₀(t) ~ c t^{-α}``;
        there is no persistence exponent. ``unresolved``: the grid is too short to tell
        (increase ``n_means``).
    theta : float
        The persistence exponent (0 unless exponential).
    constant : float
        ``C`` for an exponential tail, ``c`` for a power law.
    exponent : float
        ``α`` for a power law (NaN otherwise).
    divisor_rate : float
        The local decay rate ``-d log E₀/dt`` at the end of the grid.
    """

    kind: Literal["exponential", "power_law", "unresolved"]
    theta: float
    constant: float
    exponent: float
    divisor_rate: float


def _compiled(*static_argnames: str):
    """Compile a method once per family of covariance.

    Eager dispatch of a method's many small operations would cost more than the work.
    """

    def decorate(method):
        compiled = jax.jit(method, static_argnames=static_argnames)

        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            return compiled(self, *args, **kwargs)

        return wrapper

    return decorate


def _trapezoid_weights(n: int, step: jax.Array, dtype) -> jax.Array:
    weights = jnp.full((n,), step, dtype=dtype)
    return weights.at[0].multiply(0.5).at[-1].multiply(0.5)


@jax.tree_util.register_pytree_node_class
class SlepianIIA:
    """The Slepian-model IIA of the length of an excursion above 0.

    Parameters
    ----------
    covariance : StationaryCovariance
        The process's correlation function.
    points_per_mean : int, default 256
        Grid points per mean excursion length ``π/√λ₂`` (the grid step is ``h = mean / points``;
        errors are ``O(h²)``).
    n_means : int, default 48
        The grid covers ``[0, n_means · mean]``; beyond it the tail law extrapolates.

    Notes
    -----
    Needs float64 (``jax.config.update("jax_enable_x64", True)``): ``E₀`` divides two small
    quantities near 0 and the tail spans many orders of magnitude.

    Examples
    --------
    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> from probkit.exceedance import SlepianIIA, sech_diffusion
    >>> iia = SlepianIIA(sech_diffusion(2))
    >>> round(float(iia.theta()), 4)  # Majumdar, Sire, Bray & Cornell (1996): 0.1862
    0.1862
    """

    def __init__(
        self,
        covariance: StationaryCovariance,
        *,
        points_per_mean: int = 256,
        n_means: int = 48,
    ):
        check_covariance(covariance)
        if not jax.config.jax_enable_x64:
            raise ProbkitError(
                "SlepianIIA needs float64: call jax.config.update('jax_enable_x64', True) first "
                "(E₀ divides two small quantities near t = 0 and the tail spans many decades)."
            )
        self.points_per_mean = check_positive_int("points_per_mean", points_per_mean)
        self.n_means = check_positive_int("n_means", n_means)
        if self.points_per_mean < 16 or self.n_means < 8:
            raise ProbkitError(
                "`points_per_mean` must be >= 16 and `n_means` >= 8 (got "
                f"{points_per_mean} and {n_means}); the defaults 256 and 48 give ~1e-6 accuracy."
            )
        self.covariance = covariance
        self._build()

    # --- pytree -------------------------------------------------------------------------------
    def tree_flatten(self):
        """The covariance and the grid arrays are leaves; the grid sizes are static."""
        children = (self.covariance, self._arrays)
        return children, (self.points_per_mean, self.n_means)

    @classmethod
    def tree_unflatten(cls, aux, children):
        """Rebuild from the leaves without recomputing."""
        obj = object.__new__(cls)
        obj.points_per_mean, obj.n_means = aux
        obj.covariance, obj._arrays = children
        return obj

    # --- construction -------------------------------------------------------------------------
    def _build(self) -> None:
        self._arrays = _build_arrays(self.covariance, self.points_per_mean, self.n_means)

    # --- the divisor ----------------------------------------------------------------------------
    @property
    def grid(self) -> jax.Array:
        """The time grid ``t_k = k h`` of the computations."""
        return self._arrays["times"]

    def divisor_sf(self, t: Any) -> jax.Array:
        """``E₀(t) = E[sign X₀(t)]``: the mean clipped Slepian process, ``P(D > t)`` when valid."""
        t = _check_times(t)
        divisor_sf, _, _ = _divisor(self.covariance, t)
        return divisor_sf

    E0 = divisor_sf

    def divisor_pdf(self, t: Any) -> jax.Array:
        """``f_D(t) = -E₀'(t) = Q(t) / (√λ₂ (1 - r²)^{3/2})``, the divisor's density when valid."""
        t = _check_times(t)
        _, divisor_pdf, _ = _divisor(self.covariance, t)
        return divisor_pdf

    def Q(self, t: Any) -> jax.Array:  # noqa: N802 (the paper's name)
        """The validity function ``Q(t) = r''(t)(1 - r(t)²) + r(t) r'(t)²``."""
        t = _check_times(t)
        _, _, q = _divisor(self.covariance, t)
        return q

    # --- the distribution of T ----------------------------------------------------------------
    @_compiled()
    def laplace(self, s: Any) -> jax.Array:
        """``Ψ_T(s) = E[e^{-sT}] = (1 - s L[E₀](s)) / (1 + s L[E₀](s))`` for ``s > -θ``.

        ``L[E₀]`` is the trapezoid rule on the grid with the Euler–Maclaurin end correction
        ``-(h²/12)(s + f_D(0))``, so the error is ``O(h⁴)``.
        """
        s = jnp.asarray(s, dtype=jnp.float64)
        arrays = self._arrays
        step = arrays["step"]
        weights = _trapezoid_weights(arrays["times"].shape[0], step, jnp.float64)
        start_slope = arrays["divisor_pdf"][0]

        def one(s_value):
            integrand = jnp.exp(-s_value * arrays["times"]) * arrays["divisor_sf"]
            transform = jnp.sum(weights * integrand) - step**2 / 12 * (s_value + start_slope)
            return (1 - s_value * transform) / (1 + s_value * transform)

        return jnp.vectorize(one)(s)

    def sf(self, t: Any) -> jax.Array:
        """``P(T > t)``, interpolated from the grid and extrapolated by the tail law beyond it."""
        return self._interpolate(_check_times(t), "sf")

    def cdf(self, t: Any) -> jax.Array:
        """``P(T <= t)``."""
        return 1.0 - self.sf(t)

    def pdf(self, t: Any) -> jax.Array:
        """The density of ``T`` (negative where the IIA is invalid: see :meth:`validity`)."""
        return self._interpolate(_check_times(t), "pdf")

    def logpdf(self, t: Any) -> jax.Array:
        """The log density of ``T`` (NaN where the IIA density is negative)."""
        density = self.pdf(t)
        return jnp.where(density > 0, jnp.log(jnp.where(density > 0, density, 1.0)), -jnp.inf)

    @_compiled("which")
    def _interpolate(self, t: jax.Array, which: str) -> jax.Array:
        arrays = self._arrays
        times, values = arrays["times"], arrays[which]
        t_max = times[-1]
        inside = jnp.interp(t, times, values)
        tail = self.tail_law(t, which)
        return jnp.where(t <= t_max, inside, tail)

    @_compiled("which")
    def tail_law(self, t: Any, which: str = "sf") -> jax.Array:
        """The tail extrapolation used beyond the grid (exponential or power law)."""
        arrays = self._arrays
        t = jnp.asarray(t, dtype=jnp.float64)
        times, values = arrays["times"], arrays[which]
        t_max, end = times[-1], values[-1]
        theta = self._theta()
        alpha = self._power_exponent()
        exponent = alpha if which == "sf" else alpha + 1
        beyond = jnp.maximum(t, t_max)
        exponential = end * jnp.exp(-theta * (beyond - t_max))
        power = end * (beyond / t_max) ** (-exponent)
        return jnp.where(arrays["tail_exponential"], exponential, power)

    @_compiled()
    def _power_exponent(self) -> jax.Array:
        # α = -d log E₀ / d log t over the last quarter of the grid.
        times, divisor_sf = self._arrays["times"], self._arrays["divisor_sf"]
        n = times.shape[0]
        return _decay_rate(divisor_sf, times, 3 * n // 4, n - 1, log_time=True)

    def mean(self) -> jax.Array:
        """``E[T] = 2 E[D] = π/√λ₂``: the IIA reproduces Rice's mean exactly, for any ``E₀``."""
        return math.pi / jnp.sqrt(self.covariance.lam2)

    @_compiled()
    def var(self) -> jax.Array:
        """``Var T = 2 E[D²] = 4 ∫₀^∞ t E₀(t) dt`` (``inf`` for a power tail with ``α <= 2``)."""
        arrays = self._arrays
        times, divisor_sf = arrays["times"], arrays["divisor_sf"]
        step = arrays["step"]
        weights = _trapezoid_weights(times.shape[0], step, jnp.float64)
        # The trapezoid rule with the Euler–Maclaurin end correction: (t E₀)' = 1 at t = 0.
        inside = 4 * (jnp.sum(weights * times * divisor_sf) + step**2 / 12)
        alpha = self._power_exponent()
        t_max, end = times[-1], divisor_sf[-1]
        power_tail = jnp.where(alpha > 2, 4 * end * t_max**2 / (alpha - 2), jnp.inf)
        tail = jnp.where(arrays["tail_exponential"], 0.0, power_tail)
        return inside + tail

    # --- persistence ----------------------------------------------------------------------------
    def theta(self) -> jax.Array:
        """The persistence exponent: the root of ``E[e^{θD}] = 2``, i.e. ``θ ∫₀^∞ e^{θt} E₀ dt = 1``.

        ``P(T > t) ~ C e^{-θt}`` and ``P(X > 0 on [0, t]) ~ (C√λ₂/2πθ) e^{-θt}``. Differentiable
        by the implicit-function theorem. Returns 0 when the tail is not exponential (a
        polynomially decaying correlation): see :meth:`tail`. Called with concrete values, it
        warns when the grid is too short to tell (``tail().kind == "unresolved"``).
        """
        theta = self._theta()
        unresolved = (
            is_concrete(self._arrays)
            and not bool(self._arrays["tail_exponential"])
            and self.tail().kind == "unresolved"
        )
        if unresolved:
            warnings.warn(
                "the grid is too short to resolve the tail of E₀ (neither exponential nor a "
                f"power law over [0, {float(self.grid[-1]):.4g}]); theta() returns 0. "
                "Increase `n_means`.",
                UserWarning,
                stacklevel=2,
            )
        return theta

    @_compiled()
    def _theta(self) -> jax.Array:
        arrays = self._arrays
        root = jax.lax.stop_gradient(arrays["theta_grid"])
        # One Newton step at the root carries the implicit-function gradient
        # dθ/dp = -(∂G/∂p)/(∂G/∂θ) and leaves the value unchanged (G(root) = 2).
        tail = {
            "rate": arrays["tail_rate"],
            "stable": arrays["tail_stable"],
            "end": arrays["divisor_sf"][-1],
            "t_max": arrays["times"][-1],
        }
        value, slope = jax.value_and_grad(_moment_generating, argnums=1)(
            arrays["divisor_pdf"], root, arrays["step"], tail
        )
        theta = root - (value - 2.0) / slope
        return jnp.where(arrays["tail_exponential"], theta, 0.0)

    @_compiled()
    def tail_constant(self) -> jax.Array:
        """``C`` in ``P(T > t) ~ C e^{-θt}``: ``C = 2 / (θ E[D e^{θD}])`` (NaN without a θ)."""
        arrays = self._arrays
        theta = self._theta()
        weights = _trapezoid_weights(arrays["times"].shape[0], arrays["step"], jnp.float64)
        moment = jnp.sum(
            weights * arrays["times"] * jnp.exp(theta * arrays["times"]) * arrays["divisor_pdf"]
        )
        return jnp.where(arrays["tail_exponential"], 2.0 / (theta * moment), jnp.nan)

    def tail(self) -> TailReport:
        """Classify the tail of ``T``: exponential (with θ and C) or a power law (no θ)."""
        arrays = self._arrays
        _require_concrete(arrays, "tail()")
        times, divisor_sf = arrays["times"], arrays["divisor_sf"]
        n = times.shape[0]
        rate = float(arrays["tail_rate"])
        if bool(arrays["tail_exponential"]):
            return TailReport(
                "exponential", float(self._theta()), float(self.tail_constant()), math.nan, rate
            )
        alpha = float(self._power_exponent())
        # A power law has a stable log-log slope: compare the slopes of two quarters.
        earlier = float(_decay_rate(divisor_sf, times, n // 2, 3 * n // 4, log_time=True))
        if alpha > 0 and abs(earlier / alpha - 1) < 0.1:
            constant = 2 * abs(float(divisor_sf[-1])) * float(times[-1]) ** alpha
            return TailReport("power_law", 0.0, constant, alpha, rate)
        return TailReport("unresolved", 0.0, math.nan, math.nan, rate)

    def persistence(self, t: Any) -> jax.Array:
        """``P(X(s) > 0 for all s in [0, t])`` under the IIA: ``μ⁺ ∫_t^∞ S_T(v) dv``.

        (Palm inversion: a stationary point sits in an excursion above 0 of length-biased
        size; at ``t = 0`` this is 1/2.)
        """
        return self._persistence(_check_times(t))

    @_compiled()
    def _persistence(self, t: jax.Array) -> jax.Array:
        arrays = self._arrays
        times, sf, step = arrays["times"], arrays["sf"], arrays["step"]
        # ∫_{t_k}^{t_max} S by the trapezoid rule, plus the tail law's integral beyond.
        segments = 0.5 * step * (sf[1:] + sf[:-1])
        inside = jnp.concatenate([jnp.cumsum(segments[::-1])[::-1], jnp.zeros(1)])
        t_max, end = times[-1], sf[-1]
        theta, alpha = self._theta(), self._power_exponent()
        exponential_tail = end / jnp.where(theta > 0, theta, 1.0)
        power_tail = jnp.where(alpha > 1, end * t_max / (alpha - 1), jnp.inf)
        tail = jnp.where(arrays["tail_exponential"], exponential_tail, power_tail)
        integral = jnp.interp(t, times, inside + tail)
        beyond = self.tail_law(t, "sf") * jnp.where(
            arrays["tail_exponential"],
            1.0 / jnp.where(theta > 0, theta, 1.0),
            jnp.maximum(t, t_max) / jnp.maximum(alpha - 1, 1e-12),
        )
        integral = jnp.where(t <= t_max, integral, beyond)
        rate = jnp.sqrt(self.covariance.lam2) / (2 * math.pi)
        return rate * integral

    # --- validity -------------------------------------------------------------------------------
    def validity(self, tolerance: float = 1e-9) -> ValidityReport:
        """Report whether the IIA is a proper distribution for this covariance.

        Parameters
        ----------
        tolerance : float, default 1e-9
            Densities above ``-tolerance · max f_T`` count as non-negative (rounding).
        """
        arrays = self._arrays
        _require_concrete(arrays, "validity()")
        times = np.asarray(arrays["times"])
        lam2 = float(self.covariance.lam2)
        q = np.asarray(arrays["q"])[1:] / lam2**2
        pdf, step = np.asarray(arrays["pdf"]), float(arrays["step"])
        k_q, k_f = int(np.argmin(q)), int(np.argmin(pdf))
        negative_mass = float(np.sum(np.maximum(-pdf, 0.0)) * step)
        min_sf = float(np.min(np.asarray(arrays["divisor_sf"])))
        min_density = float(pdf[k_f])
        if q[k_q] >= -1e-12:
            status, message = (
                "proven",
                (
                    "Q(t) >= 0 on the grid: E₀ is a survival function and T is a geometric sum of "
                    "divisors, a proper distribution."
                ),
            )
        elif min_density >= -tolerance * float(np.max(pdf)):
            status, message = (
                "numerically_valid",
                (
                    f"Q(t) < 0 near t = {times[k_q + 1]:.4g} (the sufficient condition fails) but "
                    "the IIA density is non-negative on the grid."
                ),
            )
        else:
            status, message = (
                "invalid",
                (
                    f"the IIA density is negative (minimum {min_density:.3g} at t = "
                    f"{times[k_f]:.4g}, negative mass {negative_mass:.3g}): the approximation fails "
                    "for this covariance; use simulate_excursions instead."
                ),
            )
        return ValidityReport(
            status=status,
            min_q=float(q[k_q]),
            argmin_q=float(times[k_q + 1]),
            min_density=min_density,
            argmin_density=float(times[k_f]),
            negative_mass=negative_mass,
            min_divisor_sf=min_sf,
            message=message,
        )

    # --- sampling -------------------------------------------------------------------------------
    def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw excursion lengths from the IIA.

        With a ``proven`` covariance, from the geometric-sum representation
        ``T = D₁ + ... + D_N`` (each ``D`` by inverting ``1 - E₀`` on the grid,
        ``N ~ Geometric(1/2)``); with a ``numerically_valid`` one, by inverting the computed
        ``P(T <= t)``. An ``invalid`` covariance raises: the IIA is not a distribution.
        """
        shape = tuple(shape)
        if is_concrete(self._arrays):
            status = self.validity().status
            if status == "invalid":
                raise ProbkitError(
                    "the IIA is not a distribution for this covariance (negative density; see "
                    "validity()); sample excursions with simulate_excursions instead."
                )
            use_divisor = status == "proven"
        else:
            use_divisor = True
        if use_divisor:
            return _geometric_sum(self._arrays, key, shape, self._power_exponent())
        arrays = self._arrays
        u = jax.random.uniform(key, shape, dtype=jnp.float64)
        cdf = jax.lax.cummax(1.0 - arrays["sf"])  # non-decreasing up to rounding
        return jnp.interp(u, cdf, arrays["times"])

    def sample_divisor(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw the divisor ``D`` (``P(D > t) = E₀(t)``); needs the ``proven`` status.

        ``E[e^{θD}] = 2`` defines the persistence exponent, so these draws check it by Monte Carlo.
        """
        shape = tuple(shape)
        if is_concrete(self._arrays) and self.validity().status != "proven":
            raise ProbkitError(
                "E₀ is not monotone for this covariance (Q < 0 somewhere), so it is not the "
                "survival function of a divisor; see validity()."
            )
        size = int(np.prod(shape)) if shape else 1
        draws = _divisor_draws(self._arrays, key, size, self._power_exponent())
        return draws.reshape(shape)

    def __repr__(self) -> str:
        return f"SlepianIIA({self.covariance!r}, grid={self.grid.shape[0]} points)"


@functools.partial(jax.jit, static_argnums=(1, 2))
def _build_arrays(
    cov: StationaryCovariance, points_per_mean: int, n_means: int
) -> dict[str, jax.Array]:
    """The grid, the divisor, the Cramér root and the solved renewal equations (one compilation)."""
    n = points_per_mean * n_means
    step = math.pi / jnp.sqrt(cov.lam2) / points_per_mean
    times = step * jnp.arange(n, dtype=jnp.float64)
    t_max = times[-1]
    divisor_sf, divisor_pdf, q = _divisor(cov, times)
    tail = _exponential_tail(divisor_sf, times)
    theta = _cramer_root(divisor_pdf, step, tail)
    # The root is a genuine persistence exponent when E₀ decays exponentially at a stable rate
    # κ > θ at the end of the grid (the moment beyond the grid is then added in closed form), or
    # when e^{θt} f_D(t) has decayed so far that the last half of the grid carries a negligible
    # share of E[e^{θD}] = 2 (super-exponential tails, where E₀ underflows). A polynomial tail
    # gives a root that exists only because the grid is truncated, with most of the integral
    # at its end.
    late = jnp.sum(jnp.abs(jnp.exp(theta * times) * divisor_pdf)[n // 2 :]) * step
    admissible = tail["stable"] & (theta < 0.98 * tail["rate"])
    tail_exponential = (theta > 0) & ((late < 1e-6) | admissible)
    # The tilt makes ½ Σ |c_j| e^{γ t_j} < 1 with a margin of about e^{-10} over the grid: the
    # root of the same equation for |f_D| (equal to θ when f_D >= 0; smaller, possibly negative,
    # when E₀ is not monotone), and a damping without an exponential tail.
    theta_abs = _cramer_root(jnp.abs(divisor_pdf), step, None)
    tilt = jnp.minimum(theta_abs, theta) - _TILT_SPAN / t_max
    tilt = jnp.where(tail_exponential, tilt, jnp.minimum(tilt, -_DAMPING / t_max))
    sf, pdf = solve_renewal(divisor_sf, divisor_pdf, step, jax.lax.stop_gradient(tilt))
    return {
        "step": step,
        "times": times,
        "divisor_sf": divisor_sf,
        "divisor_pdf": divisor_pdf,
        "q": q,
        "theta_grid": theta,
        "tail_exponential": tail_exponential,
        "tail_rate": tail["rate"],
        "tail_stable": tail["stable"],
        "sf": sf,
        "pdf": pdf,
    }


def _log_abs(x: jax.Array, floor: float = 1e-300) -> jax.Array:
    """``log max(|x|, floor)`` with finite derivatives of every order.

    E₀ underflows to 0 at the end of the grid for light tails, where ``log(maximum(...))`` would
    give NaN second derivatives (``inf · 0``).
    """
    large = jnp.abs(x) > floor
    return jnp.where(large, jnp.log(jnp.where(large, jnp.abs(x), 1.0)), math.log(floor))


def _check_times(t: Any) -> jax.Array:
    check_times(t)
    return jnp.asarray(t, dtype=jnp.float64)


def _require_concrete(arrays: Any, what: str) -> None:
    if not is_concrete(arrays):
        raise ProbkitError(f"{what} inspects values: call it outside jit/vmap/grad.")


@jax.jit
def _divisor(cov: StationaryCovariance, t: jax.Array):
    """``E₀``, ``f_D`` and ``Q`` at times ``t``, without cancellation near 0."""
    lam2 = cov.lam2
    r = cov(t)
    slope = cov.derivative(t, 1)
    curvature = cov.derivative(t, 2)
    one_minus = cov.one_minus(t)
    gap = one_minus * (2.0 - one_minus)  # 1 - r² = (1 - r)(1 + r)
    at_zero = t == 0
    safe_gap = jnp.where(at_zero, 1.0, gap)
    divisor_sf = jnp.where(at_zero, 1.0, -slope / (jnp.sqrt(lam2) * jnp.sqrt(safe_gap)))
    q = curvature * gap + r * slope**2
    divisor_pdf = q / (jnp.sqrt(lam2) * safe_gap**1.5)
    # f_D(0+) = (λ₄/λ₂ - λ₂)·t/4 → 0 when λ₄ < ∞; otherwise E₀ has a corner at 0 and the limit
    # is read off the first two grid points (linear extrapolation).
    if t.ndim == 1 and t.shape[0] >= 3:
        extrapolated = 2 * divisor_pdf[1] - divisor_pdf[2]
        limit = jnp.where(jnp.isfinite(cov.lam4), 0.0, extrapolated)
        divisor_pdf = divisor_pdf.at[0].set(jnp.where(at_zero[0], limit, divisor_pdf[0]))
    else:
        divisor_pdf = jnp.where(at_zero, 0.0, divisor_pdf)
    return divisor_sf, divisor_pdf, jnp.where(at_zero, 0.0, q)


def _decay_rate(
    divisor_sf: jax.Array, times: jax.Array, i: int, j: int, *, log_time: bool = False
) -> jax.Array:
    """``-Δ log|E₀| / Δt`` between grid points ``i < j`` (``Δ log t`` with ``log_time``)."""
    span = jnp.log(times[j] / times[i]) if log_time else times[j] - times[i]
    return -(_log_abs(divisor_sf[j]) - _log_abs(divisor_sf[i])) / span


def _exponential_tail(divisor_sf: jax.Array, times: jax.Array) -> dict[str, jax.Array]:
    """The decay rate κ of E₀ over the last quarter of the grid, and whether it is stable.

    Stable: the rate over the previous quarter agrees within 5% (a power law ``t^{-α}`` has
    local rates ``α/t`` that differ by about 30% between the two) and E₀ has not underflowed.
    """
    n = times.shape[0]
    c = n - 1
    rate = _decay_rate(divisor_sf, times, 3 * n // 4, c)
    previous = _decay_rate(divisor_sf, times, n // 2, 3 * n // 4)
    stable = (
        (rate > 0)
        & (previous > 0)
        & (jnp.abs(rate / jnp.where(previous > 0, previous, 1.0) - 1) < 0.05)
        & (jnp.abs(divisor_sf[c]) > 1e-250)
    )
    return {"rate": rate, "stable": stable, "end": divisor_sf[c], "t_max": times[c]}


def _moment_generating(
    divisor_pdf: jax.Array, theta: jax.Array, step: jax.Array, tail: dict | None
) -> jax.Array:
    """``E[e^{θD}]`` by the trapezoid rule on the grid (the solver's own discretisation).

    For a stable exponential tail ``E₀ ~ E₀(t_max) e^{-κ(t - t_max)}`` the moment beyond the
    grid, ``κ E₀(t_max) e^{θ t_max} / (κ - θ)`` (for θ < κ), is added.
    """
    n = divisor_pdf.shape[0]
    weights = _trapezoid_weights(n, step, divisor_pdf.dtype)
    times = step * jnp.arange(n, dtype=divisor_pdf.dtype)
    inside = jnp.sum(weights * jnp.exp(theta * times) * divisor_pdf)
    if tail is None:
        return inside
    rate = tail["rate"]
    below = tail["stable"] & (theta < rate)
    gap = jnp.where(below, rate - theta, 1.0)
    beyond = rate * tail["end"] * jnp.exp(theta * tail["t_max"]) / gap
    return inside + jnp.where(below, beyond, jnp.where(tail["stable"], jnp.inf, 0.0))


def _cramer_root(divisor_pdf: jax.Array, step: jax.Array, tail: dict | None) -> jax.Array:
    """The root of ``E[e^{θD}] = 2`` by bracketing and bisection (no gradient).

    The moment is increasing in θ for a non-negative density, so the root exists: below κ for a
    stable exponential tail (the moment diverges there), and on a truncated grid otherwise. It
    is negative when the total mass exceeds 2 (for ``|f_D|`` of a strongly non-monotone ``E₀``).
    """
    divisor_pdf = jax.lax.stop_gradient(divisor_pdf)
    step = jax.lax.stop_gradient(step)
    tail = jax.lax.stop_gradient(tail)
    t_max = step * (divisor_pdf.shape[0] - 1)

    def excess(theta):
        return _moment_generating(divisor_pdf, theta, step, tail) - 2.0

    def expand(state):
        bound, count = state
        return bound * 2.0, count + 1

    # Double the bracket's far end from ±1/t_max until the excess changes sign (an infinite
    # moment past κ counts as a change of sign).
    direction = jnp.where(excess(0.0) < 0, 1.0, -1.0)
    far, _ = jax.lax.while_loop(
        lambda state: (direction * excess(state[0]) < 0) & (state[1] < 80),
        expand,
        (direction / t_max, 0),
    )

    def bisect(_, bounds):
        near, far = bounds
        middle = 0.5 * (near + far)
        same_side = direction * excess(middle) < 0
        return jnp.where(same_side, middle, near), jnp.where(same_side, far, middle)

    near, far = jax.lax.fori_loop(0, 80, bisect, (jnp.zeros_like(far), far))
    return 0.5 * (near + far)


def _divisor_draws(arrays: dict, key: jax.Array, size: int, alpha: jax.Array) -> jax.Array:
    """``size`` draws of ``D`` by inverting ``1 - E₀`` on the grid, with the tail law beyond."""
    times, divisor_sf = arrays["times"], arrays["divisor_sf"]
    cdf = jax.lax.cummax(1.0 - divisor_sf)
    t_max, end = times[-1], divisor_sf[-1]
    rate = -(_log_abs(divisor_sf[-1]) - _log_abs(divisor_sf[-2])) / (times[-1] - times[-2])
    u = jax.random.uniform(key, (size,), dtype=jnp.float64)
    inside = jnp.interp(u, cdf, times)
    # Beyond the grid (probability E₀(t_max)) the tail continues: exponential at the local rate,
    # or the power law.
    excess = jnp.minimum(jnp.maximum(1.0 - u, 1e-300) / end, 1.0)
    exponential = t_max - jnp.log(excess) / rate
    power = t_max * excess ** (-1.0 / alpha)
    tail = jnp.where(arrays["tail_exponential"], exponential, power)
    return jnp.where(u <= cdf[-1], inside, tail)


def _geometric_sum(arrays: dict, key: jax.Array, shape: tuple[int, ...], alpha: jax.Array):
    size = int(np.prod(shape)) if shape else 1
    count_key, divisor_key = jax.random.split(key)
    counts = jax.random.geometric(count_key, 0.5, (size,))

    def body(state):
        k, total = state
        draws = _divisor_draws(arrays, jax.random.fold_in(divisor_key, k), size, alpha)
        return k + 1, total + jnp.where(k < counts, draws, 0.0)

    _, total = jax.lax.while_loop(
        lambda state: state[0] < jnp.max(counts), body, (0, jnp.zeros((size,), jnp.float64))
    )
    return total.reshape(shape)
