"""Loopy sum-product belief propagation on a :class:`~probkit.inference.bp.model.BinaryMRF`.

Every message is one log-odds number: ``ν_{a→i} = log m_{a→i}(1) − log m_{a→i}(0)``. A sweep
updates all messages in parallel (the flooding schedule), then damps them,
``ν ← (1 − δ) ν_new + δ ν_old``, and stops when the largest undamped change is below the
tolerance or after ``max_iterations`` sweeps. On a tree (or a forest, count factors included)
the fixed point gives the exact marginals and the Bethe log-partition gives the exact ``log Z``.

Pairwise message, with ``η`` the cavity log-odds of the sender (its belief without the
receiver's message)::

    ν_{i→j} = log(σ(−η) + σ(η) e^{J_ij})        (= softplus(η + J) − softplus(η), stably)

Count factors send the messages of :mod:`probkit.inference.bp.count`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_positive_int
from probkit.inference.bp.count import COUNT_METHODS, count_log_expectation, count_messages
from probkit.inference.bp.model import BinaryMRF

__all__ = ["BPResult", "belief_propagation", "bethe_log_partition"]


class BPResult(NamedTuple):
    """The output of :func:`belief_propagation`.

    Attributes
    ----------
    marginals : Array, shape (n,)
        ``P(y_i = 1)`` under the beliefs.
    log_odds : Array, shape (n,)
        The beliefs in log-odds (``±inf`` for a variable a hard constraint determines).
    pair_messages : Array, shape (2E,)
        Final messages on the directed edges (edge ``e`` and its reverse ``e + E``).
    count_messages : tuple of Array
        Final count-factor messages, one ``(B, w)`` array per block of bags.
    iterations : Array, int
        Sweeps run.
    residual : Array
        The largest change of a message in the last sweep (before damping).
    converged : Array, bool
        ``residual ≤ tolerance``.
    log_partition : Array
        The Bethe approximation of ``log Z`` at the final messages (exact on trees).
    """

    marginals: jax.Array
    log_odds: jax.Array
    pair_messages: jax.Array
    count_messages: tuple[jax.Array, ...]
    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    log_partition: jax.Array


def _log_expect_exp(eta, c):
    # log E[e^{c y}] for y ~ Bernoulli(σ(η)) = log(σ(−η) + σ(η) e^c), finite for η = ±inf.
    return jnp.logaddexp(jax.nn.log_sigmoid(-eta), jax.nn.log_sigmoid(eta) + c)


def _incoming(mrf: BinaryMRF, pair_messages, count_msgs):
    n = mrf.num_variables
    pair_sum = jax.ops.segment_sum(pair_messages, mrf.directed.target, num_segments=n)
    count_sum = jnp.zeros(n, mrf.unary.dtype)
    if mrf.count_factors is not None:
        for block, message in zip(mrf.count_factors.blocks, count_msgs, strict=True):
            count_sum = count_sum.at[block.members].add(jnp.where(block.mask, message, 0.0))
    return pair_sum, count_sum


def _sweep(mrf: BinaryMRF, pair_messages, count_msgs, method):
    pair_sum, count_sum = _incoming(mrf, pair_messages, count_msgs)
    belief = mrf.unary + pair_sum + count_sum
    edges = mrf.directed
    cavity = belief[edges.source] - pair_messages[edges.reverse]
    new_pair = _log_expect_exp(cavity, edges.coupling)
    new_count = []
    if mrf.count_factors is not None:
        # Bags are disjoint, so the cavity towards a bag is the field plus pairwise messages
        # (a sum of finite terms even when the bag sends an infinite message).
        to_bags = mrf.unary + pair_sum
        for block in mrf.count_factors.blocks:
            eta = jnp.where(block.mask, to_bags[block.members], 0.0)
            new_count.append(
                count_messages(
                    eta, block.mask, block.log_potential, block.counts, block.strength, method
                )
            )
    return new_pair, tuple(new_count)


def _change(new, old):
    return jnp.where(new == old, 0.0, jnp.abs(new - old))


def _damp(new, old, damping):
    return jnp.where(new == old, new, (1.0 - damping) * new + damping * old)


def bethe_log_partition(mrf: BinaryMRF, pair_messages, count_msgs) -> jax.Array:
    """The Bethe approximation of ``log Z`` at the given messages (exact on trees at a fixed point).

    Written so that no term is infinite when a hard constraint determines a variable:
    ``Σ_i softplus(η_i) + Σ_b log E[φ_b(S)] + Σ_{(i,j)} [log E[e^{J y_i y_j}] − log E[e^{ν_{a→i} y_i}]
    − log E[e^{ν_{a→j} y_j}]]``, where ``η_i`` is the belief of a variable in no bag and the
    cavity towards its bag otherwise, and expectations are under independent Bernoulli laws of
    the cavities towards each factor.
    """
    pair_sum, count_sum = _incoming(mrf, pair_messages, count_msgs)
    belief = mrf.unary + pair_sum + count_sum
    own = mrf.unary + pair_sum  # belief without the bag's message (the belief if in no bag)
    total = jnp.sum(jax.nn.softplus(own))
    if mrf.count_factors is not None:
        for block in mrf.count_factors.blocks:
            eta = jnp.where(block.mask, own[block.members], 0.0)
            total = total + jnp.sum(count_log_expectation(eta, block.mask, block.log_potential))
    edges = mrf.directed
    num_edges = mrf.edges.shape[0]
    if num_edges:
        cavity = belief[edges.source] - pair_messages[edges.reverse]
        # Directed edge e carries i → j and e + E carries j → i, for edge e = (i, j).
        eta_i, eta_j = cavity[:num_edges], cavity[num_edges:]
        to_i, to_j = pair_messages[num_edges:], pair_messages[:num_edges]
        log_i, log_j = jax.nn.log_sigmoid(eta_i), jax.nn.log_sigmoid(eta_j)
        not_both = jnp.logaddexp(jax.nn.log_sigmoid(-eta_i), log_i + jax.nn.log_sigmoid(-eta_j))
        pair_term = jnp.logaddexp(not_both, log_i + log_j + mrf.coupling)
        total = total + jnp.sum(
            pair_term - _log_expect_exp(eta_i, to_i) - _log_expect_exp(eta_j, to_j)
        )
    return total


def _initial_messages(mrf: BinaryMRF):
    pair = jnp.zeros(2 * mrf.edges.shape[0], mrf.unary.dtype)
    count = ()
    if mrf.count_factors is not None:
        count = tuple(jnp.zeros(b.mask.shape, mrf.unary.dtype) for b in mrf.count_factors.blocks)
    return pair, count


def _run(mrf: BinaryMRF, damping, tolerance, method: str, max_iterations: int) -> BPResult:
    dtype = mrf.unary.dtype
    damping = jnp.asarray(damping, dtype)
    tolerance = jnp.asarray(tolerance, dtype)

    def not_done(state):
        _, _, iteration, residual = state
        return (iteration < max_iterations) & (residual > tolerance)

    def body(state):
        pair, count, iteration, _ = state
        new_pair, new_count = _sweep(mrf, pair, count, method)
        residual = jnp.max(_change(new_pair, pair), initial=0.0)
        for new, old in zip(new_count, count, strict=True):
            residual = jnp.maximum(residual, jnp.max(_change(new, old), initial=0.0))
        pair = _damp(new_pair, pair, damping)
        count = tuple(_damp(new, old, damping) for new, old in zip(new_count, count, strict=True))
        return pair, count, iteration + 1, residual

    pair, count = _initial_messages(mrf)
    state = (pair, count, jnp.asarray(0, jnp.int32), jnp.asarray(jnp.inf, dtype))
    pair, count, iterations, residual = lax.while_loop(not_done, body, state)
    pair_sum, count_sum = _incoming(mrf, pair, count)
    log_odds = mrf.unary + pair_sum + count_sum
    return BPResult(
        marginals=jax.nn.sigmoid(log_odds),
        log_odds=log_odds,
        pair_messages=pair,
        count_messages=count,
        iterations=iterations,
        residual=residual,
        converged=residual <= tolerance,
        log_partition=bethe_log_partition(mrf, pair, count),
    )


_run_jit = jax.jit(_run, static_argnames=("method", "max_iterations"))


def belief_propagation(
    mrf: BinaryMRF,
    *,
    method: str = "auto",
    damping: float = 0.5,
    max_iterations: int = 200,
    tolerance: float | None = None,
) -> BPResult:
    """Run loopy sum-product BP to convergence (or ``max_iterations`` sweeps).

    Parameters
    ----------
    mrf : BinaryMRF
        The field (:func:`~probkit.inference.bp.binary_mrf`).
    method : {"auto", "exact", "tree", "gaussian"}, default "auto"
        How count factors compute their messages (:mod:`probkit.inference.bp.count`): ``"auto"``
        is exact, by leave-one-out deconvolution up to padded width 256 and by the FFT tree above.
    damping : float in [0, 1), default 0.5
        Weight of the old message in each update (0.5 as in PGMax and the LLP-BP release).
    max_iterations : int, default 200
        Sweeps at most.
    tolerance : float, optional
        Stop when no message moves by more than this (log-odds units). Default ``1e-5`` in
        float32 and ``1e-10`` in float64.

    Returns
    -------
    BPResult
        Marginals, messages, iterations, residual, convergence flag and the Bethe ``log Z``.
        Check ``converged``: loopy BP need not converge, and a non-converged result is returned,
        not hidden.
    """
    method = check_choice("method", method, COUNT_METHODS)
    max_iterations = check_positive_int("max_iterations", max_iterations)
    if not 0.0 <= float(damping) < 1.0:
        raise ProbkitError(f"damping must be in [0, 1), got {damping}.")
    if method == "gaussian" and mrf.count_factors is not None and not mrf.count_factors.quadratic:
        raise ProbkitError(
            'method="gaussian" needs quadratic or hard count factors (strength and counts); '
            'these were given as free tables: use method="exact" or "tree".'
        )
    if tolerance is None:
        tolerance = 1e-10 if mrf.unary.dtype == jnp.float64 else 1e-5
    if not float(tolerance) >= 0.0:
        raise ProbkitError(f"tolerance must be ≥ 0, got {tolerance}.")
    return _run_jit(mrf, damping, tolerance, method=method, max_iterations=max_iterations)
