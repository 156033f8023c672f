"""NIW hierarchical meta-learning (Kim & Hospedales, ICLR 2024).

Closed-form local posteriors under a normal-inverse-Wishart global prior, one-time episodic
updates of that prior with optax, Gaussian fits of episode losses, offline episode generators,
and uncertainty metrics (NLL, Brier, ECE/MCE with reliability diagrams, interval coverage).
"""

from probkit.meta.core import (
    DiagonalNIW,
    GaussianFit,
    LinearizedFit,
    LinearizedPosterior,
    LocalPosterior,
    episode_meta_loss,
    linearized_episode_meta_loss,
    local_posterior,
    monte_carlo_episode_meta_loss,
    random_effects_meta_loss,
)
from probkit.meta.fits import (
    default_fit_optimizer,
    gauss_newton_factor,
    ggn_fit,
    laplace_fit,
    linear_gaussian_fit,
    sgld_fit,
)
from probkit.meta.learner import MetaState, NIWMeta, ValidationReport, default_optimizer
from probkit.meta.metrics import (
    CalibrationReport,
    CoverageReport,
    classification_calibration,
    interval_coverage,
    predictive_to_arviz,
    reliability_diagram,
)
from probkit.meta.predictive import class_probabilities
from probkit.meta.tasks import (
    FewShotEpisodes,
    LinearGaussianEpisodes,
    SineLineEpisodes,
    SinusoidEpisodes,
    digits_episodes,
    glyph_episodes,
    linear_gaussian_episodes,
    mnist5k_episodes,
    sine_line_episodes,
    sinusoid_episodes,
)

__all__ = [
    "CalibrationReport",
    "CoverageReport",
    "DiagonalNIW",
    "FewShotEpisodes",
    "GaussianFit",
    "LinearGaussianEpisodes",
    "LinearizedFit",
    "LinearizedPosterior",
    "LocalPosterior",
    "MetaState",
    "NIWMeta",
    "SineLineEpisodes",
    "SinusoidEpisodes",
    "ValidationReport",
    "class_probabilities",
    "classification_calibration",
    "default_fit_optimizer",
    "default_optimizer",
    "digits_episodes",
    "episode_meta_loss",
    "gauss_newton_factor",
    "ggn_fit",
    "glyph_episodes",
    "interval_coverage",
    "laplace_fit",
    "linear_gaussian_episodes",
    "linear_gaussian_fit",
    "linearized_episode_meta_loss",
    "local_posterior",
    "mnist5k_episodes",
    "monte_carlo_episode_meta_loss",
    "predictive_to_arviz",
    "random_effects_meta_loss",
    "reliability_diagram",
    "sgld_fit",
    "sine_line_episodes",
    "sinusoid_episodes",
]
