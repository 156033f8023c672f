"""LLP at scale: the kNN graph, belief propagation and DLLP training from 1e5 to 1e6 rows.

Data: ``n`` rows of ``d = 16`` standard normal features (float32) with labels drawn from a
logistic model ``P(y = 1 | x) = σ(2 wᵀx)``, ``|w| = 1``, shuffled into random bags (of 64 rows
unless ``--bag-size`` says otherwise) with their counts. Three stages, each timed on its own
with a first call (trace + compile + run) and a steady second call on the same shapes:

* ``knn``: the symmetrised 5-NN graph (``--knn-backend``: exact blocked GEMM + top-k in JAX,
  or FAISS HNSW);
* ``bp``: 100 flooding sweeps of loopy BP (no early stop, so the work is fixed) on the LLP
  field with exact count factors (``λ_s = 1``, hard counts); reported with the AUC of the
  marginals against the hidden labels (how well BP recovers them from counts and the graph);
* ``train``: DLLP training of the 128-64 network for ``--epochs`` epochs (no early stop),
  reported per epoch, with the test AUC on a fresh sample of 1e5 rows;
* ``default``: one call of ``LLPClassifier(verbose=1).fit`` with every default, as a user's
  first fit (compilation included), with the model it chose and its test AUC.

The kNN graph's recall is measured on 1000 random rows against their exact neighbours (a
brute-force NumPy search), with the ratio of the mean distance to the neighbours found to the
mean distance to the true ones. ``--stages`` runs a subset of the stages.

Run ``python benchmarks/llp_scale.py`` (``--smoke`` for 1024 rows; ``--sizes 1e5,1e6``); results
go to ``benchmarks/results/llp_scale.{json,md}``. On a machine with an accelerator JAX uses it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_OUT, machine_info, markdown_table, write_results

from probkit.inference.bp import belief_propagation
from probkit.llp import (
    LLPClassifier,
    bag_counts,
    knn_graph,
    llp_field,
    random_bags,
    similarity_weights,
    validate_bags,
)

NAME = "llp_scale"
STAGES = ("knn", "bp", "train", "default")
COLUMNS = (  # (header, stage, key) of the results table after rows and bag size
    ("kNN backend", "knn", "backend"),
    ("kNN first s", "knn", "first_call_s"),
    ("kNN steady s", "knn", "steady_s"),
    ("kNN recall", "knn", "recall"),
    ("kNN distance ratio", "knn", "distance_ratio"),
    ("BP first s", "bp", "first_call_s"),
    ("BP steady s", "bp", "steady_s"),
    ("BP marginal AUC", "bp", "marginal_auc"),
    ("train s/epoch", "train", "steady_s_per_epoch"),
    ("test AUC", "train", "test_auc"),
    ("default fit s", "default", "first_call_s"),
    ("default chose", "default", "chosen"),
    ("default test AUC", "default", "test_auc"),
)
D, BAG_SIZE, NEIGHBOURS, SWEEPS = 16, 64, 5, 100


def make_data(n: int, seed: int):
    """``n`` rows of the logistic model: features (float32) and 0/1 labels.

    The weights are the same for every seed (the training and test samples share the model).
    """
    w = np.random.default_rng(12345).standard_normal(D)
    w /= np.linalg.norm(w)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D)).astype(np.float32)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * X @ w))).astype(np.int64)
    return X, y


def _twice(function):
    """Seconds of a first and a second call of ``function`` and the second call's value."""
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        value = function()
        seconds.append(time.perf_counter() - start)
    return {"first_call_s": seconds[0], "steady_s": seconds[1]}, value


def knn_recall(X: np.ndarray, neighbours: np.ndarray, sample: int = 1000) -> dict:
    """Recall of ``neighbours`` against the exact neighbours of ``sample`` random rows.

    The exact search is a matrix product of the sampled rows against blocks of all rows, keeping
    each sampled row's ``k`` nearest so far.
    """
    n, k = neighbours.shape
    rows = np.random.default_rng(7).choice(n, min(sample, n), replace=False)
    queries = X[rows].astype(np.float64)
    best = np.full((len(rows), k), np.inf)
    best_index = np.zeros((len(rows), k), np.int64)
    for start in range(0, n, 65536):
        block = X[start : start + 65536].astype(np.float64)
        squared = (
            np.sum(queries**2, axis=1)[:, None]
            - 2.0 * queries @ block.T
            + np.sum(block**2, axis=1)[None, :]
        )
        index = np.arange(start, start + len(block))
        squared[index[None, :] == rows[:, None]] = np.inf  # not the row itself
        merged = np.concatenate([best, squared], axis=1)
        merged_index = np.concatenate([best_index, np.broadcast_to(index, squared.shape)], axis=1)
        keep = np.argpartition(merged, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(merged, keep, axis=1)
        best_index = np.take_along_axis(merged_index, keep, axis=1)
    found = np.sum((X[neighbours[rows]] - X[rows][:, None, :]) ** 2, axis=-1, dtype=np.float64)
    hits = sum(
        len(set(t.tolist()) & set(f.tolist()))
        for t, f in zip(best_index, neighbours[rows], strict=True)
    )
    return {
        "recall": hits / (len(rows) * k),
        "distance_ratio": float(
            np.sqrt(np.maximum(found, 0)).mean() / np.sqrt(np.maximum(best, 0)).mean()
        ),
        "sample": len(rows),
    }


def run_size(
    n: int, knn_backend: str, epochs: int, bag_size: int = BAG_SIZE, stages=STAGES
) -> dict:
    """Time the chosen stages on ``n`` rows in bags of ``bag_size``."""
    X, y = make_data(n, seed=0)
    bag_of = random_bags(n, bag_size, seed=0)
    _, counts = bag_counts(bag_of, y)
    bags = validate_bags(bag_of, n, counts=counts)
    out: dict = {"rows": n, "bag_size": bag_size, "bags": int(bags.num_bags)}
    X_test, y_test = make_data(100_000, seed=1)

    if "knn" in stages or "bp" in stages:
        out["knn"], graph = _twice(lambda: knn_graph(X, NEIGHBOURS, backend=knn_backend))
        out["knn"]["backend"] = knn_backend
        out["knn"]["edges"] = int(graph.edges.shape[0])
        out["knn"] |= knn_recall(X, graph.neighbours)
    if "bp" in stages:
        weights = similarity_weights(graph.distances)
        field = llp_field(graph, weights, bags, similarity_strength=1.0, bag_strength=np.inf)

        def propagate():
            result = belief_propagation(field, max_iterations=SWEEPS, tolerance=0.0)
            return np.asarray(result.marginals)

        out["bp"], marginals = _twice(propagate)
        out["bp"]["sweeps"] = SWEEPS
        out["bp"]["marginal_auc"] = float(roc_auc_score(y, marginals))

    if "default" in stages:
        start = time.perf_counter()
        model = LLPClassifier(verbose=1).fit(X, bag_of, counts)
        out["default"] = {
            "first_call_s": time.perf_counter() - start,
            "chosen": model.selection_["chosen"],
            "timings": model.timings_,
            "test_auc": float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])),
        }
    if "train" not in stages:
        return out

    def train():
        model = LLPClassifier(
            method="dllp", epochs=epochs, patience=epochs, validation_fraction=0.0
        )
        return model.fit(X, bag_of, counts)

    timing, model = _twice(train)
    out["train"] = {
        "epochs": epochs,
        "first_call_s": timing["first_call_s"],
        "steady_s": timing["steady_s"],
        "steady_s_per_epoch": model.timings_["train"] / epochs,
        "test_auc": float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])),
    }
    return out


def main(argv=None) -> int:
    """Run the benchmark and write its results; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--knn-backend", default="auto", choices=("auto", "exact", "faiss"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--bag-size", type=int, default=BAG_SIZE)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    stages = tuple(args.stages.split(","))
    sizes = [1024] if args.smoke else [int(float(s)) for s in args.sizes.split(",")]
    epochs = 1 if args.smoke else args.epochs
    bag_size = 16 if args.smoke else args.bag_size
    runs: list = []
    machine = machine_info()
    for n in sizes:
        runs.append(run_size(n, args.knn_backend, epochs, bag_size, stages))
        print(NAME, runs[-1], flush=True)
        # Written after every size, so that an interrupted run keeps what it did.
        _write(args.out, {"benchmark": NAME, "smoke": args.smoke, "machine": machine, "runs": runs})
    return 0


def _write(out, payload):
    runs = payload["runs"]
    machine = payload["machine"]

    def cell(r, stage, key):
        value = r.get(stage, {}).get(key)
        return "" if value is None else value

    rows = [
        [f"{r['rows']:.0e}", r.get("bag_size", BAG_SIZE)]
        + [cell(r, stage, key) for _, stage, key in COLUMNS]
        for r in runs
    ]
    lines = [
        "# LLP at scale: kNN graph, belief propagation, DLLP training",
        "",
        f"JAX backend {machine['jax_backend']} ({', '.join(machine['jax_device_kinds'])}), "
        f"{machine['cpu_count']} CPU cores; run {machine['date']}. d = {D}, "
        f"{NEIGHBOURS}-NN, {SWEEPS} BP sweeps with exact count factors, 128-64 network. First = "
        "trace + compile + run; steady = a second call on the same shapes. "
        "`python benchmarks/llp_scale.py`.",
        "",
        markdown_table(
            ["rows", "bag size"] + [header for header, _, _ in COLUMNS],
            rows,
        ),
    ]
    if payload.get("note"):
        lines += ["", f"Note: {payload['note']}"]
    write_results(out, NAME, payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
