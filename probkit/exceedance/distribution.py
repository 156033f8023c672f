"""A NumPyro distribution of zero-level excursion lengths under the Slepian IIA."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import validate_sample

from probkit._errors import ProbkitError
from probkit._validate import is_concrete
from probkit.exceedance.covariance import StationaryCovariance
from probkit.exceedance.iia import SlepianIIA

__all__ = ["ExcursionLength"]


class ExcursionLength(Distribution):
    """The length of an excursion above 0 of a stationary Gaussian process, by the Slepian IIA.

    Built from a :class:`~probkit.exceedance.StationaryCovariance` whose parameters may be traced:
    inside a NumPyro model, ``log_prob`` is differentiable with respect to them (through the
    renewal solver), so covariance parameters can be fitted to observed excursion lengths with
    NUTS or SVI. Needs float64 (see :class:`~probkit.exceedance.SlepianIIA`).

    Parameters
    ----------
    covariance : StationaryCovariance
        The process's correlation function.
    points_per_mean, n_means : int
        The IIA grid (see :class:`~probkit.exceedance.SlepianIIA`).
    validate_args : bool, optional
        NumPyro's argument and support validation.

    Raises
    ------
    ProbkitError
        With concrete parameters, if the IIA is ``invalid`` for the covariance (a negative
        density: see :meth:`SlepianIIA.validity`). Under tracing this cannot be checked; the
        log density is then ``-inf`` where the IIA density is not positive.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> jax.config.update("jax_enable_x64", True)
    >>> from probkit.exceedance import ExcursionLength, gaussian
    >>> def model(lengths):
    ...     scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    ...     numpyro.sample("T", ExcursionLength(gaussian(scale)), obs=lengths)
    """

    arg_constraints: ClassVar[dict[str, Any]] = {}
    support = constraints.positive
    reparametrized_params: ClassVar[list[str]] = []
    pytree_data_fields = ("covariance", "iia")
    pytree_aux_fields = ("points_per_mean", "n_means")

    def __init__(
        self,
        covariance: StationaryCovariance,
        *,
        points_per_mean: int = 256,
        n_means: int = 48,
        validate_args: bool | None = None,
    ):
        self.covariance = covariance
        self.points_per_mean = points_per_mean
        self.n_means = n_means
        self.iia = SlepianIIA(covariance, points_per_mean=points_per_mean, n_means=n_means)
        if is_concrete(covariance):
            report = self.iia.validity()
            if report.status == "invalid":
                raise ProbkitError(f"ExcursionLength: {report.message} ({covariance!r})")
        super().__init__(batch_shape=(), event_shape=(), validate_args=validate_args)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw excursion lengths (see :meth:`SlepianIIA.sample`)."""
        return self.iia.sample(key, tuple(sample_shape) + self.batch_shape)

    @validate_sample
    def log_prob(self, value: jax.Array) -> jax.Array:
        """The IIA log density (interpolated on the grid, the tail law beyond it)."""
        value = jnp.asarray(value, dtype=jnp.float64)
        positive = value > 0
        return jnp.where(positive, self.iia.logpdf(jnp.where(positive, value, 1.0)), -jnp.inf)

    def cdf(self, value: jax.Array) -> jax.Array:
        """``P(T <= value)``."""
        return self.iia.cdf(jnp.maximum(jnp.asarray(value, dtype=jnp.float64), 0.0))

    @property
    def mean(self) -> jax.Array:
        """``π/√λ₂``: the Rice mean, which the IIA reproduces exactly."""
        return self.iia.mean()

    @property
    def variance(self) -> jax.Array:
        """``4 ∫ t E₀(t) dt``."""
        return self.iia.var()
