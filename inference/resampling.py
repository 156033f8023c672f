"""Unbiased ancestor samplers: multinomial, stratified, systematic and residual resampling.

A resampler turns a vector of log weights into ``num_samples`` ancestor indices whose
offspring counts ``N_i = #{j : a_j = i}`` are unbiased, ``E[N_i] = num_samples * w_i / Z``
(Ścibior et al. 2018, research note ``qbs_smc_mhg.md`` §1.4): this is all that resampling needs to
keep the represented measure. Each resampler is written as a *deterministic* map from a vector
of independent Uniform[0, 1) draws to ancestors, so that

* ``probkit.inference.population.resample`` draws the uniforms and applies the map;
* common random numbers (coupled resampling) reuse the same uniforms across populations;
* the exact oracle of :mod:`probkit.theory.exact` integrates the map over the uniforms piece by
  piece, using the :attr:`Resampler.breakpoints` at which the map can jump.

Numerics (all methods): the inverse CDF is evaluated on weights relative to the largest one, in
the dtype of the log weights. A zero weight adds exactly nothing to the cumulative sum, so the
interval it owns is empty and a zero-weight particle is never selected, in float32 as in
float64; a query that rounds up to the total mass is mapped to the last particle of positive
weight. Weights smaller than the largest by a factor below the dtype's range (about 1e-38 in
float32) underflow to zero and are not selected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probkit._validate import check_choice

__all__ = [
    "RESAMPLERS",
    "Resampler",
    "get_resampler",
    "multinomial",
    "residual",
    "stratified",
    "systematic",
]


class Resampler(NamedTuple):
    """An unbiased resampling scheme written as a deterministic map of uniform draws.

    Attributes
    ----------
    name : str
        The scheme's name, as accepted by ``resample(..., method=name)``.
    num_uniforms : Callable[[int], int]
        ``num_uniforms(num_samples)``: how many Uniform[0, 1) draws one call consumes.
    ancestors : Callable[[Array, Array, int], Array]
        ``ancestors(uniforms, log_weights, num_samples)``: integer ancestor indices of shape
        ``(num_samples,)``. Pure, jit- and vmap-compatible.
    breakpoints : Callable[[numpy.ndarray, int], list[numpy.ndarray]]
        ``breakpoints(log_weights, num_samples)``: for each uniform, the points of (0, 1) at which
        ``ancestors`` can change when that uniform alone moves. The map is constant on every box
        of the grid they define. Used by the exact oracle; computed in NumPy float64.
    """

    name: str
    num_uniforms: Callable[[int], int]
    ancestors: Callable[[jax.Array, jax.Array, int], jax.Array]
    breakpoints: Callable[[np.ndarray, int], list[np.ndarray]]


def _relative_weights(log_weights: jax.Array) -> jax.Array:
    # Weights divided by the largest one: the largest is exactly 1, so the cumulative sum
    # neither overflows nor underflows for any finite log weights.
    return jnp.exp(log_weights - jnp.max(log_weights))


def _inverse_cdf(weights: jax.Array, fractions: jax.Array) -> jax.Array:
    """Index i with cdf[i-1] <= fraction * total < cdf[i], never one of zero weight."""
    cdf = jnp.cumsum(weights)
    total = cdf[-1]
    index = jnp.searchsorted(cdf, fractions * total, side="right")
    # A query equal to the total (rounding) would fall past the end: give it to the last
    # particle of positive weight, which owns the top of the interval.
    num = weights.shape[0]
    last_positive = num - 1 - jnp.argmax(weights[::-1] > 0)
    return jnp.minimum(index, last_positive).astype(jnp.int32)


def _cdf_fractions(log_weights: np.ndarray) -> np.ndarray:
    """The interior cumulative fractions cdf[k] / total, k < n - 1, as the ancestor maps see them."""
    weights = np.exp(log_weights - np.max(log_weights))
    cdf = np.cumsum(weights)
    return cdf[:-1] / cdf[-1]


def _inside_unit_interval(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).ravel()
    return np.unique(points[(points > 0) & (points < 1)])


# --- multinomial -------------------------------------------------------------------------------


def _multinomial_ancestors(uniforms, log_weights, num_samples):
    del num_samples  # one independent uniform per ancestor
    return _inverse_cdf(_relative_weights(log_weights), uniforms)


def _multinomial_breakpoints(log_weights, num_samples):
    fractions = _inside_unit_interval(_cdf_fractions(log_weights))
    return [fractions for _ in range(num_samples)]


multinomial = Resampler(
    name="multinomial",
    num_uniforms=lambda num_samples: num_samples,
    ancestors=_multinomial_ancestors,
    breakpoints=_multinomial_breakpoints,
)
"""Multinomial resampling: ancestors drawn independently with probabilities ``w_i / Z``."""


# --- stratified --------------------------------------------------------------------------------


def _stratified_ancestors(uniforms, log_weights, num_samples):
    strata = jnp.arange(num_samples, dtype=uniforms.dtype)
    return _inverse_cdf(_relative_weights(log_weights), (strata + uniforms) / num_samples)


def _stratified_breakpoints(log_weights, num_samples):
    fractions = _cdf_fractions(log_weights)
    # Ancestor j queries (j + u_j) / m; it changes where that query crosses a cdf fraction.
    return [_inside_unit_interval(fractions * num_samples - j) for j in range(num_samples)]


stratified = Resampler(
    name="stratified",
    num_uniforms=lambda num_samples: num_samples,
    ancestors=_stratified_ancestors,
    breakpoints=_stratified_breakpoints,
)
"""Stratified resampling: one independent uniform in each stratum ``[j/m, (j+1)/m)``."""


# --- systematic --------------------------------------------------------------------------------


def _systematic_ancestors(uniforms, log_weights, num_samples):
    strata = jnp.arange(num_samples, dtype=uniforms.dtype)
    return _inverse_cdf(_relative_weights(log_weights), (strata + uniforms[0]) / num_samples)


def _systematic_breakpoints(log_weights, num_samples):
    fractions = _cdf_fractions(log_weights)
    shifts = fractions[None, :] * num_samples - np.arange(num_samples)[:, None]
    return [_inside_unit_interval(shifts)]


systematic = Resampler(
    name="systematic",
    num_uniforms=lambda num_samples: 1,
    ancestors=_systematic_ancestors,
    breakpoints=_systematic_breakpoints,
)
"""Systematic resampling: one uniform shared by all strata, ``(j + u) / m``."""


# --- residual ----------------------------------------------------------------------------------


def _residual_split(weights, num_samples):
    expected = num_samples * (weights / jnp.sum(weights))
    copies = jnp.floor(expected)
    return copies, expected - copies


def _residual_ancestors(uniforms, log_weights, num_samples):
    weights = _relative_weights(log_weights)
    copies, remainders = _residual_split(weights, num_samples)
    copies_cdf = jnp.cumsum(copies)
    slots = jnp.arange(num_samples, dtype=copies.dtype)
    # Slot s < sum(copies) holds a deterministic copy; the remaining slots draw independently
    # from the remainders, each with its own uniform.
    deterministic = jnp.searchsorted(copies_cdf, slots, side="right").astype(jnp.int32)
    deterministic = jnp.minimum(deterministic, weights.shape[0] - 1)
    drawn = _inverse_cdf(remainders, uniforms)
    return jnp.where(slots < copies_cdf[-1], deterministic, drawn)


def _residual_breakpoints(log_weights, num_samples):
    weights = np.exp(log_weights - np.max(log_weights))
    expected = num_samples * (weights / np.sum(weights))
    copies = np.floor(expected)
    remainders = expected - copies
    num_copies = int(copies.sum())
    if remainders.sum() > 0:
        cdf = np.cumsum(remainders)
        fractions = _inside_unit_interval(cdf[:-1] / cdf[-1])
    else:
        fractions = np.empty(0)
    return [fractions if slot >= num_copies else np.empty(0) for slot in range(num_samples)]


residual = Resampler(
    name="residual",
    num_uniforms=lambda num_samples: num_samples,
    ancestors=_residual_ancestors,
    breakpoints=_residual_breakpoints,
)
"""Residual resampling: ``floor(m w_i / Z)`` copies of each particle, the rest multinomial."""


RESAMPLERS: dict[str, Resampler] = {
    r.name: r for r in (multinomial, stratified, systematic, residual)
}
"""The shipped resamplers by name."""


def get_resampler(method: str | Resampler) -> Resampler:
    """Return the :class:`Resampler` for ``method`` (a name in :data:`RESAMPLERS`, or a resampler).

    Raises
    ------
    ProbkitError
        If ``method`` is neither a known name nor a :class:`Resampler`.
    """
    if isinstance(method, Resampler):
        return method
    return RESAMPLERS[check_choice("method", method, tuple(RESAMPLERS))]
