"""The closed forms of NIW hierarchical meta-learning on a flat parameter vector.

Model (Kim & Hospedales, ICLR 2024): a global ``φ = (μ, Σ)`` with a diagonal normal-inverse-
Wishart law ``q(φ) = NIW(m₀, κ₀, n₀, Γ₀⁻¹)`` (independent coordinates, ``σ²_k`` inverse-gamma
with shape ``n₀/2`` and rate ``1/(2γ₀ₖ)``), episode parameters ``θ_i | φ ~ N(μ, Σ)``, and for each
episode a Gaussian fit of its loss, ``L_i(θ) ≈ ½(θ - m̄_i)ᵀ Ā_i (θ - m̄_i) + const``.

* The local posterior ``q_i = N(m_i, V_i)`` minimising ``E_q L_i + E_{q(φ)} KL(q_i ‖ N(μ, Σ))``
  is ``V_i = (Ā_i + n₀Γ₀)⁻¹``, ``m_i = V_i (Ā_i m̄_i + n₀Γ₀ m₀)`` (:func:`local_posterior`).
* The episode's meta-loss at that optimum, ``f_i + ½ g_i`` with the quadratic surrogate
  ``f_i = E_{q_i} ½(θ - m̄_i)ᵀĀ_i(θ - m̄_i)`` and ``g_i = 2 E_{q(φ)} KL(q_i ‖ N(μ, Σ))``
  (:func:`episode_meta_loss`), equals the negative log marginal likelihood of a Gaussian
  random-effects meta-analysis, up to terms in ``Ā_i`` and ``n₀, κ₀`` alone:
  ``-log N(m̄_i; m₀, Ā_i⁻¹ + (n₀Γ₀)⁻¹) + ½ log|Ā_i| - (d/2) log 2π + (d/2)[log(n₀/2) - ψ(n₀/2)] +
  d/(2κ₀)`` (:func:`random_effects_meta_loss`). Its gradient in ``m₀`` is a precision-weighted
  Reptile step ``-Σ_i W_i (m̄_i - m₀)``, ``W_i = (Ā_i⁻¹ + (n₀Γ₀)⁻¹)⁻¹``.

With the full curvature of a network's outputs (:func:`linearized_episode_meta_loss`), the fit
is the loss's quadratic model about a point ``θ̂`` with Gauss-Newton curvature ``FᵀF`` (a
:class:`LinearizedFit`; ``F`` has one row per direction of the loss's curvature in the
episode's outputs, far fewer than ``d``), and the same ``f_i + ½ g_i`` is taken at the exact
local posterior ``N(θ*, (n₀Γ₀ + FᵀF)⁻¹)`` by the Woodbury identity, without a ``d × d`` matrix.

The paper's other variant keeps the real loss in the first term:
``E_{q_i}[L_i(θ)] + E_{q(φ)} KL(q_i ‖ N(μ, Σ))`` with the expectation estimated by
reparameterised draws from ``q_i`` (:func:`monte_carlo_episode_meta_loss`); for a quadratic loss
it equals the surrogate's value plus ``L_i(m̄_i)`` in expectation.

A fit's precision is a vector (diagonal ``Ā``, as for networks) or a ``d × d`` matrix (exact
fits of linear-Gaussian losses); the prior precision ``n₀Γ₀`` is always diagonal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma

from probkit.distributions import NormalInverseGamma

__all__ = [
    "DiagonalNIW",
    "GaussianFit",
    "LinearizedFit",
    "LinearizedPosterior",
    "LocalPosterior",
    "episode_meta_loss",
    "linearized_episode_meta_loss",
    "local_posterior",
    "monte_carlo_episode_meta_loss",
    "random_effects_meta_loss",
]


class DiagonalNIW(NamedTuple):
    """The global posterior ``q(φ)``: a diagonal normal-inverse-Wishart law on ``d`` coordinates.

    Attributes
    ----------
    loc : jax.Array, shape (d,)
        ``m₀``, the mean of ``μ`` (the shared initialisation of every episode).
    precision : jax.Array, shape (d,)
        ``γ₀``: ``E[Σ⁻¹] = n₀ diag(γ₀)``.
    df : jax.Array, scalar
        ``n₀ > 0``.
    kappa : jax.Array, scalar
        ``κ₀ > 0``.
    """

    loc: jax.Array
    precision: jax.Array
    df: jax.Array
    kappa: jax.Array

    def prior_precision(self) -> jax.Array:
        """``n₀γ₀``, the precision that pulls every episode towards ``m₀``."""
        return self.df * self.precision

    def as_distribution(self) -> NormalInverseGamma:
        """The law as a :class:`~probkit.distributions.NormalInverseGamma`."""
        return NormalInverseGamma.from_meta_prior(self.loc, self.kappa, self.df, self.precision)

    def mode(self) -> tuple[jax.Array, jax.Array]:
        """``(μ*, σ²*) = (m₀, 1/(γ₀(n₀ + 3)))``, the mode used to adapt to a new episode."""
        return self.loc, 1.0 / (self.precision * (self.df + 3.0))


class GaussianFit(NamedTuple):
    """A Gaussian fit ``½(θ - mean)ᵀ precision (θ - mean)`` of one episode's loss.

    Attributes
    ----------
    mean : jax.Array, shape (d,)
        ``m̄``.
    precision : jax.Array, shape (d,) or (d, d)
        ``Ā``, diagonal (a vector) or full (a symmetric positive definite matrix).
    """

    mean: jax.Array
    precision: jax.Array

    @classmethod
    def at_posterior_mode(
        cls, mode: jax.Array, precision: jax.Array, prior_loc: jax.Array, prior_precision
    ) -> GaussianFit:
        """The diagonal fit whose closed-form local posterior has its mean at ``mode``.

        For a fit made by minimising the local posterior's objective
        ``L(θ) + ½Σ P(θ - m₀)²`` (mode ``θ*``, curvature ``Ā`` of ``L`` there): the mean
        ``m̄ = θ* + P(θ* - m₀)/Ā`` makes :func:`local_posterior`'s ``(Ām̄ + Pm₀)/(Ā + P)``
        equal ``θ*``. At the mode ``∇L(θ*) = -P(θ* - m₀)``, so ``m̄`` is also the centre
        ``θ* - ∇L(θ*)/Ā`` of ``L``'s quadratic model there.

        Parameters
        ----------
        mode : array, shape (d,)
            ``θ*``.
        precision : array, shape (d,)
            ``Ā`` (> 0).
        prior_loc : array, shape (d,)
            ``m₀``.
        prior_precision : float or array, shape (d,)
            ``P``, the precision the closed form will use (``n₀γ₀``).
        """
        return cls(mode + prior_precision * (mode - prior_loc) / precision, precision)


class LocalPosterior(NamedTuple):
    """An episode's posterior ``N(mean, covariance)``.

    Attributes
    ----------
    mean : jax.Array, shape (d,)
    covariance : jax.Array, shape (d,) or (d, d)
        Diagonal (a vector of variances) when the fit is diagonal, else a matrix.
    """

    mean: jax.Array
    covariance: jax.Array

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        """``num_samples`` draws, shape ``(num_samples, d)``: ``mean + covariance^½ ε``."""
        z = jax.random.normal(key, (num_samples, self.mean.shape[-1]), self.mean.dtype)
        if self.covariance.ndim == self.mean.ndim:
            return self.mean + jnp.sqrt(self.covariance) * z
        return self.mean + z @ jnp.linalg.cholesky(self.covariance).T


class LinearizedPosterior(NamedTuple):
    """An episode's posterior with its support set's full Gauss-Newton curvature.

    ``N(mean, Λ⁻¹)`` with ``Λ = diag(1/prior_variance) + FᵀF``: the prior's precision (at the
    mode of ``q(φ)``) plus the support loss's Gauss-Newton matrix ``JᵀHJ = FᵀF`` at ``mean``
    (``F = SᵀJ``, ``H = SSᵀ``, one row per direction of the loss's curvature in the support's
    outputs). It is the exact posterior of the model linearised at ``mean``, where
    :func:`local_posterior` keeps the diagonal of ``JᵀHJ`` only: a network's weights compensate
    for one another along the support's few directions, and the diagonal forgets it, so its
    predictive intervals are far wider than the data allow. ``Λ`` is never formed: with
    ``r`` rows in ``F`` (a few-shot support set's outputs) every operation costs
    ``O(r²d + r³)``.

    Attributes
    ----------
    mean : jax.Array, shape (d,)
    prior_variance : jax.Array, shape (d,)
        ``D``, the prior's variances.
    factor : jax.Array, shape (r, d)
        ``F``.
    """

    mean: jax.Array
    prior_variance: jax.Array
    factor: jax.Array

    def _cholesky(self) -> jax.Array:
        # K = I + F D Fᵀ (r × r), the Woodbury identity's inner matrix.
        scaled = self.factor * self.prior_variance
        inner = jnp.eye(self.factor.shape[0], dtype=self.mean.dtype) + scaled @ self.factor.T
        return jnp.linalg.cholesky(inner)

    @property
    def covariance(self) -> jax.Array:
        """The marginal variances ``diag(Λ⁻¹) = D - diag(DFᵀK⁻¹FD)``, shape ``(d,)``."""
        lower = jax.scipy.linalg.solve_triangular(
            self._cholesky(), self.factor * self.prior_variance, lower=True
        )
        return self.prior_variance - jnp.sum(lower**2, axis=0)

    def sample(self, key: jax.Array, num_samples: int) -> jax.Array:
        """``num_samples`` draws, shape ``(num_samples, d)``, by Matheron's rule.

        A draw ``z₀ ~ N(0, D)`` of the prior and ``η ~ N(0, I_r)`` are conditioned on the
        linearised support: ``z = z₀ - DFᵀK⁻¹(Fz₀ + η)`` has covariance ``Λ⁻¹`` exactly.
        """
        prior_key, noise_key = jax.random.split(key)
        dimension, rank = self.mean.shape[-1], self.factor.shape[0]
        prior_draws = jnp.sqrt(self.prior_variance) * jax.random.normal(
            prior_key, (num_samples, dimension), self.mean.dtype
        )
        noise = jax.random.normal(noise_key, (num_samples, rank), self.mean.dtype)
        residual = prior_draws @ self.factor.T + noise
        correction = jax.scipy.linalg.cho_solve((self._cholesky(), True), residual.T).T
        return self.mean + prior_draws - (correction @ self.factor) * self.prior_variance


class LinearizedFit(NamedTuple):
    """An episode's loss as its quadratic model about ``point`` with Gauss-Newton curvature.

    ``L(θ) ≈ L(θ̂) + gᵀ(θ - θ̂) + ½(θ - θ̂)ᵀFᵀF(θ - θ̂)``: the gradient and the Gauss-Newton
    matrix ``JᵀHJ = FᵀF`` of the loss at ``θ̂`` (:func:`~probkit.meta.gauss_newton_factor`).
    Unlike a :class:`GaussianFit` it keeps how the parameters compensate for one another along
    the ``r`` directions the episode's outputs can see, and it needs no curvature floor in the
    directions they cannot (the prior fills them).

    Attributes
    ----------
    point : jax.Array, shape (d,)
        ``θ̂``, where the model is taken (the end of the fit's steps).
    gradient : jax.Array, shape (d,)
        ``g = ∇L(θ̂)``.
    factor : jax.Array, shape (r, d)
        ``F``.
    """

    point: jax.Array
    gradient: jax.Array
    factor: jax.Array


def linearized_episode_meta_loss(prior: DiagonalNIW, fit: LinearizedFit) -> jax.Array:
    """``f + ½g`` at the exact local posterior of a :class:`LinearizedFit`, less ``L(θ̂)``.

    With ``P = n₀Γ₀`` and the local posterior's precision ``Λ = P + FᵀF``, its mean is
    ``θ* = θ̂ + Λ⁻¹(P(m₀ - θ̂) - g)`` and, as for :func:`episode_meta_loss` (``tr(ΛV) = d``
    cancels the KL's ``-d``, and ``log|Λ| + E log|Σ|`` leaves ``log|I + FP⁻¹Fᵀ|``):

    ``f + ½g = L_q(θ*) - L(θ̂) + ½(θ* - m₀)ᵀP(θ* - m₀) + ½ log|I + FP⁻¹Fᵀ|
    + (d/2)[log(n₀/2) - ψ(n₀/2)] + d/(2κ₀)``,

    the negative log evidence of the quadratic model under ``N(m₀, P⁻¹)`` (its fit term, the
    prior's pull and the Occam factor) plus the NIW law's terms. For a full-rank ``F`` it is
    :func:`random_effects_meta_loss` of the same quadratic less its constant
    ``L(θ̂) - min L_q``. ``Λ`` is never formed: ``O(r²d + r³)`` for ``r`` rows of ``F``.
    Differentiable in the prior's parameters; the fit is a constant.
    """
    pull = prior.prior_precision()
    factor = fit.factor
    offset = prior.loc - fit.point  # m₀ - θ̂
    # Λ⁻¹v = P⁻¹v - P⁻¹Fᵀ K⁻¹ F P⁻¹v with K = I + F P⁻¹ Fᵀ (r × r).
    scaled = factor / pull
    inner = jnp.eye(factor.shape[0], dtype=factor.dtype) + scaled @ factor.T
    cholesky = jnp.linalg.cholesky(inner)
    target = offset - fit.gradient / pull  # P⁻¹(P(m₀ - θ̂) - g)
    step = target - scaled.T @ jax.scipy.linalg.cho_solve((cholesky, True), factor @ target)
    model = fit.gradient @ step + 0.5 * jnp.sum((factor @ step) ** 2)
    pulled = 0.5 * jnp.sum(pull * (step - offset) ** 2)
    occam = jnp.sum(jnp.log(jnp.diagonal(cholesky)))
    d = fit.point.shape[-1]
    df = prior.df
    return (
        model
        + pulled
        + occam
        + 0.5 * d * (jnp.log(df / 2.0) - digamma(df / 2.0))
        + 0.5 * d / prior.kappa
    )


def _is_full(fit: GaussianFit) -> bool:
    return fit.precision.ndim == fit.mean.ndim + 1


def local_posterior(prior: DiagonalNIW, fit: GaussianFit) -> LocalPosterior:
    """The closed-form local posterior ``V = (Ā + n₀Γ₀)⁻¹``, ``m = V(Ā m̄ + n₀Γ₀ m₀)``."""
    pull = prior.prior_precision()
    if _is_full(fit):
        precision = fit.precision + jnp.diag(pull)
        cholesky = jnp.linalg.cholesky(precision)
        rhs = fit.precision @ fit.mean + pull * prior.loc
        mean = jax.scipy.linalg.cho_solve((cholesky, True), rhs)
        covariance = jax.scipy.linalg.cho_solve(
            (cholesky, True), jnp.eye(mean.shape[-1], dtype=mean.dtype)
        )
        return LocalPosterior(mean, covariance)
    precision = fit.precision + pull
    return LocalPosterior(
        (fit.precision * fit.mean + pull * prior.loc) / precision, 1.0 / precision
    )


def _expected_fit_loss(fit: GaussianFit, posterior: LocalPosterior) -> jax.Array:
    """``E_{N(m, V)} ½(θ - m̄)ᵀĀ(θ - m̄) = ½[(m - m̄)ᵀĀ(m - m̄) + tr(ĀV)]``."""
    diff = posterior.mean - fit.mean
    if _is_full(fit):
        return 0.5 * (diff @ fit.precision @ diff + jnp.sum(fit.precision * posterior.covariance))
    return 0.5 * jnp.sum(fit.precision * (diff**2 + posterior.covariance))


def _expected_kl(prior: DiagonalNIW, posterior: LocalPosterior) -> jax.Array:
    """``E_{q(φ)} KL(N(m, V) ‖ N(μ, Σ))`` for a diagonal ``q(φ)`` and a full or diagonal ``V``."""
    law = prior.as_distribution()
    if posterior.covariance.ndim == posterior.mean.ndim:
        return law.expected_gaussian_kl(posterior.mean, posterior.covariance)
    variances = jnp.diagonal(posterior.covariance)
    # Only diag(V) enters the expected trace; log|V| replaces Σ log V_kk.
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(posterior.covariance))))
    return law.expected_gaussian_kl(posterior.mean, variances) + 0.5 * (
        jnp.sum(jnp.log(variances)) - log_det
    )


def episode_meta_loss(prior: DiagonalNIW, fit: GaussianFit) -> jax.Array:
    """``f + ½g`` at the closed-form local posterior, with the quadratic surrogate ``f``.

    ``f = E_{q_i}[½(θ - m̄)ᵀĀ(θ - m̄)]`` and ``g = 2 E_{q(φ)} KL(q_i ‖ N(μ, Σ))``. Differentiable
    in the prior's parameters (the fit enters as a constant: no graph through the inner loop).
    """
    posterior = local_posterior(prior, fit)
    return _expected_fit_loss(fit, posterior) + _expected_kl(prior, posterior)


def monte_carlo_episode_meta_loss(
    prior: DiagonalNIW,
    fit: GaussianFit,
    loss: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    num_samples: int,
) -> jax.Array:
    """``E_{q_i}[L_i(θ)] + E_{q(φ)} KL(q_i ‖ N(μ, Σ))`` with the real loss, by Monte Carlo.

    The local posterior ``q_i`` is the closed form of the fit; ``num_samples`` reparameterised
    draws ``θ = m_i + V_i^{1/2} ε`` estimate the first term, so its gradient reaches the prior's
    parameters through ``m_i`` and ``V_i`` (the fit stays a constant).

    Parameters
    ----------
    prior : DiagonalNIW
    fit : GaussianFit
    loss : callable
        ``L_i`` on the flat parameter vector.
    key : jax.Array
        PRNG key of the draws.
    num_samples : int
        Draws per evaluation.
    """
    posterior = local_posterior(prior, fit)
    draws = posterior.sample(key, num_samples)
    return jnp.mean(jax.vmap(loss)(draws)) + _expected_kl(prior, posterior)


def random_effects_meta_loss(prior: DiagonalNIW, fit: GaussianFit) -> jax.Array:
    """The same value as :func:`episode_meta_loss`, in its random-effects form (see the module)."""
    d = fit.mean.shape[-1]
    between = 1.0 / prior.prior_precision()  # τ², the between-episode variance
    if _is_full(fit):
        within = jnp.linalg.inv(fit.precision)
        log_det_precision = 2.0 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(fit.precision))))
    else:
        within = jnp.diag(1.0 / fit.precision)
        log_det_precision = jnp.sum(jnp.log(fit.precision))
    covariance = within + jnp.diag(between)
    cholesky = jnp.linalg.cholesky(covariance)
    z = jax.scipy.linalg.solve_triangular(cholesky, fit.mean - prior.loc, lower=True)
    log_normal = -0.5 * (
        d * math.log(2.0 * math.pi) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(cholesky))) + z @ z
    )
    df = prior.df
    return (
        -log_normal
        + 0.5 * log_det_precision
        - 0.5 * d * math.log(2.0 * math.pi)
        + 0.5 * d * (jnp.log(df / 2.0) - digamma(df / 2.0))
        + 0.5 * d / prior.kappa
    )
