"""Checks of PPP clustering against known partitions, its invariances and its split test.

Synthetic Gaussian blobs have a known k; Fränti's SIPU sets have published reference
partitions (read from the folder in ``PROBKIT_SIPU``, or from ``../shared/data/clustering/sipu``
next to a source checkout; the check is skipped when neither exists); the false-split rate of
the dip test is bounded by its level on unimodal clusters of five shapes up to 64 dimensions and
1e5 rows, and its power must rise with n.
"""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np
from scipy import stats
from sklearn.base import clone

from probkit.cluster import (
    PPP,
    adjusted_rand_index,
    centroid_index,
    centroids_of,
    load_clustbench,
)
from probkit.theory.check import CheckContext, Outcome, register

__all__ = ["SIPU_GOAL_SETS", "clustbench_folder", "sipu_folder"]

SIPU_GOAL_SETS = ("s1", "s2", "s3", "s4", "a1", "a2", "a3", "unbalance", "d31", "r15")
"""Fränti's Gaussian-cluster sets, on each of which PPP must find every cluster (CI = 0)."""

SIPU_OTHER_SETS = ("aggregation", "compound", "flame", "jain", "pathbased", "spiral")
"""Non-Gaussian shapes, reported by the full-size check but not scored."""


def clustbench_folder(battery: str, variable: str, probe: str) -> pathlib.Path | None:
    """The folder of one battery of the clustering benchmarks, or None when this machine has none.

    Looked for, in order: the folder named by the environment variable ``variable``;
    ``../shared/data/clustering/BATTERY`` beside the source checkout this module was loaded
    from (an editable install); and the same path beside the working directory (a regular
    install run from the project's root, as the README's ``pip install . && probkit check``
    does). A folder counts when it holds the file ``probe``.
    """
    candidates = []
    if os.environ.get(variable):
        candidates.append(pathlib.Path(os.environ[variable]))
    relative = pathlib.Path("shared", "data", "clustering", battery)
    root = pathlib.Path(__file__).resolve().parents[2]  # the source checkout, if any
    candidates.append(root.parent / relative)
    candidates.append(pathlib.Path.cwd().resolve().parent / relative)
    for folder in candidates:
        if (folder / probe).is_file():
            return folder
    return None


def sipu_folder() -> pathlib.Path | None:
    """The folder of Fränti's SIPU sets (``PROBKIT_SIPU``; see `clustbench_folder`)."""
    return clustbench_folder("sipu", "PROBKIT_SIPU", "s1.data.gz")


def _blobs(rng, centres, sizes, scale):
    return np.concatenate(
        [rng.normal(c, scale, (s, len(c))) for c, s in zip(centres, sizes, strict=True)]
    )


def _separated_centres(rng, k, d, spacing):
    # Centres at least `spacing` apart: rejection sampling in a box that grows with k.
    centres = []
    while len(centres) < k:
        candidate = rng.uniform(-spacing * k ** (1 / d), spacing * k ** (1 / d), d)
        if all(np.linalg.norm(candidate - c) >= spacing for c in centres):
            centres.append(candidate)
    return np.array(centres)


@register(capability="cluster", kind="exact")
def finds_k_of_separated_blobs(context: CheckContext) -> Outcome:
    """PPP recovers k and the partition (ARI ≥ 0.99) of separated Gaussian blobs, unbalanced."""
    rng = np.random.default_rng(context.seed)
    configurations = context.pick(
        [(2, 4), (6, 7)], [(1, 3), (2, 4), (2, 9), (4, 6), (6, 7), (10, 5), (16, 8)]
    )
    misses, rows = 0, {}
    for d, k in configurations:
        centres = _separated_centres(rng, k, d, spacing=12.0)
        sizes = rng.integers(60, 600, size=k)  # up to 10:1 imbalance
        labels = np.repeat(np.arange(k), sizes)
        model = PPP().fit(_blobs(rng, centres, sizes, 1.0))
        ari = adjusted_rand_index(labels, model.labels_)
        misses += int(model.n_clusters_ != k or ari < 0.99)
        rows[f"d={d}, k={k}"] = {"k_found": model.n_clusters_, "ari": ari}
    return Outcome.at_most(
        misses,
        0,
        description="configurations with k wrong or ARI < 0.99",
        details=rows,
    )


@register(capability="cluster", kind="exact")
def labels_invariant_to_order_units_and_devices(context: CheckContext) -> Outcome:
    """Labels do not change with row order, refitting, column units, rotations or devices.

    Bitwise identical labels under row permutation and refitting; identical labels (the same
    numbers, not only the same partition) under random per-column scales from 1e-4 to 1e4 with
    random offsets (the default scaling), under a random rotation and translation with
    ``scale="whiten"``, and on one device and on all devices. (Rotating columns whose units
    differ by 1e8 would mix them beyond what float64 keeps apart, so the two are tested apart.)
    Each transformation is tested twice: with the tree grown on every row, and on a hashed
    subsample of 1000 of the 1250 rows (``tree_rows=1000``), whose choice must not depend on
    the rows' order, units or rotation either.
    """
    rng = np.random.default_rng(context.seed)
    d = 3
    centres = _separated_centres(rng, 5, d, spacing=7.0)
    X = _blobs(rng, centres, [150, 250, 350, 200, 300], 1.0)
    permutation = rng.permutation(X.shape[0])
    units = 10.0 ** rng.uniform(-4, 4, d)
    offsets = units * rng.uniform(-1e4, 1e4, d)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    rescaled = X * units + offsets
    rotated = X @ rotation.T + rng.uniform(-1e3, 1e3, d)
    differences, clusters = {}, {}
    for tree_rows, tag in ((None, ""), (1000, ", tree on 1000 rows")):
        base = PPP(tree_rows=tree_rows).fit(X).labels_
        whitened = PPP(scale="whiten", tree_rows=tree_rows).fit(X).labels_
        refit = PPP(tree_rows=tree_rows).fit(X).labels_
        permuted = PPP(tree_rows=tree_rows).fit(X[permutation]).labels_
        in_units = PPP(tree_rows=tree_rows).fit(rescaled).labels_
        turned = PPP(scale="whiten", tree_rows=tree_rows).fit(rotated).labels_
        differences.update(
            {
                f"refit{tag}": int(np.sum(refit != base)),
                f"row permutation{tag}": int(np.sum(permuted != base[permutation])),
                f"column units and offsets{tag}": int(np.sum(in_units != base)),
                f"rotation and translation, whitened{tag}": int(np.sum(turned != whitened)),
            }
        )
        clusters[f"clusters (default, whitened){tag}"] = [
            int(base.max()) + 1,
            int(whitened.max()) + 1,
        ]
    base = PPP().fit(X).labels_
    devices = jax.devices()
    if len(devices) > 1:
        sharded = PPP(devices=devices).fit(X).labels_
        differences[f"{len(devices)} devices"] = int(np.sum(sharded != base))
    worst = max(differences.values())
    return Outcome.at_most(
        worst,
        0,
        description="rows whose label changes (largest over the transformations)",
        details={
            **differences,
            "devices": len(devices),
            "units": units.tolist(),
            **clusters,
        },
    )


@register(capability="cluster", kind="exact")
def centroid_index_on_franti_sets(context: CheckContext) -> Outcome:
    """PPP, with no k given, finds every cluster of each of Fränti's Gaussian-cluster sets.

    The statistic is the largest centroid index over S1–S4, A1–A3, Unbalance, D31 and R15
    (CI = 0: every reference cluster has a centre). For scale: k-means told the true k, from
    maxmin seeding with 100 repeats, still leaves 1 % of these clusters wrong (relative CI;
    Fränti & Sieranoja, Pattern Recognition 93, 2019).
    """
    folder = sipu_folder()
    if folder is None:
        return Outcome.skip(
            "Fränti's SIPU sets not found (set PROBKIT_SIPU to their folder, or run from a "
            "checkout with ../shared/data/clustering/sipu beside it)"
        )
    names = context.pick(("s1", "a1", "a3", "unbalance", "d31", "r15"), SIPU_GOAL_SETS)
    rows, scored = {}, []
    for name in names + context.pick((), SIPU_OTHER_SETS):
        data = load_clustbench(folder, name)
        model = PPP().fit(data.data)
        truth = centroids_of(data.data, data.labels)
        ci = centroid_index(model.cluster_centers_, truth)
        rows[name] = {
            "k_true": data.n_clusters,
            "k_found": model.n_clusters_,
            "ci": ci,
            "ari": adjusted_rand_index(data.labels, model.labels_),
        }
        if name in SIPU_GOAL_SETS:
            scored.append(ci)
    return Outcome.at_most(
        float(max(scored)),
        0.0,
        description="largest centroid index over the Gaussian-cluster sets",
        details=rows,
    )


SINGLE_CLUSTER_SHAPES = ("gaussian", "uniform box", "student t3", "gamma 2", "lognormal 0.5")
"""Unimodal cluster shapes of the false-split check: Gaussian; uniform in an axis-aligned box
(its principal projections are uniform, the dip's least favourable law); elliptical Student t
with 3 degrees of freedom (heavy tails); independent gamma(2) and lognormal(0, 0.5) coordinates
(skewed, the second not log-concave). Columns get spreads from 1 to 3."""


def single_cluster(rng, shape: str, n: int, d: int) -> np.ndarray:
    """``n`` rows of one unimodal cluster of ``shape`` in ``d`` dimensions."""
    if shape == "gaussian":
        rows = rng.normal(size=(n, d))
    elif shape == "uniform box":
        rows = rng.uniform(-1.0, 1.0, (n, d))
    elif shape == "student t3":
        rows = rng.normal(size=(n, d)) / np.sqrt(rng.chisquare(3, (n, 1)) / 3)
    elif shape == "gamma 2":
        rows = rng.gamma(2.0, size=(n, d))
    elif shape == "lognormal 0.5":
        rows = rng.lognormal(0.0, 0.5, (n, d))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return rows * np.linspace(1.0, 3.0, d)


@register(capability="cluster", kind="statistical")
def single_cluster_false_split_rate(context: CheckContext) -> Outcome:
    """PPP splits a single unimodal cluster with probability at most its level α = 0.02.

    Five shapes (`SINGLE_CLUSTER_SHAPES`: Gaussian, uniform box, Student t₃, gamma and
    lognormal) in d = 2, 16 and 64 dimensions at n = 100 to 1e5 rows (the quick size: d = 2
    and 16, n = 300 and 3000), fewer replicates at larger n; a one-sided binomial test of the
    number of data sets split among all of them.
    """
    rng = np.random.default_rng(context.seed)
    dimensions = context.pick((2, 16), (2, 16, 64))
    replicates = context.pick({300: 3, 3000: 3}, {100: 30, 1000: 16, 10_000: 6, 100_000: 2})
    cells = [
        (f"{shape}, d={d}, n={n}", shape, n, d, count)
        for shape in SINGLE_CLUSTER_SHAPES
        for d in dimensions
        for n, count in replicates.items()
    ]
    return _false_split_outcome(rng, PPP(), cells, "fraction of single-cluster data sets split")


def _false_split_outcome(rng, model, cells, description) -> Outcome:
    """Fit ``model`` to ``count`` single clusters per cell; binomial test of the splits.

    ``cells`` holds ``(name, shape, n, d, count)``; the one-sided test is of a split rate at
    most the model's ``alpha``.
    """
    splits, trials, rows = 0, 0, {}
    for name, shape, n, d, count in cells:
        split = sum(
            clone(model).fit(single_cluster(rng, shape, n, d)).n_clusters_ > 1 for _ in range(count)
        )
        rows[name] = f"{split}/{count}"
        splits, trials = splits + split, trials + count
    p_value = stats.binom.sf(splits - 1, trials, model.alpha)  # P(X >= splits | rate = α)
    return Outcome.from_p_value(
        splits / trials,
        p_value,
        reference=f"≤ α = {model.alpha}",
        description=description,
        details={"splits": rows, "trials": trials},
    )


@register(capability="cluster", kind="statistical")
def gaussian_rule_false_split_rate(context: CheckContext) -> Outcome:
    """``PPP("gaussian")`` splits a single Gaussian cluster with probability at most α = 0.02.

    The rule's null is the Gaussian cluster (it splits flat-topped clusters by design, see
    :mod:`probkit.cluster._gaussian_reference`): Gaussian clusters with column spreads from 1
    to 3 in d = 2, 16 and 64 dimensions from 100 to 1e4 rows (quick: d = 2 and 16, n = 100
    and 1000); a one-sided binomial test of the number split.
    """
    rng = np.random.default_rng(context.seed)
    dimensions = context.pick((2, 16), (2, 16, 64))
    replicates = context.pick({100: 6, 1000: 3}, {100: 40, 1000: 20, 10_000: 6})
    cells = [
        (f"d={d}, n={n}", "gaussian", n, d, count)
        for d in dimensions
        for n, count in replicates.items()
    ]
    return _false_split_outcome(
        rng, PPP("gaussian"), cells, "fraction of Gaussian clusters split by the gaussian rule"
    )


@register(capability="cluster", kind="statistical")
def split_power_rises_with_n(context: CheckContext) -> Outcome:
    """Two equal Gaussians 3σ apart: power at most 0.5 at n = 200, at least 0.9 at n = 3200.

    The two one-sided binomial tests (power ≤ 0.5 at the smallest n, ≥ 0.9 at the largest) are
    combined by Bonferroni; the whole power curve is in the details.
    """
    rng = np.random.default_rng(context.seed)
    sizes = (200, 800, 3200)
    replicates = context.pick(10, 60)
    hits = {}
    for n in sizes:
        count = 0
        for _ in range(replicates):
            X = rng.normal(size=(n, 2))
            X[: n // 2, 0] += 3.0
            count += PPP().fit(X).n_clusters_ == 2
        hits[n] = count
    low = stats.binom.sf(hits[sizes[0]] - 1, replicates, 0.5)  # P(X >= x | power = 0.5)
    high = stats.binom.cdf(hits[sizes[-1]], replicates, 0.9)  # P(X <= x | power = 0.9)
    return Outcome.from_p_value(
        hits[sizes[-1]] / replicates,
        min(1.0, 2 * min(low, high)),
        reference="≤ 0.5 at n = 200, ≥ 0.9 at n = 3200",
        description=f"power at n = {sizes[-1]}",
        details={"power": {str(n): h / replicates for n, h in hits.items()}},
    )
