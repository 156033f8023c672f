"""Metropolis–Hastings–Green kernels with the ``(init, step)`` shape.

Each builder closes over a log density and returns a kernel: ``state = init(position)`` and
``state, info = step(key, state)``. A kernel leaves its target invariant (the MHG theorem,
research note ``qbs_smc_mhg.md`` §1.5), so it keeps the measure a population represents when it
moves every particle: that is what makes it a valid SMC rejuvenation move.

- :mod:`~probkit.inference.mhg.base`: states, step reports and the acceptance rule they share.
- :mod:`~probkit.inference.mhg.density`: density-form MH (random walk, MALA, any proposal).
- :mod:`~probkit.inference.mhg.green`: the MHG engine: involutive and reversible-jump kernels,
  their deterministic :meth:`~probkit.inference.mhg.green.MHGKernel.propose` and
  :func:`~probkit.inference.mhg.green.check_moves`.
- :mod:`~probkit.inference.mhg.moves`: birth/death, split/merge and random-walk moves.
- :mod:`~probkit.inference.mhg.padded`: variable-dimension states in fixed-capacity arrays.
- :mod:`~probkit.inference.mhg.jacobian`: log-Jacobians over the active coordinates.
- :mod:`~probkit.inference.mhg.trace`: single-site (trace) MH on the latent sites of a NumPyro
  model, discrete sites included.
- :mod:`~probkit.inference.mhg.numpyro_kernel`: :class:`NumPyroKernel`, which runs any of these
  kernels under ``numpyro.infer.MCMC``.
"""

from probkit.inference.mhg.base import (
    AcceptanceRule,
    Kernel,
    MHInfo,
    MHState,
    accept_or_reject,
    acceptance_log_probability,
)
from probkit.inference.mhg.density import mala, metropolis_hastings, random_walk
from probkit.inference.mhg.green import (
    MHGInfo,
    MHGKernel,
    Move,
    Proposal,
    check_moves,
    involutive,
    reversible_jump,
)
from probkit.inference.mhg.jacobian import log_abs_det_jacobian
from probkit.inference.mhg.moves import birth_death, random_walk_move, split_merge
from probkit.inference.mhg.numpyro_kernel import NumPyroKernel, NumPyroKernelState
from probkit.inference.mhg.padded import Padded, delete_row, insert_row, padded
from probkit.inference.mhg.trace import SingleSiteInfo, SingleSiteKernel, single_site_mh

__all__ = [
    "AcceptanceRule",
    "Kernel",
    "MHGInfo",
    "MHGKernel",
    "MHInfo",
    "MHState",
    "Move",
    "NumPyroKernel",
    "NumPyroKernelState",
    "Padded",
    "Proposal",
    "SingleSiteInfo",
    "SingleSiteKernel",
    "accept_or_reject",
    "acceptance_log_probability",
    "birth_death",
    "check_moves",
    "delete_row",
    "insert_row",
    "involutive",
    "log_abs_det_jacobian",
    "mala",
    "metropolis_hastings",
    "padded",
    "random_walk",
    "random_walk_move",
    "reversible_jump",
    "single_site_mh",
    "split_merge",
]
