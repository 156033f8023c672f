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
  reported per epoch, with the test AUC on a fresh sample of 1e5 rows.

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


def run_size(n: int, knn_backend: str, epochs: int, bag_size: int = BAG_SIZE) -> dict:
    """Time the three stages on ``n`` rows in bags of ``bag_size``."""
    X, y = make_data(n, seed=0)
    bag_of = random_bags(n, bag_size, seed=0)
    _, counts = bag_counts(bag_of, y)
    bags = validate_bags(bag_of, n, counts=counts)
    out: dict = {"rows": n, "bag_size": bag_size, "bags": int(bags.num_bags)}

    out["knn"], graph = _twice(lambda: knn_graph(X, NEIGHBOURS, backend=knn_backend))
    out["knn"]["backend"] = knn_backend
    out["knn"]["edges"] = int(graph.edges.shape[0])
    weights = similarity_weights(graph.distances)
    field = llp_field(graph, weights, bags, similarity_strength=1.0, bag_strength=np.inf)

    def propagate():
        result = belief_propagation(field, max_iterations=SWEEPS, tolerance=0.0)
        return np.asarray(result.marginals)

    out["bp"], marginals = _twice(propagate)
    out["bp"]["sweeps"] = SWEEPS
    out["bp"]["marginal_auc"] = float(roc_auc_score(y, marginals))

    X_test, y_test = make_data(100_000, seed=1)

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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = [1024] if args.smoke else [int(float(s)) for s in args.sizes.split(",")]
    epochs = 1 if args.smoke else args.epochs
    bag_size = 16 if args.smoke else args.bag_size
    runs: list = []
    machine = machine_info()
    for n in sizes:
        runs.append(run_size(n, args.knn_backend, epochs, bag_size))
        print(NAME, runs[-1], flush=True)
        # Written after every size, so that an interrupted run keeps what it did.
        _write(args.out, {"benchmark": NAME, "smoke": args.smoke, "machine": machine, "runs": runs})
    return 0


def _write(out, payload):
    runs = payload["runs"]
    machine = payload["machine"]
    rows = [
        [
            f"{r['rows']:.0e}",
            r.get("bag_size", BAG_SIZE),
            f"{r['knn']['backend']}",
            r["knn"]["first_call_s"],
            r["knn"]["steady_s"],
            r["bp"]["first_call_s"],
            r["bp"]["steady_s"],
            r["bp"]["marginal_auc"],
            r["train"]["steady_s_per_epoch"],
            r["train"]["test_auc"],
        ]
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
            [
                "rows",
                "bag size",
                "kNN backend",
                "kNN first s",
                "kNN steady s",
                "BP first s",
                "BP steady s",
                "BP marginal AUC",
                "train s/epoch",
                "test AUC",
            ],
            rows,
        ),
    ]
    if payload.get("note"):
        lines += ["", f"Note: {payload['note']}"]
    write_results(out, NAME, payload, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
