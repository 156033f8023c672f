"""How you infer: model-agnostic algorithms on weighted particles, log densities and NumPyro models.

Populations carry the evidence (:mod:`probkit.inference.population`); resampling schemes are
deterministic maps of uniform draws (:mod:`probkit.inference.resampling`); SMC is composed of
valid steps on them (:mod:`probkit.inference.smc`, with :class:`SMC` for NumPyro models);
Metropolis–Hastings kernels live in :mod:`probkit.inference.mhg`, and belief propagation with
count factors in :mod:`probkit.inference.bp`.
"""

from probkit.inference.population import (
    Population,
    WeightedParticle,
    collapse,
    collapse_from_uniforms,
    ess,
    expectation,
    is_degenerate,
    log_evidence,
    normalized_weights,
    push_evidence,
    resample,
    resample_from_uniforms,
    reweight,
    spawn,
)
from probkit.inference.resampling import RESAMPLERS, Resampler, get_resampler
from probkit.inference.smc import SMC

__all__ = [
    "RESAMPLERS",
    "SMC",
    "Population",
    "Resampler",
    "WeightedParticle",
    "collapse",
    "collapse_from_uniforms",
    "ess",
    "expectation",
    "get_resampler",
    "is_degenerate",
    "log_evidence",
    "normalized_weights",
    "push_evidence",
    "resample",
    "resample_from_uniforms",
    "reweight",
    "spawn",
]
