"""Argument checks shared by the exceedance modules (raised before anything is traced)."""

from __future__ import annotations

from typing import Any

import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import is_concrete
from probkit.exceedance.covariance import StationaryCovariance

__all__ = ["check_covariance", "check_times"]


def check_covariance(covariance: Any) -> StationaryCovariance:
    """Return ``covariance`` if it is a :class:`StationaryCovariance`, else raise."""
    if not isinstance(covariance, StationaryCovariance):
        raise ProbkitError(
            "`covariance` must be a StationaryCovariance (e.g. probkit.exceedance.gaussian() or "
            f"sech_diffusion(2)); got {type(covariance).__name__}."
        )
    return covariance


def check_times(t: Any, name: str = "t") -> None:
    """Raise unless the (concrete) times ``t`` are finite and ``>= 0``; traced values pass."""
    if not is_concrete(t):
        return
    values = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ProbkitError(f"`{name}` must be finite; got {t!r}. Pass excursion lengths t >= 0.")
    if np.any(values < 0):
        raise ProbkitError(
            f"`{name}` must be >= 0 (an excursion length); got a minimum of {values.min():g}."
        )
