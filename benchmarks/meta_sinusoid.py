"""Sinusoid regression: NIW-Meta against MAML, first-order MAML and Reptile.

Tasks follow Finn et al. (2017): ``y = A sin(x − φ)``, ``A ~ U[0.1, 5]``, ``φ ~ U[0, π]``,
``x ~ U[−5, 5]``, no noise (:func:`probkit.meta.sinusoid_episodes`). Every method meta-trains
the same network, Finn's MLP 1-40-40-1 with ReLU (Finn's initialisation: normal weights of
standard deviation 0.01 truncated at 2 sd, zero biases; the same initial weights for all), on
the same stream of episodes (meta-batch 25, each with K support and K query points; one model
per K ∈ {5, 10}, as Finn trains one per shot count), for the same number of meta-steps, with
the same outer optimiser (Adam, learning rate 1e-3):

* ``maml``: MAML (Finn et al., 2017), second order: the outer gradient goes back through the
  inner SGD steps. 1 inner step of SGD (learning rate 0.01) on the support MSE; the outer loss
  is the query MSE after it.
* ``fomaml``: first-order MAML, the same with the inner gradients under ``stop_gradient``.
* ``reptile``: Reptile (Nichol, Achiam & Schulman, 2018): 5 full-batch SGD steps (learning
  rate 0.01) on the episode's 2K points, then Adam on the pseudo-gradient ``φ − mean_i θ̃_i``.
  With a single inner step Reptile is joint training on the mixture of tasks (as Nichol et
  al. note), so it trains with 5.
* ``niw_meta``: :class:`probkit.meta.NIWMeta` on the episode's 2K points with a Gaussian
  likelihood of fixed standard deviation σ = 0.1 (the sinusoid has no noise, so σ is a
  modelling choice: it sets the temperature of the fit), the SGLD fit (the library's 20 steps,
  the last 10 kept, precisions clamped to [1e-4, 1e3]) with step ε = 2e-5, the quadratic
  meta-loss, the library's initial law and ``N = meta-steps × 25`` for the hyperprior term.
  σ and ε were chosen in a pilot of 2000 meta-steps (5-shot), on the MSE of tasks from the
  meta-training distribution, never the test tasks: (σ, ε) = (0.3, 1e-4) gave 3.3,
  (0.1, 1.1e-5) 1.27, (0.1, 3e-5) 1.02, and (0.1, 1e-4) diverged (NaN) after about 500
  meta-steps; ε = 2e-5 keeps a margin of 5 below that. The other methods use Finn's settings
  untuned.
* ``niw_meta_ggn``: the same learner with the library's diagonal generalised Gauss-Newton fit
  (:func:`probkit.meta.ggn_fit`: 20 plain gradient steps of 2e-5 on the episode's negative
  log-likelihood from ``m₀`` (the SGLD chain's drift without its noise; on the 2K points'
  summed NLL at σ = 0.1 it is MAML's inner step of 0.01 on their mean squared error), then
  ``diag(JᵀJ)/σ²`` there, clamped to [1e-4, 1e6]), the same σ. The SGLD fit's ten draws barely
  move at ε = 2e-5, so nearly all its precisions sit at the upper clamp whatever the data say;
  the Gauss-Newton curvature is the data's own. With 20 Adam steps of 0.01 instead (an
  earlier full run, same seed, ``--niw-ggn-optimizer adam --niw-ggn-learning-rate 0.01``) the
  5-shot MSE was 1.213 ± 0.145 with NLL 21.3 and 90 % coverage 0.61 (σ refitted: NLL 1.48),
  the 10-shot MSE 0.357 ± 0.041 with NLL 4.23 and coverage 0.72 (σ refitted: 0.84): lower
  10-shot errors, far narrower intervals; and the sinusoid guide's run with another seed
  ended with an MSE above predicting 0 (posterior mean 3.0, the fit's own mean 5.0), where
  plain steps gave 1.07. Adam moves every weight by about its learning rate, flat ones
  included, so the fit's mean wanders off along directions the data do not constrain.
* ``niw_meta_defaults``: :class:`probkit.meta.NIWMeta` given the loss, the model's outputs
  and the output loss and nothing else: the library's default fit (Gauss-Newton at the MAP,
  20 L-BFGS steps, precisions clamped to [1e-4, 1e3]), optimiser (Adam, 1e-3 on ``m₀`` and
  1e-2 on the law's spread), initial law and adapted posterior (the support's full
  Gauss-Newton curvature, :class:`~probkit.meta.LinearizedPosterior`); scored like the
  Gauss-Newton variants, and once more with the closed form's diagonal posterior
  (``adapt(..., curvature="diagonal")``, the "diagonal posterior" rows). The Gauss-Newton
  variants' posteriors are the library's default too: the support's full curvature.
* ``niw_meta_map``: the Gauss-Newton variant with ``fit_target="posterior"``: the same 20
  plain steps of 2e-5, on the episode's local posterior objective
  ``L(θ) + ½n₀γ₀‖θ − m₀‖²`` instead of ``L`` alone, and the fit's mean chosen so that the
  closed-form local posterior's mean is where the steps ended
  (:meth:`probkit.meta.GaussianFit.at_posterior_mode`); the ``"loss"`` variant's closed form
  shrinks its unconverged fit towards ``m₀`` once more. Settings chosen in a pilot of 2000
  meta-steps (5-shot), on the MSE of 200 tasks from the meta-training distribution (another
  key), never the test tasks: 20 SGD steps of 2e-5 gave 0.91 (the ``"loss"`` variant, same
  settings: 10.4), 20 Adam steps of 0.01 gave 1.50, 100 Adam steps of 1e-3 1.20.
* ``zero``: predicts 0 everywhere (expected MSE ``E[A²]/2 ≈ 4.2``), to place the numbers.

Evaluation: 600 test tasks from a fixed key (the same amplitudes and phases for both K), with
K support points and 100 query points each. MAML, first-order MAML and Reptile adapt with 10
SGD steps (learning rate 0.01) on the support set, as Finn tests. NIW-Meta adapts from the mode
of its global law (:meth:`~probkit.meta.NIWMeta.adapt`, the same SGLD fit on the K support
points) and predicts with 32 parameter draws (:meth:`~probkit.meta.NIWMeta.sample_parameters`):
its predictive is the equal mixture of ``N(f_θs(x), σ²)``, and its point prediction the mixture
mean. Reported per method: the query MSE of the point prediction, the NLL per query point and
the share of query points inside the central 90 % predictive interval, each averaged over the
test tasks with 1.96 standard errors over tasks; differences between methods are paired (same
tasks). The point methods' NLL uses ``N(f(x), s²)``, with ``s²`` their mean squared query
residual on 600 tasks drawn from the meta-training distribution with another key (their MSE
does not depend on ``s``). NIW-Meta is scored a second time with its mixture's σ refitted on
those tasks (grid search), which separates the shape of its uncertainty from the choice of σ.
NIW-Meta's MSE does depend on σ, through the temperature of its SGLD fit.

Cost: one meta-step (5-shot, meta-batch 25, float32) as the number of inner steps K grows
(MAML, first-order MAML and Reptile: inner SGD steps; NIW-Meta: SGLD steps of its fit, at
least 2 since the fit needs two draws): steady-state seconds (median of later calls,
:func:`_common.time_calls`, methods interleaved), compile seconds
(:class:`_common.CompileClock`) and XLA's memory analysis of the compiled step (temporary
buffers, arguments, outputs; the CPU backend keeps no device memory statistics; the temporary
buffers are the working memory XLA's buffer assignment gives the step beyond its arguments and
outputs).

Run ``python benchmarks/meta_sinusoid.py`` (``--smoke`` for tiny sizes); results go to
``benchmarks/results/meta_sinusoid.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.special import logsumexp
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_OUT,
    CompileClock,
    machine_info,
    markdown_table,
    time_calls,
    write_results,
)

from probkit.meta import MetaState, NIWMeta, SinusoidEpisodes, ggn_fit, sinusoid_episodes

NAME = "meta_sinusoid"
METHODS = (
    "maml",
    "fomaml",
    "reptile",
    "niw_meta",
    "niw_meta_ggn",
    "niw_meta_map",
    "niw_meta_defaults",
)
# NIW-Meta variants: their fits and what the fits optimise.
NIW_FITS = {
    "niw_meta": "sgld",
    "niw_meta_ggn": "ggn",
    "niw_meta_map": "ggn",
    "niw_meta_defaults": "defaults",
}
NIW_TARGETS = {
    "niw_meta": "loss",
    "niw_meta_ggn": "loss",
    "niw_meta_map": "posterior",
    "niw_meta_defaults": "posterior",
}
# Variants also scored with the network linearised at the posterior mean (the Gauss-Newton fits'
# own Gaussian model; NIWMeta.sample_outputs(linearized=True)).
LINEARIZED = ("niw_meta_ggn", "niw_meta_map", "niw_meta_defaults")
LABELS = {
    "maml": "MAML (2nd order)",
    "fomaml": "first-order MAML",
    "reptile": "Reptile",
    "niw_meta": "NIW-Meta",
    "niw_meta_refitted": "NIW-Meta, σ refitted",
    "niw_meta_ggn": "NIW-Meta (GGN fit)",
    "niw_meta_ggn_refitted": "NIW-Meta (GGN fit), σ refitted",
    "niw_meta_map": "NIW-Meta (GGN fit at the MAP)",
    "niw_meta_map_refitted": "NIW-Meta (GGN fit at the MAP), σ refitted",
    "niw_meta_ggn_linearized": "NIW-Meta (GGN fit), linearised",
    "niw_meta_ggn_linearized_refitted": "NIW-Meta (GGN fit), linearised, σ refitted",
    "niw_meta_map_linearized": "NIW-Meta (GGN fit at the MAP), linearised",
    "niw_meta_map_linearized_refitted": "NIW-Meta (GGN fit at the MAP), linearised, σ refitted",
    "niw_meta_defaults": "NIW-Meta (library defaults), network at each draw",
    "niw_meta_defaults_refitted": "NIW-Meta (library defaults), network at each draw, σ refitted",
    "niw_meta_defaults_linearized": "NIW-Meta (library defaults), linearised (its default)",
    "niw_meta_defaults_linearized_refitted": "NIW-Meta (library defaults), linearised, σ refitted",
    "niw_meta_ggn_linearized_diagonal": "NIW-Meta (GGN fit), linearised, diagonal posterior",
    "niw_meta_map_linearized_diagonal": "NIW-Meta (GGN fit at the MAP), linearised, diagonal posterior",
    "niw_meta_defaults_linearized_diagonal": "NIW-Meta (library defaults), linearised, diagonal posterior",
    "zero": "predict 0",
}
# A method's name where the text speaks of its training (cost, learned law), not of one of its
# predictive rows: the defaults' first row is the network at each draw, not its default.
METHOD_LABELS = {**LABELS, "niw_meta_defaults": "NIW-Meta (library defaults)"}
HIDDEN = 40
INNER_LEARNING_RATE = 0.01  # Finn et al. (2017), sinusoid: α = 0.01
META_LEARNING_RATE = 1e-3  # Finn et al.: Adam, β = 1e-3
TEST_SEED = 20170306  # the 600 test tasks (fixed whatever --seed says)
CALIBRATION_SEED = 20180308  # tasks on which the predictive variances are fitted
COST_SEED = 7  # episodes of the cost measurements
COVERAGE = 0.9
Z95 = 1.96
SIGMA_GRID = np.geomspace(0.01, 5.0, 91)  # refitted mixture σ of NIW-Meta

Step = Callable[[Any, SinusoidEpisodes, jax.Array], tuple[Any, jax.Array]]
"""``step(state, episodes, key) -> (state, training loss)``: one meta-step on a meta-batch."""


# --- the network ------------------------------------------------------------------------------


def init_network(key: jax.Array, hidden: int = HIDDEN) -> dict[str, jax.Array]:
    """Finn et al.'s initial weights of the MLP ``1-hidden-hidden-1``.

    Weights are normal with standard deviation 0.01, truncated at two standard deviations, and
    biases are zero, as in the authors' code (``cbfinn/maml``, ``construct_fc_weights``). The
    network's output starts near 0, so the inner SGD steps (learning rate 0.01 on inputs up to
    ``|x| = 5``) start stable; He-normal weights made the first Reptile steps diverge in a pilot.

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    hidden : int, default 40
        Width of both hidden layers.

    Returns
    -------
    dict
        ``w1, b1, w2, b2, w3, b3`` (float32); 1761 parameters at width 40.
    """
    shapes = [(1, hidden), (hidden, hidden), (hidden, 1)]
    params = {}
    for index, ((fan_in, fan_out), layer_key) in enumerate(
        zip(shapes, jax.random.split(key, len(shapes)), strict=True), start=1
    ):
        params[f"w{index}"] = 0.01 * jax.random.truncated_normal(
            layer_key, -2.0, 2.0, (fan_in, fan_out)
        )
        params[f"b{index}"] = jnp.zeros(fan_out)
    return params


def network(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """The MLP's outputs at inputs ``x`` of shape ``(..., 1)``; shape ``(...)``."""
    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    hidden = jax.nn.relu(hidden @ params["w2"] + params["b2"])
    return (hidden @ params["w3"] + params["b3"])[..., 0]


def mean_squared_error(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    """Finn et al.'s loss: the mean over points of ``(f(x) − y)²``."""
    return jnp.mean((network(params, x) - y) ** 2)


def sgd(
    params: dict[str, jax.Array],
    x: jax.Array,
    y: jax.Array,
    num_steps: int,
    *,
    first_order: bool = False,
    learning_rate: float = INNER_LEARNING_RATE,
) -> dict[str, jax.Array]:
    """``num_steps`` full-batch SGD steps on the MSE of ``(x, y)``, in one ``lax.scan``.

    Parameters
    ----------
    params : dict
        The starting weights.
    x, y : jax.Array
        Inputs ``(n, 1)`` and targets ``(n,)``.
    num_steps : int
        Steps (static).
    first_order : bool, default False
        Put each step's gradient under ``stop_gradient`` (first-order MAML): a gradient taken
        through the result then sees the steps as the identity.
    learning_rate : float, default 0.01
        The inner learning rate.
    """

    def step(current, _):
        gradient = jax.grad(mean_squared_error)(current, x, y)
        if first_order:
            gradient = jax.lax.stop_gradient(gradient)
        return jax.tree.map(lambda p, g: p - learning_rate * g, current, gradient), None

    adapted, _ = jax.lax.scan(step, params, None, length=num_steps)
    return adapted


def _all_points(episodes: SinusoidEpisodes) -> tuple[jax.Array, jax.Array]:
    # An episode's support and query points together (its whole data set D_i at meta-training).
    x = jnp.concatenate([episodes.support_x, episodes.query_x], axis=-2)
    y = jnp.concatenate([episodes.support_y, episodes.query_y], axis=-1)
    return x, y


# --- the methods --------------------------------------------------------------------------------


def maml_step(inner_steps: int, first_order: bool, optimizer: optax.GradientTransformation) -> Step:
    """One MAML meta-step on a meta-batch: Adam on the mean post-adaptation query MSE.

    Parameters
    ----------
    inner_steps : int
        SGD steps on each support set.
    first_order : bool
        First-order MAML (no gradient through the inner gradients).
    optimizer : optax.GradientTransformation
        The outer optimiser; the state is ``(params, optimizer state)``.

    Returns
    -------
    callable
        ``step(state, episodes, key) -> (state, query MSE before the update)``.
    """

    def meta_loss(params, episodes):
        def episode_loss(support_x, support_y, query_x, query_y):
            adapted = sgd(params, support_x, support_y, inner_steps, first_order=first_order)
            return mean_squared_error(adapted, query_x, query_y)

        return jnp.mean(
            jax.vmap(episode_loss)(
                episodes.support_x, episodes.support_y, episodes.query_x, episodes.query_y
            )
        )

    def step(state, episodes, key):
        del key  # MAML is deterministic given the episodes
        params, opt_state = state
        loss, grads = jax.value_and_grad(meta_loss)(params, episodes)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def reptile_step(inner_steps: int, optimizer: optax.GradientTransformation) -> Step:
    """One batched Reptile meta-step (Nichol et al., 2018, Algorithm 2) with Adam as the outer rule.

    Parameters
    ----------
    inner_steps : int
        Full-batch SGD steps on each episode's 2K points.
    optimizer : optax.GradientTransformation
        Applied to the pseudo-gradient ``φ − mean_i θ̃_i``; the state is ``(params, optimizer
        state)``.

    Returns
    -------
    callable
        ``step(state, episodes, key) -> (state, episodes' MSE after the inner steps)``.
    """

    def step(state, episodes, key):
        del key
        params, opt_state = state
        x, y = _all_points(episodes)
        adapted = jax.vmap(lambda x, y: sgd(params, x, y, inner_steps))(x, y)
        # Algorithm 2 moves φ by ε · mean_i(θ̃_i − φ); handing φ − mean θ̃ to Adam as a gradient
        # keeps that direction and gives every method the same outer optimiser.
        pseudo_gradient = jax.tree.map(lambda p, a: p - jnp.mean(a, axis=0), params, adapted)
        updates, opt_state = optimizer.update(pseudo_gradient, opt_state, params)
        loss = jnp.mean(jax.vmap(mean_squared_error)(adapted, x, y))
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def niw_meta_learner(
    init_params: dict[str, jax.Array],
    *,
    sigma: float,
    fit_steps: int,
    burnin: int,
    step_size: float,
    max_precision: float,
    num_episodes: int,
    fit: str = "sgld",
    fit_target: str = "loss",
    ggn_steps: int = 20,
    ggn_learning_rate: float = 2e-5,
    ggn_optimizer: str = "sgd",
) -> NIWMeta:
    """NIW-Meta on the MLP with a Gaussian episode likelihood of standard deviation ``sigma``.

    Parameters
    ----------
    init_params : dict
        The network's initial weights (``m₀`` at the start).
    sigma : float
        Likelihood standard deviation: the episode loss is
        ``Σ_n [(y_n − f(x_n))²/(2σ²) + log σ + ½ log 2π]``.
    fit_steps, burnin : int
        SGLD steps of each episode's Gaussian fit, and how many of the first are discarded.
    step_size : float
        The SGLD step ``ε``.
    max_precision : float
        Upper clamp of the fitted per-coordinate precisions.
    num_episodes : int
        ``N``: the hyperprior KL enters the meta-loss with weight ``1/N``.
    fit : {"sgld", "ggn", "defaults"}, default "sgld"
        The episode fit: the paper's SGLD (the options above), the diagonal Gauss-Newton
        fit after ``ggn_steps`` steps of ``optax.<ggn_optimizer>(ggn_learning_rate)``
        (precisions in [1e-4, 1e6]), or :class:`~probkit.meta.NIWMeta` with nothing but the
        model (every other setting the library's default).
    fit_target : {"loss", "posterior"}, default "loss"
        What the Gauss-Newton fit's steps minimise: the episode's loss, or its local
        posterior objective (:class:`~probkit.meta.NIWMeta`'s ``fit_target``).
    """

    def output_loss(outputs, episode):
        residual = episode[1] - outputs
        return jnp.sum(
            0.5 * (residual / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2.0 * math.pi)
        )

    def outputs(params, episode):
        return network(params, episode[0])

    def loss(params, episode):
        return output_loss(outputs(params, episode), episode)

    if fit == "defaults":
        # Nothing but the model: the library's default fit (Gauss-Newton at the MAP, 20 L-BFGS
        # steps), optimiser (Adam, 1e-3 on m₀ and 1e-2 on the spread) and prior.
        return NIWMeta(
            loss, init_params, outputs=outputs, output_loss=output_loss, num_episodes=num_episodes
        )
    if fit == "ggn":
        return NIWMeta(
            loss,
            init_params,
            fit="ggn",
            fit_target=fit_target,
            outputs=outputs,
            output_loss=output_loss,
            fit_options={
                "num_steps": ggn_steps,
                "optimizer": getattr(optax, ggn_optimizer)(ggn_learning_rate),
                "max_precision": 1e6,
            },
            optimizer=optax.adam(META_LEARNING_RATE),
            num_episodes=num_episodes,
        )
    return NIWMeta(
        loss,
        init_params,
        fit="sgld",
        fit_options={
            "num_steps": fit_steps,
            "burnin": burnin,
            "step_size": step_size,
            "max_precision": max_precision,
        },
        optimizer=optax.adam(META_LEARNING_RATE),
        num_episodes=num_episodes,
    )


def niw_meta_step(learner: NIWMeta) -> Step:
    """One :meth:`NIWMeta.update` on the meta-batch's episodes (support and query points)."""

    def step(state, episodes, key):
        state, info = learner.update(key, state, _all_points(episodes))
        return state, info["meta_loss"]

    return step


def build_method(
    method: str,
    init_params: dict[str, jax.Array],
    inner_steps: int,
    args: argparse.Namespace,
    *,
    num_episodes: int,
    burnin: int | None = None,
) -> tuple[Any, Step, NIWMeta | None]:
    """The initial state, the meta-step and (for NIW-Meta) the learner of one method.

    ``inner_steps`` is MAML's and first-order MAML's inner SGD steps, Reptile's SGD steps,
    NIW-Meta's SGLD steps (with ``burnin`` of them discarded; default ``args.niw_burnin``), or
    the Adam steps of the Gauss-Newton variant's fit.
    """
    optimizer = optax.adam(META_LEARNING_RATE)
    if method in ("maml", "fomaml"):
        step = maml_step(inner_steps, method == "fomaml", optimizer)
        return (init_params, optimizer.init(init_params)), step, None
    if method == "reptile":
        return (
            (init_params, optimizer.init(init_params)),
            reptile_step(inner_steps, optimizer),
            None,
        )
    learner = niw_meta_learner(
        init_params,
        sigma=args.niw_sigma,
        fit_steps=inner_steps,
        burnin=args.niw_burnin if burnin is None else burnin,
        step_size=args.niw_step_size,
        max_precision=args.niw_max_precision,
        num_episodes=num_episodes,
        fit=NIW_FITS[method],
        fit_target=NIW_TARGETS[method],
        ggn_steps=inner_steps,
        ggn_learning_rate=(
            args.niw_map_learning_rate if method == "niw_meta_map" else args.niw_ggn_learning_rate
        ),
        ggn_optimizer=args.niw_map_optimizer
        if method == "niw_meta_map"
        else args.niw_ggn_optimizer,
    )
    return learner.init(), niw_meta_step(learner), learner


# --- meta-training ------------------------------------------------------------------------------


def meta_train(
    step: Step,
    state: Any,
    *,
    seed: int,
    shots: int,
    meta_batch: int,
    num_steps: int,
    chunk: int,
) -> tuple[Any, dict[str, Any]]:
    """Run ``num_steps`` meta-steps, ``chunk`` per jitted ``lax.scan``, on a fixed episode stream.

    Meta-step ``t`` draws its episodes from ``fold_in(data key, t)``: every method sees the same
    episodes in the same order. Its own randomness (NIW-Meta's SGLD) uses another key.

    Returns
    -------
    state : pytree
        The trained state.
    report : dict
        ``loss_per_chunk`` and ``max_loss_per_chunk`` (mean and largest training loss of each
        chunk), ``first_chunk_s`` and ``compile_s`` (first chunk: wall time and time in tracing
        and compiling), ``steady_s_per_meta_step`` (median later chunk / chunk), ``total_s``,
        ``finite`` (every leaf of the final state and every loss finite),
        ``first_nonfinite_before_step`` (the end of the first chunk after which the state held
        a non-finite value, or None) and ``nonfinite_leaves`` (path: count, in the final state);
        for NIW-Meta also ``rejected_episodes`` and ``skipped_updates`` (its guard's counts).
    """
    root = jax.random.key(seed)
    data_key, noise_key = jax.random.fold_in(root, 1), jax.random.fold_in(root, 2)

    def body(state, index):
        episodes = sinusoid_episodes(jax.random.fold_in(data_key, index), meta_batch, shots)
        return step(state, episodes, jax.random.fold_in(noise_key, index))

    run = jax.jit(lambda state, start: jax.lax.scan(body, state, start + jnp.arange(chunk)))
    losses, largest, times = [], [], []
    compile_s, first_nonfinite = 0.0, None
    started = time.perf_counter()
    for start in range(0, num_steps, chunk):
        begin = time.perf_counter()
        with CompileClock() as clock:
            state, chunk_losses = jax.block_until_ready(run(state, start))
        times.append(time.perf_counter() - begin)
        compile_s += clock.seconds
        losses.append(float(jnp.mean(chunk_losses)))
        largest.append(float(jnp.max(chunk_losses)))
        # A non-finite optimiser state need not show in the loss (Adam's second moment can
        # overflow to inf after one huge gradient, which then freezes those coordinates).
        if first_nonfinite is None and _nonfinite_leaves(state):
            first_nonfinite = start + chunk
    total = time.perf_counter() - started
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    nonfinite = _nonfinite_leaves(state)
    guard = {}
    if isinstance(state, MetaState):
        guard = {
            "rejected_episodes": int(state.rejected_episodes),
            "skipped_updates": int(state.skipped_updates),
        }
    return state, guard | {
        "loss_per_chunk": losses,
        "max_loss_per_chunk": largest,
        "chunk": chunk,
        "first_chunk_s": times[0],
        "compile_s": compile_s,
        "steady_s_per_meta_step": steady / chunk,
        "total_s": total,
        "finite": bool(not nonfinite and np.all(np.isfinite(losses))),
        "first_nonfinite_before_step": first_nonfinite,
        "nonfinite_leaves": nonfinite,
    }


def _nonfinite_leaves(state: Any) -> dict[str, int]:
    counts = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        bad = int(np.sum(~np.isfinite(np.asarray(leaf))))
        if bad:
            counts[jax.tree_util.keystr(path)] = bad
    return counts


# --- predictions on new tasks ----------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="num_steps")
def _point_predictions(params, support_x, support_y, query_x, num_steps):
    def one(support_x, support_y, query_x):
        def step(current, _):
            gradient = jax.grad(mean_squared_error)(current, support_x, support_y)
            current = jax.tree.map(lambda p, g: p - INNER_LEARNING_RATE * g, current, gradient)
            return current, network(current, query_x)

        _, later = jax.lax.scan(step, params, None, length=num_steps)
        return jnp.concatenate([network(params, query_x)[None], later])

    return jax.vmap(one)(support_x, support_y, query_x)


def point_predictions(
    params: dict[str, jax.Array], tasks: SinusoidEpisodes, num_steps: int
) -> np.ndarray:
    """Query predictions after 0, 1, …, ``num_steps`` SGD steps on each task's support set.

    Returns
    -------
    numpy.ndarray, shape (tasks, num_steps + 1, queries)
    """
    return np.asarray(
        _point_predictions(
            params, tasks.support_x, tasks.support_y, tasks.query_x, num_steps=num_steps
        )
    )


def niw_meta_predictions(
    learner: NIWMeta,
    state: Any,
    tasks: SinusoidEpisodes,
    key: jax.Array,
    num_draws: int,
    batch_size: int = 50,
) -> dict[str, np.ndarray]:
    """Network outputs at the query points under draws from each task's local posterior.

    Parameters
    ----------
    learner : NIWMeta
    state : MetaState
        The trained state.
    tasks : SinusoidEpisodes
        New tasks; only their support sets are used to adapt.
    key : jax.Array
        PRNG key (one per task is split from it: the fit's and the draws').
    num_draws : int
        Parameter draws per task.
    batch_size : int, default 50
        Tasks evaluated at once (bounds the memory of the ``draws × queries × 40`` activations).

    Returns
    -------
    dict
        ``draws`` ``(tasks, num_draws, queries)`` and ``linearized_draws`` (the same draws
        through the network linearised at the posterior mean); ``precision_at_max`` and
        ``precision_at_min``: per task, the share of the fit's precisions at the clamps;
        ``posterior_sd``: per task, the median posterior standard deviation of a parameter.
    """
    # The learner's clamp, or the fit's own default when the learner sets none.
    max_precision = learner.fit_options.get(
        "max_precision", inspect.signature(ggn_fit).parameters["max_precision"].default
    )
    min_precision = learner.fit_options.get("min_precision", 1e-4)

    def one(state, task_key, support_x, support_y, query_x):
        fit_key, draw_key = jax.random.split(task_key)
        support = (support_x, support_y)
        posterior = learner.adapt(fit_key, state, support)

        def outputs(params):
            return network(params, query_x)

        # The same fit as adapt's (same key, same start), kept for its clamp diagnostics.
        loc, variance = learner.prior(state).mode()
        fit = learner.fit_episode(fit_key, loc, support, 1.0 / variance)
        return {
            "draws": learner.sample_outputs(
                draw_key, posterior, outputs, num_draws, linearized=False
            ),
            "linearized_draws": learner.sample_outputs(
                draw_key, posterior, outputs, num_draws, linearized=True
            ),
            # The closed form's diagonal covariance (the posterior above has the support's
            # full Gauss-Newton curvature when the learner has the model's outputs).
            "diagonal_linearized_draws": learner.sample_outputs(
                draw_key,
                learner.adapt(fit_key, state, support, curvature="diagonal"),
                outputs,
                num_draws,
                linearized=True,
            ),
            "precision_at_max": jnp.mean(fit.precision >= max_precision),
            "precision_at_min": jnp.mean(fit.precision <= min_precision),
            "posterior_sd": jnp.median(jnp.sqrt(posterior.covariance)),
        }

    @jax.jit
    def run(state, keys, support_x, support_y, query_x):
        return jax.lax.map(
            lambda args: one(state, *args),
            (keys, support_x, support_y, query_x),
            batch_size=min(batch_size, support_x.shape[0]),
        )

    keys = jax.random.split(key, tasks.support_x.shape[0])
    out = run(state, keys, tasks.support_x, tasks.support_y, tasks.query_x)
    return {name: np.asarray(value) for name, value in out.items()}


# --- scores -------------------------------------------------------------------------------------


def gaussian_scores(
    mean: np.ndarray, variance: float, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-task MSE, NLL per point and 90 % coverage of the predictive ``N(mean, variance)``.

    Parameters
    ----------
    mean, targets : numpy.ndarray, shape (tasks, queries)
    variance : float

    Returns
    -------
    dict of numpy.ndarray, shape (tasks,)
        ``mse``, ``nll`` (natural log, per query point) and ``coverage`` (share of the points
        inside the central 90 % interval).
    """
    residual = targets - mean
    z = residual / math.sqrt(variance)
    nll = 0.5 * math.log(2.0 * math.pi * variance) + 0.5 * z**2
    return {
        "mse": np.mean(residual**2, axis=-1),
        "nll": np.mean(nll, axis=-1),
        "coverage": np.mean(np.abs(z) <= norm.ppf(0.5 + COVERAGE / 2), axis=-1),
    }


def mixture_scores(draws: np.ndarray, sigma: float, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-task scores of the equal mixture of ``N(draws_s, σ²)`` (NIW-Meta's predictive).

    Parameters
    ----------
    draws : numpy.ndarray, shape (tasks, draws, queries)
        The network's outputs under each parameter draw.
    sigma : float
        The likelihood's standard deviation.
    targets : numpy.ndarray, shape (tasks, queries)

    Returns
    -------
    dict of numpy.ndarray, shape (tasks,)
        As :func:`gaussian_scores`; the MSE is that of the mixture mean. A point is inside the
        central 90 % interval when the mixture's CDF there lies in [0.05, 0.95] (exact, from the
        components' CDFs).
    """
    draws = np.asarray(draws, np.float64)
    targets = np.asarray(targets, np.float64)
    residual = targets - draws.mean(axis=1)
    log_density = norm.logpdf(targets[:, None, :], draws, sigma)
    nll = -(logsumexp(log_density, axis=1) - math.log(draws.shape[1]))
    cdf = norm.cdf((targets[:, None, :] - draws) / sigma).mean(axis=1)
    tail = (1.0 - COVERAGE) / 2.0
    return {
        "mse": np.mean(residual**2, axis=-1),
        "nll": np.mean(nll, axis=-1),
        "coverage": np.mean((cdf >= tail) & (cdf <= 1.0 - tail), axis=-1),
    }


def mixture_nll(draws: np.ndarray, sigma: float, targets: np.ndarray) -> float:
    """The mean NLL per point of the mixture of ``N(draws_s, σ²)`` (:func:`mixture_scores`)."""
    z = (np.asarray(targets, np.float64)[:, None, :] - draws) / sigma
    log_density = -0.5 * z**2 - math.log(sigma) - 0.5 * math.log(2.0 * math.pi)
    return float(np.mean(math.log(draws.shape[1]) - logsumexp(log_density, axis=1)))


def mean_and_ci(values: np.ndarray) -> dict[str, float]:
    """Mean and the half-width of its 95 % normal interval (1.96 standard errors)."""
    values = np.asarray(values, np.float64)
    return {
        "mean": float(values.mean()),
        "ci95": float(Z95 * values.std(ddof=1) / math.sqrt(values.size)),
    }


def _summary(scores: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: mean_and_ci(values) for name, values in scores.items()}


# --- one shot count ------------------------------------------------------------------------------


def evaluate_shots(
    shots: int, methods: Sequence[str], init_params: dict, args: argparse.Namespace
) -> dict[str, Any]:
    """Meta-train every method for one shot count and score it on the test tasks."""
    test = sinusoid_episodes(jax.random.key(TEST_SEED), args.test_tasks, shots, args.queries)
    calibration = sinusoid_episodes(
        jax.random.key(CALIBRATION_SEED), args.calibration_tasks, shots, args.queries
    )
    test_y, calibration_y = np.asarray(test.query_y), np.asarray(calibration.query_y)
    num_episodes = args.meta_steps * args.meta_batch
    entry: dict[str, Any] = {"methods": {}}
    per_task: dict[str, dict[str, np.ndarray]] = {}

    # The trivial baseline: its variance is E[y²] on the calibration tasks.
    zero_variance = float(np.mean(calibration_y**2))
    per_task["zero"] = gaussian_scores(np.zeros_like(test_y), zero_variance, test_y)
    entry["methods"]["zero"] = {**_summary(per_task["zero"]), "variance": zero_variance}

    for method in methods:
        inner = {
            "maml": args.maml_steps,
            "fomaml": args.maml_steps,
            "reptile": args.reptile_steps,
            "niw_meta": args.niw_sgld_steps,
            "niw_meta_ggn": args.niw_ggn_steps,
            "niw_meta_map": args.niw_map_steps,
            "niw_meta_defaults": 20,
        }[method]
        state, step, learner = build_method(
            method, init_params, inner, args, num_episodes=num_episodes
        )
        state, training = meta_train(
            step,
            state,
            seed=args.seed,
            shots=shots,
            meta_batch=args.meta_batch,
            num_steps=args.meta_steps,
            chunk=args.chunk,
        )
        result: dict[str, Any] = {"training": training, "inner_steps_at_training": inner}
        if learner is None:
            params = state[0]
            test_curve = point_predictions(params, test, args.test_steps)
            calibration_curve = point_predictions(params, calibration, args.test_steps)
            variance = float(np.mean((calibration_curve[:, -1] - calibration_y) ** 2))
            per_task[method] = gaussian_scores(test_curve[:, -1], variance, test_y)
            result.update(_summary(per_task[method]))
            result["variance"] = variance
            result["mse_after_steps"] = [
                mean_and_ci(np.mean((test_curve[:, k] - test_y) ** 2, axis=-1))
                for k in range(args.test_steps + 1)
            ]
        else:
            prior = learner.prior(state)
            key = jax.random.fold_in(jax.random.key(args.seed), 3)
            test_out = niw_meta_predictions(learner, state, test, key, args.niw_draws)
            calibration_out = niw_meta_predictions(
                learner, state, calibration, jax.random.fold_in(key, 1), args.niw_draws
            )
            per_task[method] = mixture_scores(test_out["draws"], args.niw_sigma, test_y)
            result.update(_summary(per_task[method]))
            _score_refitted(
                entry,
                per_task,
                f"{method}_refitted",
                "draws",
                test_out,
                calibration_out,
                test_y,
                calibration_y,
            )
            if method in LINEARIZED:
                linearized = f"{method}_linearized"
                per_task[linearized] = mixture_scores(
                    test_out["linearized_draws"], args.niw_sigma, test_y
                )
                entry["methods"][linearized] = {
                    **_summary(per_task[linearized]),
                    "sigma": args.niw_sigma,
                }
                _score_refitted(
                    entry,
                    per_task,
                    f"{linearized}_refitted",
                    "linearized_draws",
                    test_out,
                    calibration_out,
                    test_y,
                    calibration_y,
                )
                diagonal = f"{method}_linearized_diagonal"
                per_task[diagonal] = mixture_scores(
                    test_out["diagonal_linearized_draws"], args.niw_sigma, test_y
                )
                entry["methods"][diagonal] = {
                    **_summary(per_task[diagonal]),
                    "sigma": args.niw_sigma,
                }
            result.update(
                {
                    "sigma": args.niw_sigma,
                    "draws": args.niw_draws,
                    "prior_df": float(prior.df),
                    "prior_precision_median": float(jnp.median(prior.precision)),
                    "mode_prior_sd_median": float(jnp.median(jnp.sqrt(prior.mode()[1]))),
                    "posterior_sd_median": float(np.median(test_out["posterior_sd"])),
                    "predictive_spread_of_draws": float(
                        np.sqrt(np.mean(np.var(test_out["draws"], axis=1)))
                    ),
                    "fit_precision_share_at_max_clamp": float(
                        np.mean(test_out["precision_at_max"])
                    ),
                    "fit_precision_share_at_min_clamp": float(
                        np.mean(test_out["precision_at_min"])
                    ),
                }
            )
        entry["methods"][method] = result
        print(
            f"{shots}-shot {method}: MSE {result['mse']['mean']:.3f} ± {result['mse']['ci95']:.3f}"
            f", NLL {result['nll']['mean']:.3f}; training {training['total_s']:.1f} s",
            flush=True,
        )
    # Paired differences against the best method (same tasks), for MSE and NLL.
    entry["paired"] = {}
    for metric in ("mse", "nll"):
        # The refitted row has NIW-Meta's predictive mean, hence its MSE: ranked for the NLL only.
        names = [n for n in per_task if metric == "nll" or not n.endswith("_refitted")]
        ranked = sorted(names, key=lambda name: float(np.mean(per_task[name][metric])))
        best = ranked[0]
        entry["paired"][metric] = {
            "best": best,
            "differences_to_best": {
                name: mean_and_ci(per_task[name][metric] - per_task[best][metric])
                for name in ranked[1:]
            },
        }
    return entry


def _score_refitted(
    entry: dict,
    per_task: dict,
    name: str,
    draws: str,
    test_out: dict,
    calibration_out: dict,
    test_y: np.ndarray,
    calibration_y: np.ndarray,
) -> None:
    """Score ``test_out[draws]`` as row ``name`` with the mixture's σ refitted.

    σ is chosen by grid search on the NLL of the calibration tasks, where the point methods'
    variance is fitted too.
    """
    calibration_nll = [mixture_nll(calibration_out[draws], s, calibration_y) for s in SIGMA_GRID]
    best = int(np.argmin(calibration_nll))
    sigma = float(SIGMA_GRID[best])
    per_task[name] = mixture_scores(test_out[draws], sigma, test_y)
    entry["methods"][name] = {
        **_summary(per_task[name]),
        "sigma": sigma,
        "sigma_at_grid_edge": best in (0, SIGMA_GRID.size - 1),
    }


# --- cost against the number of inner steps -------------------------------------------------------


def _memory(jitted: Callable, *args: Any) -> dict[str, int]:
    analysis = jitted.lower(*args).compile().memory_analysis()
    if analysis is None:
        return {}
    names = (
        "temp_size_in_bytes",
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "alias_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    return {name: int(getattr(analysis, name)) for name in names if hasattr(analysis, name)}


def cost_scan(
    methods: Sequence[str], init_params: dict, args: argparse.Namespace
) -> dict[str, Any]:
    """Time and compiled memory of one 5-shot meta-step for each number of inner steps."""
    seeds = list(range(1 + args.timing_repeats))
    episodes = {
        seed: sinusoid_episodes(
            jax.random.fold_in(jax.random.key(COST_SEED), seed), args.meta_batch, 5
        )
        for seed in seeds
    }
    rows: dict[str, dict[str, Any]] = {method: {} for method in methods}
    for inner in args.inner_steps_grid:
        fns, jitted, states, compile_s = {}, {}, {}, {}
        for method in methods:
            # NIW-Meta's fit keeps every draw here (burn-in 0) and needs at least two of them;
            # burn-in changes nothing in the cost of a step.
            steps_run = max(inner, 2) if method == "niw_meta" else inner
            state, step, _ = build_method(
                method, init_params, steps_run, args, num_episodes=1000, burnin=0
            )
            jitted[method], states[method], compile_s[method] = jax.jit(step), state, []

            def call(seed, run=jitted[method], state=state, clocks=compile_s[method]):
                with CompileClock() as clock:
                    out = jax.block_until_ready(run(state, episodes[seed], jax.random.key(seed)))
                clocks.append(clock.seconds)
                return out[1]

            fns[method] = call
            rows[method][str(inner)] = {"steps_run": steps_run}
        timings = time_calls(fns, seeds)
        for method in methods:
            timing = timings[method]
            timing.pop("outputs")
            memory = _memory(jitted[method], states[method], episodes[0], jax.random.key(0))
            rows[method][str(inner)].update(
                {**timing, "compile_s": compile_s[method][0], "memory": memory}
            )
        print(
            f"K = {inner}: "
            + ", ".join(
                f"{m} {1e3 * rows[m][str(inner)]['steady_median_s']:.2f} ms / "
                f"{rows[m][str(inner)]['memory'].get('temp_size_in_bytes', 0) / 1024:.0f} KiB"
                for m in methods
            ),
            flush=True,
        )
    summary = {}
    for method, by_inner in rows.items():
        steps = np.array([row["steps_run"] for row in by_inner.values()], float)
        temp = np.array(
            [row["memory"].get("temp_size_in_bytes", np.nan) for row in by_inner.values()], float
        )
        seconds = np.array([row["steady_median_s"] for row in by_inner.values()], float)
        # The slope is fitted from K = 2 on: with K = 1 XLA drops the loop, which makes that
        # program smaller for every method (measured), and would tilt a line through it.
        later = steps >= 2
        slope = (
            float(np.polyfit(steps[later], temp[later], 1)[0])
            if np.unique(steps[later]).size > 1
            else float("nan")
        )
        summary[method] = {
            "temp_bytes_per_inner_step_from_2": slope,
            "temp_ratio_last_over_first": float(temp[-1] / temp[0]),
            "time_ratio_last_over_first": float(seconds[-1] / seconds[0]),
            "seconds_per_inner_step": (
                float(np.polyfit(steps, seconds, 1)[0])
                if np.unique(steps).size > 1
                else float("nan")
            ),
        }
    return {"shots": 5, "meta_batch": args.meta_batch, "rows": rows, "summary": summary}


# --- the report ---------------------------------------------------------------------------------


def _pm(value: dict[str, float], digits: int = 3) -> str:
    return f"{value['mean']:.{digits}f} ± {value['ci95']:.{digits}f}"


def _accuracy_table(entry: dict[str, Any], args: argparse.Namespace) -> str:
    rows = []
    names = [
        name
        for method in METHODS
        for name in (
            method,
            f"{method}_refitted",
            f"{method}_linearized",
            f"{method}_linearized_refitted",
            f"{method}_linearized_diagonal",
        )
    ]
    order = [m for m in (*names, "zero") if m in entry["methods"]]
    for method in order:
        result = entry["methods"][method]
        curve = result.get("mse_after_steps")
        training = result.get("training")
        if method.startswith("niw_meta"):
            noise = f"σ = {result['sigma']:.3g}"
        else:
            noise = f"s = {math.sqrt(result['variance']):.3g}"
        rows.append(
            [
                LABELS[method],
                _pm(result["mse"]),
                _pm(result["nll"]),
                _pm(result["coverage"]),
                noise,
                _pm(curve[1]) if curve else "n/a",
                _pm(curve[0]) if curve else "n/a",
                f"{1e3 * training['steady_s_per_meta_step']:.2f}" if training else "n/a",
                f"{training['compile_s']:.1f}" if training else "n/a",
            ]
        )
    headers = [
        "method",
        f"query MSE ({args.test_steps} steps)",
        "NLL per point",
        "90 % coverage",
        "predictive noise",
        "MSE after 1 step",
        "MSE before adapting",
        "training ms / meta-step",
        "training compile (s)",
    ]
    return markdown_table(headers, rows)


def _cost_table(cost: dict[str, Any]) -> str:
    rows = []
    for method, by_inner in cost["rows"].items():
        for inner, row in by_inner.items():
            memory = row["memory"]
            in_out = memory.get("argument_size_in_bytes", 0) + memory.get("output_size_in_bytes", 0)
            rows.append(
                [
                    METHOD_LABELS[method],
                    inner
                    if row["steps_run"] == int(inner)
                    else f"{inner} (runs {row['steps_run']})",
                    f"{1e3 * row['steady_median_s']:.2f}",
                    f"{1e3 * row['steady_min_s']:.2f}",
                    f"{row['compile_s']:.2f}",
                    f"{memory.get('temp_size_in_bytes', float('nan')) / 1024:.0f}",
                    f"{in_out / 1024:.0f}",
                ]
            )
    headers = [
        "method",
        "K",
        "steady ms (median)",
        "steady ms (min)",
        "compile s",
        "temp KiB",
        "arguments + outputs KiB",
    ]
    return markdown_table(headers, rows)


def _wins(results: dict[str, Any], cost: dict[str, Any] | None) -> list[str]:
    # Sentences built from the numbers only: the best method, and every other method's paired
    # difference to it with its 95 % interval ("worse" only when the interval excludes 0).
    lines = []
    for shots, entry in results.items():
        for metric, word in (("mse", "query MSE"), ("nll", "NLL")):
            paired = entry["paired"][metric]
            best = paired["best"]
            value = entry["methods"][best][metric]
            parts = []
            for name, difference in paired["differences_to_best"].items():
                verdict = (
                    "worse"
                    if difference["mean"] - difference["ci95"] > 0
                    else "not distinguishable"
                )
                parts.append(f"{LABELS[name]} +{_pm(difference)} ({verdict})")
            lines.append(
                f"* **{shots}-shot {word}**: lowest is {LABELS[best]} ({_pm(value)}); paired "
                f"differences to it: {'; '.join(parts)}."
            )
        coverage = {
            name: result["coverage"]["mean"]
            for name, result in entry["methods"].items()
            if name != "zero"
        }
        closest = min(coverage, key=lambda name: abs(coverage[name] - COVERAGE))
        lines.append(
            f"* **{shots}-shot 90 % intervals**: closest to nominal is {LABELS[closest]} "
            f"({coverage[closest]:.3f}); "
            + ", ".join(f"{LABELS[n]} {c:.3f}" for n, c in coverage.items() if n != closest)
            + "."
        )
    if cost:
        parts = []
        for method, summary in cost["summary"].items():
            rows = list(cost["rows"][method].values())
            slope = summary["temp_bytes_per_inner_step_from_2"]
            slope_text = "n/a" if slope is None or np.isnan(slope) else f"{slope / 1024:+.1f} KiB"
            parts.append(
                f"{METHOD_LABELS[method]}: {1e3 * rows[0]['steady_median_s']:.2f} → "
                f"{1e3 * rows[-1]['steady_median_s']:.2f} ms "
                f"({summary['time_ratio_last_over_first']:.1f}×), temporary memory "
                f"{rows[0]['memory'].get('temp_size_in_bytes', float('nan')) / 1024:.0f} → "
                f"{rows[-1]['memory'].get('temp_size_in_bytes', float('nan')) / 1024:.0f} KiB "
                f"({slope_text} per inner step "
                "from K = 2 on, least squares)"
            )
        grid = list(next(iter(cost["rows"].values())))
        lines.append(
            f"* **Cost of a meta-step from K = {grid[0]} to K = {grid[-1]}**: "
            + "; ".join(parts)
            + "."
        )
    return lines


GOAL_COVERAGE = (0.88, 0.92)
"""The band the default predictive's 90 % intervals should cover (issue's goal)."""


def _goal(results: dict[str, Any]) -> list[str]:
    # The library defaults (their default, linearised predictive) against MAML's query MSE and
    # the nominal coverage band: met or missed, and by how much.
    lines = [
        "## The library defaults against the goal",
        "",
        "The goal: with nothing but the model, NIW-Meta's default predictive (linearised, "
        "σ = 0.1) has a query MSE at most MAML's at 5 and 10 shots, and its 90 % intervals "
        f"cover {GOAL_COVERAGE[0]:.2f}–{GOAL_COVERAGE[1]:.2f} of the query points.",
        "",
    ]
    for shots, entry in results.items():
        defaults = entry["methods"].get("niw_meta_defaults_linearized")
        maml = entry["methods"].get("maml")
        if defaults is None or maml is None:
            continue
        gap = defaults["mse"]["mean"] - maml["mse"]["mean"]
        mse = "met" if gap <= 0 else f"missed by {gap:.3f}"
        coverage = defaults["coverage"]["mean"]
        low, high = GOAL_COVERAGE
        if low <= coverage <= high:
            band = "met"
        elif coverage > high:
            band = f"missed: {coverage - high:.3f} above the band, the intervals are too wide"
        else:
            band = f"missed: {low - coverage:.3f} below the band, the intervals are too narrow"
        lines.append(
            f"* **{shots}-shot**: query MSE {_pm(defaults['mse'])} against MAML's "
            f"{_pm(maml['mse'])} ({mse}); 90 % coverage {coverage:.3f} ({band})."
        )
    lines += [
        "",
        "Why the intervals are too wide: their width comes from the posterior over the "
        "weights, not from σ, so refitting σ on tasks of the training distribution does not "
        "narrow them (the linearised 'σ refitted' rows), and the closed form's diagonal "
        "posterior is wider still (the 'diagonal posterior' rows). The law's spread is learned "
        "by the meta-loss of diagonal fits, while a new task's predictive uses the support's "
        "full Gauss-Newton curvature; a law learned with the curvature its predictive uses is "
        "the open step.",
    ]
    return lines


def _markdown(payload: dict[str, Any], args: argparse.Namespace) -> str:
    settings = payload["settings"]
    machine = payload["machine"]
    lines = [
        "# Sinusoid regression: NIW-Meta vs MAML, first-order MAML and Reptile",
        "",
        f"Command: `{payload['command']}`; total run time {payload['total_s'] / 60:.1f} min.",
        "",
        f"Finn et al.'s sinusoid tasks and MLP 1-40-40-1 (ReLU), the same initial weights and the "
        f"same episode stream for every method: {settings['meta_steps']} meta-steps × meta-batch "
        f"{settings['meta_batch']} episodes (K support + K query points each), outer Adam 1e-3, "
        f"one model per K. MAML and first-order MAML: {settings['maml_steps']} inner SGD step(s) "
        f"at training (learning rate {INNER_LEARNING_RATE}); Reptile: {settings['reptile_steps']} "
        f"SGD steps on the episode's 2K points; NIW-Meta: Gaussian likelihood σ = "
        f"{settings['niw_sigma']}, SGLD fit of {settings['niw_sgld_steps']} steps (burn-in "
        f"{settings['niw_burnin']}, step {settings['niw_step_size']:g}, precision clamp "
        f"{settings['niw_max_precision']:g}), quadratic meta-loss; the Gauss-Newton variants "
        "as in the script's docstring, and `library defaults`: `NIWMeta` given only the model "
        "(its default fit, optimiser and prior). Test: "
        f"{settings['test_tasks']} fixed tasks, {settings['queries']} query points each; point "
        f"methods adapt with {settings['test_steps']} SGD steps, NIW-Meta with its fit and "
        f"{settings['niw_draws']} posterior draws. Intervals are ± 1.96 standard errors over "
        "tasks. See the script's docstring for the conventions.",
        "",
        "Predictive noise: for the point methods and `predict 0`, `s` is the root mean squared "
        "query residual on "
        f"{settings['calibration_tasks']} tasks from the meta-training distribution (another key); "
        "their NLL is that of `N(f(x), s²)` and their MSE does not depend on `s`. NIW-Meta's NLL is "
        "that of its mixture of `N(f_θs(x), σ²)` over posterior draws; the `σ refitted` row "
        "rescores the same draws with σ chosen on those tasks.",
        "",
    ]
    for shots, entry in payload["results"].items():
        lines += [f"## {shots}-shot: accuracy on the test tasks", "", _accuracy_table(entry, args)]
        for variant in NIW_FITS:
            niw = entry["methods"].get(variant)
            if not niw:
                continue
            lines += [
                "",
                f"{METHOD_LABELS[variant]}'s learned law: n₀ = {niw['prior_df']:.3g}, median γ₀ = "
                f"{niw['prior_precision_median']:.3g}, median prior sd at the mode "
                f"{niw['mode_prior_sd_median']:.3g}; on the test tasks the median posterior sd of "
                f"a weight is {niw['posterior_sd_median']:.3g}, the draws' spread of f(x) is "
                f"{niw['predictive_spread_of_draws']:.3g}, and "
                f"{100 * niw['fit_precision_share_at_max_clamp']:.1f} % of the fit's precisions "
                f"sit at the upper clamp ({100 * niw['fit_precision_share_at_min_clamp']:.1f} % at "
                "the lower).",
            ]
        for method, result in entry["methods"].items():
            training = result.get("training")
            if training and (training.get("rejected_episodes") or training.get("skipped_updates")):
                lines += [
                    "",
                    f"{METHOD_LABELS[method]} left {training['rejected_episodes']} failed episode fits "
                    f"out of their meta-batches and skipped {training['skipped_updates']} "
                    "non-finite updates.",
                ]
            if training and not training["finite"]:
                paths = training["nonfinite_leaves"]
                leaves = ", ".join(f"`{path}` ({count})" for path, count in paths.items())
                end = training["first_nonfinite_before_step"]
                text = f"**{METHOD_LABELS[method]}'s final training state is not finite**: {leaves}"
                if end is not None:
                    chunk_max = training["max_loss_per_chunk"][end // training["chunk"] - 1]
                    text += (
                        f"; first seen at the end of meta-steps {end - training['chunk']}–{end}, "
                        f"whose largest training loss was {chunk_max:.3g}"
                    )
                if paths and all(".nu" in path for path in paths):
                    text += (
                        ". Only Adam's second moments are infinite: those coordinates get zero "
                        "updates from then on"
                    )
                lines += ["", text + "."]
        lines.append("")
    cost = payload.get("cost")
    if cost:
        lines += [
            f"## Cost of one meta-step against the inner steps K (5-shot, meta-batch "
            f"{cost['meta_batch']}, float32)",
            "",
            "K is the inner SGD steps of MAML, first-order MAML and Reptile, and the SGLD steps of "
            "NIW-Meta's fit (which needs at least 2). Steady: median and minimum of "
            f"{settings['timing_repeats']} later calls; compile: tracing and compiling in the first "
            "call; temp: the temporary buffers XLA's buffer assignment gives the compiled step "
            "(the working memory it needs beyond its arguments and outputs).",
            "",
            _cost_table(cost),
            "",
        ]
    lines += [
        "## Where each method wins (from the numbers above)",
        "",
        *_wins(payload["results"], cost),
        "",
        *_goal(payload["results"]),
    ]
    lines += [
        "",
        "## Machine",
        "",
        f"{machine['platform']}, {machine['cpu_count']} CPUs, JAX {machine['versions']['jax']} "
        f"({machine['jax_backend']}), float32; load average before the run "
        f"{', '.join(f'{x:.2f}' for x in payload['load_average_before'])}, after "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_1_5_15_min'])}; {machine['date']}.",
    ]
    return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and episode stream")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--shots", nargs="+", type=int, default=[5, 10])
    parser.add_argument("--meta-steps", type=int, default=12_000)
    parser.add_argument("--meta-batch", type=int, default=25)
    parser.add_argument("--chunk", type=int, default=500, help="meta-steps per jitted scan")
    parser.add_argument("--test-tasks", type=int, default=600)
    parser.add_argument("--calibration-tasks", type=int, default=600)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--test-steps", type=int, default=10, help="SGD steps at test time")
    parser.add_argument("--maml-steps", type=int, default=1, help="inner steps at training")
    parser.add_argument("--reptile-steps", type=int, default=5)
    parser.add_argument("--niw-sigma", type=float, default=0.1)
    parser.add_argument("--niw-sgld-steps", type=int, default=20)
    parser.add_argument("--niw-burnin", type=int, default=10)
    parser.add_argument("--niw-step-size", type=float, default=2e-5)
    parser.add_argument("--niw-max-precision", type=float, default=1e3)
    parser.add_argument("--niw-draws", type=int, default=32)
    parser.add_argument("--niw-ggn-steps", type=int, default=20, help="steps of the GGN fit")
    parser.add_argument("--niw-ggn-optimizer", choices=("adam", "sgd"), default="sgd")
    parser.add_argument("--niw-ggn-learning-rate", type=float, default=2e-5)
    parser.add_argument("--niw-map-steps", type=int, default=20, help="steps of the MAP fit")
    parser.add_argument("--niw-map-optimizer", choices=("adam", "sgd"), default="sgd")
    parser.add_argument("--niw-map-learning-rate", type=float, default=2e-5)
    parser.add_argument("--inner-steps-grid", nargs="+", type=int, default=[1, 2, 5, 10, 20])
    parser.add_argument("--timing-repeats", type=int, default=10)
    parser.add_argument("--no-cost", action="store_true", help="skip the cost measurements")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shots, args.meta_steps, args.chunk = [5], 20, 10
        args.test_tasks = args.calibration_tasks = 20
        args.queries, args.niw_draws = 20, 4
        args.niw_sgld_steps, args.niw_burnin, args.niw_ggn_steps = 4, 2, 2
        args.niw_map_steps = 2
        args.inner_steps_grid, args.timing_repeats = [1, 2], 2
    if args.meta_steps % args.chunk:
        parser.error(f"--meta-steps ({args.meta_steps}) must be a multiple of --chunk.")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write ``meta_sinusoid.json`` and ``meta_sinusoid.md``; returns 0."""
    args = _parse(argv)
    started = time.perf_counter()
    load_before = list(os.getloadavg())
    init_params = init_network(jax.random.fold_in(jax.random.key(args.seed), 0))
    results = {
        str(shots): evaluate_shots(shots, args.methods, init_params, args) for shots in args.shots
    }
    cost = None if args.no_cost else cost_scan(args.methods, init_params, args)
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python benchmarks/meta_sinusoid.py", *arguments])
    payload = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "command": command,
        # The output folder is where the files are, not a setting (and a machine's path).
        "settings": {key: value for key, value in vars(args).items() if key != "out"},
        "constants": {
            "hidden": HIDDEN,
            "inner_learning_rate": INNER_LEARNING_RATE,
            "meta_learning_rate": META_LEARNING_RATE,
            "test_seed": TEST_SEED,
            "calibration_seed": CALIBRATION_SEED,
            "cost_seed": COST_SEED,
            "coverage_level": COVERAGE,
            "sigma_grid": SIGMA_GRID,
        },
        "load_average_before": load_before,
        "results": results,
        "cost": cost,
    }
    payload["total_s"] = time.perf_counter() - started
    payload["machine"] = machine_info()
    write_results(args.out, NAME, payload, _markdown(payload, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
