"""A NumPyro model as prior and likelihood log densities on its unconstrained latent space.

probkit's samplers work on log densities of flat parameters; this module turns a NumPyro model
into the pieces they need. The latent sites are moved on the unconstrained space given by
``biject_to(site.support)``; the prior density there includes the log-Jacobian of each transform.
The likelihood is the sum over the observed sites (``obs=...``, ``numpyro.factor`` included),
so tempering it leaves the prior alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.util import constrain_fn

from probkit._errors import ProbkitError

__all__ = ["ModelDensities", "model_densities"]


class ModelDensities(NamedTuple):
    """The log densities of a NumPyro model on its unconstrained latent space.

    Attributes
    ----------
    log_prior : callable
        ``log_prior(u)``: the prior density of the unconstrained latent values ``u`` (a dict by
        site name), transform log-Jacobians included.
    log_likelihood : callable
        ``log_likelihood(u)``: the log density of the observed sites given the latent values.
    sample_prior : callable
        ``sample_prior(key, n)``: ``n`` independent prior draws of ``u`` (leading axis ``n``).
    constrain : callable
        ``constrain(u)``: the latent values on their support, with the deterministic sites.
    latent_sites : tuple of str
        The names of the latent sample sites.
    observed_sites : tuple of str
        The names of the observed sample sites.
    """

    log_prior: Callable[[dict], jax.Array]
    log_likelihood: Callable[[dict], jax.Array]
    sample_prior: Callable[[jax.Array, int], dict]
    constrain: Callable[[dict], dict]
    latent_sites: tuple[str, ...]
    observed_sites: tuple[str, ...]


def _is_latent(site: dict) -> bool:
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary", False)
    )


def _scaled_log_prob(site: dict) -> jax.Array:
    log_prob = jnp.sum(site["fn"].log_prob(site["value"]))
    return log_prob if site["scale"] is None else site["scale"] * log_prob


def model_densities(
    model: Callable, model_args: tuple = (), model_kwargs: dict | None = None
) -> ModelDensities:
    """Split a NumPyro model into prior and likelihood on its unconstrained latent space.

    Parameters
    ----------
    model : callable
        A NumPyro model.
    model_args, model_kwargs
        Its arguments (the data, typically).

    Returns
    -------
    ModelDensities

    Raises
    ------
    ProbkitError
        If the model has a discrete latent site (it cannot be moved on a continuous space:
        marginalise it out), no latent site, or no observed site.
    """
    model_kwargs = dict(model_kwargs or {})
    prototype = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(
        *model_args, **model_kwargs
    )
    latent = [name for name, site in prototype.items() if _is_latent(site)]
    observed = [
        name for name, site in prototype.items() if site["type"] == "sample" and site["is_observed"]
    ]
    discrete = [name for name in latent if prototype[name]["fn"].support.is_discrete]
    if discrete:
        raise ProbkitError(
            f"latent site(s) {', '.join(map(repr, discrete))} are discrete; probkit's SMC moves "
            "latent sites on a continuous unconstrained space. Marginalise them out (sum over "
            "their values with numpyro.factor or a mixture distribution)."
        )
    if not latent:
        raise ProbkitError("the model has no latent sample site: there is nothing to infer.")
    if not observed:
        raise ProbkitError(
            "the model has no observed site (obs=... or numpyro.factor): there is no likelihood "
            "to temper. Pass the data to the model."
        )
    transforms = {name: biject_to(prototype[name]["fn"].support) for name in latent}

    def log_parts(unconstrained: dict) -> tuple[jax.Array, jax.Array]:
        values = {name: transforms[name](unconstrained[name]) for name in latent}
        substituted = handlers.substitute(handlers.seed(model, rng_seed=0), data=values)
        trace = handlers.trace(substituted).get_trace(*model_args, **model_kwargs)
        log_prior = sum(_scaled_log_prob(trace[name]) for name in latent)
        log_jacobian = sum(
            jnp.sum(transforms[name].log_abs_det_jacobian(unconstrained[name], values[name]))
            for name in latent
        )
        log_likelihood = sum(_scaled_log_prob(trace[name]) for name in observed)
        return log_prior + log_jacobian, log_likelihood

    def sample_prior(key: jax.Array, num: int) -> dict:
        def one(k):
            trace = handlers.trace(handlers.seed(model, rng_seed=k)).get_trace(
                *model_args, **model_kwargs
            )
            return {name: transforms[name].inv(trace[name]["value"]) for name in latent}

        return jax.vmap(one)(jax.random.split(key, num))

    def constrain(unconstrained: dict) -> dict:
        return constrain_fn(
            model, model_args, model_kwargs, unconstrained, return_deterministic=True
        )

    return ModelDensities(
        log_prior=lambda u: log_parts(u)[0],
        log_likelihood=lambda u: log_parts(u)[1],
        sample_prior=sample_prior,
        constrain=constrain,
        latent_sites=tuple(latent),
        observed_sites=tuple(observed),
    )
