"""Bootstrap particle filter: probkit's ``particle_filter`` against a plain NumPy filter.

The model is probkit's :class:`~probkit.theory.models.LinearGaussianSSM` (``x_0 ~ N(0, 1)``,
``x_t = 0.9 x_{t-1} + N(0, 0.5²)``, ``y_t = x_t + N(0, 0.8²)``) with ``T = 100`` simulated
observations, whose exact ``log p(y)`` and filtering means come from the Kalman filter. Both
filters propose from the transition, weight by the observation density, record the filtering
mean, and resample systematically when the ESS falls below ``n / 2`` (probkit's default rule),
in float64 on the CPU. The NumPy filter is vectorised over the particles and loops over time in
Python; it has nothing to compile.

Run ``python benchmarks/particle_filter.py`` (``--smoke`` for a tiny size); the results go to
``benchmarks/results/particle_filter.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _common import DEFAULT_OUT, accuracy, machine_info, markdown_table, time_calls, write_results
from scipy.special import logsumexp

__all__ = ["main", "numpy_bootstrap_filter", "probkit_runner"]

NAME = "particle_filter"
NUM_OBSERVATIONS = 100
DATA_SEED = 0
RESAMPLE_THRESHOLD = 0.5


def numpy_bootstrap_filter(
    observations: np.ndarray,
    num_particles: int,
    rng: np.random.Generator,
    *,
    a: float = 0.9,
    q: float = 0.5,
    r: float = 0.8,
    s0: float = 1.0,
    resample_threshold: float = RESAMPLE_THRESHOLD,
) -> tuple[float, np.ndarray]:
    """A bootstrap filter for the linear Gaussian model in NumPy, vectorised over particles.

    Each step proposes from the transition (the initial distribution at ``t = 0``), multiplies
    the normalised weights by ``N(y_t; x_t, r²)``, adds ``log Σ_i W_i G_i`` to ``log Ẑ``,
    normalises, records the filtering mean, and resamples systematically when
    ``ESS < resample_threshold · n`` (the rule of ``probkit``'s ``particle_filter``).

    Parameters
    ----------
    observations : ndarray, shape (T,)
        ``y_0, ..., y_{T-1}``.
    num_particles : int
        ``n``.
    rng : numpy.random.Generator
        The random numbers.
    a, q, r, s0 : float
        The model's parameters (as in ``LinearGaussianSSM``).
    resample_threshold : float
        The ESS fraction below which to resample.

    Returns
    -------
    log_evidence : float
        ``log Ẑ``, an estimate of ``log p(y_{0:T-1})``.
    filtering_means : ndarray, shape (T,)
        Estimates of ``E[x_t | y_{0:t}]``.
    """
    n = num_particles
    log_weights = np.full(n, -np.log(n))
    log_evidence = 0.0
    means = np.empty(len(observations))
    offsets = np.arange(n)
    x = s0 * rng.standard_normal(n)
    for t, y in enumerate(observations):
        if t > 0:
            x = a * x + q * rng.standard_normal(n)
        log_potential = -0.5 * ((y - x) / r) ** 2 - np.log(r) - 0.5 * np.log(2 * np.pi)
        log_weights = log_weights + log_potential
        increment = logsumexp(log_weights)
        log_evidence += increment
        log_weights -= increment
        weights = np.exp(log_weights)
        means[t] = weights @ x
        if 1.0 / np.sum(weights**2) < resample_threshold * n:
            cumulative = np.cumsum(weights)
            cumulative[-1] = 1.0
            positions = (rng.uniform() + offsets) / n
            x = x[np.minimum(np.searchsorted(cumulative, positions, side="right"), n - 1)]
            log_weights = np.full(n, -np.log(n))
    return float(log_evidence), means


def probkit_runner(model, num_particles: int, *, jit: bool = True) -> Callable:
    """``(key, observations) -> {log_evidence, means}`` running probkit's ``particle_filter``.

    Parameters
    ----------
    model : LinearGaussianSSM
        The model (its ``state_space_model()`` is filtered).
    num_particles : int
        ``n``.
    jit : bool
        Wrap the run in ``jax.jit`` (False: call ``particle_filter`` as is).
    """
    from probkit.inference.smc import particle_filter

    ssm = model.state_space_model()

    def run(key, observations):
        result = particle_filter(
            key,
            ssm,
            observations,
            num_particles,
            resample_threshold=RESAMPLE_THRESHOLD,
            resampling="systematic",
        )
        return {"log_evidence": result.log_evidence, "means": result.history["summary"]}

    return jax.jit(run) if jit else run


def _numpy_run(observations: np.ndarray, num_particles: int, seed: int) -> dict[str, Any]:
    log_evidence, means = numpy_bootstrap_filter(
        observations, num_particles, np.random.default_rng(seed)
    )
    return {"log_evidence": log_evidence, "means": means}


def _summarise(outputs, reference, kalman_means, timing) -> dict[str, Any]:
    estimates = [float(out["log_evidence"]) for out in outputs]
    mean_errors = [float(np.sqrt(np.mean((out["means"] - kalman_means) ** 2))) for out in outputs]
    return {
        **timing,
        "log_evidence_estimates": estimates,
        "filtering_mean_rmse": float(np.mean(mean_errors)),
        **accuracy(estimates, reference),
    }


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seeds", type=int, help="seeds per particle count (default 100)")
    parser.add_argument(
        "--particles", type=int, nargs="+", help="particle counts (default 100 1000 10000)"
    )
    parser.add_argument(
        "--no-eager", action="store_true", help="skip timing un-jitted probkit calls"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``particle_filter.json`` and ``particle_filter.md``.

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
    from probkit.theory.models import LinearGaussianSSM

    model = LinearGaussianSSM()
    observations = model.simulate(NUM_OBSERVATIONS, seed=DATA_SEED)
    log_z, kalman_means, _ = model.kalman(observations)
    seeds = list(range(args.seeds or (3 if args.smoke else 100)))
    counts = args.particles or ([100] if args.smoke else [100, 1000, 10000])
    results: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "machine": machine_info(),
        "model": {
            "name": "LinearGaussianSSM",
            "a": model.a,
            "q": model.q,
            "r": model.r,
            "s0": model.s0,
            "num_observations": NUM_OBSERVATIONS,
            "data_seed": DATA_SEED,
        },
        "kalman_log_evidence": log_z,
        "settings": {"resampling": "systematic", "resample_threshold": RESAMPLE_THRESHOLD},
        "timing": (
            "first_call_s: first call (for probkit: trace + compile + one run of the jitted "
            "filter); steady_median_s: median over the later calls, one seed each"
        ),
        "runs": {},
    }
    y = jnp.asarray(observations)
    for n in counts:
        print(f"[{NAME}] n={n}: probkit, numpy ...", file=sys.stderr, flush=True)
        runner = probkit_runner(model, n)
        timings = time_calls(
            {
                "probkit": lambda seed, runner=runner: runner(jax.random.key(seed), y),
                "numpy": lambda seed, n=n: _numpy_run(observations, n, seed),
            },
            seeds,
        )
        stats_ = {
            library: _summarise(timing.pop("outputs"), log_z, kalman_means, timing)
            for library, timing in timings.items()
        }
        results["runs"][str(n)] = {
            "num_particles": n,
            **stats_,
            "steady_ratio_probkit_over_numpy": stats_["probkit"]["steady_median_s"]
            / stats_["numpy"]["steady_median_s"],
        }
    if not args.smoke and not args.no_eager:
        n = counts[len(counts) // 2]
        print(f"[{NAME}] n={n}: probkit without jit ...", file=sys.stderr, flush=True)
        runner = probkit_runner(model, n, jit=False)
        times = []
        for seed in seeds[:2]:
            start = time.perf_counter()
            runner(jax.random.key(seed), y)["log_evidence"].block_until_ready()
            times.append(time.perf_counter() - start)
        results["probkit_unjitted"] = {"num_particles": n, "call_times_s": times}
    results["load_average_after"] = list(os.getloadavg())
    write_results(args.out, NAME, results, _markdown(results))
    return results


def _markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    model = results["model"]
    lines = [
        "# Bootstrap particle filter: probkit vs NumPy"
        + (" (smoke size)" if results["smoke"] else ""),
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX backend "
        f"{machine['jax_backend']}, float64. Versions: {versions}. Run {machine['date']}.",
        "",
        f"Linear Gaussian SSM (a={model['a']}, q={model['q']}, r={model['r']}, s0={model['s0']}), "
        f"T = {model['num_observations']}; Kalman log Z = {results['kalman_log_evidence']:.4f}. "
        "Systematic resampling when ESS < n/2. First call = trace + compile + one run for "
        "probkit (NumPy compiles nothing); steady = median of the later calls. "
        "Ratio = probkit / NumPy steady time (above 1: probkit slower). "
        "Filtering-mean RMSE is against the Kalman means, averaged over seeds.",
        "",
    ]
    rows = []
    for run in results["runs"].values():
        for library in ("probkit", "numpy"):
            stats_ = run[library]
            rows.append(
                [
                    run["num_particles"],
                    library,
                    stats_["first_call_s"],
                    stats_["steady_median_s"],
                    stats_["steady_min_s"],
                    run["steady_ratio_probkit_over_numpy"] if library == "probkit" else None,
                    stats_["mean_abs_error"],
                    f"{stats_['bias']:.3g} ± {stats_['bias_standard_error']:.2g}",
                    stats_["sd"],
                    stats_["filtering_mean_rmse"],
                    stats_["num_seeds"],
                ]
            )
    lines.append(
        markdown_table(
            [
                "n",
                "library",
                "first call (s)",
                "steady median (s)",
                "steady min (s)",
                "ratio",
                "mean abs(log Ẑ − log Z)",
                "bias ± se",
                "sd(log Ẑ)",
                "filtering-mean RMSE",
                "seeds",
            ],
            rows,
        )
    )
    if "probkit_unjitted" in results:
        eager = results["probkit_unjitted"]
        times = ", ".join(f"{t:.3g}" for t in eager["call_times_s"])
        lines += [
            "",
            f"probkit `particle_filter` called without `jax.jit` (n = {eager['num_particles']}): "
            f"{times} s per call (it traces and compiles on every call).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
