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

import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers

from probkit._errors import ProbkitError
from probkit.inference.mhg.base import acceptance_log_probability
from probkit.inference.mhg.green import MHGKernel
from probkit.inference.mhg.padded import Padded
from probkit.inference.mhg.trace import SingleSiteKernel

__all__ = [
    "TransitionMatrix",
    "invariance_errors",
    "mhg_transition_matrix",
    "prior_conditional_probabilities",
    "single_site_transition_matrix",
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


def prior_conditional_probabilities(
    model: Callable, model_args: tuple = (), model_kwargs: dict | None = None
) -> Callable[[str, dict, int], jax.Array]:
    """The default proposal of :func:`~probkit.inference.mhg.trace.single_site_mh` on a finite site.

    Returns ``probabilities(site, position, cardinality)``: the site's own distribution given
    the other sites' values in ``position``, at the values ``0 .. cardinality - 1`` (NumPyro's
    validation on, so values outside the support get probability 0). JAX-traceable.
    """
    model_kwargs = dict(model_kwargs or {})

    def probabilities(site: str, position: dict, cardinality: int) -> jax.Array:
        with numpyro.validation_enabled(True):
            trace = handlers.trace(handlers.substitute(model, data=position)).get_trace(
                *model_args, **model_kwargs
            )
            return jnp.exp(trace[site]["fn"].log_prob(jnp.arange(cardinality)))

    return probabilities


def single_site_transition_matrix(
    kernel: SingleSiteKernel,
    cardinality: Mapping[str, int],
    proposal_probabilities: Callable[[str, dict, int], jax.Array],
    *,
    rule: str = "metropolis",
    log_ratio_fn: Callable[[dict, int, jax.Array], jax.Array] | None = None,
    mass_tolerance: float = 1e-12,
) -> TransitionMatrix:
    """The exact transition matrix of single-site trace MH on a model with finite latent sites.

    A step picks site ``i`` with probability ``1/n``, draws ``v`` from ``q_i(· | x)`` and
    accepts with ``α`` of the kernel's own log ratio
    (:attr:`~probkit.inference.mhg.trace.SingleSiteKernel.propose`); every state, site and value
    is enumerated.

    Parameters
    ----------
    kernel : SingleSiteKernel
        From :func:`~probkit.inference.mhg.trace.single_site_mh`.
    cardinality : mapping
        ``{site: K}``: site values are the integers ``0 .. K - 1``; every latent site of the
        kernel must be listed.
    proposal_probabilities : callable
        ``(site, position, K) -> Array of shape (K,)``: ``q_i(v | x)`` of the kernel's proposal
        for that site (:func:`prior_conditional_probabilities` for the default proposal);
        JAX-traceable. Each must sum to one.
    rule : {"metropolis", "barker"}
        The kernel's acceptance rule.
    log_ratio_fn : callable, optional
        ``(position, site_index, value) -> log ratio`` replacing the kernel's ``propose``
        (to show that a wrong ratio breaks invariance).
    mass_tolerance : float
        How far from one the proposal probabilities may sum.

    Returns
    -------
    TransitionMatrix
        States are dicts in the order of ``itertools.product`` over the sites.
    """
    if not isinstance(kernel, SingleSiteKernel):
        raise ProbkitError(f"`kernel` must be a SingleSiteKernel; got {type(kernel).__name__}.")
    missing = set(kernel.sites) - set(cardinality)
    if missing:
        raise ProbkitError(f"`cardinality` must list every latent site; missing {sorted(missing)}.")
    sites = kernel.sites
    example = kernel.initial_position(jax.random.key(0))
    dtypes = {site: jnp.result_type(example[site]) for site in sites}
    tuples = list(itertools.product(*(range(cardinality[site]) for site in sites)))
    columns = np.array(tuples, dtype=np.int64).reshape(len(tuples), len(sites)).T
    stacked = {
        site: jnp.asarray(c, dtype=dtypes[site]) for site, c in zip(sites, columns, strict=True)
    }
    states = [dict(zip(sites, t, strict=True)) for t in tuples]
    index = {t: a for a, t in enumerate(tuples)}
    log_target = np.asarray(jax.jit(jax.vmap(lambda p: kernel.init(p).log_density))(stacked))

    if log_ratio_fn is None:

        def log_ratio_fn(position, i, value):
            return kernel.propose(position, i, value)[1]

    @jax.jit
    def evaluate(stacked):
        # One compilation for every site: q_i(v | x) and the log ratio at every state and value.
        out = []
        for i, site in enumerate(sites):
            values = jnp.arange(cardinality[site], dtype=dtypes[site])

            def at_state(position, i=i, site=site, values=values):
                q = proposal_probabilities(site, position, cardinality[site])
                ratios = jax.vmap(lambda value: log_ratio_fn(position, i, value))(values)
                return q, ratios

            out.append(jax.vmap(at_state)(stacked))
        return out

    matrix = np.zeros((len(states), len(states)))
    for i, (site, (q, log_ratio)) in enumerate(zip(sites, evaluate(stacked), strict=True)):
        q = np.asarray(q, dtype=np.float64)
        sums = q.sum(axis=1)
        if np.max(np.abs(sums - 1.0)) > mass_tolerance:
            raise ProbkitError(
                f"the proposal probabilities of site {site!r} sum to {sums.min():.15g} .. "
                f"{sums.max():.15g}, not 1: give q(v | x) over all values 0 .. K - 1."
            )
        alpha = np.exp(np.asarray(acceptance_log_probability(log_ratio, rule), dtype=np.float64))
        for a, state in enumerate(tuples):
            for v in range(cardinality[site]):
                if q[a, v] == 0.0:
                    continue
                b = index[(*state[:i], v, *state[i + 1 :])]
                matrix[a, b] += q[a, v] * alpha[a, v] / len(sites)
                matrix[a, a] += q[a, v] * (1.0 - alpha[a, v]) / len(sites)
    return TransitionMatrix(matrix, states, log_target)
