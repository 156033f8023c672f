"""Random-walk Metropolis and MALA: probkit's ``mhg`` kernels against BlackJAX's.

Both libraries run the same algorithm on the same target with the same step size, the same
number of chains (vmapped) and steps, and the same starting points (drawn inside the jitted run
from the same key): probkit's ``random_walk(log_density, scale)`` against BlackJAX's
``additive_step_random_walk(log_density, random_walk.normal(scale))``, and probkit's
``mala(log_density, ε)`` against BlackJAX's ``mala(log_density, ε²/2)`` (BlackJAX's step size
is the Euler step ``τ`` of ``x + τ ∇log π + sqrt(2τ) ξ``, probkit's is the noise scale ``ε`` of
``x + (ε²/2) ∇log π + ε ξ``: the same proposal). The whole run (every chain, every step) is one
``lax.scan`` inside ``jax.jit`` that returns every position.

Targets
-------
``gaussian10``
    A 10-D Gaussian with ``Σ_ij = 0.7^|i-j|`` (condition number 32); exact mean 0.
``logistic``
    Bayesian logistic regression, 500 synthetic rows and 10 standard-normal features (no
    intercept), fixed seed, prior ``N(0, I)``; chains start from the Laplace approximation.
``gaussian100``
    ``N(0, I₁₀₀)``; exact mean 0.

Reported: first call (trace + compile + one run), the time JAX itself spent tracing, lowering
and compiling during it (:class:`CompileClock`), the steady-state median of the later calls,
time per step per chain, the acceptance rate, the bulk ESS (``arviz.ess``, minimum over
coordinates, after discarding the first 10 % of every chain) and ESS per second of
steady-state time, with the ratios probkit / BlackJAX. A sanity line compares the two
libraries' posterior means (and the exact mean where known) within Monte Carlo error.

Run ``python benchmarks/mhg_kernels.py`` (``--smoke`` for a tiny size); the results go to
``benchmarks/results/mhg_kernels.{json,md}``. Everything runs on the CPU in float64.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
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
    time_calls,
    write_results,
)
from scipy import optimize, special, stats

__all__ = [
    "Target",
    "chain_runner",
    "chain_summary",
    "correlated_gaussian",
    "isotropic_gaussian",
    "logistic_regression",
    "main",
]

NAME = "mhg_kernels"
LIBRARIES = ("probkit", "blackjax")
ALGORITHMS = ("rwm", "mala")
TARGETS = ("gaussian10", "logistic", "gaussian100")
BURN_IN_FRACTION = 0.1
"""The first 10 % of every chain is left out of the ESS and the means."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A target density with the chains' starting law and the step sizes used on it.

    Attributes
    ----------
    name : str
        A short name.
    description : str
        One line about the target.
    dim : int
        The dimension.
    log_density : callable
        ``log π(x)`` (unnormalised) of one position, shape ``(dim,)``.
    start_mean, start_factor : ndarray
        Chains start at ``start_mean + start_factor @ z`` with ``z ~ N(0, I)``: exact draws for
        the Gaussians, the Laplace approximation for the logistic regression.
    exact_mean : ndarray or None
        The posterior mean when it is known.
    rwm_scale : float
        The random-walk standard deviation (one for every coordinate).
    mala_step_size : float
        probkit's ``ε`` (BlackJAX's step size is ``ε²/2``).
    """

    name: str
    description: str
    dim: int
    log_density: Callable[[jax.Array], jax.Array]
    start_mean: np.ndarray
    start_factor: np.ndarray
    exact_mean: np.ndarray | None
    rwm_scale: float
    mala_step_size: float


def correlated_gaussian(dim: int = 10, correlation: float = 0.7) -> Target:
    """``N(0, Σ)`` with ``Σ_ij = correlation^|i-j|`` (an AR(1) covariance).

    The log density is the quadratic form with the precision matrix (a triangular solve per
    chain is much slower inside XLA-CPU loops and would hide the libraries' own costs).
    """
    index = np.arange(dim)
    covariance = correlation ** np.abs(index[:, None] - index[None, :])
    precision = jnp.asarray(np.linalg.inv(covariance))
    eigenvalues = np.linalg.eigvalsh(covariance)

    def log_density(x):
        return -0.5 * x @ precision @ x

    return Target(
        name=f"gaussian{dim}",
        description=(
            f"{dim}-D Gaussian, Σ_ij = {correlation}^|i-j| "
            f"(eigenvalues {eigenvalues.min():.3f} to {eigenvalues.max():.2f})"
        ),
        dim=dim,
        log_density=log_density,
        start_mean=np.zeros(dim),
        start_factor=np.linalg.cholesky(covariance),
        exact_mean=np.zeros(dim),
        rwm_scale=0.45,
        mala_step_size=0.5,
    )


def isotropic_gaussian(dim: int = 100) -> Target:
    """``N(0, I_dim)``, with the textbook step sizes ``2.38 / sqrt(d)`` and ``1.65 d^(-1/6)``."""

    def log_density(x):
        return -0.5 * jnp.sum(x**2)

    return Target(
        name=f"gaussian{dim}",
        description=f"{dim}-D isotropic Gaussian N(0, I)",
        dim=dim,
        log_density=log_density,
        start_mean=np.zeros(dim),
        start_factor=np.eye(dim),
        exact_mean=np.zeros(dim),
        rwm_scale=2.38 / np.sqrt(dim),
        mala_step_size=1.65 * dim ** (-1 / 6),
    )


def logistic_regression(
    num_rows: int = 500, num_features: int = 10, seed: int = 20240611
) -> Target:
    """Bayesian logistic regression on synthetic data, prior ``N(0, I)``.

    Features are standard normal, the true coefficients ``N(0, 1)``, the labels Bernoulli with
    the logistic link (NumPy generator with ``seed``). Chains start from the Laplace
    approximation (mode by Newton-CG, covariance the inverse Hessian).
    """
    rng = np.random.default_rng(seed)
    design = rng.standard_normal((num_rows, num_features))
    coefficients = rng.standard_normal(num_features)
    labels = (rng.uniform(size=num_rows) < special.expit(design @ coefficients)).astype(float)

    def negative(beta):
        eta = design @ beta
        return -(labels @ eta - np.logaddexp(0.0, eta).sum() - 0.5 * beta @ beta)

    def gradient(beta):
        return -(design.T @ (labels - special.expit(design @ beta)) - beta)

    def hessian(beta):
        p = special.expit(design @ beta)
        return design.T @ (design * (p * (1 - p))[:, None]) + np.eye(num_features)

    mode = optimize.minimize(
        negative, np.zeros(num_features), jac=gradient, hess=hessian, method="Newton-CG", tol=1e-12
    ).x
    covariance = np.linalg.inv(hessian(mode))
    design_j, labels_j = jnp.asarray(design), jnp.asarray(labels)

    def log_density(beta):
        eta = design_j @ beta
        return jnp.sum(labels_j * eta - jnp.logaddexp(0.0, eta)) - 0.5 * beta @ beta

    return Target(
        name="logistic",
        description=(
            f"logistic regression, {num_rows} synthetic rows × {num_features} features "
            f"(seed {seed}), prior N(0, I)"
        ),
        dim=num_features,
        log_density=log_density,
        start_mean=mode,
        start_factor=np.linalg.cholesky(covariance),
        exact_mean=None,
        rwm_scale=0.1,
        mala_step_size=0.16,
    )


def _kernel(library: str, algorithm: str, target: Target) -> tuple[Callable, Callable]:
    """``(init, step)`` of one library's kernel for ``target``."""
    if library == "probkit":
        from probkit.inference.mhg import mala, random_walk

        if algorithm == "rwm":
            kernel = random_walk(target.log_density, target.rwm_scale)
        else:
            kernel = mala(target.log_density, target.mala_step_size)
        return kernel.init, kernel.step
    import blackjax
    from blackjax.mcmc import random_walk as blackjax_random_walk

    if algorithm == "rwm":
        kernel = blackjax.additive_step_random_walk(
            target.log_density, blackjax_random_walk.normal(target.rwm_scale)
        )
    else:
        # BlackJAX proposes x + τ ∇log π + sqrt(2τ) ξ: τ = ε²/2 is probkit's proposal.
        kernel = blackjax.mala(target.log_density, target.mala_step_size**2 / 2)
    return kernel.init, kernel.step


def chain_runner(
    library: str, algorithm: str, target: Target, num_chains: int, num_steps: int
) -> Callable[[jax.Array], dict]:
    """A jitted ``key -> {positions, acceptance_rate}`` running ``num_chains`` chains.

    Parameters
    ----------
    library : {"probkit", "blackjax"}
    algorithm : {"rwm", "mala"}
    target : Target
    num_chains, num_steps : int
        Chains (vmapped) and steps (one ``lax.scan``).

    Returns
    -------
    callable
        ``positions`` has shape ``(num_steps, num_chains, dim)``; ``acceptance_rate`` (per chain)
        is the fraction of accepted proposals.
    """
    init, step = _kernel(library, algorithm, target)
    start_mean = jnp.asarray(target.start_mean)
    start_factor = jnp.asarray(target.start_factor)

    def run(key):
        key_start, key_chain = jax.random.split(key)
        noise = jax.random.normal(key_start, (num_chains, target.dim))
        state = jax.vmap(init)(start_mean + noise @ start_factor.T)

        def body(carry, step_key):
            state, accepted = carry
            state, info = jax.vmap(step)(jax.random.split(step_key, num_chains), state)
            return (state, accepted + info.is_accepted), state.position

        accepted = jnp.zeros((num_chains,), jnp.int32)
        (_, accepted), positions = jax.lax.scan(
            body, (state, accepted), jax.random.split(key_chain, num_steps)
        )
        return {"positions": positions, "acceptance_rate": accepted / num_steps}

    return jax.jit(run)


def chain_summary(positions: np.ndarray) -> dict[str, Any]:
    """Bulk ESS, means and their Monte Carlo standard errors (arviz), after the burn-in.

    Parameters
    ----------
    positions : ndarray, shape (num_steps, num_chains, dim)

    Returns
    -------
    dict
        ``ess_bulk`` and ``mean``, ``mcse_mean`` (one per coordinate), ``ess_bulk_min``,
        ``ess_bulk_median``, ``draws_per_chain``.
    """
    import arviz

    burn_in = int(BURN_IN_FRACTION * positions.shape[0])
    draws = np.swapaxes(positions[burn_in:], 0, 1)  # (chain, draw, dim), as arviz reads it
    dataset = arviz.convert_to_dataset({"x": draws})
    ess = np.asarray(arviz.ess(dataset, method="bulk")["x"])
    mcse = np.asarray(arviz.mcse(dataset, method="mean")["x"])
    return {
        "ess_bulk_min": float(ess.min()),
        "ess_bulk_median": float(np.median(ess)),
        "ess_bulk": ess.tolist(),
        "mean": draws.mean(axis=(0, 1)).tolist(),
        "mcse_mean": mcse.tolist(),
        "draws_per_chain": int(draws.shape[1]),
    }


def _agreement(first: dict, second: dict) -> dict[str, float]:
    """Max |z| between two sets of means, and the two-sided 5 % Bonferroni critical value."""
    difference = np.asarray(first["mean"]) - np.asarray(second["mean"])
    error = np.hypot(first["mcse_mean"], second["mcse_mean"])
    dim = difference.size
    return {
        "max_abs_z": float(np.max(np.abs(difference / error))),
        "critical_value_5pct_bonferroni": float(stats.norm.isf(0.025 / dim)),
    }


def _exact_agreement(summary: dict, exact: np.ndarray) -> dict[str, float]:
    difference = np.asarray(summary["mean"]) - exact
    return {
        "max_abs_z": float(np.max(np.abs(difference / np.asarray(summary["mcse_mean"])))),
        "critical_value_5pct_bonferroni": float(stats.norm.isf(0.025 / exact.size)),
    }


def _measure_pair(
    target: Target,
    algorithm: str,
    libraries: Sequence[str],
    num_chains: int,
    num_steps: int,
    seeds: Sequence[int],
) -> dict[str, Any]:
    """Time each library's runner over ``seeds`` (interleaved) and summarise its chains.

    The ESS and means come from the call with ``seeds[1]`` (the first steady call). The
    agreement of the two libraries is tested on independent runs: probkit's ``seeds[1]``
    against BlackJAX's ``seeds[2]``; the same-seed runs are also compared draw by draw.
    """
    runners = {
        library: chain_runner(library, algorithm, target, num_chains, num_steps)
        for library in libraries
    }
    analysis_seed = seeds[1] if len(seeds) > 1 else seeds[0]
    other_seed = seeds[2] if len(seeds) > 2 else None
    compile_seconds: dict[str, list[float]] = {library: [] for library in libraries}
    kept: dict[tuple[str, int], dict] = {}

    def timed(library):
        def call(seed):
            with CompileClock() as clock:
                out = jax.block_until_ready(runners[library](jax.random.key(seed)))
            compile_seconds[library].append(clock.seconds)
            if seed in (analysis_seed, other_seed):
                kept[library, seed] = out["positions"]
            return out["acceptance_rate"]

        return call

    timings = time_calls({library: timed(library) for library in libraries}, seeds)
    measured, summaries = {}, {}
    for library, timing in timings.items():
        rates = [float(np.mean(out)) for out in timing.pop("outputs")]
        summary = summaries[library] = chain_summary(np.asarray(kept[library, analysis_seed]))
        steady = timing["steady_median_s"]
        measured[library] = {
            **timing,
            "compile_s": compile_seconds[library][0],
            "compile_s_later_calls": compile_seconds[library][1:],
            "us_per_step_per_chain": 1e6 * steady / (num_steps * num_chains),
            "acceptance_rate": float(np.mean(rates)),
            "acceptance_rate_per_seed": rates,
            "ess_per_s": summary["ess_bulk_min"] / steady,
            **summary,
            "seeds": list(seeds),
            "analysis_seed": analysis_seed,
        }
        if target.exact_mean is not None:
            measured[library]["agreement_with_exact_mean"] = _exact_agreement(
                summary, target.exact_mean
            )
    entry: dict[str, Any] = {"libraries": measured}
    if {"probkit", "blackjax"} <= measured.keys():
        probkit, blackjax = measured["probkit"], measured["blackjax"]
        entry["ratios_probkit_over_blackjax"] = {
            key: probkit[key] / blackjax[key]
            for key in ("first_call_s", "compile_s", "steady_median_s", "steady_min_s", "ess_per_s")
        }
        same_seed = np.abs(
            np.asarray(kept["probkit", analysis_seed]) - np.asarray(kept["blackjax", analysis_seed])
        )
        entry["same_seed_max_abs_difference"] = float(same_seed.max())
        if other_seed is not None:
            independent = chain_summary(np.asarray(kept["blackjax", other_seed]))
            entry["agreement_probkit_blackjax"] = {
                **_agreement(summaries["probkit"], independent),
                "runs": f"probkit seed {analysis_seed} against BlackJAX seed {other_seed}",
            }
    return entry


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--repeats", type=int, help="steady-state calls per runner (default 5; smoke 2)"
    )
    parser.add_argument("--chains", type=int, help="chains per run (default 64; smoke 8)")
    parser.add_argument("--steps", type=int, help="steps per chain (default 2000; smoke 200)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    return parser.parse_args(argv)


def _target(name: str) -> Target:
    if name == "gaussian10":
        return correlated_gaussian(10, 0.7)
    if name == "gaussian100":
        return isotropic_gaussian(100)
    return logistic_regression()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``mhg_kernels.json`` and ``mhg_kernels.md``.

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
    skipped: dict[str, str] = {}
    for module in ("blackjax", "arviz"):
        _, reason = optional_import(module)
        if reason:
            skipped[module] = reason
    libraries = [name for name in args.libraries if name not in skipped]
    if "arviz" in skipped:
        libraries = []  # the ESS is the point of the comparison
    num_chains = args.chains or (8 if args.smoke else 64)
    num_steps = args.steps or (200 if args.smoke else 2000)
    repeats = args.repeats if args.repeats is not None else (2 if args.smoke else 5)
    seeds = list(range(1 + repeats))
    # Start the backend before any timed call, so that no library pays for it.
    jax.block_until_ready(jax.jit(lambda x: x + 1.0)(jnp.zeros(3)))
    results: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "machine": machine_info(),
        "dtype": "float64 (jax.enable_x64)",
        "settings": {
            "num_chains": num_chains,
            "num_steps": num_steps,
            "steady_repeats": repeats,
            "burn_in_fraction": BURN_IN_FRACTION,
        },
        "timing": (
            "first_call_s: first call of the jitted run (trace + compile + one run); compile_s: "
            "time JAX spent tracing, lowering and compiling during that call (monitoring spans); "
            "steady_median_s: median over the later calls, one seed each"
        ),
        "skipped": skipped,
        "targets": {},
    }
    for name in args.targets:
        target = _target(name)
        entry: dict[str, Any] = {
            "description": target.description,
            "dim": target.dim,
            "rwm_scale": float(target.rwm_scale),
            "mala_step_size_probkit": float(target.mala_step_size),
            "mala_step_size_blackjax": float(target.mala_step_size**2 / 2),
            "algorithms": {},
        }
        for algorithm in args.algorithms:
            if not libraries:
                continue
            print(f"[{NAME}] {name} {algorithm}: {', '.join(libraries)} ...", file=sys.stderr)
            entry["algorithms"][algorithm] = _measure_pair(
                target, algorithm, libraries, num_chains, num_steps, seeds
            )
        entry["load_average_after"] = list(os.getloadavg())
        results["targets"][name] = entry
    write_results(args.out, NAME, results, _markdown(results))
    return results


def _markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    settings = results["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        "# Random-walk Metropolis and MALA: probkit vs BlackJAX"
        + (" (smoke size)" if results["smoke"] else ""),
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX backend "
        f"{machine['jax_backend']}, float64. Versions: {versions}. Run {machine['date']}.",
        "",
        f"{settings['num_chains']} chains (vmapped) × {settings['num_steps']} steps in one jitted "
        f"`lax.scan`, every position kept. First call = trace + compile + one run; compile = "
        "the part of it JAX spent tracing, lowering and compiling; steady = median of "
        f"{settings['steady_repeats']} later calls (one seed each, libraries in turn). ESS = "
        "arviz bulk ESS, minimum over coordinates, after dropping the first "
        f"{results['settings']['burn_in_fraction']:.0%} of every chain, from one steady call. "
        "Ratio = probkit / BlackJAX (time above 1: probkit slower; ESS/s above 1: probkit "
        "better).",
    ]
    for reason_key, reason in results["skipped"].items():
        lines += ["", f"**Skipped {reason_key}:** {reason}"]
    for name, entry in results["targets"].items():
        lines += [
            "",
            f"## {name}: {entry['description']}",
            "",
            f"RWM scale {entry['rwm_scale']:.4g}; MALA ε = {entry['mala_step_size_probkit']:.4g} "
            f"(BlackJAX step size ε²/2 = {entry['mala_step_size_blackjax']:.4g}).",
            "",
        ]
        rows = []
        for algorithm, pair in entry["algorithms"].items():
            for library, s in pair["libraries"].items():
                rows.append(
                    [
                        algorithm,
                        library,
                        s["first_call_s"],
                        s["compile_s"],
                        s["steady_median_s"],
                        s["steady_min_s"],
                        s["us_per_step_per_chain"],
                        s["acceptance_rate"],
                        s["ess_bulk_min"],
                        s["ess_per_s"],
                    ]
                )
        lines.append(
            markdown_table(
                [
                    "kernel",
                    "library",
                    "first call (s)",
                    "compile (s)",
                    "steady median (s)",
                    "steady min (s)",
                    "µs / step / chain",
                    "acceptance",
                    "min bulk ESS",
                    "ESS / steady s",
                ],
                rows,
            )
        )
        for algorithm, pair in entry["algorithms"].items():
            if "ratios_probkit_over_blackjax" not in pair:
                continue
            ratio = pair["ratios_probkit_over_blackjax"]
            difference = pair["same_seed_max_abs_difference"]
            sanity = [
                "same seed: identical chains, draw for draw"
                if difference == 0
                else f"same seed: the chains differ by at most {difference:.2g}"
            ]
            if "agreement_probkit_blackjax" in pair:
                agree = pair["agreement_probkit_blackjax"]
                verdict = (
                    "agree within Monte Carlo error"
                    if agree["max_abs_z"] <= agree["critical_value_5pct_bonferroni"]
                    else "differ by more than the 5 % critical value"
                )
                sanity.append(
                    f"independent seeds: posterior means {verdict} (max |z| = "
                    f"{agree['max_abs_z']:.2f} over {entry['dim']} coordinates, 5 % Bonferroni "
                    f"critical value {agree['critical_value_5pct_bonferroni']:.2f})"
                )
            if "agreement_with_exact_mean" in pair["libraries"]["probkit"]:
                zs = [
                    f"{library} {s['agreement_with_exact_mean']['max_abs_z']:.2f}"
                    for library, s in pair["libraries"].items()
                ]
                sanity.append(f"max |z| against the exact mean: {', '.join(zs)}")
            lines += [
                "",
                f"**{algorithm}** ratio probkit / BlackJAX: steady {ratio['steady_median_s']:.3g} "
                f"(min {ratio['steady_min_s']:.3g}), compile {ratio['compile_s']:.3g}, first call "
                f"{ratio['first_call_s']:.3g}, ESS/s {ratio['ess_per_s']:.3g}. Sanity: "
                + "; ".join(sanity)
                + ".",
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
