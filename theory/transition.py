"""Exact transition matrices of Metropolis–Hastings–Green kernels on finite state spaces.

Recipe R2 of the research note (``qbs_smc_mhg.md`` §4): enumerate every move type ``m`` and every
auxiliary value ``u`` a step can draw from a state ``x``, take the kernel's own deterministic
:meth:`~probkit.inference.mhg.green.MHGKernel.propose` for the proposal ``x'`` and the ratio
``ρ``, and add ``j(m | x) g_m(u | x) α(ρ)`` to ``P[x, x']`` and the rejected mass to ``P[x, x]``.
Then ``πP = π`` and detailed balance ``π_x P_xy = π_y P_yx`` must hold to rounding error, with no
Monte Carlo anywhere: a wrong Jacobian, a forgotten move-probability factor or an index choice
counted the wrong way shows up at once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from probkit._errors import ProbkitError
from probkit.inference.mhg.base import acceptance_log_probability
from probkit.inference.mhg.green import MHGKernel
from probkit.inference.mhg.padded import Padded

__all__ = [
    "TransitionMatrix",
    "invariance_errors",
    "mhg_transition_matrix",
    "state_key",
]


class TransitionMatrix(NamedTuple):
    """A kernel's exact transition matrix on an enumerated state space.

    Attributes
    ----------
    matrix : numpy.ndarray, shape (n, n)
        ``P[a, b]``, the probability of moving from ``states[a]`` to ``states[b]``.
    states : list
        The states, in row order.
    log_target : numpy.ndarray, shape (n,)
        The kernel's unnormalised log density at each state.
    """

    matrix: np.ndarray
    states: list
    log_target: np.ndarray

    @property
    def target(self) -> np.ndarray:
        """The normalised target ``π`` on the states."""
        weights = np.exp(self.log_target - self.log_target.max())
        return weights / weights.sum()


def state_key(position: Any) -> Hashable:
    """A hashable key of a position: its leaves' values, padded arrays cut to their size."""
    parts: list = []
    nodes = jax.tree_util.tree_leaves(position, is_leaf=lambda x: isinstance(x, Padded))
    for node in nodes:
        if isinstance(node, Padded):
            array = np.asarray(node.values)[: int(node.size)]
        else:
            array = np.asarray(node)
        parts.append((array.shape, tuple(np.round(array.ravel().astype(np.float64), 12))))
    return tuple(parts)


def mhg_transition_matrix(
    kernel: MHGKernel,
    states: Sequence[Any],
    aux_support: Callable[[str, Any], Sequence[Any]],
    *,
    mass_tolerance: float = 1e-12,
) -> TransitionMatrix:
    """The exact transition matrix of an MHG kernel on a finite state space.

    Parameters
    ----------
    kernel : MHGKernel
        A kernel whose moves draw auxiliary values from finite sets.
    states : sequence of pytree
        Every state the target charges; a proposal outside this list with a positive
        acceptance probability is an error (the enumeration would be incomplete).
    aux_support : callable
        ``aux_support(move_name, x)``: every auxiliary value the move can draw at ``x`` (each a
        pytree as ``sample_aux`` returns it). The probabilities ``j(m | x) g_m(u | x)`` over
        moves and listed values must sum to one; otherwise the enumeration is refused.
    mass_tolerance : float
        How far from one that sum may be.

    Returns
    -------
    TransitionMatrix
    """
    if not isinstance(kernel, MHGKernel):
        raise ProbkitError(f"`kernel` must be an MHGKernel; got {type(kernel).__name__}.")
    states = list(states)
    index = {state_key(s): a for a, s in enumerate(states)}
    if len(index) != len(states):
        raise ProbkitError("`states` lists a state more than once.")
    log_target = np.array([float(kernel.log_density_fn(s)) for s in states])
    # One compiled proposal per move: the move index is static, the auxiliary value traced.
    propose = {
        m: jax.jit(lambda x, aux, m=m: kernel.propose(x, m, aux)[0])
        for m in range(len(kernel.moves))
    }
    log_move = jax.jit(kernel.log_move_probabilities)
    matrix = np.zeros((len(states), len(states)))
    for a, state in enumerate(states):
        log_j = np.asarray(log_move(state), dtype=np.float64)
        total = 0.0
        for m, move in enumerate(kernel.moves):
            if not log_j[m] > -np.inf:
                continue
            for aux in aux_support(move.name, state):
                proposal = propose[m](state, aux)
                probability = float(np.exp(np.float64(proposal.log_forward)))
                if probability == 0.0:
                    continue
                total += probability
                alpha = float(np.exp(acceptance_log_probability(proposal.log_ratio, kernel.rule)))
                if alpha > 0.0:
                    target = index.get(state_key(proposal.position))
                    if target is None:
                        raise ProbkitError(
                            f"move {move.name!r} from state {a} reaches a state not in `states` "
                            "with positive acceptance probability; list every state the target "
                            "charges."
                        )
                    matrix[a, target] += probability * alpha
                matrix[a, a] += probability * (1.0 - alpha)
        if abs(total - 1.0) > mass_tolerance:
            raise ProbkitError(
                f"at state {a} the enumerated moves and auxiliary values carry probability "
                f"{total:.15g}, not 1: `aux_support` misses values a move can draw (or a move's "
                "auxiliary log density does not normalise)."
            )
    return TransitionMatrix(matrix, states, log_target)


def invariance_errors(transition: TransitionMatrix) -> dict[str, float]:
    """How far a transition matrix is from leaving its target invariant.

    Returns
    -------
    dict
        ``stationarity``: ``max |πP − π|``; ``detailed_balance``:
        ``max |π_x P_xy − π_y P_yx|``; ``row_sums``: ``max |Σ_y P_xy − 1|``.
    """
    pi = transition.target
    matrix = transition.matrix
    flux = pi[:, None] * matrix
    return {
        "stationarity": float(np.max(np.abs(pi @ matrix - pi))),
        "detailed_balance": float(np.max(np.abs(flux - flux.T))),
        "row_sums": float(np.max(np.abs(matrix.sum(axis=1) - 1.0))),
    }
