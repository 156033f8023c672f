"""Reversible jump against NumPyro's DCC on a program whose dimension is random.

The program is :class:`probkit.theory.models.RandomDimensionProgram`: ``k ~ Geometric(1/2)`` on
{0, 1, ...}, ``x_1..x_k ~ N(0, 1)``, ``y ~ N(Σ x, 1)``, observed ``y = 2.5``. ``P(k | y)`` is
exact (``posterior_k``), so each sampler's estimate of it has a known error: the total variation
distance ``½ Σ_k |P̂(k) − P(k)|``, the largest ``|P̂(k) − P(k)|`` and the error of ``E[k | y]``,
over ``k = 0..capacity`` (capacity 20; the mass above it, ``2^-21``-small a priori, is cut off
in both samplers: probkit's padded states hold at most 20 components, and DCC's branching site is a
``Categorical`` over ``0..20`` with the geometric probabilities renormalised, which has the same
posterior on those ``k``).

probkit
    The reversible-jump kernel of ``probkit.theory.checks.mhg.random_dimension_kernel`` (birth
    from the prior at a uniform position, death, random walk of scale 0.6; move probabilities
    0.4/0.4/0.2), ``num_chains`` chains vmapped, started empty (``k = 0``). The chains advance
    in blocks of ``block_steps`` steps, one jitted ``lax.scan`` per block that also counts the
    visits to each ``k``; one block of burn-in is run and discarded. A budget is a number of
    counted blocks; ``P̂(k)`` is the fraction of visits. The block compiles once per process.
``dcc``
    ``numpyro.contrib.stochastic_support.DCC`` with NUTS in every straight-line program (SLP),
    its documented defaults (``num_slp_samples=1000``, ``max_slps=124``, ``proposal_scale=1``)
    and budgets ``(num_warmup, num_samples)``; ``P̂(k)`` is ``slp_weights``. DCC finds the SLPs by
    sampling the prior and compiles NUTS and its importance-sampling step anew for every SLP on
    every call: that compilation is part of each call. NumPyro's DCC needs a latent site in every
    SLP, so the ``k = 0`` branch samples a placeholder ``N(0, 1)`` site that nothing reads (it
    integrates to one and leaves ``P(k | y)`` unchanged).

Wall times are compared two ways: *with compilation* (probkit: the block's compile time plus the
run; DCC: the whole call) and *without* (probkit: the run; DCC: the call minus the time JAX spent
tracing, lowering and compiling in it, measured by :class:`_common.CompileClock`). At each
DCC budget the probkit budget reported is the largest whose time does not exceed DCC's.

Run ``python benchmarks/reversible_jump.py`` (``--smoke`` for a tiny size); the results go to
``benchmarks/results/reversible_jump.{json,md}``. Everything runs on the CPU in float64.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
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
    write_results,
)

__all__ = ["dcc_model", "dcc_runner", "errors", "main", "probkit_runner"]

NAME = "reversible_jump"
LIBRARIES = ("probkit", "dcc")


def errors(estimate: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Total variation distance, largest absolute error and error of ``E[k]``.

    Parameters
    ----------
    estimate, exact : ndarray, shape (capacity + 1,)
        ``P̂(k)`` and ``P(k | y)`` for ``k = 0..capacity``.
    """
    k = np.arange(exact.size)
    return {
        "total_variation": float(0.5 * np.abs(estimate - exact).sum()),
        "max_abs_error": float(np.abs(estimate - exact).max()),
        "mean_k_error": float(k @ estimate - k @ exact),
    }


def probkit_runner(model: Any, num_chains: int, block_steps: int) -> Callable[[int, int], Any]:
    """``(seed, num_blocks) -> P̂(k)`` with probkit's reversible-jump kernel.

    Parameters
    ----------
    model : RandomDimensionProgram
    num_chains : int
        Chains, vmapped, all started at ``k = 0``.
    block_steps : int
        Steps per jitted block; one block of burn-in precedes the ``num_blocks`` counted ones.

    Returns
    -------
    callable
        Returns ``P̂(k)`` for ``k = 0..capacity`` as a NumPy array (the fraction of chain-steps
        after the burn-in spent at each ``k``).
    """
    from probkit.inference.mhg import Padded
    from probkit.theory.checks.mhg import random_dimension_kernel

    kernel = random_dimension_kernel(model)
    num_k = model.capacity + 1

    @jax.jit
    def start():
        empty = Padded(jnp.zeros((num_chains, model.capacity)), jnp.zeros((num_chains,), jnp.int32))
        return jax.vmap(kernel.init)(empty)

    @jax.jit
    def block(key, state, counts):
        def body(carry, step_key):
            state, counts = carry
            state, _ = jax.vmap(kernel.step)(jax.random.split(step_key, num_chains), state)
            visits = state.position.size[:, None] == jnp.arange(num_k)
            return (state, counts + jnp.sum(visits, axis=0, dtype=counts.dtype)), None

        (state, counts), _ = jax.lax.scan(body, (state, counts), jax.random.split(key, block_steps))
        return state, counts

    def run(seed: int, num_blocks: int) -> np.ndarray:
        key = jax.random.key(seed)
        zero = jnp.zeros((num_k,), jnp.int32)
        key, burn_key = jax.random.split(key)
        state, _ = block(burn_key, start(), zero)
        counts = zero
        for block_key in jax.random.split(key, num_blocks):
            state, counts = block(block_key, state, counts)
        counts = np.asarray(counts, dtype=float)
        return counts / counts.sum()

    return run


def dcc_model(y: float, capacity: int) -> None:
    """The random-dimension program in NumPyro, with ``k`` as DCC's branching site.

    ``k`` is ``Categorical`` over ``0..capacity`` with probabilities ``∝ 2^-(k+1)`` (the
    geometric prior truncated to the capacity); ``x`` is a ``k``-vector of ``N(0, 1)``; the
    ``k = 0`` branch samples a placeholder ``N(0, 1)`` site because DCC fails on an SLP without
    latent sites (its MCMC returns no samples).
    """
    import numpyro
    import numpyro.distributions as dist

    prior = 2.0 ** -(np.arange(capacity + 1) + 1.0)
    k = numpyro.sample(
        "k", dist.Categorical(probs=jnp.asarray(prior / prior.sum())), infer={"branching": True}
    )
    k = int(k)  # concrete: DCC conditions every SLP on its branching values
    if k == 0:
        numpyro.sample("placeholder", dist.Normal(0.0, 1.0))
        total = 0.0
    else:
        total = jnp.sum(numpyro.sample("x", dist.Normal(0.0, 1.0).expand([k]).to_event(1)))
    numpyro.sample("y", dist.Normal(total, 1.0), obs=y)


def dcc_runner(
    model: Any,
    num_warmup: int,
    num_samples: int,
    *,
    num_slp_samples: int = 1000,
    max_slps: int = 124,
    proposal_scale: float = 1.0,
) -> Callable[[int], tuple[np.ndarray, int]]:
    """``seed -> (P̂(k), number of SLPs found)`` with NumPyro's DCC (NUTS in every SLP).

    Parameters
    ----------
    model : RandomDimensionProgram
    num_warmup, num_samples : int
        NUTS warm-up and kept samples per SLP (``mcmc_kwargs``).
    num_slp_samples, max_slps, proposal_scale
        DCC's own settings (its defaults).
    """
    from numpyro.contrib.stochastic_support.dcc import DCC

    def run(seed: int) -> tuple[np.ndarray, int]:
        dcc = DCC(
            dcc_model,
            {"num_warmup": num_warmup, "num_samples": num_samples, "progress_bar": False},
            num_slp_samples=num_slp_samples,
            max_slps=max_slps,
            proposal_scale=proposal_scale,
        )
        result = dcc.run(jax.random.key(seed), model.y, model.capacity)
        estimate = np.zeros(model.capacity + 1)
        for branch, weight in result.slp_weights.items():
            estimate[int(branch)] = float(weight)
        return estimate, len(result.slp_weights)

    return run


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    with CompileClock() as clock:
        start = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - start
    return out, wall, clock.seconds


def _run_probkit(model, exact, settings: dict, seeds: Sequence[int]) -> dict[str, Any]:
    run = probkit_runner(model, settings["num_chains"], settings["block_steps"])
    budgets = settings["budgets_blocks"]
    # The first call compiles the two jitted functions; it is timed on its own.
    _, first_wall, compile_s = _timed(lambda: run(seeds[0], budgets[0]))
    curve = []
    for num_blocks in budgets:
        runs = []
        for seed in seeds[1 : 1 + settings["seeds_per_budget"](num_blocks)]:
            estimate, wall, compiled = _timed(lambda seed=seed, n=num_blocks: run(seed, n))
            runs.append({"seed": seed, "wall_s": wall, "compile_s": compiled,
                         "estimate": estimate.tolist(), **errors(estimate, exact)})  # fmt: skip
        steady = statistics.median(r["wall_s"] for r in runs)
        steps = num_blocks * settings["block_steps"]
        curve.append(
            {
                "num_blocks": num_blocks,
                "counted_steps": steps,
                "total_steps": steps + settings["block_steps"],
                "num_chains": settings["num_chains"],
                "steady_median_s": steady,
                "with_compile_s": compile_s + steady,
                "runs": runs,
                **{
                    f"mean_{name}": float(np.mean([abs(r[name]) for r in runs]))
                    for name in ("total_variation", "max_abs_error", "mean_k_error")
                },
                "sd_total_variation": float(np.std([r["total_variation"] for r in runs], ddof=1))
                if len(runs) > 1
                else None,
            }
        )
        print(f"[{NAME}] probkit {steps} steps: {steady:.2f} s", file=sys.stderr, flush=True)
    return {
        "settings": {key: value for key, value in settings.items() if key != "seeds_per_budget"},
        "first_call_s": first_wall,
        "compile_s": compile_s,
        "curve": curve,
    }


def _run_dcc(model, exact, settings: dict, seeds: Sequence[int]) -> dict[str, Any]:
    budgets = settings["budgets"]
    runs = []
    # The first call in the process also pays for compiling NumPyro's shared eager operations;
    # it is recorded as "cold" and every budget is then run again, warm.
    schedule = [(budgets[0], True)] + [(budget, False) for budget in budgets if settings["warm"]]
    for index, ((num_warmup, num_samples), cold) in enumerate(schedule):
        seed = seeds[index % len(seeds)]
        run = dcc_runner(
            model,
            num_warmup,
            num_samples,
            num_slp_samples=settings["num_slp_samples"],
            max_slps=settings["max_slps"],
            proposal_scale=settings["proposal_scale"],
        )
        (estimate, num_slps), wall, compiled = _timed(lambda run=run, seed=seed: run(seed))
        found = estimate > 0
        runs.append(
            {
                "num_warmup": num_warmup,
                "num_samples": num_samples,
                "cold": cold,
                "seed": seed,
                "wall_s": wall,
                "compile_s": compiled,
                "without_compile_s": wall - compiled,
                "num_slps": num_slps,
                "undiscovered_posterior_mass": float(exact[~found].sum()),
                "estimate": estimate.tolist(),
                **errors(estimate, exact),
            }
        )
        print(
            f"[{NAME}] dcc {num_warmup}/{num_samples} ({'cold' if cold else 'warm'}): "
            f"{wall:.1f} s, TV {runs[-1]['total_variation']:.3f}",
            file=sys.stderr,
            flush=True,
        )
    return {"settings": settings, "runs": runs}


def _matched(probkit: dict, dcc: dict) -> list[dict[str, Any]]:
    """At each warm DCC run, the largest probkit budget that took no longer (two clocks)."""
    rows = []
    for run in dcc["runs"]:
        if run["cold"]:
            continue
        row = {
            "dcc_budget": f"{run['num_warmup']}/{run['num_samples']}",
            "dcc_seed": run["seed"],
            "dcc_total_variation": run["total_variation"],
            "dcc_mean_k_error": run["mean_k_error"],
        }
        for clock, dcc_time, probkit_time in (
            ("with_compile", run["wall_s"], "with_compile_s"),
            ("without_compile", run["without_compile_s"], "steady_median_s"),
        ):
            fits = [point for point in probkit["curve"] if point[probkit_time] <= dcc_time]
            best = fits[-1] if fits else None
            row[clock] = {
                "dcc_s": dcc_time,
                "probkit_s": best[probkit_time] if best else None,
                "probkit_counted_steps": best["counted_steps"] if best else None,
                "probkit_mean_total_variation": best["mean_total_variation"] if best else None,
                "probkit_mean_abs_mean_k_error": best["mean_mean_k_error"] if best else None,
            }
        rows.append(row)
    return rows


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument(
        "--dcc-budgets",
        nargs="+",
        help="DCC budgets as WARMUP/SAMPLES (default 100/100 250/500 500/1000)",
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> tuple[dict, dict]:
    if args.smoke:
        probkit = {"num_chains": 8, "block_steps": 50, "budgets_blocks": [1, 2]}
        probkit["seeds_per_budget"] = lambda blocks: 2
        dcc = {"num_slp_samples": 5, "max_slps": 1, "proposal_scale": 1.0, "warm": False}
        budgets = [(10, 10)]
    else:
        probkit = {"num_chains": 64, "block_steps": 250, "budgets_blocks": [2, 8, 32, 128]}
        probkit["seeds_per_budget"] = lambda blocks: 5 if blocks <= 32 else 3
        dcc = {"num_slp_samples": 1000, "max_slps": 124, "proposal_scale": 1.0, "warm": True}
        budgets = [(100, 100), (250, 500), (500, 1000)]
    if args.dcc_budgets:
        budgets = [tuple(int(n) for n in budget.split("/")) for budget in args.dcc_budgets]
    dcc["budgets"] = budgets
    return probkit, dcc


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``reversible_jump.json`` and ``reversible_jump.md``.

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
    with jax.enable_x64(True), jax.default_device(jax.devices("cpu")[0]):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from probkit.theory.models import RandomDimensionProgram

    model = RandomDimensionProgram()
    exact = model.posterior_k()
    skipped: dict[str, str] = {}
    _, reason = optional_import("numpyro.contrib.stochastic_support.dcc")
    if reason and "dcc" in args.libraries:
        skipped["dcc"] = reason
    probkit_settings, dcc_settings = _settings(args)
    # Start the backend before any timed call, so that no library pays for it.
    jax.block_until_ready(jax.jit(lambda x: x + 1.0)(jnp.zeros(3)))
    k = np.arange(exact.size)
    results: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "machine": machine_info(),
        "dtype": "float64 (jax.enable_x64)",
        "model": {
            "description": "k ~ Geometric(1/2) on {0, 1, ...}, x_1..x_k ~ N(0, 1), y ~ N(Σx, 1)",
            "y": model.y,
            "capacity": model.capacity,
            "exact_posterior_k": exact.tolist(),
            "exact_mean_k": float(k @ exact),
        },
        "skipped": skipped,
    }
    seeds = list(range(100))
    if "probkit" in args.libraries:
        results["probkit"] = _run_probkit(model, exact, probkit_settings, seeds)
        results["load_average_after_probkit"] = list(os.getloadavg())
    if "dcc" in args.libraries and "dcc" not in skipped:
        results["dcc"] = _run_dcc(model, exact, dcc_settings, seeds)
        results["load_average_after_dcc"] = list(os.getloadavg())
    if "probkit" in results and "dcc" in results:
        results["matched"] = _matched(results["probkit"], results["dcc"])
    write_results(args.out, NAME, results, _markdown(results))
    return results


def _markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    model = results["model"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    exact = ", ".join(f"{p:.4f}" for p in model["exact_posterior_k"][:6])
    lines = [
        "# Reversible jump (probkit) vs DCC (NumPyro) on a random-dimension program"
        + (" (smoke size)" if results["smoke"] else ""),
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX backend "
        f"{machine['jax_backend']}, float64. Versions: {versions}. Run {machine['date']}.",
        "",
        f"Model: {model['description']}, y = {model['y']}, k truncated to 0..{model['capacity']} "
        f"in both samplers. Exact P(k | y) for k = 0..5: {exact}; E[k | y] = "
        f"{model['exact_mean_k']:.4f}. TV = ½ Σ_k |P̂(k) − P(k | y)|; E[k] error = "
        "|Ê[k] − E[k | y]|.",
    ]
    for reason_key, reason in results["skipped"].items():
        lines += ["", f"**Skipped {reason_key}:** {reason}"]
    if "probkit" in results:
        probkit = results["probkit"]
        settings = probkit["settings"]
        lines += [
            "",
            "## probkit reversible jump",
            "",
            f"{settings['num_chains']} chains from k = 0, blocks of {settings['block_steps']} "
            f"steps (one of burn-in). The jitted block compiles once: first call "
            f"{probkit['first_call_s']:.2f} s, of which JAX tracing and compiling "
            f"{probkit['compile_s']:.2f} s. Errors are means over seeds.",
            "",
        ]
        rows = [
            [
                point["counted_steps"],
                point["steady_median_s"],
                point["with_compile_s"],
                point["mean_total_variation"],
                point["sd_total_variation"],
                point["mean_max_abs_error"],
                point["mean_mean_k_error"],
                len(point["runs"]),
            ]
            for point in probkit["curve"]
        ]
        lines.append(
            markdown_table(
                [
                    "steps per chain",
                    "run (s, median)",
                    "with compile (s)",
                    "mean TV",
                    "sd TV",
                    "mean max abs error",
                    "mean E[k] error",
                    "seeds",
                ],
                rows,
            )
        )
    if "dcc" in results:
        dcc = results["dcc"]
        settings = dcc["settings"]
        lines += [
            "",
            "## NumPyro DCC",
            "",
            f"NUTS in every SLP, num_slp_samples = {settings['num_slp_samples']}, max_slps = "
            f"{settings['max_slps']}, proposal_scale = {settings['proposal_scale']}. One seed per "
            "run. Cold = the first DCC call in the process.",
            "",
        ]
        rows = [
            [
                f"{run['num_warmup']}/{run['num_samples']}",
                "cold" if run["cold"] else "warm",
                run["wall_s"],
                run["compile_s"],
                run["without_compile_s"],
                run["num_slps"],
                run["undiscovered_posterior_mass"],
                run["total_variation"],
                run["max_abs_error"],
                abs(run["mean_k_error"]),
            ]
            for run in dcc["runs"]
        ]
        lines.append(
            markdown_table(
                [
                    "warmup/samples",
                    "call",
                    "wall (s)",
                    "compile (s)",
                    "without compile (s)",
                    "SLPs",
                    "posterior mass of SLPs not found",
                    "TV",
                    "max abs error",
                    "E[k] error",
                ],
                rows,
            )
        )
    if "matched" in results:
        lines += [
            "",
            "## At matched wall time",
            "",
            "For each warm DCC run, the largest probkit budget that took at most as long "
            "(probkit's mean error over seeds).",
            "",
        ]
        rows = []
        for row in results["matched"]:
            for clock in ("with_compile", "without_compile"):
                match = row[clock]
                rows.append(
                    [
                        row["dcc_budget"],
                        clock.replace("_", " "),
                        match["dcc_s"],
                        row["dcc_total_variation"],
                        abs(row["dcc_mean_k_error"]),
                        match["probkit_s"],
                        match["probkit_counted_steps"],
                        match["probkit_mean_total_variation"],
                        match["probkit_mean_abs_mean_k_error"],
                    ]
                )
        lines.append(
            markdown_table(
                [
                    "DCC budget",
                    "clock",
                    "DCC (s)",
                    "DCC TV",
                    "DCC E[k] error",
                    "probkit (s)",
                    "probkit steps",
                    "probkit TV",
                    "probkit E[k] error",
                ],
                rows,
            )
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
