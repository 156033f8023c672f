"""Run a sequence of SMC transformations: fixed-length stages with ``lax.scan``, or until done."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from probkit.inference.population import Population
from probkit.inference.smc.state import SMCState, log_evidence_variance

__all__ = ["SMCResult", "Stage", "apply_step", "run_stages", "run_until"]

Transformation = Callable[[jax.Array, SMCState, jax.Array], tuple[SMCState, dict]]


@dataclasses.dataclass(frozen=True)
class Stage:
    """A block of identical SMC steps: ``transformations`` applied in order at ``t = start, ..., start + num_steps - 1``.

    Attributes
    ----------
    transformations : tuple
        The transformations of one step (see :mod:`probkit.inference.smc.transformations`).
    num_steps : int
        How many steps the stage runs.
    start : int
        The step index ``t`` of its first step.
    """

    transformations: tuple[Transformation, ...]
    num_steps: int
    start: int = 0


class SMCResult(NamedTuple):
    """The outcome of an SMC run.

    Attributes
    ----------
    state : SMCState
        The final state: normalised population, log evidence, genealogy.
    history : dict of Array
        Per-step diagnostics, each with a leading step axis: ``log_evidence_increment``, ``ess``
        (after reweighting), ``resampled``, and where they apply ``temperature``,
        ``acceptance_rate`` and ``summary``. Adaptive runs pad the unused steps with zeros; see
        ``num_steps``.
    num_steps : Array, shape ()
        The number of steps taken.
    completed : Array, shape ()
        False when an adaptive run stopped at ``max_steps`` before reaching its final target.
    """

    state: SMCState
    history: dict
    num_steps: jax.Array
    completed: jax.Array

    @property
    def log_evidence(self) -> jax.Array:
        """``log Ẑ``."""
        return self.state.log_evidence

    @property
    def log_evidence_variance(self) -> jax.Array:
        """The single-run estimate of ``Var(log Ẑ)`` (see :func:`~probkit.inference.smc.state.log_evidence_variance`)."""
        return log_evidence_variance(self.state)

    @property
    def failed_step(self) -> jax.Array:
        """The first step whose reweighting left no particle with positive weight, or -1.

        From that step on the population is the zero population and ``log_evidence`` is
        ``-inf``: every particle was given a zero potential (e.g. an impossible observation).
        """
        increments = self.history["log_evidence_increment"]
        steps = jnp.arange(increments.shape[0])
        failed = jnp.isneginf(increments) & (steps < self.num_steps)
        return jnp.where(jnp.any(failed), jnp.argmax(failed), -1)

    @property
    def population(self) -> Population:
        """The final particles with normalised weights."""
        return self.state.population


def apply_step(
    key: jax.Array, state: SMCState, transformations: Sequence[Transformation], t: jax.Array
) -> tuple[SMCState, dict]:
    """Apply one step's transformations in order, each with its own key; merge their diagnostics."""
    diagnostics: dict[str, Any] = {}
    for transformation, step_key in zip(
        transformations, jax.random.split(key, len(transformations)), strict=True
    ):
        state, found = transformation(step_key, state, t)
        diagnostics.update(found)
    return state, diagnostics


def run_stages(key: jax.Array, state: SMCState, stages: Sequence[Stage]) -> tuple[SMCState, dict]:
    """Run the stages one after the other; the history stacks every step's diagnostics."""
    histories = []
    for stage, stage_key in zip(stages, jax.random.split(key, len(stages)), strict=True):

        def body(carry, inputs, stage=stage):
            step_key, t = inputs
            return apply_step(step_key, carry, stage.transformations, t)

        steps = jnp.arange(stage.start, stage.start + stage.num_steps)
        state, history = jax.lax.scan(
            body, state, (jax.random.split(stage_key, stage.num_steps), steps)
        )
        histories.append(history)
    merged = {
        name: jnp.concatenate([h[name] for h in histories if name in h])
        for name in histories[0]
        if all(name in h for h in histories)
    }
    return state, merged


def run_until(
    key: jax.Array,
    state: SMCState,
    transformations: Sequence[Transformation],
    done: Callable[[SMCState], jax.Array],
    max_steps: int,
) -> SMCResult:
    """Repeat one step until ``done(state)`` or ``max_steps`` steps (``lax.while_loop``)."""
    template = jax.eval_shape(lambda s: apply_step(key, s, transformations, jnp.int32(0))[1], state)
    history = jax.tree_util.tree_map(
        lambda leaf: jnp.zeros((max_steps, *leaf.shape), leaf.dtype), template
    )

    def cond(carry):
        current, t, _, _ = carry
        return (t < max_steps) & ~done(current)

    def body(carry):
        current, t, history, step_key = carry
        step_key, now = jax.random.split(step_key)
        current, diagnostics = apply_step(now, current, transformations, t)
        history = jax.tree_util.tree_map(lambda h, d: h.at[t].set(d), history, diagnostics)
        return current, t + 1, history, step_key

    state, num_steps, history, _ = jax.lax.while_loop(
        cond, body, (state, jnp.int32(0), history, key)
    )
    return SMCResult(state, history, num_steps, done(state))
