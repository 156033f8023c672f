"""Why LLP-BP's similarity graph adds little on random bags: measurements with hidden labels.

``benchmarks/llp_bags.py`` does not reproduce the paper's claim that LLP-BP leads at large bags:
EasyLLP has the best mean AUC, ``similarity_strength="auto"`` picks ``λ_s = 0`` in about half of
the ``bp`` fits, and the candidates' held-out bag losses differ by about 0.001. This script
measures why. It reads the instance labels of the training rows, which an LLP user does not
have, for *diagnosis only*: nothing here selects a model or a setting with them (every
classifier is fitted exactly as a user would fit it, on bags and counts).

Three sections (``--sections``):

``graph`` (how informative is the similarity graph?)
    For Adult, Bank Marketing and Fair, the symmetrised kNN graph (``k = 5`` and ``15``, one
    search with ``truncate_knn_graph``, Euclidean, ``s_ij = exp(−d_ij / h)`` with the median edge
    distance as ``h``, as ``LLPClassifier`` builds it) on three representations of the training
    rows: the standardised features (the graph of ``unaries="none"``), the embeddings of a DLLP
    network fitted on random bags of 128 (``bp``'s default first-round graph: with
    ``unaries="network"`` the field starts from a DLLP network and builds its graph on that
    network's embeddings) and the embeddings of the oracle network (the same network trained on
    the instance labels; a best case). For each graph:

    * *homophily*: the share of edges that join rows of the same label (``same``, and weighted
      by ``s_ij``), against the rate ``p² + (1 − p)²`` of a graph that ignores the labels, and
      the share of a positive row's (weighted) neighbours that are positive, against ``p``;
    * *neighbour-vote oracle*: the AUC of scoring each training row by the ``s``-weighted mean
      TRUE label of its neighbours (what the graph term could say about a row if BP knew every
      neighbour's label), against the oracle network's AUC on the same rows (in-sample) and on
      the test rows; and the AUC of ``−Σ_j s_ij`` (a row's weighted degree, no label at all),
      since the field's unary term ``−λ_s Σ_j s_ij`` ranks rows in sparse regions of the graph
      first;
    * *does the vote add to the network?*: the AUC on the training rows of
      ``logit_i + c Σ_j s_ij (2 y_j − 1)``: with the neighbours' true labels known, this is
      exactly the log-odds of row ``i`` in the field with the network's logits as unaries and
      ``λ_s = c`` (the field's unary ``−λ_s Σ_j s_ij`` plus couplings ``2 λ_s s_ij y_j``). It is
      computed for ``c`` in the ``λ_s`` grid and a finer one, with the logits of the DLLP
      networks at bags of 32, 128 and 512 (the evidence ``bp`` starts from) and of the oracle
      network. Labels enter both the vote and the choice of the best ``c``: an upper bound on
      what the graph term can add to the network's own evidence. Two label-free variants
      separate what the graph adds without labels: the network's own probabilities ``σ_j`` in
      place of ``y_j`` (the graph spreading the network's evidence), and ``logit_i − c Σ_j s_ij``
      (the degree term alone).

``ablation`` (the similarity term switched off and on)
    ``LLPClassifier("bp")`` on Adult and Bank Marketing, random bags of 32, 128 and 512, seeds
    0 and 1, with ``similarity_strength`` fixed to 0 (the graph out of the field: EM on the
    counts with the network's logits as evidence), fixed to 0.3 and to 1 (values of the auto
    grid) and ``"auto"`` (chosen on held-out bags). Per fit: the instance test AUC, for each
    round the AUC of BP's marginals against the hidden training labels (the pseudo-label AUC),
    the held-out bag loss, and for ``"auto"`` every candidate's held-out loss. ``dllp`` and
    ``easyllp`` with the same seeds are the references.

``large_bags`` (why EasyLLP holds up at bags of 128 and 512)
    On Adult and Bank Marketing, seeds 0, 1 and 2:

    * *how much the bags say*: the number of bags (training and held out), and the standard
      deviation of the bag proportions across bags against ``sqrt(p (1 − p) / m)``, that of
      bags drawn at random (the bag proportions carry only sampling noise around ``p``; the
      signal is how that noise covaries with the features);
    * *the range of the selection criterion*: the held-out bag loss (``LLPClassifier``'s own
      split of the bags) of the constant prediction ``p`` and of the oracle network, with a
      paired bootstrap (over held-out bags) standard deviation of their difference: the whole
      range between a predictor that knows nothing and one that knows the labels, to compare
      with the ~0.001 that separates ``λ_s`` candidates;
    * *training trajectories*: DLLP and EasyLLP trained exactly as ``LLPClassifier`` trains
      them (same split, targets, initial weights and batch order), but for all epochs, with the
      held-out bag loss, the training bags' mean ``|p̂_b − α_b|`` (how closely the network fits
      the training bags' proportions) and the test AUC recorded after every epoch. From them:
      the epoch the classifier's early-stopping rule stops at (patience 5) and its test AUC,
      the best test AUC of any epoch, the last epoch's, and the Spearman correlation over epochs
      between held-out bag loss and test AUC (−1: the validation loss tracks the AUC
      perfectly).

Run ``taskset -c 1 nice -n 19 python benchmarks/llp_diagnose.py`` (about 25 minutes on one
core of the 2-core CPU; ``--resume`` keeps the cells of an earlier run; ``--smoke`` runs Fair at
a tiny size). Results go to ``benchmarks/results/llp_diagnose.{json,md}`` with the commit and
machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_OUT, machine_info, markdown_table, write_results

from probkit.llp import (
    LLPClassifier,
    bag_counts,
    knn_graph,
    random_bags,
    similarity_weights,
    truncate_knn_graph,
    validate_bags,
)
from probkit.llp.classifier import AUTO_SIMILARITY_GRID
from probkit.llp.datasets import llp_data_folder, load_adult, load_bank_marketing, load_fair
from probkit.llp.network import (
    _bag_validation_loss,
    _epoch_function,
    init_network,
    predict_logits,
)

LOADERS = {"adult": load_adult, "bank_marketing": load_bank_marketing, "fair": load_fair}
VARIANTS = {
    "λs=0": {"method": "bp", "similarity_strength": 0.0},
    "λs=0.3": {"method": "bp", "similarity_strength": 0.3},
    "λs=1": {"method": "bp", "similarity_strength": 1.0},
    "λs=auto": {"method": "bp", "similarity_strength": "auto"},
    "dllp": {"method": "dllp"},
    "easyllp": {"method": "easyllp"},
}
FINE_C = (0.0, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


def _auc(y, score) -> float:
    return float(roc_auc_score(y, score))


def _standardise(data):
    # As LLPClassifier.fit: the training rows' mean and scale (zero scale kept at 1).
    mean = data.X_train.astype(np.float64).mean(axis=0)
    scale = data.X_train.astype(np.float64).std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (
        ((data.X_train - mean) / scale).astype(np.float32),
        ((data.X_test - mean) / scale).astype(np.float32),
    )


def _oracle(data, epochs):
    """The network trained on the instance labels (bags of one), as in llp_bags.py."""
    n = len(data.y_train)
    return LLPClassifier("soft-label", epochs=epochs, random_state=0).fit(
        data.X_train, np.arange(n), data.y_train.astype(float)
    )


def _fit(data, size, seed, settings, epochs):
    bags = random_bags(len(data.y_train), size, seed=seed)
    _, counts = bag_counts(bags, data.y_train)
    model = LLPClassifier(**settings, epochs=epochs, random_state=seed)
    start = time.perf_counter()
    model.fit(data.X_train, bags, counts)
    return model, time.perf_counter() - start


# -- section 1: the graph ---------------------------------------------------------------------


def _graph_stats(graph, weights, y, networks, grid):
    """Homophily, neighbour-vote AUC and the vote added to each network's logits."""
    n = len(y)
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    p = float(y.mean())
    same = y[i] == y[j]
    # Row-wise weighted sums over the undirected edges (each edge counts for both ends).
    degree = np.bincount(i, weights, n) + np.bincount(j, weights, n)
    positive = np.bincount(i, weights * y[j], n) + np.bincount(j, weights * y[i], n)
    vote = positive / np.maximum(degree, 1e-300)
    signed = 2.0 * positive - degree  # Σ_j s_ij (2 y_j − 1)
    pos = y == 1
    out = {
        "edges": len(i),
        "bandwidth_median_distance": float(np.median(graph.distances[graph.distances > 0])),
        "same_label_edges": float(same.mean()),
        "same_label_edges_weighted": float(np.sum(weights * same) / np.sum(weights)),
        "chance_same_label": p**2 + (1 - p) ** 2,
        "positive_neighbours_of_positives": float(np.sum(positive[pos]) / np.sum(degree[pos])),
        "positive_neighbours_of_negatives": float(np.sum(positive[~pos]) / np.sum(degree[~pos])),
        "prevalence": p,
        "neighbour_vote_auc": _auc(y, vote),
        # −Σ_j s_ij alone: the field's unary term, which makes a row in a dense region of the
        # graph lean to 0 when most neighbours are negative (no label enters it).
        "minus_degree_auc": _auc(y, -degree),
        "networks": {},
    }
    for name, logits in networks.items():
        by_c = {f"{c:g}": _auc(y, logits + c * signed) for c in grid}
        best = max(by_c, key=by_c.get)
        # The same with the network's own probabilities in place of the neighbours' labels:
        # what smoothing the network's evidence over the graph gives without any new labels.
        own = expit(logits.astype(np.float64))
        own_signed = 2.0 * (
            np.bincount(i, weights * own[j], n) + np.bincount(j, weights * own[i], n)
        )
        own_signed -= degree
        smooth = {f"{c:g}": _auc(y, logits + c * own_signed) for c in grid}
        best_smooth = max(smooth, key=smooth.get)
        by_degree = {f"{c:g}": _auc(y, logits - c * degree) for c in grid}
        best_degree = max(by_degree, key=by_degree.get)
        out["networks"][name] = {
            "alone": by_c["0"],
            "with_vote": by_c,
            "best_c": float(best),
            "best_auc": by_c[best],
            "with_own_smoothing": smooth,
            "best_smoothing_c": float(best_smooth),
            "best_smoothing_auc": smooth[best_smooth],
            "with_minus_degree": by_degree,
            "best_degree_c": float(best_degree),
            "best_degree_auc": by_degree[best_degree],
        }
    return out


def section_graph(datasets, args, store, save):
    """Section 1: homophily, neighbour-vote oracle and vote-plus-logits AUC per data set."""
    for dataset in datasets:
        key = f"graph|{dataset}"
        if key in store:
            continue
        start = time.perf_counter()
        data = LOADERS[dataset]()
        y = data.y_train.astype(np.int64)
        features, _ = _standardise(data)
        oracle = _oracle(data, args.epochs)
        networks, representations, test_auc = {}, {"features": features}, {}
        oracle_logits, representations["oracle embedding"] = predict_logits(
            oracle.params_, features
        )
        networks["oracle"] = oracle_logits
        test_auc["oracle"] = _auc(data.y_test, oracle.decision_function(data.X_test))
        for size in args.graph_sizes:
            model, _ = _fit(data, size, 0, {"method": "dllp"}, args.epochs)
            logits, embedding = predict_logits(model.params_, features)
            networks[f"dllp bags {size}"] = logits
            test_auc[f"dllp bags {size}"] = _auc(data.y_test, model.decision_function(data.X_test))
            if size == args.embedding_size:
                representations[f"dllp embedding (bags {size})"] = embedding
        grid = sorted(set(FINE_C) | set(AUTO_SIMILARITY_GRID))
        record = {
            "n_train": len(y),
            "prevalence": float(y.mean()),
            "test_auc": test_auc,
            "train_auc_of_logits": {name: _auc(y, v) for name, v in networks.items()},
            "representations": {},
        }
        for rep_name, rep in representations.items():
            largest = knn_graph(rep, max(args.neighbours))
            for k in args.neighbours:
                graph = largest if k == max(args.neighbours) else truncate_knn_graph(largest, k)
                weights = similarity_weights(graph.distances, "median")
                stats = _graph_stats(graph, weights, y, networks, grid)
                record["representations"][f"{rep_name}|k={k}"] = stats
                print(
                    dataset,
                    rep_name,
                    k,
                    "same",
                    round(stats["same_label_edges"], 3),
                    "chance",
                    round(stats["chance_same_label"], 3),
                    "vote AUC",
                    round(stats["neighbour_vote_auc"], 3),
                    flush=True,
                )
        record["seconds"] = time.perf_counter() - start
        store[key] = record
        save()


# -- section 2: ablation of λ_s ----------------------------------------------------------------


def section_ablation(datasets, args, store, save):
    """Section 2: ``bp`` with λ_s fixed to 0, 0.3, 1 and "auto", with dllp and easyllp."""
    cache = {}
    for seed in range(args.ablation_seeds):
        for dataset in datasets:
            for size in args.sizes:
                for variant, settings in VARIANTS.items():
                    key = f"ablation|{dataset}|{size}|{seed}|{variant}"
                    if key in store:
                        continue
                    if dataset not in cache:
                        cache[dataset] = LOADERS[dataset]()
                    data = cache[dataset]
                    model, seconds = _fit(data, size, seed, settings, args.epochs)
                    record = {
                        "dataset": dataset,
                        "bag_size": size,
                        "seed": seed,
                        "variant": variant,
                        "test_auc": _auc(data.y_test, model.decision_function(data.X_test)),
                        "seconds": seconds,
                    }
                    if settings["method"] == "bp":
                        truth = data.y_train[model.bp_rows_]
                        record["rounds"] = [
                            {
                                **{k: v for k, v in r.items() if k != "marginals"},
                                "pseudo_label_auc": _auc(truth, r["marginals"]),
                            }
                            for r in model.rounds_
                        ]
                    print(dataset, size, seed, variant, round(record["test_auc"], 4), flush=True)
                    store[key] = record
                    save()


# -- section 3: large bags ---------------------------------------------------------------------


def _setup(data, features, size, seed):
    """The split, targets and validation tuple of LLPClassifier.fit (validation_fraction 0.1)."""
    bags = random_bags(len(data.y_train), size, seed=seed)
    _, counts = bag_counts(bags, data.y_train)
    all_bags = validate_bags(bags, len(bags), counts=counts)
    rng = np.random.default_rng(seed)
    held_out = np.zeros(all_bags.num_bags, bool)
    count = max(1, round(0.1 * all_bags.num_bags))
    held_out[rng.permutation(all_bags.num_bags)[:count]] = True
    rows, train_bags = all_bags.subset(np.flatnonzero(~held_out))
    val_rows, val_bags = all_bags.subset(np.flatnonzero(held_out))
    members, mask = val_bags.padded()
    return all_bags, rows, train_bags, (val_rows[members], mask, val_bags.proportions)


def _bag_losses(probability, members, mask, proportions):
    # Per held-out bag: cross-entropy of the proportion against the mean prediction.
    eps = 1e-6
    mean = np.clip((probability[members] * mask).sum(axis=1) / mask.sum(axis=1), eps, 1 - eps)
    return -(proportions * np.log(mean) + (1 - proportions) * np.log1p(-mean))


def _trajectory(method, features, test_features, y_test, rows, train_bags, validation, seed, args):
    """Train as LLPClassifier (same keys) for all epochs; record what each epoch gives."""
    proportion = train_bags.proportions[train_bags.bag_of]
    if method == "dllp":
        loss, targets = "bag", proportion
    else:
        overall = train_bags.counts.sum() / train_bags.sizes.sum()
        loss = "instance"
        targets = train_bags.sizes[train_bags.bag_of] * (proportion - overall) + overall
    key_init, key_train = jax.random.split(jax.random.key(seed))
    params = init_network(key_init, features.shape[1], (128, 64))
    row_targets = np.zeros(features.shape[0], np.float32)
    row_targets[rows] = targets
    members, mask = train_bags.padded()
    optimizer, epoch_fn = _epoch_function(1e-3, 1e-4, loss, 0.0)
    num_bags, width = members.shape
    per_batch = int(max(1, min(num_bags, 1024 // width)))
    num_batches = -(-num_bags // per_batch)
    x = jnp.asarray(features)
    arrays = (
        jnp.asarray(rows[members]),
        jnp.asarray(mask),
        jnp.asarray(row_targets),
        jnp.asarray(train_bags.proportions, jnp.float32),
    )
    val = (
        jnp.asarray(validation[0]),
        jnp.asarray(validation[1]),
        jnp.asarray(validation[2], jnp.float32),
    )
    state = optimizer.init(params)
    held, fit, auc = [], [], []
    key = key_train
    for _ in range(args.trajectory_epochs):
        key, shuffle_key = jax.random.split(key)
        order = np.asarray(jax.random.permutation(shuffle_key, num_bags))
        order = np.resize(order, num_batches * per_batch)
        batches = jnp.asarray(order.reshape(num_batches, per_batch))
        params, state, _ = epoch_fn(params, state, x, *arrays, batches)
        held.append(float(_bag_validation_loss(params, x, *val)))
        train_logits, _ = predict_logits(params, features[rows])
        probability = np.zeros(features.shape[0])
        probability[rows] = expit(train_logits.astype(np.float64))
        mean = (probability[rows[members]] * mask).sum(axis=1) / mask.sum(axis=1)
        fit.append(float(np.mean(np.abs(mean - train_bags.proportions))))
        auc.append(_auc(y_test, predict_logits(params, test_features)[0]))
    # LLPClassifier's rule: keep the best held-out epoch, stop after `patience` without one.
    best, best_epoch = np.inf, 0
    for epoch, value in enumerate(held):
        if value < best - 1e-5:
            best, best_epoch = value, epoch
        elif epoch - best_epoch >= 5:
            break
    rho = spearmanr(held, auc).statistic if np.ptp(held) > 0 else float("nan")
    return {
        "validation_loss": held,
        "train_bag_proportion_mae": fit,
        "test_auc": auc,
        "early_stop_epoch": best_epoch,
        "early_stop_auc": auc[best_epoch],
        "best_auc": max(auc),
        "best_auc_epoch": int(np.argmax(auc)),
        "last_auc": auc[-1],
        "spearman_validation_loss_vs_auc": float(rho),
        "validation_loss_range": float(np.ptp(held)),
    }


def section_large_bags(datasets, args, store, save):
    """Section 3: bag statistics, the held-out loss's range, DLLP and EasyLLP trajectories."""
    for dataset in datasets:
        data = None
        for size in args.large_sizes:
            for seed in range(args.large_seeds):
                key = f"large|{dataset}|{size}|{seed}"
                if key in store:
                    continue
                if data is None:
                    data = LOADERS[dataset]()
                    features, test_features = _standardise(data)
                    oracle = _oracle(data, args.epochs)
                    oracle_probability = expit(
                        oracle.decision_function(data.X_train).astype(np.float64)
                    )
                all_bags, rows, train_bags, validation = _setup(data, features, size, seed)
                members, mask, proportions = validation
                p = float(train_bags.counts.sum() / train_bags.sizes.sum())
                full = all_bags.sizes == size
                constant = _bag_losses(np.full(len(data.y_train), p), members, mask, proportions)
                informed = _bag_losses(oracle_probability, members, mask, proportions)
                rng = np.random.default_rng(seed)
                boot = [
                    np.mean((constant - informed)[rng.integers(0, len(constant), len(constant))])
                    for _ in range(2000)
                ]
                record = {
                    "dataset": dataset,
                    "bag_size": size,
                    "seed": seed,
                    "bags": int(all_bags.num_bags),
                    "training_bags": int(train_bags.num_bags),
                    "held_out_bags": len(proportions),
                    "prevalence": p,
                    "proportion_sd": float(np.std(all_bags.proportions[full], ddof=1)),
                    "binomial_sd": float(np.sqrt(p * (1 - p) / size)),
                    "held_out_loss_constant": float(constant.mean()),
                    "held_out_loss_oracle": float(informed.mean()),
                    "held_out_loss_range": float(constant.mean() - informed.mean()),
                    "held_out_loss_range_bootstrap_sd": float(np.std(boot)),
                    "trajectories": {},
                }
                for method in ("dllp", "easyllp"):
                    record["trajectories"][method] = _trajectory(
                        method,
                        features,
                        test_features,
                        data.y_test,
                        rows,
                        train_bags,
                        validation,
                        seed,
                        args,
                    )
                t = record["trajectories"]
                print(
                    dataset,
                    size,
                    seed,
                    "range",
                    round(record["held_out_loss_range"], 5),
                    "dllp stop/best",
                    round(t["dllp"]["early_stop_auc"], 3),
                    round(t["dllp"]["best_auc"], 3),
                    "easy stop/best",
                    round(t["easyllp"]["early_stop_auc"], 3),
                    round(t["easyllp"]["best_auc"], 3),
                    flush=True,
                )
                store[key] = record
                save()


# -- report ------------------------------------------------------------------------------------


def _mean(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return statistics.fmean(values) if values else float("nan")


def markdown(store, args, commits) -> str:
    """The report: one table per measurement, from whatever cells exist."""
    lines = [
        "# Why LLP-BP's graph adds little: diagnostics with the hidden instance labels",
        "",
        "Instance labels are used here to *diagnose* only; every classifier is fitted on bags "
        "and counts and selects on held-out bags, as a user's would. Network 128-64, "
        f"≤ {args.epochs} epochs. Commits: {', '.join(commits)}. See the script's docstring "
        "for the definition of every column.",
        "",
        "Kept small to fit about 25 minutes on one CPU core: the graph section uses one oracle "
        "network and one DLLP network per bag size (seed 0), the ablation "
        f"{args.ablation_seeds} seeds, the large-bag section {args.large_seeds} seeds; "
        "differences below a few hundredths of AUC are within the seed-to-seed spread of "
        "`benchmarks/results/llp_bags.md`. Training-row AUCs of the oracle network are "
        "in-sample (its test AUC is given beside them).",
        "",
    ]
    graphs = {k: v for k, v in store.items() if k.startswith("graph|")}
    if graphs:
        lines += [
            "## 1. The similarity graph",
            "",
            "Homophily and the neighbour-vote oracle (training rows; `vote AUC` scores a row by "
            "the weighted mean true label of its neighbours). `pos→pos`: share of a positive "
            "row's weighted neighbours that are positive (`p`: the prevalence). `−degree AUC`: "
            "the AUC of `−Σ_j s_ij` (rows in sparse regions of the graph ranked first).",
            "",
        ]
        rows = []
        for key, record in graphs.items():
            dataset = key.split("|")[1]
            for rep, s in record["representations"].items():
                name, k = rep.split("|")
                rows.append(
                    [
                        dataset,
                        name,
                        k,
                        s["same_label_edges"],
                        s["chance_same_label"],
                        s["positive_neighbours_of_positives"],
                        s["prevalence"],
                        s["neighbour_vote_auc"],
                        s.get("minus_degree_auc"),
                        record["train_auc_of_logits"]["oracle"],
                        record["test_auc"]["oracle"],
                    ]
                )
        lines += [
            markdown_table(
                [
                    "data",
                    "graph on",
                    "k",
                    "same-label edges",
                    "chance",
                    "pos→pos",
                    "p",
                    "vote AUC",
                    "−degree AUC",
                    "oracle net AUC (train)",
                    "oracle net AUC (test)",
                ],
                rows,
            ),
            "",
            "The vote added to a network's logits, `logit_i + c Σ_j s_ij (2 y_j − 1)` (the "
            "field's log-odds at `λ_s = c` if BP knew every neighbour's label): training-row AUC "
            "of the network alone, at `c` = 0.3 and 1, and at the best `c` (chosen with the "
            "labels: an upper bound). `smoothed`: the same with the network's own probabilities "
            "`σ_j` in place of the labels `y_j` (the graph spreading the network's evidence, "
            "with no new information), at its best `c`; `−degree`: the logits minus `c Σ_j s_ij` "
            "(the field's unary term alone, no labels), at its best `c`.",
            "",
        ]
        rows = []
        for key, record in graphs.items():
            dataset = key.split("|")[1]
            for rep, s in record["representations"].items():
                name, k = rep.split("|")
                for net, v in s["networks"].items():
                    rows.append(
                        [
                            dataset,
                            name,
                            k,
                            net,
                            v["alone"],
                            v["with_vote"]["0.3"],
                            v["with_vote"]["1"],
                            v["best_auc"],
                            v["best_c"],
                            v.get("best_smoothing_auc"),
                            v.get("best_smoothing_c"),
                            v.get("best_degree_auc"),
                        ]
                    )
        lines += [
            markdown_table(
                [
                    "data",
                    "graph on",
                    "k",
                    "logits of",
                    "alone",
                    "c=0.3",
                    "c=1",
                    "best",
                    "best c",
                    "smoothed",
                    "its c",
                    "−degree",
                ],
                rows,
            ),
            "",
            "Test AUC of those networks: "
            + "; ".join(
                f"{key.split('|')[1]}: "
                + ", ".join(f"{n} {v:.3f}" for n, v in record["test_auc"].items())
                for key, record in graphs.items()
            )
            + ".",
            "",
        ]
    ablation = [v for k, v in store.items() if k.startswith("ablation|")]
    if ablation:
        lines += [
            "## 2. Ablation of the similarity term (`bp`, k = 5)",
            "",
            "Mean over seeds of the test AUC, and of the pseudo-label AUC (BP marginals against "
            "the hidden training labels) in rounds 1 and 2; `chosen λs` lists the value "
            "`auto` picked per seed and `loss spread` the mean range of its candidates' held-out "
            "bag losses.",
            "",
        ]
        rows = []
        groups = {}
        for r in ablation:
            groups.setdefault((r["dataset"], r["bag_size"], r["variant"]), []).append(r)
        for (dataset, size, variant), runs in sorted(
            groups.items(),
            key=lambda item: (item[0][0], item[0][1], list(VARIANTS).index(item[0][2])),
        ):
            runs = sorted(runs, key=lambda r: r["seed"])
            bp = "rounds" in runs[0]
            chosen = spread = ""
            if variant == "λs=auto":
                chosen = "/".join(f"{r['rounds'][0]['similarity_strength']:g}" for r in runs)
                spread = _mean(
                    [
                        np.ptp([c["validation_loss"] for c in r["rounds"][0]["candidates"]])
                        for r in runs
                    ]
                )
            rows.append(
                [
                    dataset,
                    size,
                    variant,
                    len(runs),
                    _mean([r["test_auc"] for r in runs]),
                    " / ".join(f"{r['test_auc']:.3f}" for r in runs),
                    _mean([r["rounds"][0]["pseudo_label_auc"] for r in runs]) if bp else None,
                    _mean([r["rounds"][-1]["pseudo_label_auc"] for r in runs]) if bp else None,
                    chosen,
                    spread if spread != "" else None,
                    _mean([r["seconds"] for r in runs]),
                ]
            )
        lines += [
            markdown_table(
                [
                    "data",
                    "bags",
                    "variant",
                    "seeds",
                    "test AUC",
                    "per seed",
                    "pseudo AUC r1",
                    "pseudo AUC r2",
                    "chosen λs",
                    "loss spread",
                    "s",
                ],
                rows,
            ),
            "",
        ]
    large = [v for k, v in store.items() if k.startswith("large|")]
    if large:
        lines += [
            "## 3. Large bags: what the bags and the held-out loss can say",
            "",
            "Per data set and bag size, means over seeds. `sd(α)`: standard deviation of the "
            "bag proportions across full bags; `binomial`: `sqrt(p(1−p)/m)`. `range`: held-out "
            "bag loss of the constant prediction `p` minus that of the oracle network (± its "
            "paired bootstrap sd over held-out bags, mean over seeds).",
            "",
        ]
        groups = {}
        for r in large:
            groups.setdefault((r["dataset"], r["bag_size"]), []).append(r)
        rows = [
            [
                dataset,
                size,
                runs[0]["bags"],
                runs[0]["held_out_bags"],
                _mean([r["proportion_sd"] for r in runs]),
                runs[0]["binomial_sd"],
                _mean([r["held_out_loss_constant"] for r in runs]),
                f"{_mean([r['held_out_loss_range'] for r in runs]):.5f} ± "
                f"{_mean([r['held_out_loss_range_bootstrap_sd'] for r in runs]):.5f}",
            ]
            for (dataset, size), runs in sorted(groups.items())
        ]
        lines += [
            markdown_table(
                [
                    "data",
                    "bags",
                    "bags (all)",
                    "held out",
                    "sd(α)",
                    "binomial",
                    "held-out loss of p",
                    "range to oracle",
                ],
                rows,
            ),
            "",
            f"Training trajectories ({args.trajectory_epochs} epochs, no early stopping; "
            "`stop`: the epoch the classifier's rule keeps, patience 5). Test AUC at that "
            "epoch, the best of any epoch and the last; `ρ`: Spearman correlation of the "
            "held-out bag loss with the test AUC over epochs; `bag fit`: the training bags' "
            "mean |p̂_b − α_b| at the stop and last epochs.",
            "",
        ]
        rows = []
        for (dataset, size), runs in sorted(groups.items()):
            for method in ("dllp", "easyllp"):
                t = [r["trajectories"][method] for r in runs]
                rows.append(
                    [
                        dataset,
                        size,
                        method,
                        " / ".join(str(x["early_stop_epoch"]) for x in t),
                        _mean([x["early_stop_auc"] for x in t]),
                        _mean([x["best_auc"] for x in t]),
                        _mean([x["last_auc"] for x in t]),
                        _mean([x["spearman_validation_loss_vs_auc"] for x in t]),
                        _mean([x["train_bag_proportion_mae"][x["early_stop_epoch"]] for x in t]),
                        _mean([x["train_bag_proportion_mae"][-1] for x in t]),
                        _mean([x["validation_loss_range"] for x in t]),
                    ]
                )
        lines += [
            markdown_table(
                [
                    "data",
                    "bags",
                    "method",
                    "stop epoch",
                    "AUC at stop",
                    "best AUC",
                    "last AUC",
                    "ρ",
                    "bag fit (stop)",
                    "bag fit (last)",
                    "val. loss range",
                ],
                rows,
            ),
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the diagnostics (or the cells of them not yet done); returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--resume", action="store_true", help="keep cells already in the JSON")
    parser.add_argument("--redo", default="", help="with --resume: sections to run again")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--sections", default="graph,large_bags,ablation")
    parser.add_argument("--graph-datasets", default="adult,bank_marketing,fair")
    parser.add_argument("--datasets", default="adult,bank_marketing")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args(argv)
    args.neighbours = (5, 15)
    args.graph_sizes, args.embedding_size = (32, 128, 512), 128
    args.sizes, args.ablation_seeds = (32, 128, 512), 2
    args.large_sizes, args.large_seeds, args.trajectory_epochs = (128, 512), 3, 50
    if args.smoke:
        args.graph_datasets = args.datasets = "fair"
        args.epochs, args.graph_sizes, args.embedding_size = 3, (16,), 16
        args.sizes, args.ablation_seeds = (16,), 1
        args.large_sizes, args.large_seeds, args.trajectory_epochs = (64,), 1, 3
    available = set(LOADERS) if llp_data_folder() is not None else {"fair"}
    graph_sets = [d for d in args.graph_datasets.split(",") if d in available]
    datasets = [d for d in args.datasets.split(",") if d in available]
    path = Path(args.out) / "llp_diagnose.json"
    store = {}
    if args.resume and path.exists():
        store = json.loads(path.read_text()).get("cells", {})
        prefixes = {"graph": "graph|", "ablation": "ablation|", "large_bags": "large|"}
        for section in (s for s in args.redo.split(",") if s):
            store = {k: v for k, v in store.items() if not k.startswith(prefixes[section])}
    machine = machine_info()
    checkout = machine.get("probkit_checkout") or {"commit": "unknown"}
    commit = checkout["commit"][:12]
    # "+uncommitted" when the code these diagnostics import (llp, BP, the shared helpers)
    # differs from the commit; edits elsewhere in the library do not count.
    relevant = ("probkit/llp", "probkit/_", "probkit/__init__", "inference/")
    changed = checkout.get("uncommitted_library_changes", [])
    if any(line[3:].startswith(relevant) for line in changed):
        commit += "+uncommitted"

    def save():
        for cell in store.values():
            cell.setdefault("commit", commit)
        commits = sorted({c["commit"] for c in store.values()})
        payload = {
            "machine": machine,
            "settings": {
                k: v for k, v in vars(args).items() if k not in ("out", "resume", "redo", "smoke")
            },
            "cells": store,
        }
        write_results(args.out, "llp_diagnose", payload, markdown(store, args, commits))

    sections = [s for s in args.sections.split(",") if s]
    if "graph" in sections:
        section_graph(graph_sets, args, store, save)
    if "large_bags" in sections:
        section_large_bags(datasets, args, store, save)
    if "ablation" in sections:
        section_ablation(datasets, args, store, save)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
