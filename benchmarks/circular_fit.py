"""Von Mises mixture fitting: probkit's ``fit_vonmises_mixture`` against the peers a user would pick.

Peers, on the same data in the same process:

* pycircstat2 ``MovM`` — its mixture-of-von-Mises EM (NumPy; random-label initialisation, the
  Best–Fisher approximation of ``A⁻¹`` in the M-step, κ floored at 1e-3);
* ``scipy.stats.vonmises.fit(data, fscale=1)`` — one component only (closed-form MLE);
* scikit-learn ``GaussianMixture`` on the raw angles — it ignores periodicity: a density on the
  real line, which puts mass outside ``[-π, π)`` and splits a component that straddles ``±π``.

Data: a butane-like three-component von Mises mixture (trans at ``π``, ``κ = 30``, weight 0.65;
gauche at ``±1.1`` rad, ``κ = 40``, weight 0.175 each), drawn with scipy and wrapped to
``[-π, π)``; ``n`` training angles (1e4, 1e5, 1e6; smoke 1e3) and a fresh held-out set (1e5;
smoke 1e4). Mixtures use ``K = 3``. The second part fits "1,000 torsions at once": ``B = 1000``
data sets of 500 angles (each the butane mixture rotated by a random angle, with its
concentrations scaled by a random factor in ``[e^-½, e^½]``), probkit in one batched call
against a Python loop of each peer timed on the first 50 data sets and extrapolated to 1000.

Stopping rules, matched on "the change of the mean log-likelihood per angle" (``--tol``, default
1e-6): probkit ``tol`` stops at ``|ΔL| ≤ tol·max(|L|, n)`` (here ``|L|/n < 1``, so per angle);
scikit-learn ``tol`` is per angle; ``MovM`` ``threshold`` is on the total, so ``tol·n``, after its
default 30 burn-in iterations. Every method gets ``max_iter = 500`` and one initialisation
(probkit's deterministic quantile + farthest-point + Lloyd seeding; MovM's random labels and
scikit-learn's k-means with the call's seed).

Accuracy is the held-out mean log-likelihood, evaluated for every von Mises model with the same
float64 scipy code, against that of the true mixture on the same held-out angles (its Monte Carlo
standard error, and the paired standard error of the difference, are reported). The Gaussian
mixture's held-out log-likelihood is its own line density at the held-out angles, as given.

Timing follows ``_common.time_calls``: first call (trace + compile + run for probkit; compile also
timed on its own with JAX's monitoring spans), then the median of the later calls, all methods
interleaved. probkit runs in float32 (JAX's x64 off) and float64 (inside
``jax.enable_x64(True)``). Ratios are peer steady time / probkit steady time (above 1: probkit
faster).

Run ``python benchmarks/circular_fit.py`` (``--smoke`` for a tiny size); the results go to
``benchmarks/results/circular_fit.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from _common import (
    DEFAULT_OUT,
    CompileClock,
    machine_info,
    markdown_table,
    optional_import,
    time_calls,
    write_results,
)
from scipy import special, stats

__all__ = ["TRUE_MIXTURE", "draw_mixture", "main", "mixture_logpdf"]

NAME = "circular_fit"
TRUE_MIXTURE = {
    "weights": (0.65, 0.175, 0.175),
    "loc": (math.pi, 1.1, -1.1),
    "concentration": (30.0, 40.0, 40.0),
}
K = 3
MAX_ITER = 500
BAD_GAP = 0.1  # nats per angle below the true mixture: a poor local optimum
DTYPES = ("float32", "float64")
PEERS = ("pycircstat2_movm", "scipy_vonmises_k1", "sklearn_gmm")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="n = 1000, small batch")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="training sizes n")
    parser.add_argument("--heldout", type=int, default=None, help="held-out angles")
    parser.add_argument("--dtypes", nargs="*", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--peers", nargs="*", choices=PEERS, default=list(PEERS))
    parser.add_argument("--repeats", type=int, default=None, help="steady calls per size")
    parser.add_argument("--tol", type=float, default=1e-6, help="per-angle stopping tolerance")
    parser.add_argument("--batch", type=int, default=None, help="data sets B (batched part)")
    parser.add_argument("--batch-n", type=int, default=500, help="angles per data set")
    parser.add_argument("--peer-subset", type=int, default=None, help="data sets timed per peer")
    parser.add_argument("--no-batched", action="store_true", help="skip the batched part")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``circular_fit.json`` and ``.md``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``); see ``--help``.

    Returns
    -------
    dict
        The results, as written to the JSON file.
    """
    args = _parse(argv)
    with jax.default_device(jax.devices("cpu")[0]):
        return _run(args)


# ---------------------------------------------------------------------------------------------
# Data and the common evaluator


def _wrap(x: np.ndarray) -> np.ndarray:
    return np.mod(x + np.pi, 2 * np.pi) - np.pi


def draw_mixture(rng: np.random.Generator, size, weights, loc, concentration) -> np.ndarray:
    """Draws of a von Mises mixture (scipy ``vonmises.rvs``), wrapped to ``[-π, π)``.

    ``weights``, ``loc`` and ``concentration`` have shape ``(K,)``, or ``(B, K)`` with
    ``size = (B, n)`` (one mixture per row).
    """
    weights, loc, kappa = (np.asarray(a, dtype=float) for a in (weights, loc, concentration))
    if weights.ndim == 1:
        labels = rng.choice(weights.size, size=size, p=weights)
        return _wrap(stats.vonmises.rvs(kappa[labels], loc=loc[labels], random_state=rng))
    cumulative = np.cumsum(weights, axis=-1)
    u = rng.random(size)
    labels = np.minimum((u[..., None] > cumulative[:, None, :]).sum(-1), weights.shape[-1] - 1)
    pick = np.take_along_axis
    kappa_n = pick(kappa, labels, axis=1)
    loc_n = pick(loc, labels, axis=1)
    return _wrap(stats.vonmises.rvs(kappa_n, loc=loc_n, random_state=rng))


def mixture_logpdf(x, weights, loc, concentration) -> np.ndarray:
    """Log density of a von Mises mixture at ``x`` (float64 NumPy; leading axes broadcast).

    ``log f = κ(cos(x - μ) - 1) - log(2π i0e(κ))``, stable for every ``κ``; parameters of shape
    ``(..., K)`` against ``x`` of shape ``(..., n)``.
    """
    x = np.asarray(x, dtype=float)[..., :, None]
    weights, loc, kappa = (
        np.asarray(a, dtype=float)[..., None, :] for a in (weights, loc, concentration)
    )
    log_component = -2.0 * kappa * np.sin(0.5 * (x - loc)) ** 2 - np.log(
        2 * np.pi * special.i0e(kappa)
    )
    with np.errstate(divide="ignore"):
        return special.logsumexp(log_component + np.log(weights), axis=-1)


def _gmm_outside_mass(weights, means, sds) -> float:
    """Probability that a 1-D Gaussian mixture puts outside ``[-π, π)``."""
    inside = stats.norm.cdf((np.pi - means) / sds) - stats.norm.cdf((-np.pi - means) / sds)
    return float(np.sum(weights * (1.0 - inside)))


def _heldout(logp: np.ndarray, true_logp: np.ndarray) -> dict[str, float]:
    diff = logp - true_logp
    out = {
        "heldout_mean_loglik": float(np.mean(logp)),
        "minus_true": float(np.mean(diff)),
        "minus_true_paired_se": float(np.std(diff, ddof=1) / math.sqrt(diff.size)),
    }
    if diff.ndim == 2:
        # Data sets whose fit is a poor local optimum (a merged or split component).
        out["fraction_of_data_sets_worse_by_0.1"] = float(np.mean(diff.mean(-1) < -BAD_GAP))
    return out


# ---------------------------------------------------------------------------------------------
# The methods: each maps (seed) to a dict of NumPy parameters


def _probkit_fit(x: np.ndarray, dtype: str, tol: float, batched: bool, compile_log: list):
    from probkit.circular.fit import fit_vonmises_mixture

    data = x.astype(dtype)

    def call(seed: int) -> dict[str, Any]:
        with jax.enable_x64(dtype == "float64"), CompileClock() as clock, warnings.catch_warnings():
            # Degenerate components are counted in the results, not printed.
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_vonmises_mixture(data, K, tol=tol, max_iter=MAX_ITER, batched=batched)
            out = {
                "weights": fit.weights,
                "loc": fit.loc,
                "concentration": fit.concentration,
                "n_iter": fit.n_iter,
                "converged": fit.converged,
                "degenerate": fit.degenerate.any(-1),
            }
            out = jax.block_until_ready(out)
        compile_log.append(clock.seconds)
        return out

    return call


def _movm_fit(movm_cls, x: np.ndarray, tol: float) -> dict[str, Any]:
    n = x.shape[-1]

    def call(seed: int) -> dict[str, Any]:
        model = movm_cls(
            n_clusters=K,
            n_iters=MAX_ITER,
            unit="radian",
            random_seed=seed,
            threshold=tol * n,
        )
        model.fit(x)
        return {
            "weights": np.asarray(model.p_),
            "loc": _wrap(np.asarray(model.m_)),
            "concentration": np.asarray(model.kappa_),
            "n_iter": len(model.nLL),
            "converged": bool(model.converged),
        }

    return call


def _scipy_fit(x: np.ndarray) -> dict[str, Any]:
    def call(seed: int) -> dict[str, Any]:
        kappa, loc, _ = stats.vonmises.fit(x, fscale=1)
        return {"weights": np.ones(1), "loc": _wrap(np.atleast_1d(loc)), "concentration": [kappa]}

    return call


def _gmm_fit(gmm_cls, x: np.ndarray, tol: float) -> dict[str, Any]:
    def call(seed: int) -> dict[str, Any]:
        gmm = gmm_cls(K, tol=tol, max_iter=MAX_ITER, random_state=seed).fit(x[:, None])
        return {
            "weights": gmm.weights_,
            "means": gmm.means_.ravel(),
            "sds": np.sqrt(gmm.covariances_.ravel()),
            "n_iter": gmm.n_iter_,
            "converged": bool(gmm.converged_),
        }

    return call


def _loop(fit_one: Callable[[np.ndarray], Callable[[int], dict]], data: np.ndarray):
    """A Python loop of a peer over the rows of ``data``; the outputs stacked."""

    def call(seed: int) -> dict[str, Any]:
        outs = [fit_one(row)(seed) for row in data]
        return {key: np.stack([np.asarray(o[key]) for o in outs]) for key in outs[0]}

    return call


def _peer_makers(peers: Sequence[str], skipped: dict[str, str], tol: float):
    """``name -> (x -> call)`` for the peers that import."""
    makers: dict[str, Callable] = {}
    if "pycircstat2_movm" in peers:
        module, reason = optional_import("pycircstat2.clustering")
        if module is None:
            skipped["pycircstat2_movm"] = reason
        else:
            makers["pycircstat2_movm"] = lambda x, cls=module.MovM: _movm_fit(cls, x, tol)
    if "scipy_vonmises_k1" in peers:
        makers["scipy_vonmises_k1"] = _scipy_fit
    if "sklearn_gmm" in peers:
        module, reason = optional_import("sklearn.mixture")
        if module is None:
            skipped["sklearn_gmm"] = reason
        else:
            makers["sklearn_gmm"] = lambda x, cls=module.GaussianMixture: _gmm_fit(cls, x, tol)
    return makers


def _score(name: str, output: dict[str, Any], test: np.ndarray) -> np.ndarray:
    """Per-angle held-out log-likelihood of one fitted model (batched: leading axis)."""
    if name == "sklearn_gmm":
        means = np.asarray(output["means"])[..., None, :]
        sds = np.asarray(output["sds"])[..., None, :]
        log_component = stats.norm.logpdf(test[..., :, None], means, sds)
        weights = np.log(np.asarray(output["weights"]))[..., None, :]
        return special.logsumexp(log_component + weights, axis=-1)
    return mixture_logpdf(test, output["weights"], output["loc"], output["concentration"])


# ---------------------------------------------------------------------------------------------
# Runs


def _run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = args.sizes or ([1000] if args.smoke else [10_000, 100_000, 1_000_000])
    n_test = args.heldout or (10_000 if args.smoke else 100_000)
    batch = args.batch or (8 if args.smoke else 1000)
    subset = min(batch, args.peer_subset or (4 if args.smoke else 50))
    rng = np.random.default_rng(args.seed)
    skipped: dict[str, str] = {}
    peers = _peer_makers(args.peers, skipped, args.tol)
    results: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "machine": machine_info(),
        "true_mixture": TRUE_MIXTURE,
        "n_components": K,
        "max_iter": MAX_ITER,
        "tolerance": {
            "per_angle": args.tol,
            "probkit": f"tol={args.tol}: |dL| <= tol * max(|L|, n)",
            "sklearn_gmm": f"tol={args.tol} (change of the mean log-likelihood per sample)",
            "pycircstat2_movm": f"threshold={args.tol} * n (change of the total negative "
            "log-likelihood), after its default burnin=30 iterations",
        },
        "initialisation": {
            "probkit": "seed=None: deterministic quantile + farthest-point seeding, 5 Lloyd "
            "steps, n_init=1",
            "pycircstat2_movm": "random labels, random_seed = call seed",
            "sklearn_gmm": "k-means, random_state = call seed, n_init=1",
            "scipy_vonmises_k1": "closed form (one component)",
        },
        "timing": (
            "first_call_s: first call (probkit: trace + compile + run); compile_s: JAX tracing/"
            "lowering/compilation inside it; steady_median_s: median of the later calls, all "
            "methods interleaved; ratio = peer steady median / probkit steady median (above 1: "
            "probkit faster)"
        ),
        "skipped": skipped,
        "heldout_n": n_test,
        "runs": [],
    }
    for n in sizes:
        train = draw_mixture(rng, n, **TRUE_MIXTURE)
        test = draw_mixture(rng, n_test, **TRUE_MIXTURE)
        repeats = args.repeats or (1 if args.smoke else {True: 5, False: 2}[n <= 100_000])
        print(f"[{NAME}] n={n}", file=sys.stderr, flush=True)
        results["runs"].append(_benchmark(train, test, args, peers, repeats, batched=False))
    if not args.no_batched:
        scale = np.exp(rng.uniform(-0.5, 0.5, size=(batch, 1)))
        shift = rng.uniform(-np.pi, np.pi, size=(batch, 1))
        params = {
            "weights": np.broadcast_to(TRUE_MIXTURE["weights"], (batch, K)),
            "loc": _wrap(np.asarray(TRUE_MIXTURE["loc"]) + shift),
            "concentration": np.asarray(TRUE_MIXTURE["concentration"]) * scale,
        }
        train = draw_mixture(rng, (batch, args.batch_n), **params)
        test = draw_mixture(rng, (batch, args.batch_n), **params)
        print(f"[{NAME}] batched B={batch} n={args.batch_n}", file=sys.stderr, flush=True)
        run = _benchmark(
            train,
            test,
            args,
            peers,
            args.repeats or (1 if args.smoke else 2),
            batched=True,
            params=params,
            subset=subset,
        )
        results["batched"] = run
    results["load_average_after"] = list(os.getloadavg())
    write_results(args.out, NAME, results, _markdown(results))
    return results


def _benchmark(
    train: np.ndarray,
    test: np.ndarray,
    args: argparse.Namespace,
    peers: dict[str, Callable],
    repeats: int,
    *,
    batched: bool,
    params: dict[str, np.ndarray] | None = None,
    subset: int | None = None,
) -> dict[str, Any]:
    """Fit and time every method on one training set; score them on the held-out angles."""
    params = params or TRUE_MIXTURE
    true_logp = mixture_logpdf(test, params["weights"], params["loc"], params["concentration"])
    compile_logs: dict[str, list[float]] = {}
    fns: dict[str, Callable] = {}
    for dtype in args.dtypes:
        name = f"probkit_{dtype}"
        compile_logs[name] = []
        fns[name] = _probkit_fit(train, dtype, args.tol, batched, compile_logs[name])
    for name, make in peers.items():
        fns[name] = _loop(make, train[:subset]) if batched else make(train)
    seeds = list(range(repeats + 1))
    start = time.perf_counter()
    timings = time_calls(fns, seeds)
    run: dict[str, Any] = {
        "n": int(train.shape[-1]),
        "seeds": seeds,
        "wall_s": time.perf_counter() - start,
        "true_heldout_mean_loglik": float(np.mean(true_logp)),
        "true_heldout_se": float(np.std(true_logp, ddof=1) / math.sqrt(true_logp.size)),
        "methods": {},
    }
    if batched:
        run.update(
            batch=int(train.shape[0]),
            peer_subset=subset,
            true_heldout_mean_loglik_subset=float(np.mean(true_logp[:subset])),
            extrapolation=f"peer times are for a Python loop over the first {subset} data sets, "
            f"multiplied by {train.shape[0]}/{subset} in *_extrapolated_s",
        )
    for name, timing in timings.items():
        outputs = timing.pop("outputs")
        entry: dict[str, Any] = {**timing}
        if name in compile_logs:
            entry["compile_s"] = compile_logs[name][0]
            entry["compile_s_later_calls"] = compile_logs[name][1:]
        rows = slice(None) if not batched or name.startswith("probkit") else slice(0, subset)
        scores = [_heldout(_score(name, out, test[rows]), true_logp[rows]) for out in outputs]
        entry["heldout_per_call"] = scores
        values = [s["heldout_mean_loglik"] for s in scores]
        entry["heldout_mean_loglik_median"] = float(np.median(values))
        entry["heldout_mean_loglik_worst"] = float(np.min(values))
        entry["heldout_minus_true_first_call"] = scores[0]["minus_true"]
        entry["heldout_minus_true_paired_se_first_call"] = scores[0]["minus_true_paired_se"]
        first = outputs[0]
        if batched and name.startswith("probkit") and subset:
            head = {key: np.asarray(value)[:subset] for key, value in first.items()}
            sub = _heldout(_score(name, head, test[:subset]), true_logp[:subset])
            entry["heldout_mean_loglik_on_peer_subset"] = sub["heldout_mean_loglik"]
        if "n_iter" in first:
            entry["n_iter_mean"] = float(np.mean(first["n_iter"]))
            entry["converged_fraction"] = float(np.mean(first["converged"]))
        if "degenerate" in first:
            entry["degenerate_fraction"] = float(np.mean(first["degenerate"]))
        if name == "sklearn_gmm":
            outside = [
                _gmm_outside_mass(w, m, s)
                for w, m, s in zip(
                    np.atleast_2d(first["weights"]),
                    np.atleast_2d(first["means"]),
                    np.atleast_2d(first["sds"]),
                    strict=True,
                )
            ]
            entry["mass_outside_circle"] = float(np.mean(outside))
        if not batched:
            entry["params_first_call"] = {
                k: np.asarray(v).tolist() for k, v in first.items() if k not in ("converged",)
            }
        if batched and not name.startswith("probkit"):
            factor = train.shape[0] / subset
            entry["first_call_extrapolated_s"] = timing["first_call_s"] * factor
            entry["steady_median_extrapolated_s"] = timing["steady_median_s"] * factor
        run["methods"][name] = entry
    probkit_names = [f"probkit_{dtype}" for dtype in DTYPES if f"probkit_{dtype}" in fns]
    if probkit_names:
        reference = probkit_names[0]  # float32 when it ran
        base = run["methods"][reference]["steady_median_s"]
        key = "steady_median_extrapolated_s" if batched else "steady_median_s"
        run["ratio_reference"] = reference
        run["ratio_peer_over_probkit"] = {
            name: entry.get(key, entry["steady_median_s"]) / base
            for name, entry in run["methods"].items()
            if name != reference
        }
    return run


# ---------------------------------------------------------------------------------------------
# Report


def _markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    true = results["true_mixture"]
    lines = [
        "# Von Mises mixture fitting: probkit vs pycircstat2, scipy, scikit-learn"
        + (" (smoke size)" if results["smoke"] else ""),
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX backend "
        f"{machine['jax_backend']} (one CPU device). Versions: {versions}. Run {machine['date']}. "
        f"Load average (1/5/15 min) before: {machine['load_average_1_5_15_min']}, after: "
        f"{results['load_average_after']}.",
        "",
        f"Data: von Mises mixture, weights {true['weights']}, locations "
        f"({true['loc'][0]:.4f}, {true['loc'][1]}, {true['loc'][2]}), concentrations "
        f"{true['concentration']}; K = {results['n_components']} for the mixtures; held-out "
        f"set of {results['heldout_n']} angles. Stopping: change of the mean log-likelihood per "
        f"angle ≤ {results['tolerance']['per_angle']} for every EM (MovM: after its 30 burn-in "
        f"iterations), max_iter {results['max_iter']}. Steady = median of the later calls; "
        "ratio = method steady / probkit float32 steady (above 1: probkit faster). Held-out "
        "log-lik: mean per angle; Δ true = minus the true mixture's on the same angles (paired "
        "SE in brackets), first call. The Gaussian mixture's log-lik is that of a density on "
        "the line (it puts the stated mass outside [−π, π)). Notes count the calls (or data sets) "
        f"whose von Mises mixture fit lands ≥ {BAD_GAP} nats per angle below the truth: poor "
        "local optima (merged or split components).",
        "",
    ]
    for name, reason in results["skipped"].items():
        lines.append(f"Skipped {name}: {reason}")
    headers = [
        "n",
        "method",
        "first call (s)",
        "compile (s)",
        "steady median (s)",
        "ratio",
        "EM iterations",
        "held-out log-lik (median of calls)",
        "Δ true (SE)",
        "worst call",
        "notes",
    ]
    rows = []
    for run in results["runs"]:
        rows.append(
            [
                run["n"],
                "true mixture",
                None,
                None,
                None,
                None,
                None,
                run["true_heldout_mean_loglik"],
                f"± {run['true_heldout_se']:.2g} (MC SE)",
                None,
                "",
            ]
        )
        rows += [
            _row(run["n"], name, entry, run.get("ratio_peer_over_probkit", {}).get(name))
            for name, entry in run["methods"].items()
        ]
    lines += ["", markdown_table(headers, rows), ""]
    batched = results.get("batched")
    if batched:
        lines += [
            f"## {batched['batch']} data sets × {batched['n']} angles fitted at once",
            "",
            "Each data set: the mixture above rotated by a random angle, concentrations scaled "
            "by a random factor in [e^−½, e^½]; held-out: 500 fresh angles per data set. probkit: "
            "one call with `batched=True`. Peers: a Python loop timed on the first "
            f"{batched['peer_subset']} data sets; their times are extrapolated ×"
            f"{batched['batch'] / batched['peer_subset']:g} to all {batched['batch']} (columns "
            "marked *). Held-out log-lik: mean over data sets (probkit: all of them; the "
            "value on the peers' subset in notes). True mixture: "
            f"{batched['true_heldout_mean_loglik']:.4f} (all), "
            f"{batched['true_heldout_mean_loglik_subset']:.4f} (subset).",
            "",
        ]
        rows = []
        for name, entry in batched["methods"].items():
            extrapolated = "steady_median_extrapolated_s" in entry
            row = _row(
                batched["n"],
                name,
                entry,
                batched.get("ratio_peer_over_probkit", {}).get(name),
            )
            if extrapolated:
                row[2] = f"{entry['first_call_extrapolated_s']:.4g}*"
                row[4] = f"{entry['steady_median_extrapolated_s']:.4g}*"
            else:
                sub = entry.get("heldout_mean_loglik_on_peer_subset")
                if sub is not None:
                    row[-1] = (row[-1] + "; " if row[-1] else "") + f"subset: {sub:.4f}"
            rows.append(row[1:])
        lines.append(markdown_table(headers[1:], rows))
    return "\n".join(lines)


def _row(n: int, name: str, entry: dict[str, Any], ratio: float | None) -> list[Any]:
    notes = []
    if "converged_fraction" in entry and entry["converged_fraction"] < 1:
        notes.append(f"converged {entry['converged_fraction']:.0%}")
    if entry.get("degenerate_fraction"):
        notes.append(f"degenerate {entry['degenerate_fraction']:.1%}")
    calls = entry["heldout_per_call"]
    if name in ("scipy_vonmises_k1", "sklearn_gmm"):
        pass  # misspecified models: every fit is far below the truth
    elif "fraction_of_data_sets_worse_by_0.1" in calls[0]:
        share = np.mean([c["fraction_of_data_sets_worse_by_0.1"] for c in calls])
        if share:
            notes.append(f"{share:.1%} of data sets ≥ {BAD_GAP} below the truth")
    else:
        bad = sum(c["minus_true"] < -BAD_GAP for c in calls)
        if bad:
            notes.append(f"{bad} of {len(calls)} calls ≥ {BAD_GAP} below the truth")
    if "mass_outside_circle" in entry:
        notes.append(f"mass outside [−π, π): {entry['mass_outside_circle']:.3f}")
    return [
        n,
        name,
        entry["first_call_s"],
        entry.get("compile_s"),
        entry["steady_median_s"],
        ratio,
        entry.get("n_iter_mean"),
        entry["heldout_mean_loglik_median"]
        if len(entry["heldout_per_call"]) > 1
        else entry["heldout_per_call"][0]["heldout_mean_loglik"],
        f"{entry['heldout_minus_true_first_call']:.2g} "
        f"({entry['heldout_minus_true_paired_se_first_call']:.1g})",
        entry["heldout_mean_loglik_worst"],
        "; ".join(notes),
    ]


if __name__ == "__main__":
    main()
