"""Excursion simulation: probkit's ``simulate_excursions`` against a plain NumPy implementation.

Both simulate the d = 2 diffusion correlator ``r(t) = sech(t/2)`` (``λ₂ = 1/4``) on a grid of
step ``dt = 0.1`` (``dt·√λ₂ = 0.05``) by circulant embedding (two paths per complex FFT of the
same length ``2m``, eigenvalues from the same float64 embedding) and reduce every batch of paths
to the same statistics: up/down-crossing counts, the histogram of complete excursion lengths
(linear interpolation of the crossing times, edge weights ``W/(W - ℓ)``), their moments, and
persistence counts at three times. NumPy works in float64 (PCG64 normals, pocketfft); probkit
runs its compiled batch step with float32 paths (its default) and with float64 paths.

Throughput is grid points per second (``paths × (n_steps + 1) / steady time``), everything
included: random numbers, FFT, crossing extraction, histogram and reductions. Accuracy is the
estimated crossing intensity against Rice's ``√λ₂/π`` and the mean excursion length against
``π/√λ₂``, with their batch-means standard errors.

Run ``python benchmarks/exceedance_simulation.py`` (``--smoke`` for a tiny size); the results go
to ``benchmarks/results/exceedance_simulation.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
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
    time_calls,
    write_results,
)

__all__ = ["main", "numpy_simulate"]

NAME = "exceedance_simulation"
DT = 0.1
D = 2.0
PERSISTENCE_TIMES = (1.0, 10.0, 20.0)


def numpy_simulate(
    sqrt_eigenvalues: np.ndarray,
    n_paths: int,
    n_steps: int,
    dt: float,
    batch_size: int,
    edges: np.ndarray,
    lags: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The reference simulation in NumPy float64: the same estimators as probkit, batch by batch.

    Parameters
    ----------
    sqrt_eigenvalues : ndarray, shape (2m,)
        ``sqrt(λ_k / 2m)`` of the circulant embedding.
    n_paths, n_steps : int
        Paths (a multiple of ``batch_size``) and grid steps per path.
    dt : float
        Grid step.
    batch_size : int
        Paths per batch (even).
    edges : ndarray
        Histogram edges.
    lags : ndarray of int
        Persistence windows, in steps.
    rng : numpy.random.Generator
        The normals.

    Returns
    -------
    dict
        Per-batch ``crossings`` (up, down), ``counts`` (histogram with under/overflow slots),
        ``moments`` (``Σw, Σwℓ``) and ``persistence`` counts.
    """
    n_fft = sqrt_eigenvalues.size
    pairs = batch_size // 2
    step = np.arange(n_steps)
    out: dict[str, list] = {"crossings": [], "counts": [], "moments": [], "persistence": []}
    for _ in range(n_paths // batch_size):
        normals = rng.standard_normal((pairs, 2, n_fft))
        field = np.fft.fft((normals[:, 0] + 1j * normals[:, 1]) * sqrt_eigenvalues, axis=-1)
        x = np.concatenate([field.real[:, : n_steps + 1], field.imag[:, : n_steps + 1]])
        above = x > 0.0
        before, after = above[:, :-1], above[:, 1:]
        up, down = ~before & after, before & ~after
        crossing = up | down
        x0, x1 = x[:, :-1], x[:, 1:]
        fraction = np.where(crossing, -x0 / np.where(crossing, x1 - x0, 1.0), 0.0)
        last_up = np.maximum.accumulate(np.where(up, step, -1), axis=1)
        complete = down & (last_up >= 0)
        start_fraction = np.take_along_axis(fraction, np.maximum(last_up, 0), axis=1)
        whole = step - last_up
        steps = (whole + fraction - start_fraction)[complete]
        length = steps * dt
        weight = n_steps / (n_steps - steps)
        slots = np.searchsorted(edges, length, side="right")
        counts = np.bincount(slots, minlength=edges.size + 1)
        run = whole[down]
        end_run = np.where(above[:, -1], n_steps - last_up[:, -1], 0)
        persistence = [
            np.maximum(run - k, 0).sum() + np.maximum(end_run - k, 0).sum() for k in lags
        ]
        out["crossings"].append([up.sum(), down.sum()])
        out["counts"].append(counts)
        out["moments"].append([weight.sum(), (weight * length).sum()])
        out["persistence"].append(persistence)
    return {name: np.asarray(values) for name, values in out.items()}


def _ratio_se(y: np.ndarray, x: np.ndarray) -> float:
    blocks = y.shape[0]
    if blocks < 2:
        return float("nan")
    ratio = y.sum() / x.sum()
    return float(np.sqrt(blocks / (blocks - 1) * np.sum((y - ratio * x) ** 2)) / x.sum())


def _accuracy(crossings, moments, paths_per_block, n_steps, lam2) -> dict[str, float]:
    """Crossing intensity and mean length against Rice, with batch-means standard errors."""
    both = crossings.sum(axis=1).astype(float)
    time = paths_per_block * n_steps * DT
    intensity = both.sum() / time.sum()
    rice = math.sqrt(lam2) / math.pi
    se = _ratio_se(both, time)
    mean = moments[:, 1].sum() / moments[:, 0].sum()
    mean_se = _ratio_se(moments[:, 1], moments[:, 0])
    exact_mean = math.pi / math.sqrt(lam2)
    return {
        "crossing_intensity": float(intensity),
        "crossing_intensity_se": se,
        "rice_intensity": rice,
        "intensity_relative_error": float(intensity / rice - 1),
        "intensity_z": float((intensity - rice) / se),
        "mean_length": float(mean),
        "mean_length_se": mean_se,
        "exact_mean_length": exact_mean,
        "mean_length_z": float((mean - exact_mean) / mean_se),
    }


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--steps", type=int, nargs="+", help="grid steps per path (default 1024 4096 16384)"
    )
    parser.add_argument(
        "--batch-points",
        type=int,
        nargs="+",
        help="grid points per batch, rounded to whole even paths (default 2^18 2^21)",
    )
    parser.add_argument(
        "--points", type=int, help="grid points per timed call (default 2^23; smoke 2^17)"
    )
    parser.add_argument("--seeds", type=int, help="calls per runner (default 4; smoke 2)")
    parser.add_argument("--no-float64", action="store_true", help="skip probkit with float64 paths")
    parser.add_argument(
        "--backend",
        default="cpu",
        help="JAX backend that runs probkit, e.g. cpu or gpu (default cpu; NumPy is always on CPU)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``exceedance_simulation.json`` and ``.md``.

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
    with jax.enable_x64(True), jax.default_device(jax.devices(args.backend)[0]):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from probkit.exceedance.covariance import sech_diffusion

    cov = sech_diffusion(D)
    lam2 = float(cov.lam2)
    steps_list = args.steps or ([1024] if args.smoke else [1024, 4096, 16384])
    batch_points = args.batch_points or ([2**15] if args.smoke else [2**18, 2**21])
    points = args.points or (2**17 if args.smoke else 2**23)
    seeds = list(range(args.seeds or (2 if args.smoke else 4)))
    results: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "machine": machine_info(),
        "backend": args.backend,
        "process": {"covariance": f"sech_diffusion({D})", "lam2": lam2, "dt": DT, "level": 0.0},
        "timing": (
            "first_call_s: first call (for probkit: trace + compile + one run); compile_s: "
            "time in JAX tracing/lowering/compilation during the first call; steady_median_s: "
            "median of the later calls, one seed each; points_per_s = paths·(n_steps+1) / "
            "steady median"
        ),
        "runs": [],
    }
    for n_steps in steps_list:
        for per_batch in batch_points:
            results["runs"].append(
                _benchmark(
                    cov, n_steps, per_batch, points, seeds, not args.no_float64, args.backend
                )
            )
            # Written after every configuration, so that an interrupted run keeps what it did.
            results["load_average_after"] = list(os.getloadavg())
            write_results(args.out, NAME, results, _markdown(results))
    return results


def _benchmark(
    cov,
    n_steps: int,
    per_batch: int,
    points: int,
    seeds: list[int],
    float64: bool,
    backend: str,
) -> dict[str, Any]:
    """Time probkit (float32 and float64 paths) and NumPy on one path length and batch size."""
    from probkit.exceedance.simulate import circulant_embedding, simulate_excursions

    lam2 = float(cov.lam2)
    device = jax.devices(backend)[:1]
    eigenvalues, _ = circulant_embedding(cov, n_steps, DT)
    sqrt_eigenvalues = np.sqrt(eigenvalues / eigenvalues.size)
    edges = np.arange(0.0, n_steps * DT + 0.5, 0.5)
    lags = np.rint(np.asarray(PERSISTENCE_TIMES) / DT).astype(int)
    batch = max(2, (per_batch // (n_steps + 1)) // 2 * 2)
    n_paths = max(batch, (points // (n_steps + 1)) // batch * batch)
    print(f"[{NAME}] n_steps={n_steps} batch={batch} paths={n_paths}", file=sys.stderr, flush=True)
    compile_seconds: dict[str, list[float]] = {}

    def probkit_runner(dtype, label):
        compile_seconds[label] = []

        def call(seed):
            with CompileClock() as clock:
                sim = simulate_excursions(
                    cov,
                    jax.random.key(seed),
                    n_paths=n_paths,
                    n_steps=n_steps,
                    dt=DT,
                    batch_size=batch,
                    bins=edges,
                    persistence_times=PERSISTENCE_TIMES,
                    dtype=dtype,
                    devices=device,
                )
            compile_seconds[label].append(clock.seconds)
            return {
                "crossings": sim.blocks.crossings,
                "moments": sim.blocks.moments[:, [0, 2]],
                "paths": sim.blocks.n_paths,
            }

        return call

    def numpy_runner(seed):
        rng = np.random.default_rng(seed)
        out = numpy_simulate(sqrt_eigenvalues, n_paths, n_steps, DT, batch, edges, lags, rng)
        return {
            "crossings": out["crossings"],
            "moments": out["moments"],
            "paths": np.full(out["crossings"].shape[0], batch),
        }

    runners = {"probkit_float32": probkit_runner(jnp.float32, "probkit_float32")}
    if float64:
        runners["probkit_float64"] = probkit_runner(jnp.float64, "probkit_float64")
    runners["numpy_float64"] = numpy_runner
    timings = time_calls(runners, seeds)
    run: dict[str, Any] = {
        "n_steps": n_steps,
        "batch_size": batch,
        "n_paths": n_paths,
        "points_per_call": n_paths * (n_steps + 1),
        "libraries": {},
    }
    for name, timing in timings.items():
        outputs = timing.pop("outputs")
        crossings = np.concatenate([o["crossings"] for o in outputs])
        moments = np.concatenate([o["moments"] for o in outputs])
        paths = np.concatenate([o["paths"] for o in outputs])
        run["libraries"][name] = {
            **timing,
            "compile_s": compile_seconds[name][0] if name in compile_seconds else 0.0,
            "compile_s_later_calls": compile_seconds.get(name, [])[1:],
            "points_per_s": run["points_per_call"] / timing["steady_median_s"],
            "accuracy_all_seeds": _accuracy(crossings, moments, paths, n_steps, lam2),
        }
    numpy_rate = run["libraries"]["numpy_float64"]["points_per_s"]
    run["throughput_ratio_over_numpy"] = {
        name: stats["points_per_s"] / numpy_rate
        for name, stats in run["libraries"].items()
        if name != "numpy_float64"
    }
    return run


def _markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        "# Excursion simulation: probkit vs NumPy" + (" (smoke size)" if results["smoke"] else ""),
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX backend "
        f"{machine['jax_backend']}, probkit on one {results.get('backend', 'cpu')} device. Versions: {versions}. Run {machine['date']}. "
        f"Load average (1/5/15 min) before: {machine['load_average_1_5_15_min']}, after: "
        f"{results['load_average_after']}.",
        "",
        "sech(t/2) correlation (d = 2 diffusion, λ₂ = 1/4), dt = 0.1, level 0; circulant "
        "embedding, two paths per complex FFT, crossing extraction, edge-weighted histogram, "
        "moments and three persistence counts in every batch, for both. Throughput = grid "
        "points per second of the steady calls (median). First call = trace + compile + one "
        "run for probkit; compile = JAX tracing/lowering/compilation inside it. Ratio = "
        "throughput / NumPy throughput (above 1: probkit faster). Intensity z and mean z: "
        "(estimate − Rice) / batch-means standard error, over all calls of the runner.",
        "",
    ]
    rows = []
    for run in results["runs"]:
        for name, stats in run["libraries"].items():
            accuracy = stats["accuracy_all_seeds"]
            rows.append(
                [
                    run["n_steps"],
                    run["batch_size"],
                    run["n_paths"],
                    name,
                    stats["first_call_s"],
                    stats["compile_s"],
                    stats["steady_median_s"],
                    stats["points_per_s"] / 1e6,
                    run["throughput_ratio_over_numpy"].get(name),
                    accuracy["crossing_intensity"],
                    f"{accuracy['intensity_relative_error'] * 100:.3f} %",
                    accuracy["intensity_z"],
                    accuracy["mean_length"],
                    accuracy["mean_length_z"],
                ]
            )
    lines.append(
        markdown_table(
            [
                "n_steps",
                "batch",
                "paths/call",
                "implementation",
                "first call (s)",
                "compile (s)",
                "steady median (s)",
                "Mpoints/s",
                "ratio",
                "intensity",
                "vs Rice",
                "intensity z",
                "mean length",
                "mean z",
            ],
            rows,
        )
    )
    rice = results["runs"][0]["libraries"]["numpy_float64"]["accuracy_all_seeds"]
    lines += [
        "",
        f"Rice: intensity √λ₂/π = {rice['rice_intensity']:.5f}, mean excursion length "
        f"π/√λ₂ = {rice['exact_mean_length']:.4f}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
