"""Exact oracles: evaluate a randomised transformation by enumerating its randomness.

The criterion of Ścibior et al. (POPL 2018) is that a transformation preserves the measure a
population represents, in expectation over the transformation's own randomness. For a
transformation written as a deterministic map of independent Uniform[0, 1) draws that is
piecewise constant on a grid of boxes (every resampler of :mod:`probkit.inference.resampling`,
:func:`~probkit.inference.population.collapse`), that expectation is a finite sum: one term per
box, weighted by the box's volume, with the map evaluated at the box's midpoint. This module
computes that sum in float64, so "preserves the measure" is checked to rounding error rather
than to Monte Carlo error (research note ``qbs_smc_mhg.md`` §4, recipe R1).

Populations here have *labelled* particles: particle ``i`` is the integer ``i``, so the measure
a population represents is a vector of masses over the labels ``0..n-1``. For multinomial
resampling of ``n`` particles the grid has (at most) ``n**n`` boxes, one per ancestor tuple.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit.inference.population import (
    Population,
    collapse_from_uniforms,
    resample_from_uniforms,
)
from probkit.inference.resampling import Resampler, get_resampler, multinomial
from probkit.inference.smc.runner import Stage
from probkit.inference.smc.state import SMCState
from probkit.inference.smc.transformations import (
    Propose,
    ResampleIf,
    Reweight,
    Temper,
    should_resample,
)

__all__ = [
    "Enumeration",
    "MeasureComparison",
    "SMCEnumeration",
    "collapse_enumeration",
    "compare_measures",
    "enumerate_transformation",
    "labelled_population",
    "offspring_count_moments",
    "resampling_enumeration",
    "smc_enumeration",
]

# Relative distance from a box's faces at which the oracle re-evaluates the map to confirm that it
# is constant on the box (a breakpoint missed by a resampler's `breakpoints` would show there).
_FACE_OFFSET = 1e-6


@dataclasses.dataclass(frozen=True)
class Enumeration:
    """The exact distribution of a transformation's output over its randomness.

    Attributes
    ----------
    probabilities : numpy.ndarray, shape (P,)
        The probability of each box of uniforms (their volumes; they sum to 1).
    labels : numpy.ndarray, shape (P, m)
        The output particles' labels in each box (which input particle each one is).
    log_weights : numpy.ndarray, shape (P, m)
        The output log weights in each box.
    num_labels : int
        The number of input particles.
    """

    probabilities: np.ndarray
    labels: np.ndarray
    log_weights: np.ndarray
    num_labels: int

    @property
    def num_pieces(self) -> int:
        """The number of boxes the uniforms were split into."""
        return int(self.probabilities.shape[0])

    def expected_measure(self) -> np.ndarray:
        """``E[Σ_j w'_j δ_{label_j}]``: the mass the output puts on each input label, in expectation."""
        masses = np.zeros(self.num_labels)
        weights = self.probabilities[:, None] * np.exp(self.log_weights)
        np.add.at(masses, self.labels.ravel(), weights.ravel())
        return masses

    def offspring_counts(self) -> np.ndarray:
        """Shape (P, n): how many output particles carry each input label, box by box."""
        counts = np.zeros((self.num_pieces, self.num_labels))
        rows = np.repeat(np.arange(self.num_pieces), self.labels.shape[1])
        np.add.at(counts, (rows, self.labels.ravel()), 1.0)
        return counts

    def support_labels(self) -> np.ndarray:
        """The labels that appear in some box of positive probability with positive weight."""
        live = (self.probabilities[:, None] > 0) & np.isfinite(self.log_weights)
        return np.unique(self.labels[live])


@dataclasses.dataclass(frozen=True)
class MeasureComparison:
    """The measure a population represents before and (in expectation) after a transformation.

    Attributes
    ----------
    before, after : numpy.ndarray, shape (n,)
        Masses on the input labels.
    num_pieces : int
        How many boxes the oracle enumerated.
    """

    before: np.ndarray
    after: np.ndarray
    num_pieces: int

    @property
    def max_relative_error(self) -> float:
        """``max_i |after_i - before_i| / Z``, with ``Z`` the total mass before."""
        return float(np.max(np.abs(self.after - self.before)) / np.sum(self.before))


def labelled_population(log_weights: Sequence[float] | np.ndarray) -> Population:
    """A float64 population whose particle ``i`` is the integer label ``i``.

    Must be called with float64 enabled (``jax.enable_x64``): the oracle works to 1e-12.
    """
    log_weights = jnp.asarray(np.asarray(log_weights, dtype=np.float64))
    if log_weights.dtype != jnp.float64:
        raise ProbkitError(
            "the exact oracle needs float64: run it inside `with jax.enable_x64(True):` "
            "(probkit check and the test suite do)."
        )
    return Population(jnp.arange(log_weights.shape[0]), log_weights)


def _boxes(breakpoints: Sequence[np.ndarray], max_pieces: int):
    edges = [
        np.concatenate([[0.0], np.sort(np.asarray(b, dtype=np.float64)), [1.0]])
        for b in breakpoints
    ]
    num_pieces = int(np.prod([len(e) - 1 for e in edges], dtype=np.float64))
    if num_pieces > max_pieces:
        raise ProbkitError(
            f"enumerating this transformation needs {num_pieces} boxes, more than "
            f"`max_pieces`={max_pieces}; use fewer particles (n <= 5 for multinomial)."
        )
    intervals = [list(itertools.pairwise(e)) for e in edges]
    lows = np.array([[lo for lo, _ in box] for box in itertools.product(*intervals)])
    highs = np.array([[hi for _, hi in box] for box in itertools.product(*intervals)])
    lows = lows.reshape(num_pieces, len(breakpoints))
    highs = highs.reshape(num_pieces, len(breakpoints))
    return lows, highs


@functools.lru_cache(maxsize=64)
def _batched(transformation: Callable) -> Callable:
    # One compiled function per transformation, reused across weight vectors of equal shape.
    return jax.jit(jax.vmap(transformation, in_axes=(0, None)))


def _padded_rows(points: np.ndarray) -> np.ndarray:
    # Pad the batch to a power of two so that enumerations of similar size share a compilation.
    rows = 1 << max(0, int(points.shape[0] - 1).bit_length())
    padding = np.full((rows - points.shape[0], points.shape[1]), 0.5)
    return np.concatenate([points, padding])


def enumerate_transformation(
    transformation: Callable[[jax.Array, Population], Population],
    population: Population,
    breakpoints: Sequence[np.ndarray],
    *,
    verify: bool = True,
    max_pieces: int = 200_000,
) -> Enumeration:
    """Enumerate a transformation of uniforms that is constant between given breakpoints.

    Parameters
    ----------
    transformation : callable
        ``transformation(uniforms, population) -> Population``, pure; ``uniforms`` has one
        entry per element of ``breakpoints``. It is vmapped over the boxes and jit-compiled once
        per function object and shape, so pass the same function object for repeated calls.
    population : Population
        The labelled input population (see :func:`labelled_population`).
    breakpoints : sequence of numpy.ndarray
        For each uniform, the points of (0, 1) at which the transformation may change.
    verify : bool
        Also evaluate the transformation near both faces of every box, along every uniform, and
        raise if it differs from its value at the midpoint, i.e. if ``breakpoints`` missed a
        jump. Boxes narrower than 1e-9 along a uniform are not probed along it: float64 cannot
        place a point strictly inside them reliably, and their probability is negligible.
    max_pieces : int
        Refuse to enumerate more boxes than this.

    Returns
    -------
    Enumeration

    Raises
    ------
    ProbkitError
        If the grid is too large, or ``verify`` finds the transformation not constant on a box.
    """
    lows, highs = _boxes(breakpoints, max_pieces)
    num_pieces, num_uniforms = lows.shape
    probabilities = np.prod(highs - lows, axis=1)
    midpoints = (lows + highs) / 2
    points = [midpoints]
    if verify:
        width = highs - lows
        for coordinate in range(num_uniforms):
            for fraction in (_FACE_OFFSET, 1 - _FACE_OFFSET):
                probe = midpoints.copy()
                probe[:, coordinate] = lows[:, coordinate] + fraction * width[:, coordinate]
                points.append(probe)
    stacked = np.concatenate(points)
    outputs = _batched(transformation)(jnp.asarray(_padded_rows(stacked)), population)
    all_labels = np.asarray(outputs.particles)[: stacked.shape[0]]
    labels = all_labels[:num_pieces]
    log_weights = np.asarray(outputs.log_weights)[:num_pieces]
    for probe_index in range(1, len(points)):
        coordinate = (probe_index - 1) // 2
        probed = all_labels[probe_index * num_pieces : (probe_index + 1) * num_pieces]
        wide = (highs - lows)[:, coordinate] > 1e-9
        differs = (probed != labels).any(axis=1) & wide
        if differs.any():
            box = int(np.flatnonzero(differs)[0])
            raise ProbkitError(
                f"the transformation is not constant on box {box} along uniform {coordinate} "
                f"([{lows[box, coordinate]:.17g}, {highs[box, coordinate]:.17g})): the "
                "breakpoints it declares miss a jump."
            )
    return Enumeration(probabilities, labels, log_weights, population.num_particles)


@functools.lru_cache(maxsize=64)
def _resampling_transformation(resampler: Resampler, num_samples: int) -> Callable:
    def transformation(uniforms, population):
        return resample_from_uniforms(uniforms, population, resampler, num_samples)

    return transformation


def resampling_enumeration(
    log_weights: Sequence[float] | np.ndarray,
    method: str | Resampler,
    num_samples: int | None = None,
    *,
    verify: bool = True,
) -> Enumeration:
    """Enumerate :func:`~probkit.inference.population.resample_from_uniforms` exactly.

    Parameters
    ----------
    log_weights : array_like, shape (n,)
        The input log weights (float64).
    method : str or Resampler
        The resampler; its ``breakpoints`` define the grid.
    num_samples : int, optional
        The number of particles after resampling (default ``n``).
    verify : bool
        See :func:`enumerate_transformation`.
    """
    population = labelled_population(log_weights)
    resampler = get_resampler(method)
    num_samples = population.num_particles if num_samples is None else num_samples
    breakpoints = resampler.breakpoints(np.asarray(population.log_weights), num_samples)
    transformation = _resampling_transformation(resampler, num_samples)
    return enumerate_transformation(transformation, population, breakpoints, verify=verify)


def _collapse_transformation(uniforms, population):
    particle, log_weight = collapse_from_uniforms(uniforms, population)
    return Population(particle[None], log_weight[None])


def collapse_enumeration(log_weights: Sequence[float] | np.ndarray) -> Enumeration:
    """Enumerate :func:`~probkit.inference.population.collapse_from_uniforms` exactly."""
    population = labelled_population(log_weights)
    # collapse draws its particle by multinomial resampling of one sample: same breakpoints.
    breakpoints = multinomial.breakpoints(np.asarray(population.log_weights), 1)
    return enumerate_transformation(_collapse_transformation, population, breakpoints)


def compare_measures(population_log_weights: np.ndarray, enumeration: Enumeration):
    """The measure before (``exp(log_weights)``) and after (the enumeration's expectation)."""
    before = np.exp(np.asarray(population_log_weights, dtype=np.float64))
    return MeasureComparison(before, enumeration.expected_measure(), enumeration.num_pieces)


def offspring_count_moments(enumeration: Enumeration) -> tuple[np.ndarray, np.ndarray]:
    """The exact mean and variance of each input particle's offspring count."""
    counts = enumeration.offspring_counts()
    mean = enumeration.probabilities @ counts
    variance = enumeration.probabilities @ (counts - mean) ** 2
    return mean, variance


# --- whole SMC runs on finite spaces -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SMCEnumeration:
    """The exact distribution of an SMC run's final state, as weighted branches.

    Attributes
    ----------
    masses : numpy.ndarray, shape (B,)
        Each branch's probability times its evidence estimate ``exp(log_evidence)``. Everything
        an SMC step does is linear in the evidence, so branches whose normalised populations are
        equal merge by adding their masses; the states' ``log_evidence`` is kept at 0.
    states : SMCState
        The branches' states, batched along a leading axis of length ``B`` (normalised weights).
    """

    masses: np.ndarray
    states: SMCState

    @property
    def num_branches(self) -> int:
        """``B``."""
        return int(self.masses.shape[0])

    def expected_measure(self, label: Callable[[Any], Any]) -> dict[Any, float]:
        """``E[Ẑ Σ_i W_i δ_{label(x_i)}]`` as ``{label: mass}``; ``label`` maps a particle to a hashable."""
        weights = np.exp(np.asarray(self.states.population.log_weights, dtype=np.float64))
        particles = jax.tree_util.tree_map(np.asarray, self.states.population.particles)
        measure: dict[Any, float] = {}
        for b, i in zip(*np.nonzero(weights), strict=True):
            key = label(jax.tree_util.tree_map(lambda leaf, b=b, i=i: leaf[b, i], particles))
            measure[key] = measure.get(key, 0.0) + self.masses[b] * weights[b, i]
        return measure


def _take(tree: Any, index: np.ndarray) -> Any:
    # Branch bookkeeping runs on the host in NumPy: indexing device arrays would compile a
    # gather for every new shape.
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[index], tree)


def _pad(tree: Any, size: int) -> tuple[Any, int]:
    """Pad the leading axis to a power of two (repeating row 0), so compilations are reused."""
    padded = 1 << max(0, (size - 1).bit_length())
    index = np.concatenate([np.arange(size), np.zeros(padded - size, dtype=int)])
    return _take(tree, index), padded


def _batched_call(function: Callable, states: SMCState, *args: Any) -> Any:
    size = int(states.log_evidence.shape[0])
    padded, _ = _pad(states, size)
    out = _vmapped(function)(padded, *args)
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[:size], out)


@functools.lru_cache(maxsize=256)
def _vmapped(function: Callable) -> Callable:
    return jax.jit(jax.vmap(function, in_axes=(0,) + (None,) * 4))


def _absorb(masses: np.ndarray, states: SMCState) -> tuple[np.ndarray, SMCState]:
    factors = np.exp(np.asarray(states.log_evidence, dtype=np.float64))
    return masses * factors, states._replace(log_evidence=np.zeros_like(states.log_evidence))


def _merge(masses: np.ndarray, states: SMCState) -> tuple[np.ndarray, SMCState]:
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(
        (states.population.particles, states.population.log_weights, states.temperature))]  # fmt: skip
    keys = {}
    totals = []
    for b in range(masses.shape[0]):
        if masses[b] == 0.0:
            continue
        key = b"|".join(leaf[b].tobytes() for leaf in leaves)
        if key in keys:
            totals[keys[key]][1] += masses[b]
        else:
            keys[key] = len(totals)
            totals.append([b, masses[b]])
    rows = np.array([row for row, _ in totals], dtype=int)
    return np.array([mass for _, mass in totals]), _take(states, rows)


@functools.lru_cache(maxsize=256)
def _support(transformation: Propose) -> Callable:
    def support(state: SMCState, t: jax.Array, *unused: Any):
        def one(particle):
            distribution = transformation.proposal(particle, t)
            values = distribution.enumerate_support(expand=False)
            values = values.reshape((values.shape[0], *distribution.batch_shape,
                                     *distribution.event_shape))  # fmt: skip
            log_probs = jax.vmap(distribution.log_prob)(values)
            return values, log_probs.reshape(values.shape[0], -1).sum(axis=1)

        return jax.vmap(one)(state.population.particles)

    return support


def _check_enumerable(transformation: Propose, state: SMCState) -> None:
    particle = _take(state.population.particles, 0)
    particle = jax.tree_util.tree_map(lambda leaf: leaf[0], particle)
    distribution = transformation.proposal(particle, jnp.asarray(0))
    if not getattr(distribution, "has_enumerate_support", False):
        raise ProbkitError(
            f"the exact oracle enumerates proposals; {type(distribution).__name__} has no finite "
            "support. Use it on models with discrete latent states only."
        )


def _enumerate_propose(transformation, masses, states, t):
    _check_enumerable(transformation, states)
    values, log_probs = _batched_call(_support(transformation), states, jnp.asarray(t), 0, 0, 0)
    log_probs = np.asarray(log_probs, dtype=np.float64)  # (B, n, K)
    _, num_particles, num_values = log_probs.shape
    choices = np.array(list(itertools.product(range(num_values), repeat=num_particles)))
    probabilities = np.exp(log_probs[:, np.arange(num_particles), choices].sum(axis=-1))  # (B, C)
    branch, combination = np.nonzero(probabilities > 0)
    picked = jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf)[
            branch[:, None], np.arange(num_particles), choices[combination]
        ],
        values,
    )

    new_states = _apply_pairs(
        _propose_values(transformation), _take(states, branch), picked, jnp.asarray(t)
    )
    return masses[branch] * probabilities[branch, combination], new_states


@functools.lru_cache(maxsize=256)
def _propose_values(transformation: Propose) -> Callable:
    return lambda state, value, t: transformation.apply_values(state, value, t)


@functools.lru_cache(maxsize=256)
def _resample_boxes(transformation: ResampleIf) -> Callable:
    return lambda state, uniforms, t: transformation.resample_from_uniforms(uniforms, state)


@functools.lru_cache(maxsize=256)
def _decide(transformation: ResampleIf) -> Callable:
    return lambda state, *unused: should_resample(state.population, transformation.threshold)


@functools.lru_cache(maxsize=256)
def _deterministic(transformation: Callable) -> Callable:
    return lambda state, t, *unused: transformation(None, state, t)[0]


def _apply_pairs(function, states, values, t):
    size = int(states.log_evidence.shape[0])
    padded_states, _ = _pad(states, size)
    padded_values, _ = _pad(values, size)
    out = _vmapped_pairs(function)(padded_states, padded_values, t)
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[:size], out)


@functools.lru_cache(maxsize=256)
def _vmapped_pairs(function: Callable) -> Callable:
    return jax.jit(jax.vmap(function, in_axes=(0, 0, None)))


def _enumerate_resample(transformation, masses, states):
    decisions = np.asarray(_batched_call(_decide(transformation), states, 0, 0, 0, 0))
    resampler = get_resampler(transformation.method)
    log_weights = np.asarray(states.population.log_weights, dtype=np.float64)
    num = log_weights.shape[1]
    rows, uniforms, probabilities, kept = [], [], [], []
    for b in range(masses.shape[0]):
        if not decisions[b]:
            kept.append(b)
            continue
        lows, highs = _boxes(resampler.breakpoints(log_weights[b], num), max_pieces=200_000)
        rows += [b] * lows.shape[0]
        uniforms.append((lows + highs) / 2)
        probabilities.append(np.prod(highs - lows, axis=1))
    kept = np.asarray(kept, dtype=int)
    if not rows:
        return masses, states
    rows = np.asarray(rows)

    resampled = _apply_pairs(
        _resample_boxes(transformation), _take(states, rows), np.concatenate(uniforms), 0
    )
    new_masses = np.concatenate([masses[kept], masses[rows] * np.concatenate(probabilities)])
    new_states = jax.tree_util.tree_map(
        lambda a, b: np.concatenate([a, b]), _take(states, kept), resampled
    )
    return new_masses, new_states


def smc_enumeration(stages: Sequence[Stage], state: SMCState) -> SMCEnumeration:
    """Run SMC stages under the exact oracle: every random choice enumerated, nothing sampled.

    The same transformation objects that :func:`~probkit.inference.smc.runner.run_stages`
    samples are interpreted here: :class:`~probkit.inference.smc.transformations.Propose` by
    the finite support of its distributions (a product over particles),
    :class:`~probkit.inference.smc.transformations.ResampleIf` by the box enumeration of its
    resampler (where its ESS condition holds), and deterministic transformations (reweighting,
    tempering) by calling them. Moves with continuous randomness cannot be enumerated. Branches
    are batched and vmapped; equal normalised states merge after every transformation.

    Parameters
    ----------
    stages : sequence of Stage
        The run, as built by an SMC algorithm (e.g. :func:`~probkit.inference.smc.filtering.filter_stages`).
    state : SMCState
        The initial state, float64.

    Returns
    -------
    SMCEnumeration

    Raises
    ------
    ProbkitError
        On a transformation the oracle cannot enumerate.
    """
    masses, states = _absorb(
        np.ones(1), jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], state)
    )
    for stage in stages:
        for t in range(stage.start, stage.start + stage.num_steps):
            for transformation in stage.transformations:
                if isinstance(transformation, Propose):
                    masses, states = _enumerate_propose(transformation, masses, states, t)
                elif isinstance(transformation, ResampleIf):
                    masses, states = _enumerate_resample(transformation, masses, states)
                elif isinstance(transformation, Reweight | Temper):
                    states = _batched_call(
                        _deterministic(transformation), states, jnp.asarray(t), 0, 0, 0
                    )
                    masses, states = _absorb(masses, states)
                else:
                    raise ProbkitError(
                        f"the exact oracle cannot enumerate {type(transformation).__name__}: "
                        "only Propose (finite support), Reweight, Temper and ResampleIf."
                    )
                masses, states = _merge(masses, states)
    return SMCEnumeration(masses, states)
