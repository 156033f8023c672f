"""Class probabilities from a Gaussian over a classifier's logits.

:meth:`NIWMeta.sample_outputs <probkit.meta.NIWMeta.sample_outputs>` with the network
linearised at the local posterior mean gives draws of the logits from a Gaussian: the
generalised linear model that the Laplace and Gauss-Newton fits describe. Two ways turn them
into class probabilities:

* ``"probit"`` (the default): the softmax of the mean logits divided by ``√(1 + π D/8)``,
  with ``D`` the variance over the draws of the difference of two logits, averaged over the
  pairs of classes. For two classes it is MacKay's (1992) probit approximation of the expected
  sigmoid of the logit difference, the predictive of linearised Laplace (Daxberger et al.,
  *Laplace Redux*, NeurIPS 2021). With more classes one ``D`` per example divides every logit
  alike, so the most probable class is that of the mean logits (the adapted network's
  accuracy) and only the confidence is tempered where the posterior is unsure. (Dividing each
  logit by its own variance, as per-class probits do, reorders the classes: a variance shared
  by all logits moves no probability yet shrinks them unevenly; in
  ``benchmarks/meta_fewshot.py`` that cost up to 29 accuracy points.)
* ``"average"``: the softmax averaged over the draws (the Monte Carlo expected softmax).

With a diagonal posterior over thousands of network weights, the averaged softmax of a few
dozen draws can be far less accurate than the posterior mean: every draw moves every weight,
and the spread of the logits swamps their differences. In ``benchmarks/meta_fewshot.py`` the
average of 16 draws lost 7–10 accuracy points to the network at the posterior mean in every
setting; the probit keeps the mean's accuracy. Neither is always better calibrated than the
softmax at the posterior mean itself: there the probit was underconfident where the diagonal
posterior of the body's weights is wide (expected calibration error 11.3 % and 27.2 % against
4.7 % and 2.0 % on digits; see ``benchmarks/results/meta_fewshot.md``), so measure before
choosing.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from probkit._errors import ProbkitError

__all__ = ["class_probabilities"]

_PROBIT_SCALE = math.pi / 8.0
"""``π/8``: ``Φ(√(π/8) x)`` matches the logistic sigmoid's slope at 0 (MacKay 1992)."""


def class_probabilities(
    logit_draws: jax.Array, method: str = "probit", *, mean: jax.Array | None = None
) -> jax.Array:
    """Class probabilities from draws of the logits (draws on the leading axis).

    Parameters
    ----------
    logit_draws : array, shape (draws, ..., classes)
        Logits under draws from a posterior, e.g. from
        :meth:`NIWMeta.sample_outputs <probkit.meta.NIWMeta.sample_outputs>`.
    method : {"probit", "average"}, default "probit"
        The probit approximation from the mean logits and the draws' spread of the logit
        differences, or the softmax averaged over the draws (see the module's notes).
    mean : array, shape (..., classes), optional
        The logits' mean when it is known exactly: the network at the posterior mean, around
        which its linearised draws scatter. The probit then uses it, and the draws' mean square
        deviations from it; otherwise the draws' mean and variance. Pass it: the mean of a few
        dozen draws is off by the logits' sd over the square root of their number, enough to
        change the most probable class where the posterior is wide.

    Returns
    -------
    jax.Array, shape (..., classes)
        Probabilities summing to one over the last axis.
    """
    if method not in ("probit", "average"):
        raise ProbkitError(f"`method` must be 'probit' or 'average', got {method!r}.")
    logit_draws = jnp.asarray(logit_draws)
    if logit_draws.ndim < 2:
        raise ProbkitError(
            "`logit_draws` must have a leading axis of draws and a last axis of classes, "
            f"got shape {logit_draws.shape}."
        )
    if method == "average":
        return jnp.mean(jax.nn.softmax(logit_draws, axis=-1), axis=0)
    draws, classes = logit_draws.shape[0], logit_draws.shape[-1]
    if mean is None:
        mean = jnp.mean(logit_draws, axis=0)
        # Mean squares about the draws' own mean, made unbiased (one draw: no spread).
        correction = draws / (draws - 1) if draws > 1 else 0.0
    else:
        mean = jnp.asarray(mean)
        if mean.shape != logit_draws.shape[1:]:
            raise ProbkitError(
                f"`mean` must have the shape of one draw, {logit_draws.shape[1:]}, got "
                f"{mean.shape}."
            )
        correction = 1.0
    if classes < 2:
        return jnp.ones_like(mean)
    # The mean over pairs of classes of Var(z_j − z_k) is 2K/(K − 1) times the mean variance
    # of the logits centred over the classes (a shift common to all logits moves nothing).
    deviations = logit_draws - mean
    centred = deviations - jnp.mean(deviations, axis=-1, keepdims=True)
    spread = correction * jnp.mean(centred**2, axis=(0, -1))[..., None]
    variance = 2.0 * classes / (classes - 1) * spread
    return jax.nn.softmax(mean / jnp.sqrt(1.0 + _PROBIT_SCALE * variance), axis=-1)
