"""PPP's throughput from 1e5 to 1e7 rows, against scikit-learn's KMeans and MiniBatchKMeans.

Data: ``K = 10`` Gaussian clusters in ``d = 16`` dimensions (unit covariance, centres drawn
uniformly in a box of side 20, sizes in proportion 1:2:...:10), float32, n rows. PPP finds k
itself (``max_clusters = 32``: the capacity is the static width of every compiled pass, so it
is set near the expected k); ``KMeans`` (``n_init=1``, Lloyd) and ``MiniBatchKMeans``
(``n_init=1``, ``batch_size=4096``) are **told k = 10**. Reported: k found, ARI against the
generating labels, the first call (PPP: trace + compile + run) and the steady time of a second
call on the same shape, rows per second, and PPP's number of passes over the data.

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
        model = PPP(max_clusters=CAPACITY)
        start = time.perf_counter()
        model.fit(X)
        first = time.perf_counter() - start
        with PassCounter() as counter:
            start = time.perf_counter()
            model = PPP(max_clusters=CAPACITY).fit(X)
            steady = time.perf_counter() - start
        entry["PPP"] = {
            "k": model.n_clusters_,
            "ari": adjusted_rand_index(truth, model.labels_),
            "first_call_s": first,
            "steady_s": steady,
            "rows_per_s": n / steady,
            "passes": counter.passes,
        }
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
    payload = {
        "machine": machine_info(),
        "matmul_flops_per_s": peak,
        "k_true": K_TRUE,
        "d": D,
        "capacity": CAPACITY,
        "results": {str(n): v for n, v in rows.items()},
        "skipped": {"scikit-learn": reason} if reason else {},
    }
    write_results(args.out, "cluster_throughput", payload, _markdown(rows, peak))
    return 0


def _markdown(rows, peak):
    lines = [
        "# PPP throughput against scikit-learn's KMeans and MiniBatchKMeans",
        "",
        f"K = {K_TRUE} Gaussian clusters in d = {D}, float32; PPP finds k (capacity "
        f"{CAPACITY}), the k-means peers are told k. Steady = a second call on the same shape; "
        f"first = trace + compile + run for PPP. Matrix-multiply rate of this machine: "
        f"{peak / 1e9:.1f} GFLOP/s. `python benchmarks/cluster_throughput.py`.",
        "",
    ]
    table = []
    for n, entry in rows.items():
        for method in ("PPP", "KMeans (k given)", "MiniBatchKMeans (k given)"):
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
                    r["rows_per_s"],
                    r.get("passes", ""),
                ]
            )
    lines.append(
        markdown_table(
            ["rows", "method", "k", "ARI", "first call s", "steady s", "rows/s", "passes"], table
        )
    )
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
