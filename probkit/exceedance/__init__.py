"""Zero-level excursions of stationary Gaussian processes: Rice, the Slepian IIA, simulation.

- :mod:`~probkit.exceedance.covariance`: :class:`StationaryCovariance` and presets.
- :mod:`~probkit.exceedance.rice`: crossing intensities and the mean excursion length.
- :mod:`~probkit.exceedance.iia`: :class:`SlepianIIA`, the Slepian-model independent-interval
  approximation (Bengtsson & Podgórski, arXiv:2401.01805): densities, persistence exponent θ,
  validity, sampling.
- :mod:`~probkit.exceedance.distribution`: :class:`ExcursionLength`, a NumPyro distribution.
- :mod:`~probkit.exceedance.simulate`: streaming Monte Carlo ground truth.
- :mod:`~probkit.exceedance.exact`: the Rice upper bound and Gaussian orthant persistence.
"""

from probkit.exceedance.covariance import (
    StationaryCovariance,
    cauchy,
    damped_cosine,
    gaussian,
    jonswap,
    matern,
    random_acceleration,
    sech_diffusion,
)
from probkit.exceedance.distribution import ExcursionLength
from probkit.exceedance.exact import (
    ExtrapolatedPersistence,
    OrthantPersistence,
    orthant_persistence,
    persistence_extrapolated,
    rice_bound_pdf,
)
from probkit.exceedance.iia import SlepianIIA, TailReport, ValidityReport, solve_renewal
from probkit.exceedance.rice import crossing_intensity, mean_excursion_length
from probkit.exceedance.simulate import (
    ExcursionSimulation,
    ThetaFit,
    circulant_embedding,
    fit_exponential_tail,
    simulate_excursions,
)

__all__ = [
    "ExcursionLength",
    "ExcursionSimulation",
    "ExtrapolatedPersistence",
    "OrthantPersistence",
    "SlepianIIA",
    "StationaryCovariance",
    "TailReport",
    "ThetaFit",
    "ValidityReport",
    "cauchy",
    "circulant_embedding",
    "crossing_intensity",
    "damped_cosine",
    "fit_exponential_tail",
    "gaussian",
    "jonswap",
    "matern",
    "mean_excursion_length",
    "orthant_persistence",
    "persistence_extrapolated",
    "random_acceleration",
    "rice_bound_pdf",
    "sech_diffusion",
    "simulate_excursions",
    "solve_renewal",
]
