"""Sequential Monte Carlo composed of valid transformations of evidence-carrying populations.

* :mod:`~probkit.inference.smc.state`: the run's state and the single-run variance estimate.
* :mod:`~probkit.inference.smc.transformations`: the steps (propose, reweight, temper,
  resample when the ESS is low, move) every algorithm is a list of.
* :mod:`~probkit.inference.smc.runner`: running steps with ``lax.scan``/``lax.while_loop``.
* :mod:`~probkit.inference.smc.tempering`: tempered (fixed or adaptive) and data-annealed samplers.
* :mod:`~probkit.inference.smc.filtering`: particle filters for state-space models.
* :mod:`~probkit.inference.smc.moves`: rejuvenation kernels tuned from the particle cloud.
* :mod:`~probkit.inference.smc.pmmh`: particle marginal Metropolis–Hastings.
* :mod:`~probkit.inference.smc.numpyro_smc`: :class:`SMC` for NumPyro models.
"""

from probkit.inference.smc.filtering import StateSpaceModel, particle_filter
from probkit.inference.smc.moves import mala_from_particles, random_walk_from_particles
from probkit.inference.smc.numpyro_smc import SMC
from probkit.inference.smc.pmmh import PMMHKernel, pmmh
from probkit.inference.smc.runner import SMCResult, Stage, run_stages, run_until
from probkit.inference.smc.state import SMCState, init_state, log_evidence_variance
from probkit.inference.smc.tempering import data_annealed_smc, tempered_smc
from probkit.inference.smc.transformations import Move, Propose, ResampleIf, Reweight, Temper

__all__ = [
    "SMC",
    "Move",
    "PMMHKernel",
    "Propose",
    "ResampleIf",
    "Reweight",
    "SMCResult",
    "SMCState",
    "Stage",
    "StateSpaceModel",
    "Temper",
    "data_annealed_smc",
    "init_state",
    "log_evidence_variance",
    "mala_from_particles",
    "particle_filter",
    "pmmh",
    "random_walk_from_particles",
    "run_stages",
    "run_until",
    "tempered_smc",
]
