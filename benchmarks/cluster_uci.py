"""PPP against the auto-k clusterers a data scientist tries first, on eight UCI tables.

The tables are the UCI battery of Gagolewski's clustering benchmarks (ecoli, glass, ionosphere,
sonar, statlog, wdbc, wine, yeast: 178 to 2310 rows, 7 to 60 columns, 2 to 10 classes). They
were collected for classification, so their classes need not be clusters of any kind; the two
oracles below say how far the columns separate the classes at all. Each table is run twice: on
its columns as read ("raw") and on every column minus its mean divided by its standard
deviation ("standardised"; constant columns left at 0). Every method sees the same input.

Methods, on the same data in the same process:

* probkit ``PPP`` with its defaults (``PPP().fit(X)``: the dip rule, valid for clusters of any
  unimodal shape) and with ``PPP("gaussian")`` (the 2-means index against Gaussian clusters of
  the same covariance, SigClust's test: more power on small tables, at the price of splitting
  flat-topped clusters). PPP draws no random numbers, so its
  repeat runs are row permutations; the labels are put back in the original row order before
  they are compared.
* ``GMM + BIC (baseline)``: scikit-learn ``GaussianMixture`` (full covariance, default
  ``reg_covar``) fitted for every k in 1..K_max, K_max = max(10, 2K), the k of lowest BIC
  kept; the seed is its ``random_state``. This is the simplest strong baseline of the field.
* ``BayesianGaussianMixture`` (Dirichlet-process prior, ``n_components = K_max``,
  ``max_iter=500``); k = the components that receive rows.
* ``HDBSCAN`` (scikit-learn, defaults). It is deterministic, so, like PPP, its repeat runs are
  row permutations. Label −1 (noise) is counted in the ARI as one more cluster, and the noise
  fraction is reported; k counts the clusters other than noise.
* ``KMeans (k given)``: told the true k (``n_init="auto"``): a reference that knows k.
* G-means (Hamerly & Elkan 2003; the implementation of ``cluster_sipu.py``, α = 1e-4),
  deterministic, so run on row permutations too; X-means from pyclustering (the shim of
  ``cluster_sipu.py``, ``kmax = max(10, 2K)``), skipped with the reason recorded when
  pyclustering does not import.
* Two oracles that **see the labels** (not clusterers; they show how well the columns separate
  the classes, though a clusterer may still beat the nearest-centroid one on a table): each
  row assigned to the nearest true-class mean in standardised columns ("nearest true
  centroid"), and a quadratic discriminant rule with the class covariances shrunk as
  scikit-learn's ``QuadraticDiscriminantAnalysis(reg_param=0.1)`` does, fitted and evaluated on
  all rows in standardised columns (written out here: scikit-learn's estimator refuses the small
  classes of ecoli and yeast; see :func:`regularised_qda`). Both standardise whatever input
  they get, so they read the same in both tables. One run each.

For each table, input and method: the median k [min–max] over the runs, the mean ARI
(``sklearn.metrics.adjusted_rand_score`` against the reference labels; these tables have no
noise rows), the mean seconds per run (the first run excluded when there are several, since it
includes PPP's compilation for the table's shape; the first run's time is in the JSON), the
number of distinct partitions over the runs (1 = repeatable), and every exception, recorded as
``crash: <ExceptionType>: message`` (a crash does not stop the benchmark; the other runs are
summarised). Summary: the mean ARI over the tables per method and input, and the number of
tables where the median k is 1.

Every method runs ``--seeds`` times (default 5; row permutations for the seedless ones), the
sweeps included: the whole benchmark takes about 5 minutes on 2 CPU cores, most of it in the
GMM + BIC sweeps, so no method runs on fewer seeds. Timings on a shared machine move with its
load (the JSON records the load average).

Run ``python benchmarks/cluster_uci.py`` (``--smoke`` for wine and ecoli with two seeds); the
data are read from ``--data`` (default: the folder in ``PROBKIT_UCI``, else
``../shared/data/clustering/uci`` next to the checkout). Results go to
``benchmarks/results/cluster_uci.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEFAULT_OUT,
    machine_info,
    markdown_table,
    optional_import,
    uci_folder,
    write_results,
)
from cluster_sipu import _canonical, _labels_from_centres, _pyclustering_xmeans, _zscore, gmeans

from probkit.cluster import PPP, load_clustbench

SETS = ("ecoli", "glass", "ionosphere", "sonar", "statlog", "wdbc", "wine", "yeast")
SMOKE_SETS = ("wine", "ecoli")
INPUTS = ("raw", "standardised")


def k_max(k_true: int) -> int:
    """The largest k the sweeps and truncated mixtures may use: ``max(10, 2K)``."""
    return max(10, 2 * k_true)


@dataclass(frozen=True)
class Method:
    """One column of the tables.

    Attributes
    ----------
    run : callable
        ``run(X, k_true, seed, truth) -> labels``; only the oracles read ``truth``.
    repeats : {"seeds", "permutations", "once"}
        How the runs differ: the seed (``random_state``), the row order (for methods without
        randomness, whose only source of variation is the order of the rows), or not at all
        (the oracles, which depend on neither).
    kind : str
        What the method is told: ``"auto-k"``, ``"k given"`` or ``"oracle"``.
    """

    run: Callable
    repeats: str
    kind: str


def nearest_true_centroid(X, truth):
    """Each row to the nearest true-class mean, in standardised columns (an oracle)."""
    Z = _zscore(X)
    classes = np.unique(truth)
    centres = np.stack([Z[truth == c].mean(axis=0) for c in classes])
    return classes[_labels_from_centres(Z, centres)]


def regularised_qda(X, truth, reg=0.1):
    """Quadratic discriminant rule fitted and applied on all rows, standardised (an oracle).

    Each class is a Gaussian with its mean and covariance ``(1 - reg) S + reg I`` (``S`` the
    class's sample covariance), weighted by its share of the rows; each row goes to the class of
    highest posterior. This is the transformation that scikit-learn documents for
    ``QuadraticDiscriminantAnalysis(reg_param=reg)``, written out because scikit-learn's
    estimator refuses a class with fewer rows than columns whatever ``reg_param`` (ecoli has
    classes of 2 and 5 rows in 7 columns, yeast one of 5 rows in 8). On the six other tables
    its predictions and scikit-learn's differ in one row of glass and nowhere else.
    """
    Z = _zscore(X)
    classes = np.unique(truth)
    scores = []
    for c in classes:
        members = Z[truth == c]
        centred = members - members.mean(axis=0)
        covariance = centred.T @ centred / max(members.shape[0] - 1, 1)
        covariance = (1 - reg) * covariance + reg * np.eye(Z.shape[1])
        factor = np.linalg.cholesky(covariance)
        whitened = np.linalg.solve(factor, (Z - members.mean(axis=0)).T)
        scores.append(
            -0.5 * np.sum(whitened**2, axis=0)
            - np.sum(np.log(np.diag(factor)))
            + np.log(members.shape[0] / Z.shape[0])
        )
    return classes[np.argmax(np.stack(scores), axis=0)]


def methods(xmeans_run) -> dict[str, Method]:
    """The methods by name (scikit-learn must be importable)."""
    from sklearn.cluster import HDBSCAN, KMeans
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    def gmm_bic(X, k, seed, truth):
        best = None
        for m in range(1, k_max(k) + 1):
            model = GaussianMixture(m, covariance_type="full", random_state=seed).fit(X)
            bic = model.bic(X)
            if best is None or bic < best[0]:
                best = (bic, model)
        return best[1].predict(X)

    table = {
        "PPP": Method(lambda X, k, s, t: PPP().fit(X).labels_, "permutations", "auto-k"),
        "PPP (gaussian)": Method(
            lambda X, k, s, t: PPP("gaussian").fit(X).labels_, "permutations", "auto-k"
        ),
        "GMM + BIC (baseline)": Method(gmm_bic, "seeds", "auto-k"),
        "BayesianGMM (DP)": Method(
            lambda X, k, s, t: BayesianGaussianMixture(
                n_components=k_max(k), max_iter=500, random_state=s
            ).fit_predict(X),
            "seeds",
            "auto-k",
        ),
        "HDBSCAN": Method(lambda X, k, s, t: HDBSCAN().fit_predict(X), "permutations", "auto-k"),
        "G-means (α=1e-4)": Method(lambda X, k, s, t: gmeans(X, s), "permutations", "auto-k"),
    }
    if xmeans_run is not None:
        table["X-means (pyclustering)"] = Method(
            lambda X, k, s, t: xmeans_run(X, k, s, kmax=k_max(k)), "seeds", "auto-k"
        )
    table.update(
        {
            "KMeans (k given)": Method(
                lambda X, k, s, t: KMeans(k, n_init="auto", random_state=s).fit_predict(X),
                "seeds",
                "k given",
            ),
            "oracle: nearest true centroid": Method(
                lambda X, k, s, t: nearest_true_centroid(X, t), "once", "oracle"
            ),
            "oracle: QDA (reg 0.1)": Method(
                lambda X, k, s, t: regularised_qda(X, t), "once", "oracle"
            ),
        }
    )
    return table


def evaluate(X, truth, method: Method, k_true: int, n_seeds: int) -> dict:
    """Run one method ``n_seeds`` times (once for an oracle) and summarise k, ARI and time.

    A run that raises is recorded and left out of the summaries, so that one failing fit
    neither stops the benchmark nor hides what the other runs found.
    """
    from sklearn.metrics import adjusted_rand_score

    seeds = range(1 if method.repeats == "once" else n_seeds)
    ks, aris, seconds, partitions, noise, crashes, where = [], [], [], [], [], [], None
    for seed in seeds:
        permute = method.repeats == "permutations"
        order = np.random.default_rng(seed).permutation(X.shape[0]) if permute else None
        data, labels_in = (X[order], truth[order]) if permute else (X, truth)
        start = time.perf_counter()
        try:
            labels = np.asarray(method.run(data, k_true, seed, labels_in))
        except Exception as error:  # recorded, not raised: one crash must not end the run
            crashes.append(f"crash: {type(error).__name__}: {error}")
            # The innermost frames say where it failed, for whoever fixes it.
            frames = traceback.extract_tb(error.__traceback__)[-4:]
            where = where or [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames]
            continue
        seconds.append(time.perf_counter() - start)
        if permute:
            restored = np.empty_like(labels)
            restored[order] = labels
            labels = restored
        ks.append(int(np.unique(labels[labels >= 0]).size))
        # Noise (-1) is one more label here: dropping noise rows would flatter HDBSCAN.
        aris.append(float(adjusted_rand_score(truth, labels)))
        noise.append(float(np.mean(labels < 0)))
        partitions.append(labels)
    row = {
        "runs": len(seeds),
        "repeats": method.repeats,
        "kind": method.kind,
        "crashed_runs": len(crashes),
        "crash": crashes[0] if crashes else None,
        "crashes": sorted(set(crashes)),
        "crash_frames": where,
        "k_per_run": ks,
        "ari_per_run": aris,
        "seconds_per_run": seconds,
    }
    if not ks:
        return row
    return row | {
        "k_median": statistics.median(ks),
        "k_min": min(ks),
        "k_max": max(ks),
        "ari_mean": float(np.mean(aris)),
        "seconds_mean": float(np.mean(seconds[1:] if len(seconds) > 1 else seconds)),
        "first_run_s": seconds[0],
        "distinct_partitions": len({_canonical(p) for p in partitions}),
        "noise_fraction": float(np.mean(noise)),
    }


def summarise(results: dict, names: list[str]) -> dict:
    """Per method and input: the mean ARI over the tables it ran on, and the k = 1 tables."""
    summary = {}
    for method in names:
        summary[method] = {}
        for input_ in INPUTS:
            rows = [entry["methods"][method] for entry in results[input_].values()]
            ran = [r for r in rows if "ari_mean" in r]
            summary[method][input_] = {
                "ari_mean_over_tables": float(np.mean([r["ari_mean"] for r in ran]))
                if ran
                else None,
                "tables_run": len(ran),
                "tables": len(rows),
                "tables_with_k_1": sum(r["k_median"] == 1 for r in ran),
                "tables_with_a_crash": sum(r["crashed_runs"] > 0 for r in rows),
            }
    return summary


def main(argv=None):
    """Run the benchmark and write its results; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of the UCI tables")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods")
    args = parser.parse_args(argv)
    folder = args.data or uci_folder()
    if folder is None:
        print("UCI tables not found: pass --data or set PROBKIT_UCI", file=sys.stderr)
        return 1
    sklearn, sklearn_reason = optional_import("sklearn")
    if sklearn is None:
        # Every peer and the ARI itself come from scikit-learn: without it nothing is compared.
        print(sklearn_reason, file=sys.stderr)
        return 1
    names = list(SMOKE_SETS) if args.smoke else args.sets.split(",")
    n_seeds = 2 if args.smoke else args.seeds
    xmeans_run, xmeans_reason = _pyclustering_xmeans()
    table = methods(xmeans_run)
    if args.methods:
        wanted = args.methods.split(",")
        unknown = [m for m in wanted if m not in table]
        if unknown:
            print(f"unknown methods {unknown}; known: {list(table)}", file=sys.stderr)
            return 1
        table = {k: v for k, v in table.items() if k in wanted}
    skipped = {"X-means (pyclustering)": xmeans_reason} if xmeans_reason else {}
    results = {input_: {} for input_ in INPUTS}
    start = time.perf_counter()
    for name in names:
        data = load_clustbench(folder, name)
        inputs = {"raw": data.data, "standardised": _zscore(data.data)}
        for input_, X in inputs.items():
            entry = {
                "n": X.shape[0],
                "d": X.shape[1],
                "k_true": data.n_clusters,
                "k_max": k_max(data.n_clusters),
                "methods": {},
            }
            results[input_][name] = entry
            for method, spec in table.items():
                with warnings.catch_warnings():
                    # Convergence warnings of the peers would drown the progress lines.
                    warnings.simplefilter("ignore")
                    row = evaluate(X, data.labels, spec, data.n_clusters, n_seeds)
                entry["methods"][method] = row
                print(f"{name:>10} {input_:<12} {method:<30} {_cell(row)}", flush=True)
    wall = time.perf_counter() - start
    summary = summarise(results, list(table))
    payload = {
        "machine": machine_info(),
        "skipped": skipped,
        "seeds": n_seeds,
        "wall_seconds": wall,
        "settings": {
            "k_max": "max(10, 2K)",
            "GMM + BIC (baseline)": "GaussianMixture(full, default reg_covar), k = 1..k_max",
            "BayesianGMM (DP)": "n_components = k_max, max_iter = 500",
            "X-means (pyclustering)": "kmax = k_max",
            "HDBSCAN": "scikit-learn defaults; noise counted as its own label in the ARI",
            "oracles": "see the labels; standardised columns whatever the input",
        },
        "results": results,
        "summary": summary,
    }
    write_results(args.out, "cluster_uci", payload, _markdown(results, summary, skipped, n_seeds))
    print(f"wall time {wall:.0f} s")
    return 0


def _cell(r: dict) -> str:
    if "ari_mean" not in r:
        return ": ".join(r["crash"].split(": ")[:2])  # "crash: <ExceptionType>"; text below
    span = "" if r["k_min"] == r["k_max"] else f" [{r['k_min']}–{r['k_max']}]"
    noise = f" · noise {r['noise_fraction']:.0%}" if r["noise_fraction"] > 0 else ""
    crashed = f" · {r['crashed_runs']}/{r['runs']} crashed" if r["crashed_runs"] else ""
    return (
        f"{r['k_median']:g}{span} · {r['ari_mean']:.2f} · {r['seconds_mean']:.2g}s · "
        f"{r['distinct_partitions']}{noise}{crashed}"
    )


def _markdown(results, summary, skipped, n_seeds):
    names = list(summary)
    lines = [
        "# PPP against auto-k clusterers on eight UCI tables",
        "",
        "Each cell: median k [min–max] · mean ARI · mean seconds per run (first run excluded) · "
        "distinct partitions over the runs (1 = repeatable). PPP, HDBSCAN and G-means have no "
        f"seed: their {n_seeds} runs are row permutations; the seeded methods run on "
        f"{n_seeds} seeds. K_max = max(10, 2K). **GMM + BIC (baseline)** is the simplest strong "
        "baseline: GaussianMixture (full covariance) for k = 1..K_max, lowest BIC. "
        "KMeans is told the true k. HDBSCAN's noise counts as one more label in the ARI. "
        "The two **oracle** columns see the labels (nearest true-class mean, and QDA with "
        "class covariances (1 − 0.1) S + 0.1 I fitted and scored on all rows), both in "
        "standardised columns whatever the input: they show how far the columns separate the "
        "classes; they are not clusterers. "
        "`python benchmarks/cluster_uci.py`.",
    ]
    crashes = []
    for input_ in INPUTS:
        lines += ["", f"## {input_.capitalize()} columns", ""]
        rows = []
        for name, entry in results[input_].items():
            cells = [f"{name} ({entry['n']}, {entry['d']}, {entry['k_true']})"]
            for method in names:
                row = entry["methods"][method]
                cells.append(_cell(row))
                crashes += [f"{name}, {input_}, {method}: {c}" for c in row["crashes"]]
            rows.append(cells)
        lines.append(markdown_table(["table (n, d, K)", *names], rows))
    lines += ["", "## Summary", ""]
    rows = []
    for method in names:
        cells = [method]
        for input_ in INPUTS:
            s = summary[method][input_]
            mean = (
                "n/a" if s["ari_mean_over_tables"] is None else f"{s['ari_mean_over_tables']:.3f}"
            )
            if s["tables_run"] < s["tables"]:
                mean += f" ({s['tables_run']} of {s['tables']})"
            cells.append(mean)
        cells += [summary[method][input_]["tables_with_k_1"] for input_ in INPUTS]
        rows.append(cells)
    headers = ["method", "mean ARI, raw", "mean ARI, standardised", "k = 1, raw"]
    lines.append(markdown_table([*headers, "k = 1, standardised"], rows))
    lines += [
        "",
        "Mean ARI over the tables where the method ran; k = 1: tables whose median k is 1.",
    ]
    if crashes:
        lines += ["", "Crashes (runs that raised; the other runs are summarised):", ""]
        lines += [f"* {c}" for c in crashes]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
