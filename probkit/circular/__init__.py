"""Von Mises distributions and mixtures for angles and torsions.

- :mod:`~probkit.circular.vonmises`: :class:`VonMises` done right (stable density, cdf and ppf,
  entropy, closed-form KL, a float32-safe sampler with κ-gradients).
- :mod:`~probkit.circular.mixture`: :class:`VonMisesMixture` over one angle or ``D`` torsions.
- :mod:`~probkit.circular.fit`: :func:`fit_vonmises_mixture`, EM with an exact κ M-step,
  restarts, priors and model choice; :mod:`~probkit.circular.estimator` wraps it in a
  scikit-learn-style :class:`VonMisesMixtureModel`.
- :mod:`~probkit.circular.boltzmann`: Boltzmann densities of torsion potentials (butane) and
  :func:`fit_to_energy` in forward or reverse KL.
- :mod:`~probkit.circular.amortized`: VonMisesNet-style networks from features to mixtures.
- :mod:`~probkit.circular.metrics`: binned KL and the circular earth mover's distance.
- :mod:`~probkit.circular.chem`: torsions and relaxed MMFF scans from RDKit (``probkit[chem]``).
"""

from probkit.circular.amortized import (
    VONMISESNET_CONCENTRATION,
    AmortizedFit,
    AmortizedVonMisesMixture,
    ConcentrationTransform,
    MixtureHeads,
    mixture_log_likelihood,
    mixture_parameters,
)
from probkit.circular.boltzmann import (
    BUTANE_RYCKAERT_BELLEMANS,
    BoltzmannGrid,
    EnergyFit,
    boltzmann_grid,
    butane_energy,
    fit_to_energy,
    ryckaert_bellemans,
    thermal_energy,
)
from probkit.circular.estimator import VonMisesMixtureModel
from probkit.circular.fit import (
    ModelSelection,
    VonMisesMixtureFit,
    VonMisesPrior,
    fit_vonmises_mixture,
)
from probkit.circular.metrics import binned_kl, binned_kl_to_density, circular_emd
from probkit.circular.mixture import VonMisesMixture
from probkit.circular.vonmises import VonMises, vonmises_cdf, vonmises_ppf

__all__ = [
    "BUTANE_RYCKAERT_BELLEMANS",
    "VONMISESNET_CONCENTRATION",
    "AmortizedFit",
    "AmortizedVonMisesMixture",
    "BoltzmannGrid",
    "ConcentrationTransform",
    "EnergyFit",
    "MixtureHeads",
    "ModelSelection",
    "VonMises",
    "VonMisesMixture",
    "VonMisesMixtureFit",
    "VonMisesMixtureModel",
    "VonMisesPrior",
    "binned_kl",
    "binned_kl_to_density",
    "boltzmann_grid",
    "butane_energy",
    "circular_emd",
    "fit_to_energy",
    "fit_vonmises_mixture",
    "mixture_log_likelihood",
    "mixture_parameters",
    "ryckaert_bellemans",
    "thermal_energy",
    "vonmises_cdf",
    "vonmises_ppf",
]
