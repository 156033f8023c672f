"""Von Mises sampling: probkit's ``VonMises.sample`` against NumPyro's ``VonMises.sample``.

For every concentration ``κ ∈ {0, 1e-8, 1e-4, 1e-2, 0.1, 1, 10, 21, 100, 1e3, 1e4, 1e6, 1e8}``
and both precisions (float32 with JAX's x64 switched off, float64 inside
``jax.enable_x64(True)``), each library draws ``n = 2·10⁵`` angles of ``vM(0, κ)`` in one jitted
call whose concentration is a traced argument (one compilation per library and precision).

*Correctness.* The Kolmogorov–Smirnov test of the draws against ``scipy.stats.vonmises(κ).cdf``
(the uniform law on ``[-π, π)`` for ``κ = 0``), the number of distinct values and of non-finite
draws, and pass/fail at a Bonferroni-corrected level: the family is one library's
``len(κ) × len(precisions)`` tests at family-wise level ``--alpha`` (default 0.01). KS is blind
near the uniform limit and at very large ``κ`` rounding shows up first in the spread, so the
z-score of the sample mean of ``1 - cos θ`` (computed as ``2 sin²(θ/2)`` in float64) against
``1 - A(κ) = 1 - I₁(κ)/I₀(κ)`` (scipy ``ive``) is reported alongside (not part of pass/fail).

*Speed.* Draws per second of the steady calls (median over ``--repeats`` calls, one fresh key
each, the two libraries interleaved), compilation timed apart (its first call, and the JAX
tracing/lowering/compilation time inside it). ``scipy.stats.vonmises.rvs`` (NumPy, float64) is
timed as a reference.

Run ``python benchmarks/circular_sampler.py`` (``--smoke`` for ``n = 2000``); the results go to
``benchmarks/results/circular_sampler.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
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

__all__ = ["KAPPAS", "main"]

NAME = "circular_sampler"
KAPPAS = (0.0, 1e-8, 1e-4, 1e-2, 0.1, 1.0, 10.0, 21.0, 100.0, 1e3, 1e4, 1e6, 1e8)
DTYPES = ("float32", "float64")
LIBRARIES = ("probkit", "numpyro")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="n = 2000 draws, 2 repeats")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--n", type=int, default=None, help="draws per call (default 2e5)")
    parser.add_argument("--kappas", type=float, nargs="+", default=None, help="concentrations")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--repeats", type=int, default=None, help="steady calls per κ")
    parser.add_argument("--alpha", type=float, default=0.01, help="family-wise KS level")
    parser.add_argument("--no-scipy", action="store_true", help="skip the scipy reference")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``circular_sampler.json`` and ``.md``.

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


def _samplers() -> tuple[dict[str, Any], dict[str, str]]:
    """``make(n) -> jitted f(key, κ)`` for each library that imports, and the skip reasons."""
    makers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    npd, reason = optional_import("numpyro.distributions")
    if npd is None:
        skipped["numpyro"] = reason
    else:
        makers["numpyro"] = npd.VonMises
    try:
        from probkit.circular.vonmises import VonMises
    except ImportError as error:  # the module is new: say so rather than fail
        skipped["probkit"] = f"probkit.circular.vonmises.VonMises is not importable ({error})"
    else:
        makers["probkit"] = VonMises
    return makers, skipped


def _ks(draws: np.ndarray, kappa: float) -> dict[str, Any]:
    """KS test, distinct and non-finite counts, and the 1 - cos θ z-score of float draws."""
    x = np.asarray(draws, dtype=np.float64)
    finite = np.isfinite(x)
    out: dict[str, Any] = {
        "distinct_values": int(np.unique(x[finite]).size),
        "non_finite": int(x.size - finite.sum()),
        "min": float(np.min(x[finite])) if finite.any() else None,
        "max": float(np.max(x[finite])) if finite.any() else None,
    }
    if not finite.all():
        # Non-finite draws are a failure in themselves; the KS test of the rest would hide it.
        out.update(ks_statistic=None, ks_pvalue=0.0, one_minus_cos_z=None)
        return out
    if kappa == 0.0:
        test = stats.kstest(x, lambda v: (v + math.pi) / (2 * math.pi))
        one_minus_a = 1.0
    else:
        test = stats.kstest(x, stats.vonmises(kappa).cdf)
        one_minus_a = 1.0 - special.ive(1, kappa) / special.ive(0, kappa)
    deviation = 2.0 * np.sin(0.5 * x) ** 2
    sd = np.std(deviation, ddof=1)
    z = (deviation.mean() - one_minus_a) / (sd / math.sqrt(x.size)) if sd > 0 else None
    out.update(
        ks_statistic=float(test.statistic),
        ks_pvalue=float(test.pvalue),
        one_minus_cos_z=None if z is None else float(z),
        one_minus_a=float(one_minus_a),
    )
    return out


def _run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n or (2000 if args.smoke else 200_000)
    kappas = list(args.kappas) if args.kappas else list(KAPPAS)
    repeats = args.repeats or (2 if args.smoke else 5)
    seeds = list(range(1, repeats + 2))  # the first call of each κ is not counted as steady
    tests_per_library = len(kappas) * len(args.dtypes)
    level = args.alpha / tests_per_library
    results: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "machine": machine_info(),
        "n_draws": n,
        "kappas": kappas,
        "dtypes": list(args.dtypes),
        "ks": {
            "reference": "scipy.stats.vonmises(kappa).cdf; uniform on [-pi, pi) for kappa = 0",
            "family_wise_alpha": args.alpha,
            "tests_per_library": tests_per_library,
            "bonferroni_level": level,
            "rule": "pass when all draws are finite and the KS p-value >= bonferroni_level",
        },
        "timing": (
            "compile: first call of the jitted f(key, kappa) (kappa traced, so one compilation "
            "per library and precision) at kappa = 1, wall time and the JAX tracing/lowering/"
            "compilation time inside it; then per kappa one warm call (whose draws are tested) "
            f"and {repeats} steady calls with fresh keys, libraries interleaved; draws_per_s = "
            "n / median steady time"
        ),
        "skipped": {},
        "runs": {},
    }
    for dtype in args.dtypes:
        with jax.enable_x64(dtype == "float64"):
            makers, skipped = _samplers()
            results["skipped"].update({f"{k} {dtype}": v for k, v in skipped.items()})
            makers = {k: v for k, v in makers.items() if k in args.libraries}
            results["runs"][dtype] = _benchmark(makers, dtype, n, kappas, seeds, level)
    if not args.no_scipy:
        results["scipy_reference"] = _scipy_reference(n, kappas, repeats)
    results["load_average_after"] = list(os.getloadavg())
    write_results(args.out, NAME, results, _markdown(results))
    return results


def _benchmark(
    makers: dict[str, Any],
    dtype: str,
    n: int,
    kappas: list[float],
    seeds: list[int],
    level: float,
) -> dict[str, Any]:
    """Compile each library's sampler once, then test and time it at every κ."""
    jdtype = jnp.dtype(dtype)
    fns = {}
    run: dict[str, Any] = {"libraries": {}}
    for name, cls in makers.items():

        def sample(key, kappa, cls=cls):
            return cls(jnp.zeros((), jdtype), kappa).sample(key, (n,))

        jitted = jax.jit(sample)
        start = time.perf_counter()
        with CompileClock() as clock:
            first = jitted(jax.random.key(0), jnp.asarray(1.0, jdtype)).block_until_ready()
        run["libraries"][name] = {
            "first_call_s": time.perf_counter() - start,
            "compile_s": clock.seconds,
            "draw_dtype": str(first.dtype),
            "kappas": {},
        }
        fns[name] = jitted
        print(f"[{NAME}] {dtype} {name}: compiled in {clock.seconds:.2f} s", file=sys.stderr)
    for kappa in kappas:
        value = jnp.asarray(kappa, jdtype)
        calls = {
            name: (lambda seed, f=f, v=value: f(jax.random.key(seed), v)) for name, f in fns.items()
        }
        timings = time_calls(calls, seeds)
        for name, timing in timings.items():
            draws = timing.pop("outputs")[0]
            check = _ks(draws, kappa)
            check["passed"] = check["non_finite"] == 0 and check["ks_pvalue"] >= level
            run["libraries"][name]["kappas"][repr(kappa)] = {
                "kappa": kappa,
                **check,
                "warm_call_s": timing.pop("first_call_s"),
                **{k: v for k, v in timing.items() if k != "compile_estimate_s"},
                "draws_per_s": n / timing["steady_median_s"],
            }
        print(f"[{NAME}] {dtype} kappa={kappa:g} done", file=sys.stderr, flush=True)
    for stats_ in run["libraries"].values():
        per_kappa = stats_["kappas"].values()
        stats_["all_passed"] = all(entry["passed"] for entry in per_kappa)
        stats_["failed_kappas"] = [entry["kappa"] for entry in per_kappa if not entry["passed"]]
    if "probkit" in fns and "numpyro" in fns:
        run["speed_ratio_probkit_over_numpyro"] = {
            repr(k): run["libraries"]["probkit"]["kappas"][repr(k)]["draws_per_s"]
            / run["libraries"]["numpyro"]["kappas"][repr(k)]["draws_per_s"]
            for k in kappas
        }
    return run


def _scipy_reference(n: int, kappas: list[float], repeats: int) -> dict[str, Any]:
    """``scipy.stats.vonmises.rvs`` draws per second (NumPy float64), median of the repeats."""
    out = {}
    for kappa in kappas:
        times = []
        for seed in range(repeats + 1):
            rng = np.random.default_rng(seed)
            start = time.perf_counter()
            stats.vonmises.rvs(kappa, size=n, random_state=rng)
            times.append(time.perf_counter() - start)
        median = statistics.median(times[1:])
        out[repr(kappa)] = {"kappa": kappa, "steady_median_s": median, "draws_per_s": n / median}
    return out


def _markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    ks = results["ks"]
    lines = [
        "# Von Mises sampler: probkit vs NumPyro" + (" (smoke size)" if results["smoke"] else ""),
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX backend "
        f"{machine['jax_backend']} (one CPU device). Versions: {versions}. Run {machine['date']}. "
        f"Load average (1/5/15 min) before: {machine['load_average_1_5_15_min']}, after: "
        f"{results['load_average_after']}.",
        "",
        f"n = {results['n_draws']} draws of vM(0, κ) per call. KS against "
        f"`scipy.stats.vonmises(κ).cdf` (uniform for κ = 0); pass = every draw finite and "
        f"p ≥ {ks['bonferroni_level']:.3g} (family-wise α = {ks['family_wise_alpha']} "
        f"Bonferroni-corrected over the {ks['tests_per_library']} tests of each library). "
        "z(1−cos) = (mean of 1 − cos θ − (1 − A(κ))) / standard error, not part of pass/fail. "
        "Draws/s: n / median steady time (compilation excluded; κ is a traced argument, so each "
        "library compiles once per precision).",
        "",
    ]
    for skipped, reason in results["skipped"].items():
        lines.append(f"Skipped {skipped}: {reason}")
    compile_rows = [
        [dtype, name, stats_["first_call_s"], stats_["compile_s"], stats_["all_passed"]]
        for dtype, run in results["runs"].items()
        for name, stats_ in run["libraries"].items()
    ]
    lines += [
        "",
        markdown_table(
            ["precision", "library", "first call (s)", "compile (s)", "all KS passed"],
            compile_rows,
        ),
        "",
    ]
    scipy_ref = results.get("scipy_reference", {})
    rows = []
    for dtype, run in results["runs"].items():
        for kappa in results["kappas"]:
            row: list[Any] = [dtype, f"{kappa:g}"]
            for name in LIBRARIES:
                entry = run["libraries"].get(name, {}).get("kappas", {}).get(repr(kappa))
                if entry is None:
                    row += [None] * 5
                    continue
                p = entry["ks_pvalue"]
                row += [
                    f"{p:.3g}" if p is not None else None,
                    "pass" if entry["passed"] else "**FAIL**",
                    entry["distinct_values"]
                    if not entry["non_finite"]
                    else f"{entry['distinct_values']} ({entry['non_finite']} non-finite)",
                    None if entry["one_minus_cos_z"] is None else f"{entry['one_minus_cos_z']:.2f}",
                    entry["draws_per_s"] / 1e6,
                ]
            ratio = run.get("speed_ratio_probkit_over_numpyro", {}).get(repr(kappa))
            row.append(ratio)
            ref = scipy_ref.get(repr(kappa))
            row.append(ref["draws_per_s"] / 1e6 if ref else None)
            rows.append(row)
    headers = ["precision", "κ"]
    for name in LIBRARIES:
        headers += [
            f"{name} KS p",
            name,
            f"{name} distinct",
            f"{name} z(1−cos)",
            f"{name} Mdraws/s",
        ]
    headers += ["speed ratio probkit/numpyro", "scipy rvs Mdraws/s (f64)"]
    lines.append(markdown_table(headers, rows))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
