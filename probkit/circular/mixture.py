"""Finite mixtures of von Mises laws for one angle or for a vector of independent torsions."""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import validate_sample

from probkit._errors import ProbkitError
from probkit._validate import is_concrete
from probkit.circular.vonmises import (
    _check_order,
    _cumulative_jit,
    _float,
    _log_density,
    _moment_ratio,
    _sample_jit,
    _wrap,
)
from probkit.special import bessel_ratio

__all__ = ["VonMisesMixture"]


class VonMisesMixture(Distribution):
    r"""A mixture of ``K`` von Mises laws, on one angle or on ``D`` independent torsions.

    .. math:: p(θ) = \sum_{k=1}^{K} w_k \prod_{d=1}^{D} f(θ_d \mid μ_{kd}, κ_{kd})

    Parameters
    ----------
    weights : array_like
        Mixing weights, shape ``batch + (K,)``: non-negative, summing to 1 along the last axis.
    loc : array_like
        Component mean directions (radians). Shape ``batch + (K,)`` for a univariate mixture
        (event shape ``()``), or ``batch + (K, D)`` for ``D`` torsions that are independent
        within a component (event shape ``(D,)``).
    concentration : array_like
        Component concentrations ``κ ≥ 0``, broadcast against ``loc``.
    validate_args : bool, optional
        NumPyro's argument validation (support checks in ``log_prob``).

    Raises
    ------
    ProbkitError
        Shapes that do not follow the rule below; with concrete values, weights that are
        negative, not finite or do not sum to 1 (within ``sqrt(eps)`` of the dtype), and
        concentrations that are negative or not finite.

    Notes
    -----
    *Shape rule.* The number of dimensions of ``loc`` and ``concentration`` broadcast together
    decides the kind: equal to ``weights.ndim`` means univariate, ``weights.ndim + 1`` means a
    vector of ``D`` torsions (the last axis). The component axis is the last axis of
    ``weights`` and the corresponding axis of ``loc``; the batch dimensions of all three
    broadcast to ``batch_shape``.

    Sampling draws the component index from the weights, then the angle(s) from that
    component with :class:`~probkit.circular.VonMises`'s sampler, so draws are reparameterised
    in ``loc`` and ``concentration`` given the component (not in the weights).

    Examples
    --------
    >>> import jax
    >>> from probkit.circular import VonMisesMixture
    >>> d = VonMisesMixture([0.3, 0.7], [-1.0, 1.0], [4.0, 10.0])
    >>> d.sample(jax.random.PRNGKey(0), (5,)).shape
    (5,)
    >>> d.log_prob(0.0).shape
    ()
    """

    arg_constraints: ClassVar[dict] = {
        "weights": constraints.simplex,
        "loc": constraints.real,
        "concentration": constraints.nonnegative,
    }
    reparametrized_params: ClassVar[list[str]] = ["loc", "concentration"]
    pytree_data_fields = ("weights", "loc", "concentration")

    def __init__(self, weights, loc, concentration, *, validate_args=None):
        weights, loc, concentration = _float(weights), _float(loc), _float(concentration)
        dtype = jnp.result_type(weights, loc, concentration)
        weights, loc, concentration = (a.astype(dtype) for a in (weights, loc, concentration))
        batch_shape, event_shape, component_shape = _shapes(
            weights.shape, loc.shape, concentration.shape
        )
        _check_values(weights, loc, concentration)
        self.weights = jnp.broadcast_to(weights, batch_shape + component_shape[:1])
        self.loc = jnp.broadcast_to(loc, batch_shape + component_shape)
        self.concentration = jnp.broadcast_to(concentration, batch_shape + component_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def support(self):
        """``circular`` for one angle; ``independent(circular, 1)`` for a vector of torsions."""
        if self.event_shape:
            return constraints.independent(constraints.circular, 1)
        return constraints.circular

    @property
    def mixture_size(self) -> int:
        """The number of components ``K``."""
        return self.weights.shape[-1]

    def _expanded_value(self, value):
        # Insert the component axis: (..., ) -> (..., 1) or (..., D) -> (..., 1, D).
        value = _float(value)
        return jnp.expand_dims(value, -1 - len(self.event_shape))

    def component_log_probs(self, value):
        """``log w_k + log p_k(value)`` for each component (NumPyro's convention).

        Parameters
        ----------
        value : array_like
            Shape ``sample_shape + batch_shape + event_shape``.

        Returns
        -------
        jax.Array
            Shape ``sample_shape + batch_shape + (K,)``; for torsion vectors ``log p_k`` is the
            sum over the ``D`` torsions of the per-torsion log densities.
        """
        return _component_log_probs(self, _float(value))

    @validate_sample
    def log_prob(self, value):
        """Log density: log-sum-exp over components of :meth:`component_log_probs`."""
        return logsumexp(self.component_log_probs(value), axis=-1)

    def posterior_probs(self, value):
        """Responsibilities ``P(component = k | value)``, shape ``… + (K,)``, summing to 1."""
        return jax.nn.softmax(self.component_log_probs(value), axis=-1)

    def sample_with_intermediates(self, key, sample_shape=()):
        """Draws together with the component index each one came from.

        Returns
        -------
        tuple
            ``(samples, [indices])``: samples of shape ``sample_shape + batch_shape +
            event_shape`` and integer indices of shape ``sample_shape + batch_shape``.
        """
        key_index, key_angle = jax.random.split(key)
        shape = tuple(sample_shape) + self.batch_shape
        indices = _categorical(key_index, self.weights, shape)
        if self.event_shape:
            gather = indices[..., None, None]
            full = shape + self.loc.shape[-2:]
        else:
            gather = indices[..., None]
            full = shape + self.loc.shape[-1:]
        axis = -1 - len(self.event_shape)

        def pick(parameter):
            parameter = jnp.broadcast_to(parameter, full)
            return jnp.take_along_axis(parameter, gather, axis=axis).squeeze(axis)

        loc, concentration = pick(self.loc), pick(self.concentration)
        samples = _sample_jit(key_angle, loc, concentration, shape + self.event_shape)
        return samples, [indices]

    def sample(self, key, sample_shape=()):
        """Draws of shape ``sample_shape + batch_shape + event_shape`` in ``[-π, π)``."""
        return self.sample_with_intermediates(key, sample_shape)[0]

    def _resultant(self):
        # Σ_k w_k A(κ_k) (cos μ_k, sin μ_k): the first trigonometric moment (note §2.1).
        weights = self.weights[..., None] if self.event_shape else self.weights
        length = weights * bessel_ratio(self.concentration)
        axis = -1 - len(self.event_shape)
        cosine = (length * jnp.cos(self.loc)).sum(axis)
        sine = (length * jnp.sin(self.loc)).sum(axis)
        return cosine, sine

    @property
    def mean(self):
        """Mean direction ``atan2(Σ w_k A(κ_k) sin μ_k, Σ w_k A(κ_k) cos μ_k)`` per torsion."""
        cosine, sine = self._resultant()
        return jnp.arctan2(sine, cosine)

    @property
    def variance(self):
        """Circular variance ``1 - |Σ w_k A(κ_k) e^{iμ_k}|`` per torsion."""
        cosine, sine = self._resultant()
        return 1.0 - jnp.hypot(cosine, sine)

    def trigonometric_moment(self, order: int):
        """``E[e^{ipθ}] = Σ_k w_k (I_p(κ_k)/I₀(κ_k)) e^{ipμ_k}`` as a complex array.

        Parameters
        ----------
        order : int
            ``p``, an integer with ``|p| ≤ 16``.

        Returns
        -------
        jax.Array
            Complex, shape ``batch_shape + event_shape`` (real part ``E cos pθ``, imaginary
            part ``E sin pθ``, per torsion).
        """
        order = _check_order(order)
        weights = self.weights[..., None] if self.event_shape else self.weights
        terms = weights * _moment_ratio(self.concentration, abs(order))
        terms = terms * jnp.exp(1j * order * self.loc)
        return terms.sum(-1 - len(self.event_shape))

    def cdf(self, value):
        """``P(Θ ≤ x) = Σ_k w_k F_k(x)`` on ``[-π, π]`` (univariate mixtures only).

        Raises
        ------
        ProbkitError
            For a mixture over torsion vectors, whose joint cdf is not provided.
        """
        if self.event_shape:
            raise ProbkitError(
                "VonMisesMixture.cdf is defined for univariate mixtures (event shape ()); this "
                f"mixture has event shape {self.event_shape}. Take one torsion's marginal, "
                "VonMisesMixture(weights, loc[..., d], concentration[..., d]), instead."
            )
        value = self._expanded_value(value)
        loc = _wrap(self.loc)
        lower = _cumulative_jit(*jnp.broadcast_arrays(-math.pi - loc, self.concentration))
        upper = _cumulative_jit(*jnp.broadcast_arrays(value - loc, self.concentration))
        component = jnp.clip(upper - lower, 0.0, 1.0)
        return jnp.clip((self.weights * component).sum(-1), 0.0, 1.0)


@jax.jit
def _component_log_probs(mixture, value):
    # Compiled as one program: called eagerly on a large grid, its dozen primitives would each
    # be compiled (seconds) on the first call of every shape.
    density = _log_density(mixture._expanded_value(value), mixture.loc, mixture.concentration)
    if mixture.event_shape:
        density = density.sum(-1)
    return jnp.log(mixture.weights) + density


def _categorical(key, weights, shape):
    """Component indices of the given shape by inverting the cumulative weights.

    One flat uniform per index instead of ``jax.random.categorical``'s Gumbel noise over all
    ``K`` components: exact, and several times cheaper to compile (XLA:CPU compiles the
    random-bit generator over rank-1 shapes much faster). A zero weight spans an empty interval
    of the cumulative sum and is never drawn.
    """
    size = math.prod(shape)
    uniform = jax.random.uniform(key, (size,), weights.dtype).reshape(shape)
    cumulative = jnp.cumsum(weights, axis=-1)
    threshold = uniform[..., None] * cumulative[..., -1:]
    # index = #{j < K-1 : cumulative_j <= u·total}
    return jnp.sum(threshold >= cumulative[..., :-1], axis=-1).astype(jnp.int32)


def _shapes(weights_shape, loc_shape, concentration_shape):
    """(batch_shape, event_shape, component_shape) from the argument shapes, or ProbkitError."""
    given = (
        f"weights {tuple(weights_shape)}, loc {tuple(loc_shape)}, concentration "
        f"{tuple(concentration_shape)}"
    )
    if len(weights_shape) == 0:
        raise ProbkitError(
            f"`weights` must have a component axis (shape batch + (K,)); got a scalar ({given})."
        )
    try:
        parameter_shape = jnp.broadcast_shapes(tuple(loc_shape), tuple(concentration_shape))
    except ValueError:
        raise ProbkitError(
            f"`loc` and `concentration` do not broadcast against each other ({given})."
        ) from None
    rank = len(weights_shape)
    if len(parameter_shape) == rank:
        event_shape, components = (), parameter_shape[-1]
    elif len(parameter_shape) == rank + 1:
        event_shape, components = parameter_shape[-1:], parameter_shape[-2]
    else:
        raise ProbkitError(
            "`loc` and `concentration` must have shape batch + (K,) (one angle) or "
            f"batch + (K, D) (D torsions), with weights of shape batch + (K,); got {given}."
        )
    size = weights_shape[-1]
    if components not in (size, 1):
        raise ProbkitError(
            f"`weights` has K = {size} components but `loc`/`concentration` have {components} "
            f"along the component axis ({given}); make the component axes agree."
        )
    loc_batch = parameter_shape[: len(parameter_shape) - 1 - len(event_shape)]
    try:
        batch_shape = jnp.broadcast_shapes(tuple(weights_shape[:-1]), tuple(loc_batch))
    except ValueError:
        raise ProbkitError(
            f"the batch dimensions of `weights` and `loc`/`concentration` do not broadcast "
            f"({given})."
        ) from None
    return tuple(batch_shape), tuple(event_shape), (size, *event_shape)


def _check_values(weights, loc, concentration):
    """ProbkitError for invalid concrete weights, loc or concentration."""
    if not is_concrete(weights, loc, concentration):
        return
    w = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ProbkitError(
            "`weights` must be finite and non-negative; got "
            f"{w[~np.isfinite(w) | (w < 0)][:3]}. Pass probabilities, or map logits with "
            "`jax.nn.softmax(logits)`."
        )
    tolerance = math.sqrt(float(jnp.finfo(weights.dtype).eps))
    error = np.abs(w.sum(-1) - 1.0)
    if np.any(error > tolerance):
        raise ProbkitError(
            f"`weights` must sum to 1 along the last (component) axis; the sums are off by up "
            f"to {error.max():.3g} (tolerance {tolerance:.1g} for {weights.dtype}). Normalise "
            "them (`weights / weights.sum(-1, keepdims=True)`) or use `jax.nn.softmax(logits)`."
        )
    loc_values = np.asarray(loc)
    if not np.all(np.isfinite(loc_values)):
        raise ProbkitError("`loc` holds NaN or infinite values; pass finite angles in radians.")
    kappa = np.asarray(concentration)
    bad = ~np.isfinite(kappa) | (kappa < 0)
    if np.any(bad):
        raise ProbkitError(
            f"`concentration` must be finite and >= 0; got {kappa[bad][:3]}. Pass κ >= 0, or "
            "map an unconstrained parameter with `jax.nn.softplus(raw)`."
        )
