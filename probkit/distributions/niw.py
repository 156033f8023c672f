"""Normal-inverse-Wishart and normal-inverse-gamma laws: the conjugate priors of a Gaussian.

``NormalInverseWishart(loc m, kappa κ, df ν, scale_matrix Ψ)`` is the law of a pair ``(μ, Σ)``
with ``Σ ~ IW(ν, Ψ)`` and ``μ | Σ ~ N(m, Σ/κ)``. ``NormalInverseGamma(loc, kappa, concentration
a, rate b)`` is its diagonal form: independent coordinates with ``σ²_k ~ InvGamma(a_k, b_k)`` and
``μ_k | σ²_k ~ N(m_k, σ²_k/κ_k)`` (scipy's ``normal_inverse_gamma`` per coordinate).

Both are NumPyro distributions whose value is a pair ``(loc, covariance)`` (for the diagonal form
``(loc, variances)``), as scipy's ``normal_inverse_gamma`` takes and returns pairs. NumPyro's
MCMC needs array-valued sites: inside a model, :meth:`NormalInverseWishart.sample_in_model`
samples the two parts as two sites.

Closed forms, each checked against scipy, enumeration-free identities and Monte Carlo
(``probkit.theory.checks.meta``):

* the conjugate update from (optionally weighted) observations, and the log marginal likelihood
  (the Bayes identity ``p(D) = p(D | φ) p(φ) / p(φ | D)`` holds at every ``φ``);
* the posterior predictive, a multivariate Student-t (Student-t per coordinate);
* moments, mode and entropy-free KL divergences between two laws (registered with
  ``numpyro.distributions.kl.kl_divergence``);
* the expected Gaussian KL ``E_{(μ,Σ)} KL(N(m, V) ‖ N(μ, Σ))``, the local regulariser of NIW
  hierarchical meta-learning.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln, multigammaln
from numpyro.distributions import (
    Distribution,
    InverseGamma,
    InverseWishart,
    MultivariateStudentT,
    StudentT,
    constraints,
)
from numpyro.distributions.kl import kl_divergence

from probkit._errors import ProbkitError
from probkit._validate import is_concrete

__all__ = [
    "NormalInverseGamma",
    "NormalInverseWishart",
    "multivariate_digamma",
]

_LOG_PI = math.log(math.pi)
_LOG_2 = math.log(2.0)


def multivariate_digamma(x: Any, d: int) -> jax.Array:
    """``ψ_d(x) = Σ_{j=1}^{d} ψ(x + (1 − j)/2)``, the derivative of ``log Γ_d(x)``."""
    x = jnp.asarray(x)
    offsets = (1.0 - jnp.arange(1, d + 1, dtype=x.dtype)) / 2.0
    return jnp.sum(digamma(x[..., None] + offsets), axis=-1)


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _logdet(cholesky):
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(cholesky, axis1=-2, axis2=-1)), axis=-1)


def _solve_psd(cholesky, b):
    """``A⁻¹ b`` for ``A = L Lᵀ`` (``b`` a matrix)."""
    return jax.scipy.linalg.cho_solve((cholesky, True), b)


def _quadratic(cholesky, v):
    """``vᵀ A⁻¹ v`` for ``A = L Lᵀ``."""
    z = jax.scipy.linalg.solve_triangular(cholesky, v[..., None], lower=True)[..., 0]
    return jnp.sum(z**2, axis=-1)


class _PairOf(constraints.Constraint):
    """A pair ``(loc, covariance)`` with each part in its own support."""

    def __init__(self, loc_support, scale_support):
        self.loc_support = loc_support
        self.scale_support = scale_support
        super().__init__()

    def __call__(self, value):
        loc, scale = value
        return self.loc_support(loc) & self.scale_support(scale)

    def feasible_like(self, prototype):
        loc, scale = prototype
        return (self.loc_support.feasible_like(loc), self.scale_support.feasible_like(scale))

    def tree_flatten(self):
        return (), ((), {"loc_support": self.loc_support, "scale_support": self.scale_support})


def _check_common(owner: str, loc, kappa) -> None:
    loc_values, kappa_values = np.asarray(loc), np.asarray(kappa)
    if not np.all(np.isfinite(loc_values)):
        raise ProbkitError(f"{owner}: `loc` holds NaN or infinite values; pass finite means.")
    bad = ~np.isfinite(kappa_values) | (kappa_values <= 0)
    if np.any(bad):
        raise ProbkitError(
            f"{owner}: `kappa` (the prior's pseudo-count on the mean) must be finite and > 0; got "
            f"{kappa_values[bad][:3]}. Use a small value such as 1e-3 for a vague mean."
        )


def _check_niw(loc, kappa, df, scale_matrix) -> None:
    owner = "NormalInverseWishart"
    if jnp.ndim(loc) < 1:
        raise ProbkitError(f"{owner}: `loc` must be a vector of length d, got a scalar.")
    d = jnp.shape(loc)[-1]
    if jnp.ndim(scale_matrix) < 2 or jnp.shape(scale_matrix)[-2:] != (d, d):
        raise ProbkitError(
            f"{owner}: `scale_matrix` must have shape (..., {d}, {d}) to match `loc` of length "
            f"{d}; got shape {jnp.shape(scale_matrix)}."
        )
    if not is_concrete(loc, kappa, df, scale_matrix):
        return
    _check_common(owner, loc, kappa)
    df_values = np.asarray(df)
    bad = ~np.isfinite(df_values) | (df_values <= d - 1)
    if np.any(bad):
        raise ProbkitError(
            f"{owner}: `df` must exceed d - 1 = {d - 1}; got {df_values[bad][:3]}. The mean of Σ "
            f"exists for df > d + 1 = {d + 1}."
        )
    scale = np.asarray(scale_matrix, dtype=np.float64)
    if not np.all(np.isfinite(scale)):
        raise ProbkitError(f"{owner}: `scale_matrix` holds NaN or infinite values.")
    if not np.allclose(scale, np.swapaxes(scale, -1, -2), rtol=1e-6, atol=0.0):
        raise ProbkitError(f"{owner}: `scale_matrix` must be symmetric; pass (Ψ + Ψᵀ)/2.")
    try:
        np.linalg.cholesky(scale)
    except np.linalg.LinAlgError:
        raise ProbkitError(
            f"{owner}: `scale_matrix` is not positive definite (its Cholesky factorisation "
            "failed); add a multiple of the identity or pass a valid covariance-like matrix."
        ) from None


def _check_nig(loc, kappa, concentration, rate) -> None:
    owner = "NormalInverseGamma"
    if not is_concrete(loc, kappa, concentration, rate):
        return
    _check_common(owner, loc, kappa)
    for name, values in (("concentration", concentration), ("rate", rate)):
        values = np.asarray(values)
        bad = ~np.isfinite(values) | (values <= 0)
        if np.any(bad):
            raise ProbkitError(f"{owner}: `{name}` must be finite and > 0; got {values[bad][:3]}.")


def _weighted_statistics(x, weights):
    """``(n, x̄, S)`` of rows ``x`` (..., n, d) with weights (..., n); x̄ = 0 when n = 0."""
    if weights is None:
        weights = jnp.ones(x.shape[:-1], x.dtype)
    weights = jnp.asarray(weights, x.dtype)
    n = jnp.sum(weights, axis=-1)
    mean = jnp.sum(weights[..., None] * x, axis=-2) / jnp.where(n > 0, n, 1.0)[..., None]
    centred = x - mean[..., None, :]
    return n, mean, centred, weights


def _check_data(x, d: int, weights, owner: str):
    x = _float(x)
    if x.ndim < 2 or x.shape[-1] != d:
        raise ProbkitError(
            f"{owner}: `x` must have shape (..., n, {d}) (rows of observations), got {x.shape}."
        )
    if weights is not None and jnp.shape(weights) != x.shape[:-1]:
        raise ProbkitError(
            f"{owner}: `weights` must have shape {x.shape[:-1]} (one per row of `x`), got "
            f"{jnp.shape(weights)}."
        )
    if is_concrete(x, weights):
        if not np.all(np.isfinite(np.asarray(x))):
            raise ProbkitError(f"{owner}: `x` holds NaN or infinite values; drop those rows.")
        if weights is not None and np.any(np.asarray(weights) < 0):
            raise ProbkitError(f"{owner}: `weights` must be >= 0 (0 drops a row).")
    return x


class NormalInverseWishart(Distribution):
    """The normal-inverse-Wishart law of a mean and a covariance ``(μ, Σ)``.

    ``Σ ~ IW(df, scale_matrix)`` and ``μ | Σ ~ N(loc, Σ / kappa)``; the density is

    ``p(μ, Σ) = N(μ; m, Σ/κ) · |Ψ|^{ν/2} / (2^{νd/2} Γ_d(ν/2)) · |Σ|^{-(ν+d+1)/2} exp(-tr(ΨΣ⁻¹)/2)``.

    Parameters
    ----------
    loc : array_like, shape (..., d)
        ``m``, the prior mean of ``μ``.
    kappa : array_like, shape (...)
        ``κ > 0``, the pseudo-count of the mean.
    df : array_like, shape (...)
        ``ν > d - 1``, the degrees of freedom.
    scale_matrix : array_like, shape (..., d, d)
        ``Ψ``, symmetric positive definite.
    validate_args : bool, optional
        NumPyro's argument validation.

    Notes
    -----
    A value is a pair ``(loc, covariance)`` of shapes ``(..., d)`` and ``(..., d, d)``. Bad
    parameters (``κ ≤ 0``, ``ν ≤ d - 1``, a scale matrix that is not symmetric positive
    definite, mismatched shapes) raise :class:`~probkit.ProbkitError` when they are concrete.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> prior = NormalInverseWishart(jnp.zeros(2), 1.0, 4.0, jnp.eye(2))
    >>> x = jax.random.normal(jax.random.key(0), (50, 2)) + 3.0
    >>> posterior = prior.posterior(x)
    >>> posterior.kappa, posterior.df
    (Array(51., dtype=float32), Array(54., dtype=float32))
    """

    arg_constraints: ClassVar[dict] = {
        "loc": constraints.real_vector,
        "kappa": constraints.positive,
        "df": constraints.positive,
        "scale_matrix": constraints.positive_definite,
    }
    support = _PairOf(constraints.real_vector, constraints.positive_definite)
    pytree_data_fields = ("loc", "kappa", "df", "scale_matrix", "_scale_tril")

    def __init__(self, loc, kappa, df, scale_matrix, *, validate_args=None):
        _check_niw(loc, kappa, df, scale_matrix)
        loc, kappa, df, scale_matrix = (_float(a) for a in (loc, kappa, df, scale_matrix))
        dtype = jnp.result_type(loc, kappa, df, scale_matrix)
        loc, kappa, df, scale_matrix = (a.astype(dtype) for a in (loc, kappa, df, scale_matrix))
        batch_shape = jnp.broadcast_shapes(
            jnp.shape(loc)[:-1], jnp.shape(kappa), jnp.shape(df), jnp.shape(scale_matrix)[:-2]
        )
        d = jnp.shape(loc)[-1]
        self.loc = jnp.broadcast_to(loc, (*batch_shape, d))
        self.kappa = jnp.broadcast_to(kappa, batch_shape)
        self.df = jnp.broadcast_to(df, batch_shape)
        self.scale_matrix = jnp.broadcast_to(scale_matrix, (*batch_shape, d, d))
        self._scale_tril = jnp.linalg.cholesky(self.scale_matrix)
        super().__init__(batch_shape, (d,), validate_args=validate_args)

    @property
    def dimension(self) -> int:
        """``d``, the length of ``μ``."""
        return self.event_shape[0]

    def _inverse_wishart(self) -> InverseWishart:
        return InverseWishart(self.df, scale_tril=self._scale_tril)

    def sample(self, key, sample_shape=()):
        """Draw ``(μ, Σ)`` pairs of shapes ``sample_shape + batch_shape + (d,)`` and ``(d, d)``."""
        key_covariance, key_loc = jax.random.split(key)
        covariance = self._inverse_wishart().sample(key_covariance, sample_shape)
        covariance = (covariance + jnp.swapaxes(covariance, -1, -2)) / 2.0
        tril = jnp.linalg.cholesky(covariance / self.kappa[..., None, None])
        z = jax.random.normal(key_loc, covariance.shape[:-1], covariance.dtype)
        return self.loc + jnp.einsum("...ij,...j->...i", tril, z), covariance

    def log_prob(self, value):
        """``log p(μ, Σ)`` of a pair ``value = (μ, Σ)``."""
        loc, covariance = value
        tril = jnp.linalg.cholesky(covariance)
        d = self.dimension
        # The inverse-Wishart density written out: NumPyro's (a transformed distribution)
        # stalled XLA on CPU for batches of 40,000 matrices and more.
        tril, scale = jnp.broadcast_arrays(tril, self.scale_matrix)
        trace = jnp.trace(_solve_psd(tril, scale), axis1=-2, axis2=-1)
        log_iw = (
            0.5 * self.df * _logdet(self._scale_tril)
            - 0.5 * self.df * d * _LOG_2
            - multigammaln(self.df / 2.0, d)
            - 0.5 * (self.df + d + 1.0) * _logdet(tril)
            - 0.5 * trace
        )
        log_normal = (
            -0.5 * d * math.log(2.0 * math.pi)
            + 0.5 * d * jnp.log(self.kappa)
            - 0.5 * _logdet(tril)
            - 0.5 * self.kappa * _quadratic(tril, loc - self.loc)
        )
        return log_iw + log_normal

    @property
    def mean(self):
        """``(m, Ψ/(ν - d - 1))``; the covariance part is infinite for ``ν ≤ d + 1``."""
        d = self.dimension
        denominator = (self.df - d - 1.0)[..., None, None]
        covariance = jnp.where(denominator > 0, self.scale_matrix / denominator, jnp.inf)
        return self.loc, covariance

    def mode(self):
        """The joint mode ``(m, Ψ/(ν + d + 2))``."""
        d = self.dimension
        return self.loc, self.scale_matrix / (self.df + d + 2.0)[..., None, None]

    def sample_in_model(self, name: str):
        """Sample ``(μ, Σ)`` inside a NumPyro model and return the pair.

        The two parts are two sites, ``name + "_covariance"`` and ``name + "_loc"``, so that
        MCMC sees array-valued sites.
        """
        import numpyro
        from numpyro.distributions import MultivariateNormal

        covariance = numpyro.sample(f"{name}_covariance", self._inverse_wishart())
        loc = numpyro.sample(
            f"{name}_loc",
            MultivariateNormal(self.loc, covariance / self.kappa[..., None, None]),
        )
        return loc, covariance

    def posterior(self, x, weights=None) -> NormalInverseWishart:
        """The conjugate posterior after Gaussian observations ``x``.

        Parameters
        ----------
        x : array_like, shape (..., n, d)
            Rows of observations.
        weights : array_like, shape (..., n), optional
            Non-negative row weights: 0 drops a row (padding), 1 keeps it; other values raise
            the row's likelihood to that power.

        Returns
        -------
        NormalInverseWishart
            ``κ + n, (κm + n x̄)/(κ + n), ν + n, Ψ + S + κn/(κ + n)(x̄ - m)(x̄ - m)ᵀ``.
        """
        x = _check_data(x, self.dimension, weights, "NormalInverseWishart.posterior")
        n, mean, centred, w = _weighted_statistics(x, weights)
        scatter = jnp.einsum("...n,...ni,...nj->...ij", w, centred, centred)
        kappa_n = self.kappa + n
        loc_n = (self.kappa[..., None] * self.loc + n[..., None] * mean) / kappa_n[..., None]
        shift = mean - self.loc
        scale_n = (
            self.scale_matrix
            + scatter
            + (self.kappa * n / kappa_n)[..., None, None]
            * shift[..., :, None]
            * shift[..., None, :]
        )
        return NormalInverseWishart(loc_n, kappa_n, self.df + n, scale_n)

    def log_marginal_likelihood(self, x, weights=None) -> jax.Array:
        """``log p(x) = log ∫ Π N(x_i; μ, Σ)^{w_i} dNIW(μ, Σ)`` (shape ``batch_shape``)."""
        x = _check_data(x, self.dimension, weights, "NormalInverseWishart.log_marginal_likelihood")
        post = self.posterior(x, weights)
        n = post.df - self.df
        d = self.dimension
        return (
            -0.5 * n * d * _LOG_PI
            + multigammaln(post.df / 2.0, d)
            - multigammaln(self.df / 2.0, d)
            + 0.5 * self.df * _logdet(self._scale_tril)
            - 0.5 * post.df * _logdet(post._scale_tril)
            + 0.5 * d * (jnp.log(self.kappa) - jnp.log(post.kappa))
        )

    def predictive(self) -> MultivariateStudentT:
        """The law of a new observation: ``t_{ν-d+1}(m, Ψ(κ + 1)/(κ(ν - d + 1)))``."""
        d = self.dimension
        df = self.df - d + 1.0
        factor = (self.kappa + 1.0) / (self.kappa * df)
        return MultivariateStudentT(
            df, self.loc, scale_tril=self._scale_tril * jnp.sqrt(factor)[..., None, None]
        )

    def expected_log_det_covariance(self) -> jax.Array:
        """``E log|Σ| = log|Ψ| - d log 2 - ψ_d(ν/2)``."""
        d = self.dimension
        return _logdet(self._scale_tril) - d * _LOG_2 - multivariate_digamma(self.df / 2.0, d)

    def expected_gaussian_kl(self, mean, covariance) -> jax.Array:
        """``E_{(μ,Σ)} KL(N(mean, covariance) ‖ N(μ, Σ))`` under this law.

        ``½[ν tr(Ψ⁻¹V) + ν(m' - m)ᵀΨ⁻¹(m' - m) + d/κ - log|V| + E log|Σ| - d]``.
        """
        mean, covariance = _float(mean), _float(covariance)
        d = self.dimension
        scale_tril, covariance = jnp.broadcast_arrays(self._scale_tril, covariance)
        trace = jnp.trace(_solve_psd(scale_tril, covariance), axis1=-2, axis2=-1)
        quadratic = _quadratic(self._scale_tril, mean - self.loc)
        log_det_v = _logdet(jnp.linalg.cholesky(covariance))
        return 0.5 * (
            self.df * (trace + quadratic)
            + d / self.kappa
            - log_det_v
            + self.expected_log_det_covariance()
            - d
        )


class NormalInverseGamma(Distribution):
    """Independent normal-inverse-gamma coordinates: the diagonal form of the NIW law.

    For each coordinate ``k``: ``σ²_k ~ InvGamma(a_k, b_k)`` and ``μ_k | σ²_k ~ N(m_k, σ²_k/κ_k)``
    (scipy's ``normal_inverse_gamma(mu=m_k, lmbda=κ_k, a=a_k, b=b_k)``). The diagonal NIW of
    NIW hierarchical meta-learning, with degrees of freedom ``n₀`` and precisions ``γ₀``, is
    ``a = n₀/2``, ``b = 1/(2γ₀)``.

    Parameters
    ----------
    loc : array_like, shape (..., d)
        ``m``.
    kappa, concentration, rate : array_like, broadcastable to (..., d)
        ``κ > 0``, ``a > 0``, ``b > 0``.
    validate_args : bool, optional
        NumPyro's argument validation.

    Notes
    -----
    A value is a pair ``(loc, variances)``, both of shape ``(..., d)``.
    """

    arg_constraints: ClassVar[dict] = {
        "loc": constraints.real_vector,
        "kappa": constraints.positive,
        "concentration": constraints.positive,
        "rate": constraints.positive,
    }
    support = _PairOf(constraints.real_vector, constraints.independent(constraints.positive, 1))

    def __init__(self, loc, kappa, concentration, rate, *, validate_args=None):
        if jnp.ndim(loc) < 1:
            raise ProbkitError("NormalInverseGamma: `loc` must be a vector of length d.")
        _check_nig(loc, kappa, concentration, rate)
        arrays = [_float(a) for a in (loc, kappa, concentration, rate)]
        dtype = jnp.result_type(*arrays)
        shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in arrays))
        self.loc, self.kappa, self.concentration, self.rate = (
            jnp.broadcast_to(a.astype(dtype), shape) for a in arrays
        )
        super().__init__(shape[:-1], shape[-1:], validate_args=validate_args)

    @classmethod
    def from_meta_prior(cls, loc, kappa, df, precision) -> NormalInverseGamma:
        """The diagonal NIW of the meta-learning papers: ``a = df/2``, ``b = 1/(2·precision)``."""
        return cls(loc, kappa, _float(df) / 2.0, 0.5 / _float(precision))

    def sample(self, key, sample_shape=()):
        """Draw ``(μ, σ²)`` pairs, each of shape ``sample_shape + batch_shape + (d,)``."""
        key_variance, key_loc = jax.random.split(key)
        variances = InverseGamma(self.concentration, self.rate).sample(key_variance, sample_shape)
        z = jax.random.normal(key_loc, variances.shape, variances.dtype)
        return self.loc + jnp.sqrt(variances / self.kappa) * z, variances

    def log_prob(self, value):
        """``log p(μ, σ²)`` of a pair ``value = (μ, σ²)``, summed over coordinates."""
        loc, variances = value
        log_ig = InverseGamma(self.concentration, self.rate).log_prob(variances)
        scale = variances / self.kappa
        log_normal = -0.5 * (jnp.log(2.0 * math.pi * scale) + (loc - self.loc) ** 2 / scale)
        return jnp.sum(log_ig + log_normal, axis=-1)

    @property
    def mean(self):
        """``(m, b/(a - 1))``; the variance part is infinite for ``a ≤ 1``."""
        a = self.concentration
        return self.loc, jnp.where(a > 1, self.rate / jnp.where(a > 1, a - 1.0, 1.0), jnp.inf)

    def mode(self):
        """The joint mode ``(m, b/(a + 3/2))``."""
        return self.loc, self.rate / (self.concentration + 1.5)

    def posterior(self, x, weights=None) -> NormalInverseGamma:
        """The conjugate posterior after observations ``x`` of shape ``(..., n, d)``.

        Each coordinate is updated on its own column: ``κ + n``, ``(κm + n x̄)/(κ + n)``,
        ``a + n/2``, ``b + S/2 + κn(x̄ - m)²/(2(κ + n))``; ``weights`` (shape ``(..., n)``)
        as in :meth:`NormalInverseWishart.posterior`.
        """
        x = _check_data(x, self.event_shape[0], weights, "NormalInverseGamma.posterior")
        n, mean, centred, w = _weighted_statistics(x, weights)
        n = n[..., None]
        scatter = jnp.sum(w[..., None] * centred**2, axis=-2)
        kappa_n = self.kappa + n
        loc_n = (self.kappa * self.loc + n * mean) / kappa_n
        rate_n = self.rate + 0.5 * scatter + 0.5 * self.kappa * n * (mean - self.loc) ** 2 / kappa_n
        return NormalInverseGamma(loc_n, kappa_n, self.concentration + n / 2.0, rate_n)

    def log_marginal_likelihood(self, x, weights=None) -> jax.Array:
        """``log p(x)``, summed over coordinates (shape ``batch_shape``)."""
        x = _check_data(
            x, self.event_shape[0], weights, "NormalInverseGamma.log_marginal_likelihood"
        )
        post = self.posterior(x, weights)
        n = 2.0 * (post.concentration - self.concentration)
        per_coordinate = (
            gammaln(post.concentration)
            - gammaln(self.concentration)
            + self.concentration * jnp.log(self.rate)
            - post.concentration * jnp.log(post.rate)
            + 0.5 * (jnp.log(self.kappa) - jnp.log(post.kappa))
            - 0.5 * n * math.log(2.0 * math.pi)
        )
        return jnp.sum(per_coordinate, axis=-1)

    def predictive(self) -> StudentT:
        """Per coordinate: ``t_{2a}(m, √(b(κ + 1)/(aκ)))`` (use ``.to_event(1)`` for the joint)."""
        scale = jnp.sqrt(self.rate * (self.kappa + 1.0) / (self.concentration * self.kappa))
        return StudentT(2.0 * self.concentration, self.loc, scale)

    def expected_log_variance(self) -> jax.Array:
        """``E log σ²_k = log b_k - ψ(a_k)``."""
        return jnp.log(self.rate) - digamma(self.concentration)

    def expected_gaussian_kl(self, mean, variances) -> jax.Array:
        """``E KL(N(mean, diag(variances)) ‖ N(μ, diag(σ²)))``, summed over coordinates.

        Per coordinate ``½[(a/b)(v + (m' - m)²) + 1/κ - log v + E log σ² - 1]``.
        """
        mean, variances = _float(mean), _float(variances)
        precision = self.concentration / self.rate
        per_coordinate = 0.5 * (
            precision * (variances + (mean - self.loc) ** 2)
            + 1.0 / self.kappa
            - jnp.log(variances)
            + self.expected_log_variance()
            - 1.0
        )
        return jnp.sum(per_coordinate, axis=-1)


@kl_divergence.register(NormalInverseWishart, NormalInverseWishart)
def _kl_niw(p: NormalInverseWishart, q: NormalInverseWishart):
    # KL(IW₁ ‖ IW₂) + E_{IW₁} KL(N(m₁, Σ/κ₁) ‖ N(m₂, Σ/κ₂)).
    d = p.dimension
    log_det_p, log_det_q = _logdet(p._scale_tril), _logdet(q._scale_tril)
    trace = jnp.trace(_solve_psd(p._scale_tril, q.scale_matrix), axis1=-2, axis2=-1)
    kl_iw = (
        0.5 * q.df * (log_det_p - log_det_q)
        + 0.5 * p.df * (trace - d)
        + multigammaln(q.df / 2.0, d)
        - multigammaln(p.df / 2.0, d)
        + 0.5 * (p.df - q.df) * multivariate_digamma(p.df / 2.0, d)
    )
    ratio = q.kappa / p.kappa
    kl_normal = 0.5 * (
        d * ratio
        - d
        - d * jnp.log(ratio)
        + q.kappa * p.df * _quadratic(p._scale_tril, p.loc - q.loc)
    )
    return kl_iw + kl_normal


@kl_divergence.register(NormalInverseGamma, NormalInverseGamma)
def _kl_nig(p: NormalInverseGamma, q: NormalInverseGamma):
    a1, b1, a2, b2 = p.concentration, p.rate, q.concentration, q.rate
    kl_ig = (
        (a1 - a2) * digamma(a1)
        - gammaln(a1)
        + gammaln(a2)
        + a2 * (jnp.log(b1) - jnp.log(b2))
        + a1 * (b2 - b1) / b1
    )
    ratio = q.kappa / p.kappa
    kl_normal = 0.5 * (ratio - 1.0 - jnp.log(ratio) + q.kappa * (a1 / b1) * (p.loc - q.loc) ** 2)
    return jnp.sum(kl_ig + kl_normal, axis=-1)
