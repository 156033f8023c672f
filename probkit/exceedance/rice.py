"""Rice's formula: expected level-crossing intensities and the mean excursion length.

For a stationary Gaussian process with ``r(0) = 1`` and second spectral moment ``λ₂``, the
expected number of up-crossings of level ``u`` per unit time is
``μ⁺(u) = (1/2π) √λ₂ exp(-u²/2)`` (Rice 1944); crossings in both directions occur at twice that
rate. The mean length of an excursion above ``u`` is ``P(X > u) / μ⁺(u)``, which at ``u = 0`` is
``π / √λ₂``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

from probkit._errors import ProbkitError
from probkit._validate import check_choice, is_concrete
from probkit.exceedance._checks import check_covariance
from probkit.exceedance.covariance import StationaryCovariance

__all__ = ["crossing_intensity", "mean_excursion_length"]


def _check_level(level: Any) -> jax.Array:
    # NumPy, not jnp: under jit even operations on constants are staged out and not concrete.
    if is_concrete(level) and not np.all(np.isfinite(np.asarray(level, dtype=float))):
        raise ProbkitError(f"`level` must be finite; got {level!r}.")
    return jnp.asarray(level, dtype=jnp.result_type(float))


def crossing_intensity(
    covariance: StationaryCovariance, level: Any = 0.0, direction: str = "up"
) -> jax.Array:
    """Rice's expected number of crossings of ``level`` per unit time.

    Parameters
    ----------
    covariance : StationaryCovariance
        The process's correlation function (unit variance).
    level : float or array
        The level ``u``, in standard deviations (broadcasts).
    direction : {"up", "down", "both"}
        Up-crossings (``√λ₂ e^{-u²/2} / 2π``), down-crossings (the same) or both (twice it).

    Returns
    -------
    jax.Array
        The intensity, with the shape of ``level``; differentiable in the covariance's parameters.
    """
    covariance = check_covariance(covariance)
    check_choice("direction", direction, ("up", "down", "both"))
    level = _check_level(level)
    rate = jnp.sqrt(covariance.lam2) * jnp.exp(-0.5 * level**2) / (2 * math.pi)
    return 2 * rate if direction == "both" else rate


def mean_excursion_length(covariance: StationaryCovariance, level: Any = 0.0) -> jax.Array:
    """The mean length of an excursion above ``level``: ``P(X > u) / μ⁺(u)``.

    At ``u = 0`` this is ``π / √λ₂``, the reciprocal of the zero-crossing intensity.

    Parameters
    ----------
    covariance : StationaryCovariance
        The process's correlation function (unit variance).
    level : float or array
        The level ``u``, in standard deviations.
    """
    covariance = check_covariance(covariance)
    level = _check_level(level)
    # P(X > u) / μ⁺(u) with the Gaussian tail in log space, finite for large u.
    log_tail = special.log_ndtr(-level)
    log_rate = 0.5 * jnp.log(covariance.lam2) - 0.5 * level**2 - math.log(2 * math.pi)
    return jnp.exp(log_tail - log_rate)
