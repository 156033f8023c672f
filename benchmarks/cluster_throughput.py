"""PPP's throughput from 1e5 to 1e7 rows, against scikit-learn's KMeans and MiniBatchKMeans.

Data: ``K = 10`` Gaussian clusters in ``d = 16`` dimensions (unit covariance, centres drawn
uniformly in a box of side 20, sizes in proportion 1:2:...:10), float32, n rows. PPP finds k
itself (``max_clusters = 32``: the capacity is the static width of every compiled pass, so it
is set near the expected k); ``KMeans`` (``n_init=1``, Lloyd) and ``MiniBatchKMeans``
(``n_init=1``, ``batch_size=4096``) are **told k = 10**. Reported: k found, ARI against the
generating labels, the first call (PPP: trace + compile + run) and the steady time of a second
call on the same shape, rows per second, and PPP's number of passes over the data. PPP runs
with its default (the tree grown on a hashed subsample of 65536 rows, centres refined and
rows labelled on all of them), with ``tree_rows=131072`` and with the tree grown on every row
(``tree_rows=None``, up to 1e6 rows). A second table fits 1e6 rows of 30 clusters whose sizes
span 1 : 2000 with several ``tree_rows``: what a subsample costs in small clusters.

The assignment step (every row to its nearest centre: a ``(rows × d) · (d × K)`` product and an
argmin) is timed on its own over PPP's row blocks, and its arithmetic rate ``2·n·K·d`` flop/s
(K = the capacity, the width actually computed) is given as a fraction of the machine's
measured float32 matrix-multiply rate (a 4096² product through JAX): the physical limit of
that step is that rate, and with d = 16 the step is bound by memory instead.

Run ``python benchmarks/cluster_throughput.py`` (``--smoke`` for 2000 rows,
``--sizes 1e5,1e6`` to choose); results go to ``benchmarks/results/cluster_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_OUT, machine_info, markdown_table, optional_import, write_results

from probkit.cluster import PPP, adjusted_rand_index
from probkit.cluster._engine import RowEngine

K_TRUE, D, CAPACITY = 10, 16, 32


def make_data(n, seed=0):
    """The K-cluster Gaussian data set of n rows (float32) and its labels."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, (K_TRUE, D))
    weights = np.arange(1, K_TRUE + 1) / np.arange(1, K_TRUE + 1).sum()
    labels = np.sort(rng.choice(K_TRUE, size=n, p=weights))
    X = (centres[labels] + rng.standard_normal((n, D), dtype=np.float32)).astype(np.float32)
    return X, labels


def matmul_rate(size=4096, repeats=5):
    """The float32 matrix-multiply rate of this machine through JAX, in flop/s."""
    a = jnp.ones((size, size), jnp.float32)
    product = jax.jit(lambda x, y: x @ y)
    product(a, a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        product(a, a).block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def assignment_rate(X, centres):
    """Seconds and flop/s of one assignment pass over PPP's row blocks."""
    engine = RowEngine(X, CAPACITY)
    padded = np.zeros((CAPACITY, D))
    padded[: centres.shape[0]] = centres
    active = np.arange(CAPACITY) < centres.shape[0]
    engine.assign(padded, active)  # compile
    start = time.perf_counter()
    repeats = 3
    for _ in range(repeats):
        engine.assign(padded, active)
    seconds = (time.perf_counter() - start) / repeats
    return seconds, 2 * X.shape[0] * CAPACITY * D / seconds


class PassCounter:
    """Counts PPP's passes over the data (calls of the engine's block reductions)."""

    def __init__(self):
        self.passes = 0
        self._original = RowEngine._reduce

    def __enter__(self):
        counter = self

        def counting(engine, *args, **kwargs):
            counter.passes += 1
            return counter._original(engine, *args, **kwargs)

        RowEngine._reduce = counting
        return self

    def __exit__(self, *exc):
        RowEngine._reduce = self._original


PPP_VARIANTS = {
    "PPP (default)": {},
    "PPP (tree on 131072 rows)": {"tree_rows": 1 << 17},
    "PPP (tree on every row)": {"tree_rows": None},
}
FULL_TREE_UP_TO = 10**6


def _time_ppp(X, truth, params):
    """First call, steady call and passes of PPP with ``params``; the result and the model."""
    start = time.perf_counter()
    PPP(max_clusters=CAPACITY, **params).fit(X)
    first = time.perf_counter() - start
    with PassCounter() as counter:
        start = time.perf_counter()
        model = PPP(max_clusters=CAPACITY, **params).fit(X)
        steady = time.perf_counter() - start
    return {
        "k": model.n_clusters_,
        "ari": adjusted_rand_index(truth, model.labels_),
        "first_call_s": first,
        "steady_s": steady,
        "rows_per_s": X.shape[0] / steady,
        "passes": counter.passes,
        "tree_rows": model.tree_rows_,
    }, model


def rare_clusters(n, seed=0):
    """``RARE_K`` Gaussian clusters whose sizes span 1 : 2000 (the smallest ~0.01 % of n)."""
    rng = np.random.default_rng(seed)
    weights = np.geomspace(1, 2000, RARE_K)
    centres = rng.uniform(-12, 12, (RARE_K, D))
    labels = rng.choice(RARE_K, size=n, p=weights / weights.sum())
    X = (centres[labels] + rng.standard_normal((n, D), dtype=np.float32)).astype(np.float32)
    return X, labels


RARE_K = 30
RARE_TREE_ROWS = (None, 1 << 17, 1 << 16, 1 << 15)


def _rare_cluster_rows(n):
    """k found, ARI and seconds on `rare_clusters` for several ``tree_rows``."""
    X, truth = rare_clusters(n)
    out = {"rows": n, "smallest_cluster_rows": int(np.bincount(truth).min()), "fits": []}
    for tree_rows in RARE_TREE_ROWS:
        PPP(max_clusters=64, tree_rows=tree_rows).fit(X[:4096])  # compile the block shapes
        start = time.perf_counter()
        model = PPP(max_clusters=64, tree_rows=tree_rows).fit(X)
        seconds = time.perf_counter() - start
        out["fits"].append(
            {
                "tree_rows": model.tree_rows_,
                "k": model.n_clusters_,
                "ari": adjusted_rand_index(truth, model.labels_),
                "seconds": seconds,
            }
        )
        print("rare clusters", out["fits"][-1], flush=True)
    return out


def main(argv=None):
    """Run the benchmark and write its results; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = [2_000] if args.smoke else [int(float(s)) for s in args.sizes.split(",")]
    sklearn, reason = optional_import("sklearn")
    peak = matmul_rate(1024 if args.smoke else 4096)
    rows = {}
    for n in sizes:
        X, truth = make_data(n)
        entry = {}
        for name, params in PPP_VARIANTS.items():
            if params.get("tree_rows", 1) is None and n > FULL_TREE_UP_TO and not args.smoke:
                continue  # minutes per fit: the variant is measured up to FULL_TREE_UP_TO
            entry[name], model = _time_ppp(X, truth, params)
        seconds, rate = assignment_rate(X, model._centers_standard)
        entry["assignment_step"] = {
            "seconds": seconds,
            "flops_per_s": rate,
            "fraction_of_matmul_peak": rate / peak,
        }
        if sklearn is not None:
            from sklearn.cluster import KMeans, MiniBatchKMeans

            for name, make in (
                ("KMeans (k given)", lambda: KMeans(K_TRUE, n_init=1, random_state=0)),
                (
                    "MiniBatchKMeans (k given)",
                    lambda: MiniBatchKMeans(K_TRUE, n_init=1, batch_size=4096, random_state=0),
                ),
            ):
                start = time.perf_counter()
                labels = make().fit_predict(X)
                first = time.perf_counter() - start
                start = time.perf_counter()
                labels = make().fit_predict(X)
                steady = time.perf_counter() - start
                entry[name] = {
                    "k": K_TRUE,
                    "ari": adjusted_rand_index(truth, labels),
                    "first_call_s": first,
                    "steady_s": steady,
                    "rows_per_s": n / steady,
                }
        rows[n] = entry
        print(
            n,
            {
                k: {a: round(b, 4) if isinstance(b, float) else b for a, b in v.items()}
                for k, v in entry.items()
            },
            flush=True,
        )
    rare = _rare_cluster_rows(4096 if args.smoke else 10**6)
    payload = {
        "machine": machine_info(),
        "rare_clusters": rare,
        "matmul_flops_per_s": peak,
        "k_true": K_TRUE,
        "d": D,
        "capacity": CAPACITY,
        "results": {str(n): v for n, v in rows.items()},
        "skipped": {"scikit-learn": reason} if reason else {},
    }
    write_results(args.out, "cluster_throughput", payload, _markdown(rows, peak, rare))
    return 0


def _markdown(rows, peak, rare):
    lines = [
        "# PPP throughput against scikit-learn's KMeans and MiniBatchKMeans",
        "",
        f"K = {K_TRUE} Gaussian clusters in d = {D}, float32; PPP finds k (capacity "
        f"{CAPACITY}), the k-means peers are told k. PPP's default grows its tree on a hashed "
        "subsample of at most 65536 rows (`tree_rows`) and refines the centres and labels on "
        "every row; 'tree on every row' is `tree_rows=None` (measured up to "
        f"{FULL_TREE_UP_TO:.0e} rows). Steady = a second call on the same shape; first = "
        "trace + compile + run for PPP. × KMeans = steady seconds over KMeans' steady seconds. "
        f"Matrix-multiply rate of this machine: {peak / 1e9:.1f} GFLOP/s. "
        "`python benchmarks/cluster_throughput.py`.",
        "",
    ]
    table = []
    for n, entry in rows.items():
        kmeans = entry.get("KMeans (k given)", {}).get("steady_s")
        for method in (*PPP_VARIANTS, "KMeans (k given)", "MiniBatchKMeans (k given)"):
            if method not in entry:
                continue
            r = entry[method]
            table.append(
                [
                    f"{n:.0e}",
                    method,
                    r["k"],
                    r["ari"],
                    r["first_call_s"],
                    r["steady_s"],
                    r["steady_s"] / kmeans if kmeans else "",
                    r["rows_per_s"],
                    r.get("passes", ""),
                ]
            )
    lines.append(
        markdown_table(
            [
                "rows",
                "method",
                "k",
                "ARI",
                "first call s",
                "steady s",
                "× KMeans",
                "rows/s",
                "passes",
            ],
            table,
        )
    )
    lines += [
        "",
        f"The price of the subsample: {rare['rows']:.0e} rows of {RARE_K} Gaussian clusters in "
        f"d = {D} whose sizes span 1 : 2000 (the smallest {rare['smallest_cluster_rows']} rows), "
        "fitted with several `tree_rows` (a cluster needs about 2 × min_cluster_size rows in "
        "the subsample to be split off; capacity 64, block shapes compiled beforehand):",
        "",
        markdown_table(
            ["tree rows", "k found", "ARI", "seconds"],
            [[f["tree_rows"], f["k"], f["ari"], f["seconds"]] for f in rare["fits"]],
        ),
    ]
    lines += ["", "Assignment step over PPP's row blocks (2·n·K·d flop, K = capacity):", ""]
    lines.append(
        markdown_table(
            ["rows", "seconds", "GFLOP/s", "fraction of matmul rate"],
            [
                [
                    f"{n:.0e}",
                    e["assignment_step"]["seconds"],
                    e["assignment_step"]["flops_per_s"] / 1e9,
                    e["assignment_step"]["fraction_of_matmul_peak"],
                ]
                for n, e in rows.items()
            ],
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
