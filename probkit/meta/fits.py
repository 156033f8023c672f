"""Gaussian fits of an episode's loss: the local evidence that NIW meta-learning combines.

* :func:`linear_gaussian_fit`: exact for ``y = Φθ + ε``, ``ε ~ N(0, σ²)``: the loss
  ``-log p(y | θ)`` is quadratic with precision ``ΦᵀΦ/σ²`` and minimiser the least-squares
  solution (full precision matrix; padded rows are masked out).
* :func:`sgld_fit`: the paper's estimator for any loss: stochastic-gradient Langevin dynamics
  on ``exp(-L(θ))`` started at the prior mean; the sample mean and the inverse sample variance of
  the draws after burn-in (diagonal, clamped to ``[min_precision, max_precision]``).
* :func:`laplace_fit`: a few optimiser steps (L-BFGS by default, :func:`default_fit_optimizer`)
  on ``L`` from the prior mean, then the diagonal of the Hessian there (clamped the same way);
  ``d`` Hessian-vector products.
* :func:`ggn_fit`: the same optimiser steps, then the diagonal of the generalised Gauss-Newton
  matrix ``JᵀHJ`` of a loss written as ``ℓ(f(θ))`` (``J`` the Jacobian of the model's outputs,
  ``H`` the Hessian of ``ℓ`` in them): positive semi-definite for a convex ``ℓ`` (squared error,
  cross-entropy) even where the loss is not convex in ``θ``, and it costs one
  vector-Jacobian product per output instead of one Hessian-vector product per parameter.

All return a :class:`~probkit.meta.core.GaussianFit` on the flat parameter vector; the fits are
constants of the meta-loss (no graph is kept through their inner steps), so memory does not
grow with the number of steps.

:func:`laplace_fit` and :func:`ggn_fit` also take the local prior's precision ``P``. They then
minimise the local posterior's objective ``L(θ) + ½Σ P(θ - m₀)²`` instead of ``L`` alone and
read the end of their steps ``θ*`` as its mode: the returned mean is
``m̄ = θ* + P(θ* - m₀)/Ā``, the one for which the closed-form local posterior with prior
precision ``P``, ``(Ām̄ + Pm₀)/(Ā + P)``, is ``θ*`` itself, so the prior's pull is applied once.
At the mode ``∇L(θ*) = -P(θ* - m₀)``, so ``m̄`` is then also ``θ* - ∇L(θ*)/Ā``, the centre of
``L``'s quadratic model there. (Using that second form away from the mode makes the closed form
a diagonal Newton step from ``θ*``, which overshoots wherever the curvature is small and the
steps have not converged.) A fit of ``L`` alone that stops short of ``L``'s minimum (a few
steps from ``m₀``, as in the paper) is pulled towards ``m₀`` a second time by the closed form,
and a loss with flat directions has no minimum to stop at.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from probkit._errors import ProbkitError
from probkit._validate import check_positive_int
from probkit.meta.core import GaussianFit

__all__ = [
    "default_fit_optimizer",
    "gauss_newton_factor",
    "ggn_fit",
    "laplace_fit",
    "linear_gaussian_fit",
    "sgld_fit",
]


def linear_gaussian_fit(design, targets, noise_variance, mask=None) -> GaussianFit:
    """The exact quadratic form of ``-log N(y; Φθ, σ²I)``.

    Parameters
    ----------
    design : array, shape (n, d)
        ``Φ``, one row per observation.
    targets : array, shape (n,)
        ``y``.
    noise_variance : float
        ``σ²``.
    mask : array of bool or 0/1, shape (n,), optional
        Rows to use (padding is 0).

    Returns
    -------
    GaussianFit
        ``precision = ΦᵀΦ/σ²`` (a matrix) and ``mean = (ΦᵀΦ)⁻¹Φᵀy``. With fewer rows than
        ``d`` the precision is singular and the mean is the minimum-norm solution; the local
        posterior stays proper because the prior precision is added to it.
    """
    design = jnp.asarray(design)
    weights = (
        jnp.ones(design.shape[0], design.dtype) if mask is None else jnp.asarray(mask, design.dtype)
    )
    weighted = design * weights[:, None]
    precision = weighted.T @ design / noise_variance
    rhs = weighted.T @ targets / noise_variance
    mean = jnp.linalg.pinv(precision, hermitian=True) @ rhs
    return GaussianFit(mean, (precision + precision.T) / 2.0)


MAX_UNROLLED_STEPS = 32
"""Optimiser steps of a fit up to which the loop is unrolled, for an optimiser other than the
default L-BFGS (see :func:`_minimise`)."""


def default_fit_optimizer() -> optax.GradientTransformationExtraArgs:
    """The optimiser of :func:`laplace_fit` and :func:`ggn_fit` when none is given: L-BFGS.

    ``optax.lbfgs()`` (memory 10, zoom line search satisfying the strong Wolfe conditions):
    its steps are scaled by the curvature it meets and by the line search, so it needs no
    learning rate, whose right value differs by orders of magnitude between networks. Measured
    on ``benchmarks/meta_sinusoid.py`` (5-shot, 20 fit steps of the local posterior's
    objective): in pilots of 3000 meta-steps the default learner's query MSE was 0.39 with
    L-BFGS against 1.1–3.0 with Adam at any learning rate tried, 0.54 with MAML's plain
    gradient step tuned to that network (``optax.sgd(2e-5)``) and 0.75 with an Armijo
    backtracking gradient descent; after the benchmark's 12000 meta-steps it is 0.261 (MAML
    0.488). The line search costs time: a meta-step of 25 episodes took 75 ms against 5 ms
    with the plain gradient steps (``benchmarks/results/meta_sinusoid.md``, its cost table).

    Too slow for a convolutional network on CPU: the line search evaluates the network inside
    a loop, where XLA's CPU backend runs convolution gradients several times slower than in
    straight-line code. A three-layer CNN (d = 20261) did not finish one meta-update on four
    100-image MNIST episodes in ten minutes, where five Adam steps (``fit_options=
    {"learning_rate": 1e-2, "num_steps": 5}``) took 8.4 s. Pass such options for
    convolutional networks on CPU, and check the result with :meth:`NIWMeta.validate
    <probkit.meta.NIWMeta.validate>`.
    """
    return optax.lbfgs()


def _clamp(precision, min_precision, max_precision):
    return jnp.clip(precision, min_precision, max_precision)


def sgld_fit(
    loss: Callable[[jax.Array], jax.Array],
    key: jax.Array,
    start: jax.Array,
    *,
    num_steps: int,
    step_size: float,
    burnin: int = 0,
    min_precision: float = 1e-4,
    max_precision: float = 1e3,
) -> GaussianFit:
    """Gaussian fit of ``exp(-loss)`` from Langevin draws.

    Parameters
    ----------
    loss : callable
        ``L(θ)`` on the flat parameter vector: the episode's negative log-likelihood (summed).
    key : jax.Array
        PRNG key.
    start : array, shape (d,)
        The chain's start, the prior mean ``m₀``.
    num_steps, burnin : int
        Langevin steps, and how many of the first are discarded (at least 2 kept).
    step_size : float
        ``ε`` in ``θ ← θ - ε∇L(θ) + √(2ε) ξ``.
    min_precision, max_precision : float
        Clamp of the per-coordinate precision ``1 / sample variance``.

    Returns
    -------
    GaussianFit
        Diagonal: the mean and the clamped inverse variance of the kept draws.
    """
    kept = num_steps - burnin
    if kept < 2:
        raise ProbkitError(
            f"sgld_fit keeps num_steps - burnin = {kept} draws; make `num_steps` at least "
            "`burnin` + 2."
        )
    gradient = jax.grad(loss)

    def step(carry, _):
        theta, index, count, mean, squares = carry
        noise = jax.random.normal(jax.random.fold_in(key, index), theta.shape, theta.dtype)
        theta = theta - step_size * gradient(theta) + jnp.sqrt(2.0 * step_size) * noise
        # Welford's running mean and sum of squares of the kept draws, and keys folded in step
        # by step: memory stays O(d) for any number of steps (nothing per step is stored).
        keep = index >= burnin
        count = count + keep
        delta = theta - mean
        mean = jnp.where(keep, mean + delta / jnp.maximum(count, 1), mean)
        squares = jnp.where(keep, squares + delta * (theta - mean), squares)
        return (theta, index + 1, count, mean, squares), None

    zeros = jnp.zeros_like(start)
    carry = (start, jnp.asarray(0), jnp.asarray(0, start.dtype), zeros, zeros)
    (_, _, count, mean, squares), _ = jax.lax.scan(step, carry, None, length=num_steps)
    variance = squares / (count - 1)
    return GaussianFit(mean, _clamp(1.0 / variance, min_precision, max_precision))


def _check_prior_precision(prior_precision, min_precision):
    if prior_precision is not None and not min_precision > 0:
        raise ProbkitError(
            "a fit with a `prior_precision` divides the prior's pull by the clamped curvature; "
            f"make `min_precision` > 0 (got {min_precision})."
        )


def _fit(theta, start, precision, prior_precision):
    """The fit at ``θ*``, or the one whose closed-form posterior mean is ``θ*`` given ``P``."""
    if prior_precision is None:
        return GaussianFit(theta, precision)
    return GaussianFit.at_posterior_mode(theta, precision, start, prior_precision)


def _minimise(loss, start, prior_precision, num_steps, learning_rate, optimizer):
    """The end of ``num_steps`` optimiser steps from ``start``.

    The steps minimise ``L``, or the local posterior's ``L(θ) + ½Σ P(θ - start)²`` when
    ``prior_precision`` ``P`` is given.
    """

    def objective(theta):
        if prior_precision is None:
            return loss(theta)
        return loss(theta) + 0.5 * jnp.sum(prior_precision * (theta - start) ** 2)

    value_and_gradient = jax.value_and_grad(objective)
    # Line searches (optax.scale_by_backtracking_linesearch, optax.lbfgs) read the objective's
    # value and call it; other optimisers ignore the extra arguments.
    if optimizer is not None and learning_rate is not None:
        raise ProbkitError(
            "pass either `learning_rate` (Adam's) or `optimizer`, not both: the optimizer "
            "carries its own learning rate."
        )
    line_search = optimizer is None and learning_rate is None
    if optimizer is None:
        optimizer = default_fit_optimizer() if line_search else optax.adam(learning_rate)
    optimizer = optax.with_extra_args_support(optimizer)

    def step(carry, _):
        theta, state = carry
        value, gradient = value_and_gradient(theta)
        updates, state = optimizer.update(
            gradient, state, theta, value=value, grad=gradient, value_fn=objective
        )
        return (optax.apply_updates(theta, updates), state), None

    # Unrolled when short: XLA on CPU runs a convolution's gradient inside a loop several times
    # slower than in straight-line code (a 4-layer CNN on an 80-image episode: 5 steps took
    # 1.77 s in a loop, 0.23 s unrolled); a long loop stays rolled to bound compile time. The
    # default L-BFGS stays rolled: its line search evaluates the model inside a while loop
    # anyway, and unrolling its 20 steps tripled the compile time of a meta-update (Finn's
    # sinusoid MLP, 25 episodes: 23 s against 8 s).
    short = 0 < num_steps <= MAX_UNROLLED_STEPS
    unroll = num_steps if short and not line_search else 1
    (theta, _), _ = jax.lax.scan(
        step, (start, optimizer.init(start)), None, length=num_steps, unroll=unroll
    )
    return theta


def laplace_fit(
    loss: Callable[[jax.Array], jax.Array],
    start: jax.Array,
    *,
    num_steps: int,
    learning_rate: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    min_precision: float = 1e-4,
    max_precision: float = 1e3,
    prior_precision: jax.Array | float | None = None,
) -> GaussianFit:
    """Gaussian fit from ``num_steps`` optimiser steps on ``loss`` and the diagonal Hessian there.

    The optimiser is :func:`default_fit_optimizer` (L-BFGS, no learning rate to tune),
    ``optax.adam(learning_rate)`` when a ``learning_rate`` is given, or ``optimizer`` (any
    optax transformation; line searches receive the objective). The diagonal
    is computed with one Hessian-vector product per coordinate (``d`` of them), so this suits
    models of up to some thousands of parameters.

    With ``prior_precision`` ``P`` (a scalar or one value per coordinate) the steps minimise
    ``loss(θ) + ½Σ P(θ - start)²`` and the mean is ``θ* + P(θ* - start)/Ā`` (see the module's
    notes): the closed-form local posterior with prior precision ``P`` then has its mean at the
    end of the steps, the MAP once they have converged.
    """
    _check_prior_precision(prior_precision, min_precision)
    gradient = jax.grad(loss)
    theta = _minimise(loss, start, prior_precision, num_steps, learning_rate, optimizer)

    def hessian_diagonal_entry(basis):
        return basis @ jax.jvp(gradient, (theta,), (basis,))[1]

    diagonal = jax.lax.map(hessian_diagonal_entry, jnp.eye(theta.shape[0], dtype=theta.dtype))
    precision = _clamp(diagonal, min_precision, max_precision)
    return _fit(theta, start, precision, prior_precision)


def ggn_fit(
    outputs: Callable[[jax.Array], jax.Array],
    output_loss: Callable[[jax.Array], jax.Array],
    start: jax.Array,
    *,
    num_steps: int,
    learning_rate: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    min_precision: float = 1e-4,
    max_precision: float = 1e3,
    prior_precision: jax.Array | float | None = None,
    num_probes: int | None = None,
    key: jax.Array | None = None,
) -> GaussianFit:
    """Gaussian fit from optimiser steps on ``ℓ(f(θ))`` and the diagonal generalised Gauss-Newton there.

    Parameters
    ----------
    outputs : callable
        ``f(θ)`` on the flat parameter vector: the model's outputs on the episode's examples
        (any shape, e.g. ``(n,)`` predictions or ``(n, classes)`` logits).
    output_loss : callable
        ``ℓ(z)``: the episode's loss as a function of those outputs, so that the loss is
        ``ℓ(f(θ))``.
    start : array, shape (d,)
        Where the optimiser starts, the prior mean ``m₀``.
    num_steps : int
        Optimiser steps before the curvature is taken.
    learning_rate : float, optional
        Take the steps with ``optax.adam(learning_rate)`` instead of the default
        :func:`default_fit_optimizer` (L-BFGS). Adam moves every coordinate by about
        ``learning_rate`` per step, flat ones included, so its right value depends on the
        network's scale.
    optimizer : optax.GradientTransformation, optional
        Another optimiser (e.g. ``optax.sgd``, which moves each coordinate in proportion to its
        gradient as MAML's inner steps do). Line searches (``optax.lbfgs``,
        ``optax.scale_by_backtracking_linesearch``) are given the objective and its value.
    min_precision, max_precision : float
        Clamp of the per-coordinate precision.
    prior_precision : float or array, shape (d,), optional
        ``P``: the steps then minimise ``ℓ(f(θ)) + ½Σ P(θ - start)²``, the local posterior's
        objective, and the mean is ``θ* + P(θ* - start)/Ā``, so that the closed-form local
        posterior with that ``P`` has its mean at the end of the steps ``θ*``.
    num_probes : int, optional
        Estimate ``diag(JᵀHJ)`` from this many random probes instead of exactly: with
        ``H = SSᵀ`` (its symmetric square root) and ``ε ~ N(0, I)``, ``(JᵀSε)²`` has
        expectation ``diag(JᵀHJ)``, and each probe costs one reverse pass through the model
        instead of one per output. Use it when an episode has many outputs (a convolutional
        network's logits of dozens of images); the relative error of a coordinate is about
        ``√(2/num_probes)``. Needs ``key``.
    key : jax.Array, optional
        PRNG key of the probes.

    Returns
    -------
    GaussianFit
        Diagonal: the end of the optimiser steps ``θ*`` (or, with ``prior_precision``,
        ``θ* + P(θ* - start)/Ā``) and the clamped ``diag(JᵀHJ)`` there.

    Notes
    -----
    ``J`` (outputs × d) is built with one reverse pass per output and ``H`` is ``ℓ``'s Hessian
    in the outputs (outputs × outputs), so the cost is that of a few-shot episode's outputs,
    not of the ``d`` Hessian-vector products of :func:`laplace_fit`. The Gauss-Newton matrix
    drops the term of ``ℓ``'s gradient times the model's own curvature; it equals the Hessian
    for a model linear in ``θ`` and is the usual Laplace curvature of networks because it stays
    positive semi-definite.
    """
    _check_prior_precision(prior_precision, min_precision)

    def loss(theta):
        return output_loss(outputs(theta))

    if num_probes is not None:
        num_probes = check_positive_int("num_probes", num_probes)
        if key is None:
            raise ProbkitError("ggn_fit with `num_probes` draws random probes: pass a `key`.")
    theta = _minimise(loss, start, prior_precision, num_steps, learning_rate, optimizer)
    flat_outputs, pullback, hessian = _output_curvature(outputs, output_loss, theta)
    if num_probes is None:
        # One reverse pass per output: the rows of J.
        basis = jnp.eye(flat_outputs.size, dtype=flat_outputs.dtype)
        jacobian = jax.vmap(lambda row: pullback(row)[0])(basis)
        diagonal = jnp.einsum("pd,pq,qd->d", jacobian, hessian, jacobian)
    else:
        probes = jax.random.normal(key, (num_probes, flat_outputs.size), theta.dtype)
        probes = probes @ _symmetric_root(hessian).T
        diagonal = jnp.mean(jax.vmap(lambda probe: pullback(probe)[0] ** 2)(probes), axis=0)
    precision = _clamp(diagonal, min_precision, max_precision)
    return _fit(theta, start, precision, prior_precision)


def gauss_newton_factor(
    outputs: Callable[[jax.Array], jax.Array],
    output_loss: Callable[[jax.Array], jax.Array],
    theta: jax.Array,
) -> jax.Array:
    """``F = SᵀJ`` at ``θ``, so that ``FᵀF = JᵀHJ`` is the Gauss-Newton matrix of ``ℓ(f(θ))``.

    ``J`` is the Jacobian of the flattened outputs ``f(θ)`` and ``H = SSᵀ`` the Hessian of
    ``ℓ`` in them (its symmetric square root from the eigendecomposition). One reverse pass per
    output; shape ``(outputs, d)``.
    """
    _, pullback, hessian = _output_curvature(outputs, output_loss, theta)
    return jax.vmap(lambda column: pullback(column)[0])(_symmetric_root(hessian).T)


def _output_curvature(outputs, output_loss, theta):
    """The flattened outputs at ``θ``, their pullback (``v ↦ vᵀJ``) and ``ℓ``'s Hessian in them."""
    flat_outputs, pullback = jax.vjp(lambda point: jnp.ravel(outputs(point)), theta)
    shape = jax.eval_shape(outputs, theta).shape

    def flat_output_loss(flat):
        return output_loss(flat.reshape(shape))

    return flat_outputs, pullback, jax.hessian(flat_output_loss)(flat_outputs)


def _symmetric_root(hessian):
    """``S`` with ``SSᵀ = H``; eigenvalues clipped at 0.

    ``H`` is symmetric positive semi-definite for a convex ``ℓ``; the clip keeps the root real
    where rounding leaves an eigenvalue slightly negative.
    """
    values, vectors = jnp.linalg.eigh((hessian + hessian.T) / 2.0)
    return vectors * jnp.sqrt(jnp.clip(values, 0.0))
