"""LLP methods against each other on offline binary data, random bags of growing size.

Methods, all ``probkit.llp.LLPClassifier``; the first two are compared in their own table:

* ``default``: ``LLPClassifier()`` as a user first tries it (its defaults, ``random_state`` the
  seed, the benchmark's epochs for its networks): method ``"auto"``, the linear DLLP (on the
  standardised columns, or on those and their hinges when cross-validation over bags finds the
  hinges better by more than two standard errors), replaced by an EasyLLP or DLLP network only
  when that network's held-out bag loss is below the linear model's by more than two standard
  errors; the cell records the model it kept (``selection_["chosen"]``, and ``basis``) with
  the losses behind the choice;
* ``dllp-lr``: ``LLPClassifier("dllp", hidden=(), basis="linear")``, the linear DLLP (a
  logistic model on the standardised columns fitted by full-batch L-BFGS to the bag counts,
  ``l2`` chosen by cross-validation over bags), the simplest strong baseline of the field.

The other methods share one network (128-64 ReLU MLP, AdamW 1e-3, early stopping on held-out
bags when there are at least 20 of them, never on instance labels):

* ``bp``: LLP-BP with exact count factors and the network's logits as unary evidence (EM with
  a similarity prior), ``λ_s`` chosen on held-out bags, ``k = 5``;
* ``bp-paper``: the authors' release (clique expansion, ``λ_s = λ_b = 10``, cosine 5-NN,
  hard pseudo-labels, 100 sweeps);
* ``dllp``, ``easyllp``, ``soft-label``;
* ``oracle``: the same network trained on the instance labels (bags of one), one seed;
* ``oracle-lr``: scikit-learn's ``LogisticRegression`` (``C = 1``) on the instance labels of the
  training rows, features standardised with their mean and std as the classifier does; it does
  not depend on the bags, so one per data set;
* selectable, not in the default grid: ``bp (no unaries)``, the paper's field with exact count
  factors (the network enters only through the embeddings its graph is built on; behind ``bp``
  in 5 of the 6 cells of the first two-seed run), and ``bp (k auto)``, ``bp`` with
  ``n_neighbors="auto"`` (``k`` and ``λ_s`` chosen together on held-out bags), which runs as a
  probe at a few bag sizes and the first seeds (``--probe-methods``, ``--probe-sizes``).

For each data set (Adult, Bank Marketing from ``PROBKIT_LLP_DATA`` or ``../shared/data/llp``,
Fair's affairs from statsmodels), bag size and seed: the instance-level test AUC, and for the
BP methods the seconds in kNN, BP and training, the BP sweeps, the chosen ``λ_s`` and ``k`` and
the bag-count error of the marginals. Also the BP time of the clique expansion against the count
factor on the same field. For ``default`` and ``dllp-lr`` the markdown adds, per data set, the
difference ``default − dllp-lr`` of the test AUC in every cell (bag size × seed, same bags; the
aim is ``default ≥ dllp-lr − 0.005`` everywhere), the model ``default`` kept, and the best of
the other methods over the same seeds.

The grid is resumable: every finished cell (data set, bag size, seed, method) is written to
``benchmarks/results/llp_bags.json`` at once, with the settings and the commit it ran with, and
``--resume`` skips the cells already there with the same settings, so the grid can be completed
over several sessions. The markdown table is regenerated from whatever cells exist, with the
number of seeds of each. Cells run in order of information (see :func:`plan`).

With the markdown comes a figure, ``llp_bags.png`` (linked from the markdown; see
:func:`figure`): one panel per data set, the mean test AUC over the seeds against the bag size
(log scale, error bars the sd over seeds) for ``default`` (thick), ``dllp-lr`` and the networks
``bp``, ``dllp`` and ``easyllp``, with the two oracles as dashed horizontal lines. It needs
matplotlib; without it the figure is skipped with a note. ``--report-only`` rewrites the
markdown and the figure from the JSON already there, running no cell and leaving the JSON as
it is.

Run ``nice -n 19 python benchmarks/llp_bags.py --resume`` (``--smoke`` for one data set, one
bag size and one seed); results go to ``benchmarks/results/llp_bags.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
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
    # LLPClassifier() as a user first tries it (method "auto"; basis "auto" is its default too,
    # written out so that cells run before the basis existed are run again).
    "default": {"basis": "auto"},
    # The linear DLLP on the standardised columns, l2 by cross-validation over bags.
    "dllp-lr": {"method": "dllp", "hidden": [], "basis": "linear"},
    "bp": {"method": "bp"},
    "bp-paper": {"method": "bp-paper"},
    "dllp": {"method": "dllp"},
    "easyllp": {"method": "easyllp"},
    "soft-label": {"method": "soft-label"},
    "bp (no unaries)": {"method": "bp", "unaries": "none"},
    "bp (k auto)": {"method": "bp", "n_neighbors": "auto"},
    "oracle": {"method": "soft-label"},  # on bags of one: supervised learning
    # scikit-learn's logistic regression on the instance labels (standardised as the classifier
    # does): the oracle of the linear model; no bags, so one per data set.
    "oracle-lr": {"model": "sklearn LogisticRegression", "C": 1.0, "max_iter": 10000},
}

ORACLES = ("oracle", "oracle-lr")
"""Methods trained on instance labels: one cell per data set (bag size 1, seed 0)."""

NEW_METHODS = ("default", "dllp-lr")
"""The rows compared in the ``default`` vs ``dllp-lr`` summary (the others are "existing")."""

DEFAULT_METHODS = ("default", "dllp-lr", "bp", "bp-paper", "dllp", "easyllp", "soft-label")

LOADERS = {"adult": load_adult, "bank_marketing": load_bank_marketing, "fair": load_fair}

FIGURE = "llp_bags.png"
"""The figure's file name, next to the JSON and the markdown."""

TITLES = {"adult": "Adult", "bank_marketing": "Bank Marketing", "fair": "Fair"}

FIGURE_LINES = {
    # method: colour, line width, marker, factor on the bag size (a small spread along the log
    # axis, so that the error bars at one bag size do not overlap). The default is prominent;
    # the linear DLLP, which the default keeps in most cells, is drawn thinner on top of it.
    "default": ("black", 3.4, "o", 1.0),
    "dllp-lr": ("tab:blue", 1.2, "s", 1.0),
    "bp": ("tab:orange", 1.2, "^", 0.94),
    "dllp": ("tab:green", 1.2, "v", 1.065),
    "easyllp": ("tab:purple", 1.2, "D", 0.885),
}
"""The methods drawn against the bag size (the others would crowd the panels)."""

FIGURE_ORACLES = {
    # JSON key: label, colour (dashed horizontal lines).
    "oracle_lr_auc": ("oracle-lr (logistic regression on instance labels)", "tab:blue"),
    "oracle_auc": ("oracle (network on instance labels)", "0.45"),
}


def _run(data, bag_size, seed, settings, epochs):
    bags = random_bags(len(data.y_train), bag_size, seed=seed)
    _, counts = bag_counts(bags, data.y_train)
    start = time.perf_counter()
    model = LLPClassifier(**settings, epochs=epochs, random_state=seed)
    model.fit(data.X_train, bags, counts)
    seconds = time.perf_counter() - start
    auc = roc_auc_score(data.y_test, model.predict_proba(data.X_test)[:, 1])
    row = {
        "auc": float(auc),
        "seconds": seconds,
        "timings": model.timings_,
        "model": model.model_,
        "method": model.method_,
    }
    if getattr(model, "l2_", None) is not None:
        row["l2"] = float(model.l2_)
        row["basis"] = model.basis_
    if getattr(model, "selection_", None) is not None:
        # method "auto": which model it kept, why, and the held-out bag losses behind it.
        row["chosen"] = model.selection_["chosen"]
        row["selection"] = model.selection_
    if getattr(model, "rounds_", None):
        row["rounds"] = [{k: v for k, v in r.items() if k != "marginals"} for r in model.rounds_]
    return row


def _run_oracle_lr(data, settings):
    # Supervised logistic regression on the training rows' labels, on the features
    # standardised with the training mean and std (a constant column keeps scale 1), as
    # LLPClassifier standardises them.
    mean = data.X_train.mean(axis=0, dtype=np.float64)
    scale = data.X_train.std(axis=0, dtype=np.float64)
    scale = np.where(scale > 0, scale, 1.0)
    start = time.perf_counter()
    model = LogisticRegression(C=settings["C"], max_iter=settings["max_iter"])
    model.fit((data.X_train - mean) / scale, data.y_train)
    seconds = time.perf_counter() - start
    auc = roc_auc_score(data.y_test, model.predict_proba((data.X_test - mean) / scale)[:, 1])
    return {"auc": float(auc), "seconds": seconds, "iterations": int(np.max(model.n_iter_))}


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


def _cell_key(kind, dataset, size, seed, method):
    return f"{kind}|{dataset}|{size}|{seed}|{method}"


def plan(args) -> list[tuple[str, str, int, int, str]]:
    """The cells in the order they run: ``(kind, dataset, bag size, seed, method)``.

    The most informative cells come first: the oracles of each data set; every data set, bag
    size and method at the first ``--first-seeds`` seeds; the probe methods
    (``--probe-methods`` at ``--probe-sizes``) at those seeds; the remaining seeds; the
    ``--extra`` pairs ``dataset:size`` at every seed; last, the BP timing of the clique
    expansion against the count factor.
    """
    datasets = [d for d in args.datasets.split(",") if d]
    sizes = [int(s) for s in args.bag_sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    probe_methods = [m for m in args.probe_methods.split(",") if m]
    probe_sizes = [int(s) for s in args.probe_sizes.split(",") if s]
    unknown = sorted(set(methods + probe_methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(METHODS)}")
    seeds = list(range(args.seeds))
    first, rest = seeds[: args.first_seeds], seeds[args.first_seeds :]

    def grid(seed_list, dataset_list, size_list, method_list):
        return [
            ("auc", dataset, size, seed, method)
            for seed in seed_list
            for dataset in dataset_list
            for size in size_list
            for method in method_list
        ]

    cells = [("auc", dataset, 1, 0, oracle) for dataset in datasets for oracle in ORACLES]
    cells += grid(first, datasets, sizes, methods)
    cells += grid(first, datasets, probe_sizes, probe_methods)
    cells += grid(rest, datasets, sizes, methods)
    for pair in (p for p in args.extra.split(",") if p):
        dataset, size = pair.split(":")
        if dataset in datasets:
            cells += grid(seeds, [dataset], [int(size)], methods)
    if args.clique_timing:
        cells += [("clique", d, size, 0, "bp") for d in datasets for size in sizes if size >= 32]
    return cells


def _previous_cells(path: Path) -> dict:
    # Cells of an earlier run, by key; a JSON of the older layout (no "cells") holds none.
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    return {
        _cell_key(c["kind"], c["dataset"], c["bag_size"], c["seed"], c["method"]): c
        for c in payload.get("cells", [])
    }


def _summary(values):
    return {
        "auc_mean": statistics.fmean(values),
        "auc_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def aggregate(cells: list[dict], n_train: dict) -> dict:
    """Per data set and bag size, each method's AUC over the seeds done so far."""
    results: dict = {}
    for cell in sorted(cells, key=lambda c: (c["dataset"], c["bag_size"], c["seed"])):
        entry = results.setdefault(
            cell["dataset"], {"n_train": n_train.get(cell["dataset"]), "sizes": {}}
        )
        if cell["kind"] == "clique":
            size_entry = entry["sizes"].setdefault(str(cell["bag_size"]), {})
            size_entry["bp_time_clique_vs_count"] = cell["timing"]
            continue
        if cell["method"] in ORACLES:
            entry[cell["method"].replace("-", "_") + "_auc"] = cell["run"]["auc"]
            continue
        size_entry = entry["sizes"].setdefault(str(cell["bag_size"]), {})
        method = size_entry.setdefault(cell["method"], {"seeds": [], "runs": []})
        method["seeds"].append(cell["seed"])
        method["runs"].append(cell["run"])
    for entry in results.values():
        for size_entry in entry["sizes"].values():
            for name, method in size_entry.items():
                if name == "bp_time_clique_vs_count":
                    continue
                method |= _summary([r["auc"] for r in method["runs"]])
                method["seconds_mean"] = statistics.fmean(r["seconds"] for r in method["runs"])
    return results


def _short(run: dict) -> str:
    chosen = run.get("chosen", "?")
    if chosen == "linear dllp":
        return "hinge" if run.get("basis") == "hinge" else "linear"
    return chosen.replace("network ", "net ")


def _default_summary(entry: dict, sizes: list[str]) -> list[str]:
    """``default`` against ``dllp-lr`` per cell (bag size × seed), and the best other method.

    The differences are paired by seed (same bags); the best other method is the one with the
    highest mean AUC over the seeds ``default`` ran, among those that ran all of them.
    """
    rows, cells, behind = [], 0, []
    for size in sizes:
        cell = entry["sizes"][size]
        if "default" not in cell or "dllp-lr" not in cell:
            continue
        default = dict(zip(cell["default"]["seeds"], cell["default"]["runs"], strict=True))
        linear = dict(zip(cell["dllp-lr"]["seeds"], cell["dllp-lr"]["runs"], strict=True))
        seeds = sorted(set(default) & set(linear))
        differences = [default[s]["auc"] - linear[s]["auc"] for s in seeds]
        cells += len(seeds)
        behind += [(size, s, d) for s, d in zip(seeds, differences, strict=True) if d < -0.005]
        best = None
        for name, method in cell.items():
            if name in NEW_METHODS or name not in METHODS:
                continue
            runs = dict(zip(method["seeds"], method["runs"], strict=True))
            if not set(default) <= set(runs):
                continue
            mean = statistics.fmean(runs[s]["auc"] for s in default)
            if best is None or mean > best[1]:
                best = (name, mean)
        default_mean = cell["default"]["auc_mean"]
        rows.append(
            [
                size,
                ", ".join(f"{d:+.4f}" for d in differences),
                f"{min(differences):+.4f}" if differences else "",
                ", ".join(_short(default[s]) for s in sorted(default)),
                f"{best[0]} {best[1]:.4f}" if best else "",
                f"{default_mean - best[1]:+.4f}" if best else "",
            ]
        )
    if not rows:
        return []
    verdict = (
        f"every one of the {cells} cells within 0.005"
        if not behind
        else f"{len(behind)} of {cells} cells below −0.005: "
        + ", ".join(f"bags of {size} seed {s} ({d:+.4f})" for size, s, d in behind)
    )
    return [
        "`default` − `dllp-lr` test AUC per seed (same bags), the model `default` kept per "
        "seed, and the best other method (mean over the same seeds) — goal: the default ≥ "
        f"DLLP-LR − 0.005 in every cell; {verdict}",
        "",
        markdown_table(
            [
                "bag size",
                "default − dllp-lr per seed",
                "worst",
                "default kept",
                "best other",
                "default − best other",
            ],
            rows,
        ),
        "",
    ]


def figure(results: dict, path: Path) -> Path | None:
    """Draw the mean test AUC against the bag size, one panel per data set, into ``path``.

    Lines for :data:`FIGURE_LINES` (mean over the seeds, error bars the sd over seeds, each
    method at the bag sizes it ran; ``dllp-lr`` thin on top of the thick ``default``, which
    would otherwise hide it where the two agree), dashed horizontal lines for the oracles.
    Returns the path, or None (with a printed note) when matplotlib is missing or the drawing
    fails: the figure never stops the benchmark.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        print(f"no figure: matplotlib is not available ({error})", flush=True)
        return None
    datasets = [d for d in sorted(results, key=list(LOADERS).index) if results[d]["sizes"]]
    if not datasets:
        return None
    try:
        fig = Figure(figsize=(max(4.4 * len(datasets), 5.5), 4.3), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(datasets), squeeze=False)[0]
        for ax, dataset in zip(axes, datasets, strict=True):
            entry = results[dataset]
            sizes = sorted(int(s) for s in entry["sizes"])
            for method, (colour, width, marker, factor) in FIGURE_LINES.items():
                points = [
                    (size, cell[method]["auc_mean"], cell[method]["auc_sd"])
                    for size in sizes
                    if method in (cell := entry["sizes"][str(size)])
                ]
                if not points:
                    continue
                x, mean, sd = (np.asarray(v, dtype=float) for v in zip(*points, strict=True))
                ax.errorbar(
                    x * factor,
                    mean,
                    yerr=sd,
                    color=colour,
                    linewidth=width,
                    marker=marker,
                    markersize=3 + width,
                    capsize=2,
                    elinewidth=max(width / 2, 0.8),
                    label=method,
                    zorder={"default": 3, "dllp-lr": 4}.get(method, 2),
                )
            for key, (label, colour) in FIGURE_ORACLES.items():
                if entry.get(key) is not None:
                    ax.axhline(entry[key], color=colour, linestyle="--", linewidth=1.3, label=label)
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.minorticks_off()
            ax.set_xlim(min(sizes) / 1.35, max(sizes) * 1.35)
            ax.set_xlabel("bag size")
            ax.set_title(f"{TITLES.get(dataset, dataset)} (n_train = {entry['n_train']})")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test AUC (mean ± sd over seeds)")
        handles = {}
        for ax in axes:  # every label once: the methods in their order, then the oracles
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        order = list(FIGURE_LINES) + [label for label, _ in FIGURE_ORACLES.values()]
        labels = sorted(handles, key=order.index)
        fig.legend(
            [handles[label] for label in labels],
            labels,
            loc="outside lower center",
            ncols=len(labels) if len(datasets) >= 3 else 2,  # one row under 3 panels
            fontsize="small",
            frameon=False,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
    except Exception as error:  # a figure must not end a long grid
        print(f"no figure: drawing failed ({error!r})", flush=True)
        return None
    return path


def write_report(out, results: dict, epochs: int, commits: list[str], payload=None) -> None:
    """Draw the figure and write the markdown next to it, and the JSON when ``payload`` is given.

    The markdown links the figure when it was drawn.
    """
    out = Path(out)
    drawn = figure(results, out / FIGURE)
    text = markdown(results, epochs, commits, figure_name=FIGURE if drawn else None)
    if payload is not None:
        write_results(out, "llp_bags", payload, text)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "llp_bags.md").write_text(text.rstrip() + "\n")


def _bp_account(results: dict) -> str:
    """Where LLP-BP's mean test AUC is ahead of the linear DLLP and of the default, counted."""
    counts = {"dllp-lr": [0, 0], "default": [0, 0]}  # [cells where bp is ahead, cells]
    ahead_of_default = []
    for dataset, entry in results.items():
        for size, cell in entry["sizes"].items():
            if "bp" not in cell:
                continue
            for other, tally in counts.items():
                if other in cell:
                    tally[1] += 1
                    if cell["bp"]["auc_mean"] > cell[other]["auc_mean"]:
                        tally[0] += 1
                        if other == "default":
                            ahead_of_default.append(f"{TITLES.get(dataset, dataset)} {size}")
    return (
        f"LLP-BP (`bp`) is ahead of the linear DLLP in {counts['dllp-lr'][0]} of "
        f"{counts['dllp-lr'][1]} cells and of the default in {counts['default'][0]} of "
        f"{counts['default'][1]}"
        + (f" ({', '.join(ahead_of_default)})" if ahead_of_default else "")
        + ". Where and why it falls behind (its evidence and its graph come from a network "
        "weaker than the linear model, and the graph repeats what the features say): "
        "`docs/guides/llp.md`, *What the measurements say*, and `llp_diagnose.md`."
    )


def markdown(results: dict, epochs: int, commits: list[str], figure_name: str | None = None) -> str:
    """The report: AUC (mean ± sd and seed count) and mean seconds per data set and bag size.

    ``figure_name``, the file name of the figure drawn next to the markdown, adds a line linking it.
    """
    lines = [
        "# LLP on random bags: instance-level test AUC (mean ± sd over seeds, seed count)",
        "",
        '`default`: `LLPClassifier()` with its defaults (method `"auto"`: the linear DLLP, '
        "on the columns or, when cross-validation over bags clearly prefers them, on the "
        "columns and their hinges, replaced by a network only when a network's held-out bag "
        "loss is clearly lower; `default kept` says linear, hinge or the network), "
        "`random_state` the seed; `dllp-lr`: the linear DLLP alone "
        '(`LLPClassifier("dllp", hidden=(), basis="linear")`, L-BFGS, `l2` by cross-validation '
        "over bags; the default also tries the columns' hinges, `basis`). "
        f"The other methods: network 128-64, ≤ {epochs} epochs, early stopping on held-out "
        "bags when there are at least 20 of them (the classifier's `min_validation_bags`; with "
        "fewer bags every bag trains for the full epochs). Oracles, on instance labels: "
        "`oracle`, the network on bags of one; `oracle-lr`, scikit-learn's "
        "`LogisticRegression` (C = 1) on the standardised features. "
        "`nice -n 19 python benchmarks/llp_bags.py --resume` completes the grid (a blank "
        "cell has not run yet). Commits of the cells: " + ", ".join(commits) + ".",
        "",
    ]
    lines += [_bp_account(results), ""]
    if figure_name:
        lines += [
            f"Figure: [`{figure_name}`]({figure_name}), the mean test AUC against the bag size per data "
            "set (error bars: sd over seeds) for `default` (thick), `dllp-lr`, `bp`, `dllp` "
            "and `easyllp`, the oracles dashed.",
            "",
        ]
    order = list(METHODS)
    for dataset in sorted(results, key=list(LOADERS).index):
        entry = results[dataset]
        oracle_text = "".join(
            f", {label} {entry[key]:.4f}"
            for key, label in (("oracle_auc", "oracle AUC"), ("oracle_lr_auc", "oracle-lr AUC"))
            if entry.get(key) is not None
        )
        lines += [f"## {dataset} (n_train = {entry['n_train']}{oracle_text})", ""]
        sizes = sorted(entry["sizes"], key=int)
        present = {m for size in sizes for m in entry["sizes"][size] if m in METHODS}
        methods = [m for m in order if m in present]
        auc_rows, second_rows = [], []
        for size in sizes:
            cell = entry["sizes"][size]
            if not any(m in cell for m in methods):
                continue
            auc_rows.append(
                [size]
                + [
                    f"{cell[m]['auc_mean']:.4f} ± {cell[m]['auc_sd']:.4f} ({len(cell[m]['runs'])})"
                    if m in cell
                    else ""
                    for m in methods
                ]
            )
            second_rows.append(
                [size] + [f"{cell[m]['seconds_mean']:.1f}" if m in cell else "" for m in methods]
            )
        if auc_rows:
            lines += [markdown_table(["bag size", *methods], auc_rows), ""]
            lines += _default_summary(entry, sizes)
            lines += [
                "Mean seconds per fit (2-core CPU unless the JSON's machine says otherwise)",
                "",
                markdown_table(["bag size", *methods], second_rows),
                "",
            ]
        timing_rows = [
            [
                size,
                f"{c['count']['steady_s']:.2f}",
                f"{c['clique']['steady_s']:.2f}",
                c["clique"]["pairwise_edges"],
            ]
            for size in sizes
            if (c := entry["sizes"][size].get("bp_time_clique_vs_count"))
        ]
        if timing_rows:
            lines += [
                "BP time, 100 sweeps, steady state (s): count factor vs clique expansion",
                "",
                markdown_table(["bag size", "count", "clique", "clique edges"], timing_rows),
                "",
            ]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the benchmark (or the cells of it not yet done); returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--resume", action="store_true", help="skip cells already in the JSON")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--datasets", default="adult,bank_marketing,fair")
    parser.add_argument("--bag-sizes", default="8,32,128,512")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seeds", type=int, default=2)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--probe-methods", default="bp (k auto)")
    parser.add_argument("--probe-sizes", default="32,128")
    parser.add_argument("--extra", default="adult:2048", help="dataset:size pairs, last")
    parser.add_argument("--no-clique-timing", dest="clique_timing", action="store_false")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the markdown and the figure from the JSON in --out; run no cell",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        path = Path(args.out) / "llp_bags.json"
        if not path.exists():
            raise SystemExit(f"--report-only: no {path}")
        payload = json.loads(path.read_text())
        finished = payload.get("cells", [])
        n_train = {c["dataset"]: c["n_train"] for c in finished}
        commits = sorted({c["commit"] for c in finished})
        results = aggregate(finished, n_train)
        write_report(args.out, results, payload.get("epochs", args.epochs), commits)
        return 0
    settings = dict(METHODS)
    if args.smoke:
        args.datasets, args.bag_sizes, args.seeds = "fair", "16", 1
        args.methods = "default,dllp-lr,bp,dllp"
        args.probe_methods, args.extra, args.clique_timing, args.epochs = "", "", False, 5
        settings["bp"] = {"method": "bp", "similarity_strength": 1.0, "rounds": 1}
    if llp_data_folder() is None:
        args.datasets = ",".join(d for d in args.datasets.split(",") if d == "fair")
    cells = plan(args)
    path = Path(args.out) / "llp_bags.json"
    done = _previous_cells(path) if args.resume else {}
    data_cache, n_train = {}, {}
    for cell in done.values():
        n_train[cell["dataset"]] = cell["n_train"]
    machine = machine_info()
    # The commit whose LLP code ran; "+uncommitted" when the code this benchmark imports (llp,
    # bp, the shared helpers) differs from it; edits elsewhere in the library do not count.
    checkout = machine.get("probkit_checkout") or {"commit": "unknown", "changes": []}
    commit = checkout["commit"][:12]
    relevant = ("probkit/llp", "probkit/_", "probkit/__init__", "inference/")
    changed = checkout.get("uncommitted_library_changes", [])
    if any(line[3:].startswith(relevant) for line in changed):
        commit += "+uncommitted"

    def write():
        finished = list(done.values())
        commits = sorted({c["commit"] for c in finished})
        payload = {
            "machine": machine,
            "epochs": args.epochs,
            "cells": finished,
            "results": aggregate(finished, n_train),
        }
        write_report(args.out, payload["results"], args.epochs, commits, payload)

    for kind, dataset, size, seed, method in cells:
        key = _cell_key(kind, dataset, size, seed, method)
        cell_settings = dict(settings[method])
        if method != "oracle-lr":  # the logistic regression has no epochs
            cell_settings["epochs"] = args.epochs
        # As the JSON holds them (lists, not tuples), so that a resumed run recognises them.
        cell_settings = json.loads(json.dumps(cell_settings))
        previous = done.get(key)
        if previous is not None and previous["settings"] == cell_settings:
            continue
        if dataset not in data_cache:
            data_cache[dataset] = LOADERS[dataset]()
            n_train[dataset] = len(data_cache[dataset].y_train)
        data = data_cache[dataset]
        record = {
            "kind": kind,
            "dataset": dataset,
            "bag_size": size,
            "seed": seed,
            "method": method,
            "settings": cell_settings,
            "n_train": n_train[dataset],
            "commit": commit,
        }
        if kind == "clique":
            record["timing"] = _clique_timing(data, size, seed)
        elif method == "oracle-lr":
            record["run"] = _run_oracle_lr(data, settings[method])
            print(dataset, method, round(record["run"]["auc"], 4), flush=True)
        else:
            record["run"] = _run(data, size, seed, settings[method], args.epochs)
            print(dataset, size, seed, method, round(record["run"]["auc"], 4), flush=True)
        record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        done[key] = record
        write()  # every finished cell is on disk at once: an interrupted grid resumes here
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
