"""Metropolis–Hastings–Green kernels with the ``(init, step)`` shape.

Each builder closes over a log density and returns a kernel: ``state = init(position)`` and
``state, info = step(key, state)``. A kernel leaves its target invariant (the MHG theorem,
research note ``qbs_smc_mhg.md`` §1.5), so it keeps the measure a population represents when it
moves every particle: that is what makes it a valid SMC rejuvenation move.

- :mod:`~probkit.inference.mhg.base`: states, step reports and the acceptance rule they share.
- :mod:`~probkit.inference.mhg.density`: density-form MH (random walk, MALA, any proposal).
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

__all__ = [
    "AcceptanceRule",
    "Kernel",
    "MHInfo",
    "MHState",
    "accept_or_reject",
    "acceptance_log_probability",
    "mala",
    "metropolis_hastings",
    "random_walk",
]
