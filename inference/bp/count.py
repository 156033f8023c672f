r"""Messages of count (cardinality) factors without a ``2^m`` table.

A count factor ``φ(S)``, ``S = Σ_{j ∈ b} y_j``, sends variable ``i`` the log-odds message

.. math::

    ν_{b→i} = \\log \\sum_s L_{-i}(s) φ(s + 1) - \\log \\sum_s L_{-i}(s) φ(s),

where ``L_{-i}`` is the Poisson-binomial law of the other members' sum under their cavity
probabilities ``p_j = σ(η_j)``. Three rules compute it for every member of every bag at once:

``"exact"``
    The full law ``P`` of the bag by the ``O(m²)`` dynamic programme, then every leave-one-out
    law by deconvolution, run forwards when ``p_i < 1/2`` and backwards otherwise so that no step
    amplifies rounding error (``O(m²)`` per bag, ``O(m)`` memory per member: only the two sums
    are kept).
``"tree"``
    Tarlow, Swersky, Zemel, Adams & Frey (UAI 2012): partial-sum laws up a binary tree of the
    members and "outside" vectors down it, every convolution by FFT (``O(m log² m)`` per bag).
``"gaussian"``
    The central-limit approximation of ``L_{-i}`` (mean ``Σ_{j≠i} p_j``, variance
    ``Σ_{j≠i} p_j(1 − p_j)``), in closed form for the quadratic potential
    ``−λ(S − k)²`` and its hard limit. ``O(m)`` per bag, approximate.

Both exact rules are conditioned by **exponential tilting**: the ``p_j`` are replaced by
``σ(η_j + θ)`` with ``θ`` chosen to put the law's mass where ``φ`` (times the law) has it, and
``θ`` is added back; the message is unchanged in exact arithmetic, but the entries the message
needs are then in the bulk of the law instead of its under-flowing tail.

All functions work on one :class:`~probkit.inference.bp.model.CountBlock` worth of arrays:
cavities ``eta`` of shape ``(B, w)``, a member ``mask`` and ``log_potential`` of shape
``(B, w + 1)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "COUNT_METHODS",
    "count_log_expectation",
    "count_messages",
    "poisson_binomial_pmf",
]

COUNT_METHODS = ("auto", "exact", "tree", "gaussian")

TREE_ABOVE_WIDTH = 256
"""``"auto"`` uses the leave-one-out rule up to this padded bag width, the FFT tree above it."""

_NEWTON_STEPS = 30
_MAX_NEWTON_STEP = 5.0


def _masked_probabilities(eta, mask, theta=0.0):
    logits = eta + jnp.asarray(theta, eta.dtype)[..., None]
    p = jnp.where(mask, jax.nn.sigmoid(logits), 0.0)
    q = jnp.where(mask, jax.nn.sigmoid(-logits), 1.0)
    return p, q


def tilt(eta: jax.Array, mask: jax.Array, log_potential: jax.Array) -> jax.Array:
    """The tilt ``θ`` per bag: ``Σ_j σ(η_j + θ)`` equals the count where ``φ`` times the law peaks.

    The peak is found on the Gaussian approximation of the untilted law (the argmax over ``S`` of
    ``log φ(S) − (S − μ)² / 2v``) and pulled half a count inside ``[0, m]`` so that ``θ`` is
    finite. Only conditioning depends on ``θ``, never the messages.
    """
    p, q = _masked_probabilities(eta, mask)
    size = jnp.sum(mask, axis=-1).astype(eta.dtype)
    mean = jnp.sum(p, axis=-1)
    var = jnp.sum(p * q, axis=-1) + 0.25
    s = jnp.arange(log_potential.shape[-1], dtype=eta.dtype)
    score = log_potential - (s - mean[:, None]) ** 2 / (2.0 * var[:, None])
    target = jnp.clip(jnp.argmax(score, axis=-1).astype(eta.dtype), 0.5, size - 0.5)
    masked_eta = jnp.where(mask, eta, 0.0)
    start = jnp.log(target / (size - target)) - jnp.sum(masked_eta, axis=-1) / size
    # A bag with no members (padding, see `shard_mrf`) has nothing to tilt: θ = 0.
    empty = size == 0
    target, start = jnp.where(empty, 0.0, target), jnp.where(empty, 0.0, start)

    def newton(theta, _):
        p, q = _masked_probabilities(eta, mask, theta)
        excess = jnp.sum(p, axis=-1) - target
        slope = jnp.maximum(jnp.sum(p * q, axis=-1), jnp.finfo(eta.dtype).tiny)
        step = jnp.clip(excess / slope, -_MAX_NEWTON_STEP, _MAX_NEWTON_STEP)
        return theta - step, None

    theta, _ = lax.scan(newton, start, None, length=_NEWTON_STEPS)
    return lax.stop_gradient(theta)


def _normalised_potential(log_potential, theta):
    # φ_θ(s) = φ(s) e^{−θ s}, scaled so that its largest entry is 1; returns it and the log scale.
    s = jnp.arange(log_potential.shape[-1], dtype=log_potential.dtype)
    tilted = log_potential - theta[:, None] * s
    scale = jnp.max(tilted, axis=-1)
    return jnp.exp(tilted - scale[:, None]), scale


def poisson_binomial_pmf(p: jax.Array, q: jax.Array) -> jax.Array:
    """Law of ``Σ_j y_j`` for independent ``y_j ~ Bernoulli(p_j)``, by the ``O(m²)`` programme.

    Parameters
    ----------
    p, q : Array, shape (B, m)
        Success and failure probabilities (``q = 1 − p``, passed separately for accuracy; a
        padding slot has ``p = 0, q = 1``).

    Returns
    -------
    Array, shape (B, m + 1)
    """
    batch, width = p.shape
    start = jnp.zeros((batch, width + 1), p.dtype).at[:, 0].set(1.0)

    def add_member(pmf, pq):
        p_j, q_j = pq
        shifted = jnp.pad(pmf[:, :-1], ((0, 0), (1, 0)))
        return pmf * q_j[:, None] + shifted * p_j[:, None], None

    pmf, _ = lax.scan(add_member, start, (p.T, q.T))
    return pmf


def _leave_one_out_messages(p, q, pmf, potential):
    # Deconvolve member i out of the bag's law, forwards (divide by q_i) when p_i < 1/2 and
    # backwards (divide by p_i) otherwise, so that each step multiplies the carried error by
    # min(p, q) / max(p, q) ≤ 1. Only the two sums the message needs are accumulated.
    width = p.shape[-1]
    forward = p < 0.5
    divisor = jnp.where(forward, q, p)
    carried = jnp.where(forward, p, q)

    def step(state, t):
        previous, numerator, denominator = state
        index = jnp.where(forward, t, width - t)
        count = jnp.where(forward, t, width - 1 - t)  # the value of the others' sum
        law = jnp.take_along_axis(pmf, index, axis=-1)
        current = (law - carried * previous) / divisor
        numerator = numerator + current * jnp.take_along_axis(potential, count + 1, axis=-1)
        denominator = denominator + current * jnp.take_along_axis(potential, count, axis=-1)
        return (current, numerator, denominator), None

    zeros = jnp.zeros_like(p)
    (_, numerator, denominator), _ = lax.scan(
        step, (zeros, zeros, zeros), jnp.arange(width, dtype=jnp.int32)
    )
    return numerator, denominator


def _fft_convolve(a, b, length):
    size = 1 << max(1, (a.shape[-1] + b.shape[-1] - 2).bit_length())
    out = jnp.fft.irfft(jnp.fft.rfft(a, size) * jnp.fft.rfft(b, size), size)
    return out[..., :length]


def _fft_correlate(outside, pmf, length):
    # c(x) = Σ_y outside(x + y) pmf(y), x = 0..length−1 (no wrap-around: size ≥ len(outside)).
    size = 1 << max(1, (outside.shape[-1]).bit_length())
    out = jnp.fft.irfft(jnp.fft.rfft(outside, size) * jnp.conj(jnp.fft.rfft(pmf, size)), size)
    return out[..., :length]


def _tree_levels(p, q):
    # Partial-sum laws of the leaves, pairs, quadruples, ... (the width is a power of two).
    levels = [jnp.stack([q, p], axis=-1)]
    while levels[-1].shape[1] > 1:
        nodes = levels[-1]
        left, right = nodes[:, 0::2], nodes[:, 1::2]
        length = 2 * (nodes.shape[-1] - 1) + 1
        merged = jnp.maximum(_fft_convolve(left, right, length), 0.0)
        levels.append(merged)
    return levels


def _tree_messages(p, q, potential):
    levels = _tree_levels(p, q)
    outside = potential[:, None, :]  # the root's outside vector is the potential itself
    for nodes in reversed(levels[:-1]):
        left, right = nodes[:, 0::2], nodes[:, 1::2]
        length = nodes.shape[-1]
        outside_left = _fft_correlate(outside, right, length)
        outside_right = _fft_correlate(outside, left, length)
        outside = jnp.stack([outside_left, outside_right], axis=2).reshape(
            nodes.shape[0], nodes.shape[1], length
        )
        outside = jnp.maximum(outside, 0.0)
        outside = outside / jnp.maximum(
            jnp.max(outside, axis=-1, keepdims=True), jnp.finfo(p.dtype).tiny
        )
    return outside[..., 1], outside[..., 0]


def _ratio_to_log_odds(numerator, denominator, theta):
    numerator = jnp.maximum(numerator, 0.0)
    denominator = jnp.maximum(denominator, 0.0)
    both = (numerator > 0) & (denominator > 0)
    safe = jnp.log(jnp.where(both, numerator, 1.0)) - jnp.log(jnp.where(both, denominator, 1.0))
    degenerate = jnp.where(
        numerator > 0, jnp.inf, jnp.where(denominator > 0, -jnp.inf, 0.0)
    ).astype(numerator.dtype)
    return jnp.where(both, theta[:, None] + safe, degenerate)


def _gaussian_messages(eta, mask, counts, strength):
    p, q = _masked_probabilities(eta, mask)
    size = jnp.sum(mask, axis=-1).astype(eta.dtype)
    mean_others = jnp.sum(p, axis=-1, keepdims=True) - p
    var_others = jnp.maximum(
        jnp.sum(p * q, axis=-1, keepdims=True) - p * q, jnp.finfo(eta.dtype).tiny
    )
    k, lam = counts[:, None], strength[:, None]
    hard = jnp.isinf(lam)
    soft_lam = jnp.where(hard, 1.0, lam)
    soft = -soft_lam * (2.0 * (mean_others - k) + 1.0) / (1.0 + 2.0 * soft_lam * var_others)
    hard_message = (2.0 * (k - mean_others) - 1.0) / (2.0 * var_others)
    message = jnp.where(hard, hard_message, soft)
    # A hard count of 0 or of the whole bag determines every member exactly.
    message = jnp.where(hard & (k <= 0), -jnp.inf, message)
    return jnp.where(hard & (k >= size[:, None]), jnp.inf, message)


def resolve_method(method: str, width: int) -> str:
    """The rule ``"auto"`` stands for at a padded bag width."""
    if method != "auto":
        return method
    return "exact" if width <= TREE_ABOVE_WIDTH else "tree"


@functools.partial(jax.jit, static_argnames="method")
def count_messages(
    eta: jax.Array,
    mask: jax.Array,
    log_potential: jax.Array,
    counts: jax.Array,
    strength: jax.Array,
    method: str = "auto",
) -> jax.Array:
    """Log-odds messages from each count factor of a block to each of its members.

    Parameters
    ----------
    eta : Array, shape (B, w)
        Cavity log-odds of the members (the variable-to-factor messages).
    mask : Array, shape (B, w), bool
        Member slots.
    log_potential : Array, shape (B, w + 1)
        ``log φ_b(S)``.
    counts, strength : Array, shape (B,)
        ``k_b`` and ``λ_b`` of a quadratic potential (only the Gaussian rule reads them).
    method : {"auto", "exact", "tree", "gaussian"}
        See the module documentation.

    Returns
    -------
    Array, shape (B, w)
        ``ν_{b→i}``; ``±inf`` where a hard constraint determines the member; 0 on padding.
    """
    method = resolve_method(method, eta.shape[-1])
    if method == "gaussian":
        message = _gaussian_messages(eta, mask, counts, strength)
    else:
        theta = tilt(eta, mask, log_potential)
        p, q = _masked_probabilities(eta, mask, theta)
        potential, _ = _normalised_potential(log_potential, theta)
        if method == "exact":
            pmf = poisson_binomial_pmf(p, q)
            numerator, denominator = _leave_one_out_messages(p, q, pmf, potential)
        else:
            numerator, denominator = _tree_messages(p, q, potential)
        message = _ratio_to_log_odds(numerator, denominator, theta)
        # Where φ forbids every count with member i on (or off) the message is ±inf exactly;
        # rounding (FFT noise above all) must not turn such a structural zero into a tiny number.
        size = jnp.sum(mask, axis=-1, keepdims=True)
        s = jnp.arange(log_potential.shape[-1])
        allowed = log_potential > -jnp.inf
        on_possible = jnp.any(allowed & (s >= 1) & (s <= size), axis=-1, keepdims=True)
        off_possible = jnp.any(allowed & (s <= size - 1), axis=-1, keepdims=True)
        message = jnp.where(on_possible, message, -jnp.inf)
        message = jnp.where(off_possible, message, jnp.inf)
    return jnp.where(mask, message, 0.0)


def count_log_expectation(eta: jax.Array, mask: jax.Array, log_potential: jax.Array) -> jax.Array:
    """``log E[φ(S)]`` per bag, for independent members ``y_j ~ Bernoulli(σ(η_j))``.

    This is the count factor's term of the Bethe free energy with the members' cavity terms
    taken out. It is computed exactly on the tilted law (by the programme up to width 256, by
    the FFT tree above), as ``log Σ_s φ_θ(s) P_θ(s) + Σ_j [softplus(η_j + θ) − softplus(η_j)]``.
    """
    theta = tilt(eta, mask, log_potential)
    p, q = _masked_probabilities(eta, mask, theta)
    if eta.shape[-1] <= TREE_ABOVE_WIDTH:
        pmf = poisson_binomial_pmf(p, q)
    else:
        pmf = _tree_levels(p, q)[-1][:, 0, :]
    potential, scale = _normalised_potential(log_potential, theta)
    shift = jax.nn.softplus(eta + theta[:, None]) - jax.nn.softplus(eta)
    shift = jnp.sum(jnp.where(mask, shift, 0.0), axis=-1)
    return jnp.log(jnp.sum(potential * pmf, axis=-1)) + scale + shift
