"""Checks of belief propagation with count factors, the engine of learning from label proportions.

On trees and forests, count factors included, sum-product BP is exact: its marginals and Bethe
``log Z`` must equal brute-force enumeration to rounding error. Count-factor messages must equal
enumeration for small bags and an independent log-space leave-one-out convolution for large
ones. Symmetries of the model (exchangeability within a bag, the label flip, the order of a
bag's members) must hold exactly for loopy BP as well, and the Gaussian message must approach
the exact one as the bag grows, at the rate ``1/m`` of the central-limit correction.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import optimize, special
from sklearn.linear_model import LogisticRegression

from probkit.inference.bp import (
    CountFactors,
    belief_propagation,
    binary_mrf,
    clique_expansion,
    count_messages,
)
from probkit.llp import LLPClassifier, bag_counts, random_bags, validate_bags
from probkit.llp.linear import fit_linear
from probkit.theory.check import CheckContext, Outcome, register
from probkit.theory.enumerate_mrf import (
    enumerate_binary_mrf,
    enumerated_count_message,
    leave_one_out_count_message,
)

__all__: list[str] = []

EXACT_TOLERANCE = 1e-12
_BP_TOLERANCE = 1e-14  # message tolerance of the runs compared with enumeration


def _random_forest(rng, n, num_trees):
    # A random forest on n nodes with `num_trees` trees: n - num_trees edges.
    # The first `num_trees` nodes of a random order are the roots; every later node hangs from a
    # uniformly chosen earlier one.
    order = rng.permutation(n)
    parents = [int(rng.choice(order[:position])) for position in range(num_trees, n)]
    return np.stack([parents, order[num_trees:]], axis=1)


def _padded(edges, coupling, num_edges, n):
    # Zero couplings on unused pairs keep every graph of a check at one shape (one compilation);
    # a zero coupling sends exactly zero messages, so the field's structure is unchanged.
    used = {tuple(sorted(e)) for e in edges.tolist()}
    extra = [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in used]
    extra = np.array(extra[: num_edges - len(edges)], dtype=int).reshape(-1, 2)
    return np.concatenate([edges, extra]), np.concatenate([coupling, np.zeros(len(extra))])


def _table(size, count, strength):
    s = np.arange(size + 1)
    if np.isinf(strength):
        return np.where(s == count, 0.0, -np.inf)
    return -strength * (s - count) ** 2


@register(capability="llp", kind="exact")
def bp_is_exact_on_trees_and_forests(context: CheckContext) -> Outcome:
    """BP marginals and Bethe log Z equal enumeration on forests, with and without count factors."""
    rng = np.random.default_rng(context.seed)
    n, replicates = 12, context.pick(4, 20)
    errors = {}
    for strength in (None, 1.0, 10.0, np.inf):
        for method in ("exact", "tree") if strength is not None else ("exact",):
            worst = 0.0
            for _ in range(replicates):
                if strength is None:  # pairwise only: a random forest of 1 to 3 trees
                    edges = _random_forest(rng, n, int(rng.integers(1, 4)))
                    factors = None
                else:
                    # Two bags of 6 joined by one edge, and pairwise trees inside neither: the
                    # factor graph (bags as factors) is a tree.
                    edges = np.array([[int(rng.integers(0, 6)), int(rng.integers(6, 12))]])
                    counts = rng.integers(0, 7, size=2).astype(float)
                    factors = CountFactors.from_bags(
                        np.repeat([0, 1], 6), counts, strength=strength
                    )
                coupling = rng.normal(0.0, 2.0, len(edges))
                edges, coupling = _padded(edges, coupling, n - 1, n)
                mrf = binary_mrf(jnp.asarray(rng.normal(0.0, 1.5, n)), edges, coupling, factors)
                exact = enumerate_binary_mrf(mrf)
                for damping in (0.0, 0.5):
                    result = belief_propagation(
                        mrf,
                        method=method,
                        damping=damping,
                        tolerance=_BP_TOLERANCE,
                        max_iterations=500,
                    )
                    worst = max(
                        worst,
                        float(np.max(np.abs(np.asarray(result.marginals) - exact.marginals))),
                        abs(float(result.log_partition) - exact.log_partition),
                    )
            errors[f"strength={strength}, {method}"] = worst
    statistic = max(errors.values())
    return Outcome.at_most(
        statistic,
        EXACT_TOLERANCE,
        description="max |BP − enumeration| over marginals and log Z",
        details={"errors": errors, "replicates": replicates},
    )


def _padded_bags(rng, sizes, strengths, width):
    # One row per (size, strength): random cavities, a random count, its table, padded to width.
    rows = [(size, strength) for size in sizes for strength in strengths]
    eta = np.zeros((len(rows), width))
    table = np.full((len(rows), width + 1), -np.inf)
    counts = np.zeros(len(rows))
    for row, (size, strength) in enumerate(rows):
        eta[row, :size] = rng.normal(0.0, 2.0, size)
        counts[row] = rng.integers(0, size + 1)
        table[row, : size + 1] = _table(size, counts[row], strength)
    mask = np.arange(width)[None, :] < np.array([size for size, _ in rows])[:, None]
    return rows, eta, mask, table, counts


@register(capability="llp", kind="exact")
def count_messages_match_enumeration(context: CheckContext) -> Outcome:
    """Exact and FFT-tree count messages equal enumeration (m ≤ 14) and log-space convolution (m ≤ 512, 2048 at full size)."""
    rng = np.random.default_rng(context.seed)
    strengths = (0.3, 3.0, np.inf)
    batches = [
        (context.pick([1, 3, 9, 14], list(range(1, 15))), 16),  # padded into one block
        # Quick: bags up to 512 (one block); full: up to 2048.
        context.pick(([300, 512], 512), ([300, 700, 1500, 2048], 2048)),
    ]
    errors = {}
    for sizes, width in batches:
        rows, eta, mask, table, counts = _padded_bags(rng, sizes, strengths, width)
        args = (jnp.asarray(eta), jnp.asarray(mask), jnp.asarray(table), jnp.asarray(counts))
        strength = jnp.asarray([s for _, s in rows])
        messages = {m: np.asarray(count_messages(*args, strength, m)) for m in ("exact", "tree")}
        for row, (size, s) in enumerate(rows):
            enumerable = size <= 14
            members = range(size) if enumerable else rng.choice(size, 3, replace=False)
            oracle = enumerated_count_message if enumerable else leave_one_out_count_message
            reference = np.array(
                [oracle(eta[row, :size], table[row, : size + 1], i) for i in members]
            )
            for method, message in messages.items():
                got = message[row, list(members)]
                error = np.where(got == reference, 0.0, np.abs(got - reference))  # ±inf agree
                errors[f"m={size}, λ={s}, {method}"] = float(np.max(error))
    statistic = max(errors.values())
    return Outcome.at_most(
        statistic,
        1e-10,
        description="max |count message − oracle| (enumeration m ≤ 14, log-space DP above)",
        details={"worst": max(errors, key=errors.get), "errors": errors},
    )


@register(capability="llp", kind="exact")
def hard_counts_hold_in_expectation(context: CheckContext) -> Outcome:
    """Under hard counts the marginals of each bag sum to k_b, and equal k_b / m without other terms."""
    rng = np.random.default_rng(context.seed)
    sizes = np.array([3, 5, 8, 13])
    bag_of = np.repeat(np.arange(4), sizes)
    n = int(sizes.sum())
    worst_sum, worst_exchangeable = 0.0, 0.0
    for _ in range(context.pick(3, 20)):
        counts = np.array([rng.integers(0, s + 1) for s in sizes], dtype=float)
        factors = CountFactors.from_bags(bag_of, counts)
        # One edge between consecutive bags keeps the factor graph a tree.
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        edges = np.stack([starts[:-1] + 1, starts[1:]], axis=1)
        mrf = binary_mrf(jnp.asarray(rng.normal(0, 2, n)), edges, rng.normal(0, 2, 3), factors)
        result = belief_propagation(mrf, tolerance=_BP_TOLERANCE, max_iterations=500)
        bag_sums = np.bincount(bag_of, np.asarray(result.marginals))
        worst_sum = max(worst_sum, float(np.max(np.abs(bag_sums - counts))))
        plain = belief_propagation(
            binary_mrf(jnp.zeros(n), edges, np.zeros(3), factors),
            tolerance=_BP_TOLERANCE,
            max_iterations=500,
        )
        expected = (counts / sizes)[bag_of]
        worst_exchangeable = max(
            worst_exchangeable, float(np.max(np.abs(np.asarray(plain.marginals) - expected)))
        )
    statistic = max(worst_sum, worst_exchangeable)
    return Outcome.at_most(
        statistic,
        EXACT_TOLERANCE,
        description="max |Σ_b μ_i − k_b| and |μ_i − k_b/m| (no similarity term)",
        details={"bag_sum_error": worst_sum, "exchangeable_error": worst_exchangeable},
    )


def _loopy_field(rng, n, bag_of, counts, strength, degree=3):
    # A random graph of fixed edge count (one compilation for all replicates).
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    edges = pairs[rng.choice(len(pairs), degree * n // 2, replace=False)]
    coupling = rng.normal(0.5, 1.0, len(edges))
    factors = CountFactors.from_bags(bag_of, counts, strength=strength)
    return edges, coupling, factors


@register(capability="llp", kind="exact")
def loopy_bp_respects_the_model_symmetries(context: CheckContext) -> Outcome:
    """Label flip (y → 1 − y, k → m − k gives μ → 1 − μ) and member order leave loopy BP unchanged."""
    rng = np.random.default_rng(context.seed)
    n, sizes = 16, np.array([5, 11])
    bag_of = np.repeat([0, 1], sizes)
    flip_error, order_error = 0.0, 0.0
    for strength in context.pick((2.0, np.inf), (0.5, 2.0, 10.0, np.inf)):
        counts = np.array([2.0, 7.0])
        edges, coupling, factors = _loopy_field(rng, n, bag_of, counts, strength)
        unary = rng.normal(0, 1, n)
        run = {"tolerance": _BP_TOLERANCE, "max_iterations": 2000}
        base = belief_propagation(binary_mrf(jnp.asarray(unary), edges, coupling, factors), **run)
        # y → 1 − y: h_i → −h_i − Σ_j J_ij, J unchanged, k_b → m_b − k_b.
        flipped_unary = -unary - np.bincount(edges.ravel(), np.repeat(coupling, 2), minlength=n)
        flipped_factors = CountFactors.from_bags(bag_of, sizes - counts, strength=strength)
        flipped = belief_propagation(
            binary_mrf(jnp.asarray(flipped_unary), edges, coupling, flipped_factors), **run
        )
        flip_error = max(
            flip_error,
            float(np.max(np.abs(np.asarray(flipped.marginals) - (1 - np.asarray(base.marginals))))),
        )
        # Relabel the variables (so each bag lists its members in another order).
        perm = rng.permutation(n)  # new index of old variable i is perm[i]
        inverse = np.argsort(perm)
        permuted = belief_propagation(
            binary_mrf(
                jnp.asarray(unary[inverse]),
                perm[edges],
                coupling,
                CountFactors.from_bags(bag_of[inverse], counts, strength=strength),
            ),
            **run,
        )
        order_error = max(
            order_error,
            float(
                np.max(np.abs(np.asarray(permuted.marginals)[perm] - np.asarray(base.marginals)))
            ),
        )
        if not (base.converged and flipped.converged and permuted.converged):
            return Outcome.at_most(
                np.inf,
                EXACT_TOLERANCE,
                description="loopy BP did not converge",
                details={"strength": strength},
            )
    return Outcome.at_most(
        max(flip_error, order_error),
        1e-10,
        description="max |μ(flipped) − (1 − μ)| and |μ(permuted) − μ|",
        details={"flip_error": flip_error, "order_error": order_error},
    )


@register(capability="llp", kind="exact")
def gaussian_count_message_error_falls_as_one_over_m(context: CheckContext) -> Outcome:
    """The CLT message's error falls like 1/m (log-log slope −1 ± 0.25) for cavities near the count."""
    rng = np.random.default_rng(context.seed)
    sizes = np.array([16, 64, 256, 1024])
    replicates = context.pick(3, 10)
    rows = [(size, strength) for size in sizes for strength in (1.0, np.inf)] * replicates
    width = int(sizes.max())
    eta = np.zeros((len(rows), width))
    table = np.full((len(rows), width + 1), -np.inf)
    counts = np.zeros(len(rows))
    for row, (size, strength) in enumerate(rows):
        eta[row, :size] = rng.normal(-1.0, 1.0, size)
        counts[row] = np.round(np.sum(1 / (1 + np.exp(-eta[row, :size]))))
        table[row, : size + 1] = _table(size, counts[row], strength)
    mask = np.arange(width)[None, :] < np.array([size for size, _ in rows])[:, None]
    args = (
        jnp.asarray(eta),
        jnp.asarray(mask),
        jnp.asarray(table),
        jnp.asarray(counts),
        jnp.asarray([strength for _, strength in rows]),
    )
    difference = np.abs(
        np.asarray(count_messages(*args, "exact")) - np.asarray(count_messages(*args, "gaussian"))
    )
    row_errors = np.sum(np.where(mask, difference, 0.0), axis=1) / mask.sum(axis=1)
    row_sizes = np.array([size for size, _ in rows])
    mean_errors = [float(np.mean(row_errors[row_sizes == size])) for size in sizes]
    slope = float(np.polyfit(np.log(sizes), np.log(mean_errors), 1)[0])
    return Outcome.within(
        slope,
        -1.0,
        0.25,
        description="log-log slope of mean |gaussian − exact| against bag size",
        details={"sizes": sizes.tolist(), "mean_errors": mean_errors},
    )


@register(capability="llp", kind="exact")
def count_factor_bp_beats_the_clique_expansion(context: CheckContext) -> Outcome:
    """On small loopy LLP fields, BP with the exact count factor is far closer to enumeration than the clique.

    The field of Havaldar et al. with ``λ_s = 1, λ_b = 10`` (two bags of 8 on a 3-regular-ish
    graph): the mean marginal error of BP with the count factor must be at most a fifth of the
    error of BP on the paper's clique expansion of the same distribution.
    """
    rng = np.random.default_rng(context.seed)
    n, bag_of = 16, np.repeat([0, 1], 8)
    count_errors, clique_errors = [], []
    for _ in range(context.pick(5, 20)):
        x = rng.normal(size=(n, 2))
        labels = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(float)
        counts = np.bincount(bag_of, labels)
        edges, _, factors = _loopy_field(rng, n, bag_of, counts, 10.0)
        weight = np.exp(-np.linalg.norm(x[edges[:, 0]] - x[edges[:, 1]], axis=1))
        # −λ_s s_ij (y_i − y_j)² = −λ_s s_ij (y_i + y_j) + 2 λ_s s_ij y_i y_j.
        unary = -np.bincount(edges.ravel(), np.repeat(weight, 2), minlength=n)
        mrf = binary_mrf(jnp.asarray(unary), edges, 2.0 * weight, factors)
        exact = enumerate_binary_mrf(mrf).marginals
        with_count = belief_propagation(mrf, max_iterations=1000)
        with_clique = belief_propagation(clique_expansion(mrf), max_iterations=1000)
        count_errors.append(float(np.mean(np.abs(np.asarray(with_count.marginals) - exact))))
        clique_errors.append(float(np.mean(np.abs(np.asarray(with_clique.marginals) - exact))))
    ratio = float(np.mean(count_errors) / np.mean(clique_errors))
    return Outcome.at_most(
        ratio,
        0.2,
        description="mean marginal error: count-factor BP / clique-expansion BP",
        details={
            "count_factor_error": float(np.mean(count_errors)),
            "clique_error": float(np.mean(clique_errors)),
        },
    )


def _bag_objective(params, x, bag_of, sizes, proportions, l2):
    """The linear DLLP objective and its gradient, written again in NumPy (float64)."""
    weights, intercept = params[:-1], params[-1]
    probability = special.expit(x @ weights + intercept)
    mean = np.bincount(bag_of, probability, minlength=len(sizes)) / sizes
    share = sizes / sizes.sum()
    value = -np.sum(share * (proportions * np.log(mean) + (1 - proportions) * np.log1p(-mean)))
    value += 0.5 * l2 * weights @ weights
    # d value / d mean_b, then through the mean to each row's logit.
    outer = -share * (proportions / mean - (1 - proportions) / (1 - mean))
    per_row = outer[bag_of] / sizes[bag_of] * probability * (1 - probability)
    gradient = np.concatenate([x.T @ per_row + l2 * weights, [per_row.sum()]])
    return value, gradient


@register(capability="llp", kind="exact")
def linear_dllp_reaches_the_minimum(context: CheckContext) -> Outcome:
    """The linear DLLP's solution is a minimum, and bags of one give logistic regression.

    The bag loss is not convex in general (:mod:`probkit.llp.linear`), so the solution of
    :func:`~probkit.llp.linear.fit_linear` is compared with scipy's L-BFGS-B on an objective
    written again here in NumPy, from zero and from random starts: no start may reach a value
    lower by more than 1e-9, and scipy's best solution must be the same point (weights within
    1e-4: a gradient of 1e-7 against curvature of at least ``l2``). Then, with bags of one
    row, ``LLPClassifier(method, hidden=(), basis="linear")`` must equal scikit-learn's
    ``LogisticRegression(C = 1 / (l2 n))`` for the methods ``"dllp"``, ``"easyllp"`` and
    ``"soft-label"``. The statistic is the largest of the value excess, the weight distances
    and the logistic-regression distances.
    """
    rng = np.random.default_rng(context.seed)
    worst, details = 0.0, {}
    for bag_size, l2 in context.pick(((8, 1e-2),), ((8, 1e-3), (8, 1e-1), (32, 1e-2))):
        n, d = 640, 5
        x = rng.normal(size=(n, d))
        y = (rng.random(n) < special.expit(x @ rng.normal(size=d) - 0.5)).astype(float)
        bag_ids = random_bags(n, bag_size, seed=rng)
        _, counts = bag_counts(bag_ids, y)
        bags = validate_bags(bag_ids, n, counts=counts)
        fit = fit_linear(x, bags, l2=l2)
        ours = np.concatenate([fit.coef, [fit.intercept]])
        arguments = (x, bags.bag_of, bags.sizes.astype(float), bags.proportions, l2)
        best = None
        for start in [np.zeros(d + 1)] + [rng.normal(size=d + 1) for _ in range(3)]:
            result = optimize.minimize(
                _bag_objective,
                start,
                args=arguments,
                jac=True,
                method="L-BFGS-B",
                options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
            )
            if best is None or result.fun < best.fun:
                best = result
        ours_value = _bag_objective(ours, *arguments)[0]
        excess = max(ours_value - best.fun - 1e-9, 0.0)
        distance = float(np.max(np.abs(ours - best.x)))
        details[f"bags of {bag_size}, l2={l2}"] = {
            "value": ours_value,
            "scipy_value": float(best.fun),
            "weight_distance": distance,
        }
        worst = max(worst, excess, distance / 1e-4 * 1e-6)

    n, d, l2 = 400, 4, 1e-2
    x = rng.normal(size=(n, d))
    y = (rng.random(n) < special.expit(x @ rng.normal(size=d))).astype(int)
    standardised = (x - x.mean(axis=0)) / x.std(axis=0)
    reference = LogisticRegression(C=1.0 / (l2 * n), tol=1e-12, max_iter=10_000)
    reference.fit(standardised, y)
    for method in ("dllp", "easyllp", "soft-label"):
        model = LLPClassifier(method, hidden=(), l2=l2, basis="linear").fit(x, np.arange(n), y)
        distance = float(
            max(
                np.max(np.abs(model.coef_ - reference.coef_[0])),
                abs(model.intercept_ - reference.intercept_[0]),
            )
        )
        details[f"bags of one, {method}"] = {"distance_to_logistic_regression": distance}
        worst = max(worst, distance / 1e-5 * 1e-6)
    return Outcome.at_most(
        worst,
        1e-6,
        description=(
            "largest of: value above scipy's best (beyond 1e-9), weight distance to it / 100, "
            "distance to logistic regression with bags of one / 10"
        ),
        details=details,
    )
