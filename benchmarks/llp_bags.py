"""LLP methods against each other on offline binary data, random bags of growing size.

Methods, all ``probkit.llp.LLPClassifier`` with the same network (128-64 ReLU MLP, AdamW 1e-3,
early stopping on held-out bags, never on instance labels):

* ``bp``: LLP-BP with exact count factors and the network's logits as unary evidence (EM with
  a similarity prior), ``λ_s`` chosen on held-out bags;
* ``bp (no unaries)``: the paper's field with exact count factors (the network enters only
  through the embeddings its graph is built on);
* ``bp-paper``: the authors' release (clique expansion, ``λ_s = λ_b = 10``, cosine 5-NN,
  hard pseudo-labels, 100 sweeps);
* ``dllp``, ``easyllp``, ``soft-label``;
* ``oracle``: the same network trained on the instance labels (bags of one).

For each data set (Adult, Bank Marketing from ``PROBKIT_LLP_DATA`` or ``../shared/data/llp``,
Fair's affairs from statsmodels), bag size and seed: the instance-level test AUC, and for the
BP methods the seconds in kNN, BP and training, the BP sweeps and the bag-count error of the
marginals. Also the BP time of the clique expansion against the count factor on the same field.

Run ``python benchmarks/llp_bags.py`` (``--smoke`` for one data set, one bag size and one
seed); results go to ``benchmarks/results/llp_bags.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

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
from probkit.llp.datasets import llp_data_folder, load_adult, load_bank_marketing, load_fair

METHODS = {
    "bp": {"method": "bp"},
    "bp (no unaries)": {"method": "bp", "unaries": "none"},
    "bp-paper": {"method": "bp-paper"},
    "dllp": {"method": "dllp"},
    "easyllp": {"method": "easyllp"},
    "soft-label": {"method": "soft-label"},
}

LOADERS = {"adult": load_adult, "bank_marketing": load_bank_marketing, "fair": load_fair}


def _run(data, bag_size, seed, name, settings, epochs):
    bags = random_bags(len(data.y_train), bag_size, seed=seed)
    _, counts = bag_counts(bags, data.y_train)
    start = time.perf_counter()
    model = LLPClassifier(**settings, epochs=epochs, random_state=seed)
    model.fit(data.X_train, bags, counts)
    seconds = time.perf_counter() - start
    auc = roc_auc_score(data.y_test, model.predict_proba(data.X_test)[:, 1])
    row = {"auc": float(auc), "seconds": seconds, "timings": model.timings_}
    if getattr(model, "rounds_", None):
        row["rounds"] = [{k: v for k, v in r.items() if k != "marginals"} for r in model.rounds_]
    return row


def _clique_timing(data, bag_size, seed):
    # BP on the same field with the count factor and with the clique expansion (λ_b = 10).
    bags = random_bags(len(data.y_train), bag_size, seed=seed)
    _, counts = bag_counts(bags, data.y_train)
    validated = validate_bags(bags, len(bags), counts=counts)
    graph = knn_graph(data.X_train, 5)
    weights = similarity_weights(graph.distances)
    out = {}
    for clique in (False, True):
        field = llp_field(
            graph, weights, validated, similarity_strength=1.0, bag_strength=10.0, clique=clique
        )
        times = []
        for _ in range(2):  # the first call compiles
            start = time.perf_counter()
            result = belief_propagation(field, max_iterations=100, tolerance=0.0)
            result.marginals.block_until_ready()
            times.append(time.perf_counter() - start)
        out["clique" if clique else "count"] = {
            "first_call_s": times[0],
            "steady_s": times[1],
            "pairwise_edges": int(field.edges.shape[0]),
        }
    return out


def main(argv=None) -> int:
    """Run the benchmark; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--datasets", default="adult,bank_marketing,fair")
    parser.add_argument("--bag-sizes", default="8,32,128,512")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    sizes = [int(s) for s in args.bag_sizes.split(",")]
    seeds = range(args.seeds)
    methods = args.methods.split(",")
    settings = dict(METHODS)
    if args.smoke:
        datasets, sizes, seeds, methods = ["fair"], [16], range(1), ["bp", "dllp"]
        args.epochs = 5
        settings["bp"] = {"method": "bp", "similarity_strength": 1.0, "rounds": 1}
    if llp_data_folder() is None:
        datasets = [d for d in datasets if d == "fair"]
    results: dict = {}
    for dataset in datasets:
        data = LOADERS[dataset]()
        entry = results[dataset] = {"n_train": len(data.y_train), "sizes": {}}
        oracle = _run(data, 1, 0, "oracle", {"method": "soft-label"}, args.epochs)
        entry["oracle_auc"] = oracle["auc"]
        for size in sizes:
            cell = entry["sizes"][str(size)] = {}
            for name in methods:
                runs = [_run(data, size, s, name, settings[name], args.epochs) for s in seeds]
                aucs = [r["auc"] for r in runs]
                cell[name] = {
                    "auc_mean": statistics.fmean(aucs),
                    "auc_sd": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                    "seconds_mean": statistics.fmean(r["seconds"] for r in runs),
                    "runs": runs,
                }
                print(dataset, size, name, round(cell[name]["auc_mean"], 4), flush=True)
            if not args.smoke and size >= 32:
                cell["bp_time_clique_vs_count"] = _clique_timing(data, size, 0)
    payload = {
        "machine": machine_info(),
        "seeds": list(seeds),
        "epochs": args.epochs,
        "results": results,
    }
    lines = [
        "# LLP on random bags: instance-level test AUC (mean ± sd over seeds)",
        "",
        f"Seeds: {len(seeds)}; network 128-64, ≤ {args.epochs} epochs, early stopping on "
        "held-out bags. `python benchmarks/llp_bags.py`.",
        "",
    ]
    for dataset, entry in results.items():
        lines += [
            f"## {dataset} (n_train = {entry['n_train']}, oracle AUC {entry['oracle_auc']:.4f})",
            "",
        ]
        rows = []
        for size, cell in entry["sizes"].items():
            rows.append(
                [size] + [f"{cell[m]['auc_mean']:.4f} ± {cell[m]['auc_sd']:.4f}" for m in methods]
            )
        lines += [markdown_table(["bag size", *methods], rows), ""]
        timing_rows = [
            [
                size,
                f"{c['count']['steady_s']:.2f}",
                f"{c['clique']['steady_s']:.2f}",
                c["clique"]["pairwise_edges"],
            ]
            for size, cell in entry["sizes"].items()
            if (c := cell.get("bp_time_clique_vs_count"))
        ]
        if timing_rows:
            lines += [
                "BP time, 100 sweeps, steady state (s): count factor vs clique expansion",
                "",
                markdown_table(["bag size", "count", "clique", "clique edges"], timing_rows),
                "",
            ]
    write_results(args.out, "llp_bags", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
