"""Linear models from label proportions: full-batch DLLP, EasyLLP and soft labels by L-BFGS.

The simplest strong learner of the field is a logistic model ``P(y = 1 | x) = σ(x·w + c)``
fitted to the bags' counts. Three losses, the same as the network's
(:mod:`probkit.llp.network`), but over all rows at once and solved to convergence:

``"bag"`` (DLLP, Ardehaly & Culotta 2017)
    ``Σ_b m_b CE(α_b, p̄_b) / Σ_b m_b``: the bag's proportion ``α_b`` against the mean
    predicted probability ``p̄_b`` of its ``m_b`` rows. Weighting each bag by its size makes this
    the binomial log-likelihood of the counts (``k_b ~ Binomial(m_b, p̄_b)``, the usual
    approximation of their Poisson-binomial law), so large bags count for what they carry.
``"instance"``
    Mean ``t_i ℓ(z_i, 1) + (1 − t_i) ℓ(z_i, 0)`` against per-row targets (EasyLLP's debiased
    labels, which may leave ``[0, 1]``, or the bag's proportion).

plus ``(l2 / 2) ‖w‖²`` (the intercept is not penalised). With bags of one row every loss is
the logistic regression's, so the fit equals scikit-learn's ``LogisticRegression(C = 1 / (l2 n))``.

The bag loss is not convex in general: ``−log mean σ(z_i)`` is concave where every member's
prediction is far below the bag's proportion (it is then ``−logsumexp z_i``). It is smooth, and
from ``w = 0`` (every row at the overall proportion) L-BFGS reaches a stationary point; the
registered check ``llp/linear_dllp_reaches_the_minimum`` compares it with scipy's solver from
several starts.

Why by hand: scikit-learn's and statsmodels' logistic models take instance labels, and no
well-kept library fits a model to bag proportions. The objective and its gradient are one
jit-compiled JAX function (a pass over the rows, on whatever device holds them), in float64 so
that the minimiser is found to the precision the check asks for; scipy's L-BFGS-B drives it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize, special

from probkit._errors import ProbkitError
from probkit.llp.bags import Bags

__all__ = [
    "L2_GRID",
    "LinearFit",
    "PenaltyChoice",
    "bag_folds",
    "bag_loss",
    "choose_l2",
    "fit_linear",
    "linear_logits",
    "paired_difference",
]

L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
"""Penalties tried when ``l2`` is chosen from bags (on standardised features)."""

_CV_TOL = 1e-5
"""Gradient tolerance of the cross-validation fits: their held-out losses are compared to a few
parts in a thousand, which a gradient of 1e-5 no longer moves."""
_LOSSES = ("bag", "instance")
_PROBABILITY_FLOOR = 1e-12


class LinearFit(NamedTuple):
    """A fitted linear model.

    Attributes
    ----------
    coef : numpy.ndarray, shape (d,)
        Weights ``w`` (on the features as given).
    intercept : float
        ``c``.
    l2 : float
        The penalty it was fitted with.
    objective : float
        The penalised loss at the solution.
    gradient_norm : float
        The largest absolute component of the objective's gradient at the solution.
    iterations : int
        L-BFGS iterations.
    """

    coef: np.ndarray
    intercept: float
    l2: float
    objective: float
    gradient_norm: float
    iterations: int


def linear_logits(fit: LinearFit, features: np.ndarray) -> np.ndarray:
    """``x·w + c`` for each row."""
    return np.asarray(features, np.float64) @ fit.coef + fit.intercept


def _objective(params, x, bag_of, sizes, proportions, targets, bag_weight, row_weight, l2, loss):
    # Held-out bags and rows get weight 0 rather than being cut out, so that every fold of a
    # cross-validation has the same shapes and the solver compiles once.
    weights, intercept = params
    logit = x @ weights + intercept
    if loss == "bag":
        mean = jax.ops.segment_sum(jax.nn.sigmoid(logit), bag_of, sizes.shape[0]) / sizes
        mean_negative = jax.ops.segment_sum(jax.nn.sigmoid(-logit), bag_of, sizes.shape[0])
        mean_negative = mean_negative / sizes
        # log p̄ and log(1 − p̄) from the sums of σ(z) and σ(−z), so that neither side loses
        # its precision where p̄ is near 0 or 1.
        cross_entropy = -(
            proportions * jnp.log(jnp.maximum(mean, _PROBABILITY_FLOOR))
            + (1.0 - proportions) * jnp.log(jnp.maximum(mean_negative, _PROBABILITY_FLOOR))
        )
        data = jnp.sum(bag_weight * cross_entropy) / jnp.sum(bag_weight)
    else:
        cross_entropy = -(
            targets * jax.nn.log_sigmoid(logit) + (1.0 - targets) * jax.nn.log_sigmoid(-logit)
        )
        data = jnp.sum(row_weight * cross_entropy) / jnp.sum(row_weight)
    return data + 0.5 * l2 * jnp.sum(weights**2)


@functools.partial(jax.jit, static_argnames=("loss",))
def _value_and_gradient(
    flat, x, bag_of, sizes, proportions, targets, bag_weight, row_weight, l2, loss
):
    """The summed objective of ``F`` independent fits and its gradient.

    ``flat`` is ``(F, d + 1)`` (weights, then intercept), ``bag_weight`` ``(F, B)`` and
    ``row_weight`` ``(F, n)``: one fit per fold of a cross-validation, solved as one separable
    problem, so that the folds share each pass's dispatch instead of running one after another.
    """

    def one(params, bag_weight, row_weight):
        return _objective(
            (params[:-1], params[-1]),
            x,
            bag_of,
            sizes,
            proportions,
            targets,
            bag_weight,
            row_weight,
            l2,
            loss,
        )

    def total(flat):
        return jnp.sum(jax.vmap(one)(flat, bag_weight, row_weight))

    return jax.value_and_grad(total)(flat)


def _solve(features, bags, loss, targets, l2, starts, keep, max_iter, tol):
    """Minimise the ``F`` objectives of ``keep`` (``(F, B)``) from ``starts`` (``(F, d + 1)``).

    Returns the parameters ``(F, d + 1)``, the summed objective, its gradient and the
    iterations.
    """
    with jax.enable_x64(True):
        arguments = (
            jnp.asarray(features),
            jnp.asarray(bags.bag_of),
            jnp.asarray(bags.sizes, jnp.float64),
            jnp.asarray(bags.proportions, jnp.float64),
            jnp.asarray(targets, jnp.float64),
            jnp.asarray(bags.sizes * keep, jnp.float64),
            jnp.asarray(keep[:, bags.bag_of], jnp.float64),
            jnp.asarray(float(l2), jnp.float64),
        )
        shape = starts.shape

        def value_and_gradient(flat):
            value, gradient = _value_and_gradient(
                jnp.asarray(flat.reshape(shape)), *arguments, loss
            )
            return float(value), np.asarray(gradient, np.float64).ravel()

        # scipy's L-BFGS-B drives the jit-compiled objective: each iteration is one pass over
        # the rows on the device, and the loop itself compiles nothing (optax's L-BFGS in a
        # compiled loop took 4-8 s to compile for each new shape, longer than most fits).
        result = optimize.minimize(
            value_and_gradient,
            starts.ravel(),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(max_iter), "gtol": float(tol), "ftol": 0.0, "maxcor": 20},
        )
        value, gradient = value_and_gradient(result.x)
    return result.x.reshape(shape), value, gradient.reshape(shape), int(result.nit)


def _targets(loss, targets, n):
    if loss not in _LOSSES:
        raise ProbkitError(f"loss must be one of {_LOSSES}, got {loss!r}.")
    if loss == "instance":
        if targets is None or np.shape(targets) != (n,):
            raise ProbkitError(f"the instance loss needs `targets` of shape ({n},).")
        return np.asarray(targets, np.float64)
    return np.zeros(n)


def _start(bags, keep, d) -> np.ndarray:
    # w = 0 and c the log-odds of the kept bags' overall proportion.
    overall = bags.counts[keep].sum() / bags.sizes[keep].sum()
    overall = float(np.clip(overall, 1e-6, 1 - 1e-6))
    return np.concatenate([np.zeros(d), [np.log(overall / (1 - overall))]])


def fit_linear(
    features: np.ndarray,
    bags: Bags,
    *,
    loss: str = "bag",
    targets: np.ndarray | None = None,
    l2: float = 1e-4,
    start: LinearFit | None = None,
    held_out: np.ndarray | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> LinearFit:
    """Fit ``σ(x·w + c)`` to the bags' proportions (or to per-row targets) by L-BFGS.

    Parameters
    ----------
    features : numpy.ndarray, shape (n, d)
        Rows of the bags, in the order of ``bags.bag_of``.
    bags : Bags
        Their bags and counts (:func:`~probkit.llp.bags.validate_bags`).
    loss : {"bag", "instance"}
        See the module documentation.
    targets : numpy.ndarray, shape (n,), optional
        Per-row targets of the instance loss (required by it, ignored by the bag loss).
    l2 : float
        The penalty ``(l2 / 2) ‖w‖²``.
    start : LinearFit, optional
        Start from this fit (a warm start along a grid of penalties); default ``w = 0`` and
        ``c`` the log-odds of the overall proportion.
    held_out : numpy.ndarray of bool, shape (num_bags,), optional
        Bags left out of the fit (their rows too), for cross-validation.
    max_iter : int
        Most L-BFGS iterations.
    tol : float
        Stop when every component of the gradient is below this.

    Returns
    -------
    LinearFit
    """
    if not (np.isscalar(l2) and np.isfinite(l2) and l2 >= 0):
        raise ProbkitError(f"l2 must be a finite number >= 0, got {l2!r}.")
    features = np.asarray(features, np.float64)
    n, d = features.shape
    targets = _targets(loss, targets, n)
    keep = np.ones(bags.num_bags, bool) if held_out is None else ~np.asarray(held_out, bool)
    if not keep.any():
        raise ProbkitError("every bag is held out: nothing to fit.")
    if start is None:
        start_vector = _start(bags, keep, d)
    else:
        start_vector = np.concatenate([start.coef, [start.intercept]])
    params, value, gradient, iterations = _solve(
        features, bags, loss, targets, l2, start_vector[None], keep[None], max_iter, tol
    )
    return LinearFit(
        coef=params[0, :-1],
        intercept=float(params[0, -1]),
        l2=float(l2),
        objective=value,
        gradient_norm=float(np.max(np.abs(gradient))),
        iterations=iterations,
    )


def bag_loss(probability: np.ndarray, bags: Bags) -> np.ndarray:
    """Each bag's cross-entropy ``CE(α_b, p̄_b)`` of the rows' predicted probabilities.

    The per-bag terms of the bag loss (weight them by ``bags.sizes`` for the likelihood of the
    counts); the common yardstick on which :class:`~probkit.llp.LLPClassifier` compares its
    candidates on held-out bags, whatever loss each was trained with.
    """
    probability = np.asarray(probability, np.float64)
    total = np.bincount(bags.bag_of, probability, minlength=bags.num_bags)
    mean = np.clip(total / bags.sizes, _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
    alpha = bags.proportions
    return -(alpha * np.log(mean) + (1 - alpha) * np.log1p(-mean))


class PenaltyChoice(NamedTuple):
    """How ``l2`` was chosen by :func:`choose_l2`.

    Attributes
    ----------
    l2 : float
        The chosen penalty.
    grid : tuple of float
        The penalties tried.
    cv_loss : numpy.ndarray, shape (len(grid),)
        Held-out bag loss of each (size-weighted mean over every bag, each held out once).
    cv_se : numpy.ndarray, shape (len(grid),)
        Standard error of each one's difference from the best, over bags.
    held_out_bag_loss : numpy.ndarray, shape (num_bags,)
        Each bag's loss when it was held out, at the chosen penalty.
    constant_bag_loss : numpy.ndarray, shape (num_bags,)
        The same for the constant model (every row at its training folds' overall proportion):
        the yardstick of a model that learned nothing.
    """

    l2: float
    grid: tuple[float, ...]
    cv_loss: np.ndarray
    cv_se: np.ndarray
    held_out_bag_loss: np.ndarray
    constant_bag_loss: np.ndarray


def paired_difference(loss_a, loss_b, sizes) -> tuple[float, float]:
    """Size-weighted mean of ``loss_a − loss_b`` over bags, and its standard error.

    The per-bag losses of two models on the same held-out bags are paired, so the noise that
    the bags share (a bag whose proportion is hard to predict is hard for both) cancels.
    """
    weight = np.asarray(sizes, np.float64) / np.sum(sizes)
    difference = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    mean = float(difference @ weight)
    count = difference.size
    variance = float(((difference - mean) ** 2) @ weight**2) * count / max(count - 1, 1)
    return mean, float(np.sqrt(max(variance, 0.0)))


def bag_folds(num_bags: int, folds: int, seed: int) -> np.ndarray:
    """The fold (``0..folds-1``) of each bag: a random permutation dealt round-robin."""
    fold = np.empty(num_bags, np.int64)
    fold[np.random.default_rng(seed).permutation(num_bags)] = np.arange(num_bags) % folds
    return fold


def choose_l2(
    features: np.ndarray,
    bags: Bags,
    *,
    loss: str = "bag",
    targets: np.ndarray | None = None,
    grid: tuple[float, ...] = L2_GRID,
    folds: int = 5,
    seed: int = 0,
    on_penalty: Callable[[float, float], None] | None = None,
) -> PenaltyChoice:
    """Choose ``l2`` by cross-validation over whole bags, with the one-standard-error rule.

    Every bag is held out once (``folds`` folds); a penalty's score is the size-weighted mean
    of its held-out bags' losses (:func:`bag_loss`, the binomial log-likelihood of their
    counts per row). Held-out bag losses are flat in the penalty and noisy when bags are few
    (``benchmarks/llp_diagnose.py``), so the largest penalty whose score is within one standard
    error of the best one's (the standard error of the per-bag differences) is kept: more
    shrinkage when the bags cannot tell, which is where a linear model with too little of it
    fails (breast cancer in bags of 32: test AUC 0.88 at ``l2 = 1e-6`` against 0.99 at 0.1).
    With fewer than two bags there is nothing to hold out and the largest penalty is kept.
    ``on_penalty(l2, loss)``, when given, is called after each penalty of the grid with its
    cross-validated loss: progress on large data, where each penalty solves every fold.
    """
    grid = tuple(sorted(float(g) for g in grid))[::-1]  # largest first: warm starts shrink less
    folds = int(min(folds, bags.num_bags))
    if folds < 2:
        zeros = np.zeros(bags.num_bags)
        return PenaltyChoice(
            grid[0], grid[::-1], np.zeros(len(grid)), np.zeros(len(grid)), zeros, zeros
        )
    fold = bag_folds(bags.num_bags, folds, seed)
    features = np.asarray(features, np.float64)
    targets = _targets(loss, targets, features.shape[0])
    keep = np.stack([fold != f for f in range(folds)])  # (F, B): the bags each fold fits on
    constant = np.zeros(bags.num_bags)
    for f in range(folds):
        held = ~keep[f]
        overall = bags.counts[keep[f]].sum() / bags.sizes[keep[f]].sum()
        constant[held] = bag_loss(np.full(len(bags.bag_of), overall), bags)[held]
    losses = np.zeros((len(grid), bags.num_bags))
    params = np.stack([_start(bags, keep[f], features.shape[1]) for f in range(folds)])
    row_fold = fold[bags.bag_of]
    for g, l2 in enumerate(grid):
        # Every fold in one solve, each warm-started from its fit at the previous penalty.
        params = _solve(features, bags, loss, targets, l2, params, keep, 500, _CV_TOL)[0]
        logits = np.einsum("nd,nd->n", features, params[row_fold, :-1]) + params[row_fold, -1]
        losses[g] = bag_loss(special.expit(logits), bags)  # each bag by its own fold's model
        if on_penalty is not None:
            on_penalty(l2, float(np.average(losses[g], weights=bags.sizes)))
    score = np.average(losses, axis=1, weights=bags.sizes)
    best = int(np.argmin(score))
    se = np.array([paired_difference(row, losses[best], bags.sizes)[1] for row in losses])
    chosen = min(g for g in range(len(grid)) if score[g] <= score[best] + se[g])
    order = np.argsort(grid)
    return PenaltyChoice(
        grid[chosen],
        tuple(np.asarray(grid)[order]),
        score[order],
        se[order],
        losses[chosen],
        constant,
    )
