"""PPP against the clusterers a user would pick instead, on Fränti's SIPU benchmark sets.

Methods, on the same data in the same process:

* probkit ``PPP`` with each split rule (``"dip"``, the default; ``"gaussian"``, the dip or
  the 2-means index against Gaussian clusters; the paper's ``"agreement"``; ``"bic"``). PPP draws no random numbers, so its "seeds" are row permutations: the labels are
  compared with the first run's to count distinct partitions.
* scikit-learn ``KMeans`` and ``BisectingKMeans``, both **told the true k** (``n_init=1`` per
  seed, k-means++ / random initialisation as scikit-learn's defaults);
* ``GaussianMixture`` (full covariance) with a BIC sweep over k in [K/2, 2K] (step
  ``ceil(K/10)``), on z-scored data, 2 seeds (each sweep fits a dozen or more mixtures);
* ``BayesianGaussianMixture`` (Dirichlet-process prior, truncated at 2K components,
  ``max_iter=500``), z-scored; k = components that receive rows;
* ``HDBSCAN`` with its defaults, z-scored (deterministic; label −1 is noise, reported);
* G-means (Hamerly & Elkan 2003) implemented here faithfully: from k = 1, each cluster's
  children at ``c ± s·√(2λ/π)`` on its principal axis, local 2-means, Anderson–Darling on the
  projection with the Stephens correction ``A²(1 + 4/n − 25/n²)``, split at α = 1e-4
  (critical value 1.8692), global k-means between rounds;
* X-means from pyclustering (C++ core, BIC, ``kmax = 3K``), when pyclustering imports (it needs a
  shim for ``numpy.warnings`` on NumPy ≥ 1.24, applied here); skipped with the reason otherwise.

For each set and method: the median k found [min–max], runs with centroid index CI = 0 out of
all runs, the mean ARI, the mean seconds per run (2-core CPU unless stated), and the number of
distinct partitions over the runs (1 = repeatable). CI compares the method's cluster means with
the reference clusters' means (noise excluded). The data are read from ``--data`` (default: the
folder in ``PROBKIT_SIPU``, else ``../shared/data/clustering/sipu`` next to the checkout).

Run ``python benchmarks/cluster_sipu.py`` (``--smoke`` for two sets and two seeds); results go
to ``benchmarks/results/cluster_sipu.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_OUT, machine_info, markdown_table, optional_import, write_results

from probkit.cluster import (
    PPP,
    adjusted_rand_index,
    centroid_index,
    centroids_of,
    load_clustbench,
)
from probkit.theory.checks.cluster import SIPU_GOAL_SETS, SIPU_OTHER_SETS, sipu_folder

SETS = SIPU_GOAL_SETS + SIPU_OTHER_SETS


def _zscore(X):
    # Constant columns stay at 0 instead of becoming 0/0 (the UCI tables have some; SIPU none).
    scale = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def _labels_from_centres(X, centres):
    distance = np.sum(X**2, 1)[:, None] - 2 * X @ centres.T + np.sum(centres**2, 1)
    return np.argmin(distance, axis=1)


def gmeans(X, seed, alpha_critical=1.8692, max_k=500):
    """G-means (Hamerly & Elkan 2003) from k = 1, with scikit-learn's k-means between rounds."""
    from scipy import stats
    from sklearn.cluster import KMeans

    centres = X.mean(axis=0, keepdims=True)
    while True:
        labels = _labels_from_centres(X, centres)
        new = []
        for k in range(centres.shape[0]):
            points = X[labels == k]
            if points.shape[0] < 8:
                new.append(centres[k])
                continue
            values, vectors = np.linalg.eigh(np.cov(points.T))
            step = vectors[:, -1] * np.sqrt(2 * values[-1] / np.pi)
            children = np.stack([centres[k] - step, centres[k] + step])
            local = KMeans(2, init=children, n_init=1, random_state=seed).fit(points)
            v = local.cluster_centers_[1] - local.cluster_centers_[0]
            projected = points @ v / (v @ v)
            projected = (projected - projected.mean()) / projected.std()
            n = projected.size
            a2 = stats.anderson(projected).statistic * (1 + 4 / n - 25 / n**2)
            if a2 > alpha_critical and min(np.bincount(local.labels_, minlength=2)) > 1:
                new.extend(local.cluster_centers_)
            else:
                new.append(centres[k])
        if len(new) == centres.shape[0] or len(new) > max_k:
            return _labels_from_centres(X, centres)
        model = KMeans(len(new), init=np.array(new), n_init=1, random_state=seed).fit(X)
        centres = model.cluster_centers_


def _pyclustering_xmeans():
    module, reason = optional_import("pyclustering")
    if module is None:
        return None, reason
    if not hasattr(np, "warnings"):
        np.warnings = warnings  # pyclustering 0.10.1.2 uses numpy.warnings, gone in NumPy 1.24
    from pyclustering.cluster.center_initializer import kmeans_plusplus_initializer
    from pyclustering.cluster.xmeans import xmeans

    def run(X, k_true, seed, kmax=None):
        # kmax defaults to this benchmark's 3K; cluster_uci.py passes its own max(10, 2K).
        kmax = 3 * k_true if kmax is None else kmax
        initial = kmeans_plusplus_initializer(X, 2, random_state=seed).initialize()
        model = xmeans(X, initial, kmax=kmax, ccore=True, random_state=seed)
        model.process()
        labels = np.full(X.shape[0], -1)
        for index, members in enumerate(model.get_clusters()):
            labels[members] = index
        return labels

    return run, None


def methods(sklearn, xmeans_run):
    """name -> (function(X, k_true, seed) -> labels, number of seeds, deterministic)."""
    table = {
        "PPP (dip)": (lambda X, k, s: PPP().fit(X).labels_, None),
        "PPP (gaussian)": (lambda X, k, s: PPP("gaussian").fit(X).labels_, None),
        "PPP (agreement)": (lambda X, k, s: PPP("agreement").fit(X).labels_, None),
        "PPP (bic)": (lambda X, k, s: PPP("bic").fit(X).labels_, None),
    }
    if sklearn is not None:
        from sklearn.cluster import HDBSCAN, BisectingKMeans, KMeans
        from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

        def gmm_bic(X, k, seed):
            Z = _zscore(X)
            step = max(1, math.ceil(k / 10))
            best = None
            for m in range(max(1, k // 2), 2 * k + 1, step):
                model = GaussianMixture(m, covariance_type="full", random_state=seed).fit(Z)
                bic = model.bic(Z)
                if best is None or bic < best[0]:
                    best = (bic, model)
            return best[1].predict(Z)

        table.update(
            {
                "KMeans (k given)": (
                    lambda X, k, s: KMeans(k, n_init=1, random_state=s).fit_predict(X),
                    10,
                ),
                "BisectingKMeans (k given)": (
                    lambda X, k, s: BisectingKMeans(k, random_state=s).fit_predict(X),
                    10,
                ),
                "GMM + BIC sweep": (gmm_bic, 2),
                "BayesianGMM (DP)": (
                    lambda X, k, s: BayesianGaussianMixture(
                        n_components=2 * k, max_iter=500, random_state=s
                    ).fit_predict(_zscore(X)),
                    5,
                ),
                "HDBSCAN": (lambda X, k, s: HDBSCAN().fit_predict(_zscore(X)), 1),
                "G-means (α=1e-4)": (lambda X, k, s: gmeans(X, s), 1),
            }
        )
    if xmeans_run is not None:
        table["X-means (pyclustering)"] = (xmeans_run, 10)
    return table


def evaluate(X, truth, run, k_true, seeds, permute):
    """Run one method over seeds (or row permutations) and summarise k, CI, ARI and time."""
    reference_centres = centroids_of(X, truth)
    ks, cis, aris, seconds, partitions = [], [], [], [], []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(X.shape[0]) if permute else None
        data = X[order] if permute else X
        start = time.perf_counter()
        labels = np.asarray(run(data, k_true, seed))
        seconds.append(time.perf_counter() - start)
        if permute:
            restored = np.empty_like(labels)
            restored[order] = labels
            labels = restored
        clusters = labels[labels >= 0]
        ks.append(int(np.unique(clusters).size))
        cis.append(centroid_index(centroids_of(X, labels), reference_centres) if ks[-1] else k_true)
        aris.append(adjusted_rand_index(truth, labels))
        partitions.append(labels)
    distinct = len({_canonical(p) for p in partitions})
    return {
        "k_median": statistics.median(ks),
        "k_min": min(ks),
        "k_max": max(ks),
        "ci_zero_runs": sum(c == 0 for c in cis),
        "runs": len(seeds),
        "ci_mean": float(np.mean(cis)),
        "ari_mean": float(np.mean(aris)),
        "seconds_mean": float(np.mean(seconds[1:] if len(seconds) > 1 else seconds)),
        "first_run_s": seconds[0],
        "distinct_partitions": distinct,
        "noise_fraction": float(np.mean(partitions[0] < 0)),
    }


def _canonical(labels):
    # Relabel by first appearance so that equal partitions compare equal.
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    _, inverse = np.unique(labels, return_inverse=True)
    return order[inverse].tobytes()


def main(argv=None):
    """Run the benchmark and write its results; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods")
    args = parser.parse_args(argv)
    folder = args.data or sipu_folder()
    if folder is None:
        print("SIPU sets not found: pass --data or set PROBKIT_SIPU", file=sys.stderr)
        return 1
    names = ["s1", "r15"] if args.smoke else args.sets.split(",")
    n_seeds = 2 if args.smoke else args.seeds
    sklearn, sklearn_reason = optional_import("sklearn")
    xmeans_run, xmeans_reason = _pyclustering_xmeans()
    table = methods(sklearn, xmeans_run)
    if args.methods:
        table = {k: v for k, v in table.items() if k in args.methods.split(",")}
    skipped = {
        name: reason
        for name, reason in (("scikit-learn", sklearn_reason), ("X-means", xmeans_reason))
        if reason
    }
    results = {}
    for name in names:
        data = load_clustbench(folder, name)
        results[name] = {"n": data.data.shape[0], "k_true": data.n_clusters, "methods": {}}
        for method, (run, seeds) in table.items():
            count = n_seeds if seeds is None else min(seeds, n_seeds)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = evaluate(
                    data.data,
                    data.labels,
                    run,
                    data.n_clusters,
                    range(count),
                    permute=seeds is None,
                )
            results[name]["methods"][method] = row
            print(
                f"{name:>11} {method:<26} k={row['k_median']:>5} CI=0 in "
                f"{row['ci_zero_runs']}/{row['runs']}  ARI {row['ari_mean']:.3f}  "
                f"{row['seconds_mean']:.2f} s  partitions {row['distinct_partitions']}",
                flush=True,
            )
    payload = {"machine": machine_info(), "skipped": skipped, "results": results, "seeds": n_seeds}
    write_results(args.out, "cluster_sipu", payload, _markdown(results, skipped, n_seeds))
    return 0


def _markdown(results, skipped, n_seeds):
    methods_ = list(next(iter(results.values()))["methods"])
    lines = [
        "# PPP against auto-k and k-given clusterers on Fränti's SIPU sets",
        "",
        "Each cell: median k [min–max] · runs with centroid index CI = 0 / runs · mean ARI · "
        "mean seconds per run · distinct partitions over the runs. PPP runs on row "
        f"permutations (it has no seed); seeded methods on up to {n_seeds} seeds. "
        "`python benchmarks/cluster_sipu.py`.",
        "",
    ]
    headers = ["set (K)", *methods_]
    rows = []
    for name, entry in results.items():
        cells = [f"{name} ({entry['k_true']})"]
        for method in methods_:
            r = entry["methods"][method]
            span = "" if r["k_min"] == r["k_max"] else f" [{r['k_min']}–{r['k_max']}]"
            noise = f" noise {r['noise_fraction']:.0%}" if r["noise_fraction"] > 0 else ""
            cells.append(
                f"{r['k_median']:g}{span} · {r['ci_zero_runs']}/{r['runs']} · "
                f"{r['ari_mean']:.2f} · {r['seconds_mean']:.2g}s · {r['distinct_partitions']}"
                f"{noise}"
            )
        rows.append(cells)
    lines.append(markdown_table(headers, rows))
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
