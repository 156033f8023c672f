"""SMC for NumPyro models: ``SMC(model).run(key, *args)``, shaped like ``numpyro.infer.MCMC``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import check_positive_int
from probkit.inference.numpyro_bridge import ModelDensities, model_densities
from probkit.inference.population import resample
from probkit.inference.smc.runner import SMCResult
from probkit.inference.smc.state import log_evidence_variance
from probkit.inference.smc.tempering import check_completed, tempered_smc

__all__ = ["SMC"]


class SMC:
    """Tempered SMC on a NumPyro model, with its log evidence and diagnostics.

    The model's latent sites are moved on their unconstrained space (transform Jacobians
    included); the likelihood of the observed sites is tempered from 0 to 1 and the prior is
    not. See :func:`~probkit.inference.smc.tempering.tempered_smc` for the algorithm.

    Parameters
    ----------
    model : callable
        A NumPyro model with continuous latent sites and at least one observed site.
    num_particles : int
        Number of particles.
    schedule, target_ess, move, num_mcmc_steps, resample_threshold, resampling, max_steps
        As for :func:`~probkit.inference.smc.tempering.tempered_smc`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from probkit.inference import SMC
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
    >>> smc = SMC(model, num_particles=500)
    >>> smc.run(jax.random.key(0), jnp.array([0.3, 1.1, 0.8]))
    >>> samples = smc.get_samples()  # {"mu": array of shape (500,)}
    """

    def __init__(
        self,
        model: Callable,
        *,
        num_particles: int = 1_000,
        schedule: Any = None,
        target_ess: float = 0.5,
        move: str | Callable = "random_walk",
        num_mcmc_steps: int = 5,
        resample_threshold: float | None = None,
        resampling: str = "systematic",
        max_steps: int = 500,
    ):
        if not callable(model):
            raise ProbkitError(f"`model` must be a NumPyro model (a callable); got {model!r}.")
        self.model = model
        self.num_particles = check_positive_int("num_particles", num_particles)
        self.schedule = schedule
        self.target_ess = target_ess
        self.move = move
        self.num_mcmc_steps = num_mcmc_steps
        self.resample_threshold = resample_threshold
        self.resampling = resampling
        self.max_steps = max_steps
        self._result: SMCResult | None = None
        self._densities: ModelDensities | None = None
        self._samples: dict | None = None

    def run(self, rng_key: jax.Array, *args: Any, **kwargs: Any) -> None:
        """Run SMC on ``model(*args, **kwargs)``; results are read with the methods below.

        The run is compiled once per argument shapes and reused by later calls of this object
        (new data of the same shapes, or new keys, do not recompile).

        Raises
        ------
        ProbkitError
            If the model cannot be handled (see
            :func:`~probkit.inference.numpyro_bridge.model_densities`) or the adaptive schedule
            did not reach λ = 1 within ``max_steps``.
        """
        # Validate eagerly (model structure, options) before anything is compiled.
        densities = model_densities(self.model, args, kwargs)
        self._result = self._compiled_run(rng_key, args, kwargs)
        check_completed(self._result, self.max_steps)
        self._key_samples = jax.random.fold_in(rng_key, 2)
        self._densities = densities
        self._samples = None

    @functools.cached_property
    def _compiled_run(self) -> Callable:
        def run(rng_key, args, kwargs):
            densities = model_densities(self.model, args, kwargs)
            key_prior, key_run = jax.random.split(rng_key)
            particles = densities.sample_prior(key_prior, self.num_particles)
            return tempered_smc(
                key_run,
                densities.log_prior,
                densities.log_likelihood,
                particles,
                schedule=self.schedule,
                target_ess=self.target_ess,
                move=self.move,
                num_mcmc_steps=self.num_mcmc_steps,
                resample_threshold=self.resample_threshold,
                resampling=self.resampling,
                max_steps=self.max_steps,
            )

        return jax.jit(run)

    def _require_run(self) -> SMCResult:
        if self._result is None:
            raise ProbkitError("call `run(rng_key, *args)` before reading results.")
        return self._result

    @property
    def result(self) -> SMCResult:
        """The underlying :class:`~probkit.inference.smc.runner.SMCResult` (unconstrained particles)."""
        return self._require_run()

    @property
    def log_evidence(self) -> float:
        """``log Ẑ``, the estimate of the log marginal likelihood ``log p(y)``."""
        return float(self._require_run().log_evidence)

    @property
    def log_evidence_variance(self) -> float:
        """The single-run estimate of ``Var(log Ẑ)`` (Lee & Whiteley 2018)."""
        return float(log_evidence_variance(self._require_run().state))

    @property
    def num_steps(self) -> int:
        """The number of tempering steps taken."""
        return int(self._require_run().num_steps)

    def history(self) -> dict[str, np.ndarray]:
        """Per-step diagnostics (temperature, ESS, acceptance, resampled, evidence increments)."""
        result = self._require_run()
        steps = int(result.num_steps)
        return {name: np.asarray(values[:steps]) for name, values in result.history.items()}

    def get_samples(self) -> dict[str, jax.Array]:
        """Posterior draws on the constrained space, deterministic sites included.

        The final particles, resampled (systematically) to equal weights when their weights
        differ, so every draw counts once; shape ``(num_particles, ...)`` per site.
        """
        result = self._require_run()
        if self._samples is None:
            population = result.population
            weights = np.exp(np.asarray(population.log_weights))
            if not np.allclose(weights, weights[0], rtol=1e-12, atol=0):
                population = resample(self._key_samples, population, "systematic")
            self._samples = jax.jit(jax.vmap(self._densities.constrain))(population.particles)
        return self._samples

    def print_summary(self, prob: float = 0.9) -> None:
        """Print posterior summaries of the latent sites, the log evidence and the run's shape."""
        from numpyro.diagnostics import print_summary

        samples = self.get_samples()
        latent = {name: samples[name] for name in self._densities.latent_sites}
        print_summary(latent, prob=prob, group_by_chain=False)
        history = self.history()
        print(
            f"log evidence {self.log_evidence:.4f} (single-run sd "
            f"{np.sqrt(max(self.log_evidence_variance, 0.0)):.3g}); {self.num_steps} tempering "
            f"steps, mean acceptance {history['acceptance_rate'].mean():.2f}, "
            f"{self.num_particles} particles"
        )

    def to_arviz(self):
        """An ``arviz.InferenceData``: ``posterior`` (one chain of the particles) and ``sample_stats``.

        ``sample_stats`` holds ``log_marginal_likelihood`` (per chain) and the per-step
        diagnostics along an ``smc_step`` dimension: ``temperature``, ``ess``,
        ``acceptance_rate``, ``resampled`` and ``log_evidence_increment``.
        """
        import arviz as az
        import xarray as xr

        samples = {name: np.asarray(value)[None] for name, value in self.get_samples().items()}
        posterior = az.from_dict(posterior=samples).posterior
        history = self.history()
        statistics = {
            name: (("chain", "smc_step"), np.asarray(values)[None])
            for name, values in history.items()
            if np.ndim(values) == 1
        }
        statistics["log_marginal_likelihood"] = (("chain",), np.array([self.log_evidence]))
        sample_stats = xr.Dataset(
            statistics,
            coords={"chain": [0], "smc_step": np.arange(self.num_steps)},
            attrs={"inference_library": "probkit", "num_particles": self.num_particles},
        )
        return az.InferenceData(posterior=posterior, sample_stats=sample_stats)
