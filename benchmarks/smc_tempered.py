"""Adaptive tempered SMC: probkit's ``tempered_smc`` against BlackJAX's ``adaptive_tempered_smc``.

Both libraries run the same model, the same number of particles, the same initial particles
(drawn from the prior with the same key), systematic resampling at every step, the same target
ESS fraction for the adaptive schedule and the same number of random-walk Metropolis steps per
SMC step. The random-walk proposal is ``x + L ξ`` with ``L Lᵀ = (2.38² / d) Σ̂``, ``Σ̂`` the
weighted covariance of the particle cloud, in both: it is probkit's ``move="random_walk"``, and
BlackJAX's additive-step random walk retuned after every step by ``inner_kernel_tuning``.

Problems
--------
``gaussian``
    ``x ~ N(0, I₂)``, likelihood ``N(x; 0, Σ)`` with a fixed ``Σ``; ``log Z = log N(0; 0, I + Σ)``.
``logistic``
    Bayesian logistic regression on scikit-learn's breast-cancer data (569 rows, 30 standardised
    features and an intercept, ``β ~ N(0, I₃₁)``). ``log Z`` has no closed form: the reference is
    computed by adaptive importance sampling in NumPy (see :func:`logistic_reference`), which
    shares no code with either library, and its Monte Carlo standard error is reported.

Run ``python benchmarks/smc_tempered.py`` (``--smoke`` for a tiny size); the results go to
``benchmarks/results/smc_tempered.{json,md}``. Everything runs on the CPU in float64.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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
    accuracy,
    machine_info,
    markdown_table,
    optional_import,
    time_calls,
    write_results,
)
from scipy import optimize, special, stats

__all__ = [
    "Problem",
    "blackjax_runner",
    "breast_cancer_design",
    "gaussian_problem",
    "logistic_problem",
    "logistic_reference",
    "main",
    "probkit_runner",
]

NAME = "smc_tempered"
LIBRARIES = ("probkit", "blackjax")
PROBLEMS = ("gaussian", "logistic")
GAUSSIAN_LIKELIHOOD_COVARIANCE = ((0.02, 0.01), (0.01, 0.05))
"""``Σ`` of the Gaussian problem: a narrow likelihood, so that tempering takes several steps."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """A tempering problem with prior ``N(0, I_d)`` and a reference ``log Z``.

    Attributes
    ----------
    name : str
        A short name.
    description : str
        One line about the model.
    dim : int
        ``d``.
    log_prior : callable
        ``log p(x)`` of one particle (the standard normal density).
    log_likelihood : callable
        ``log L(x)`` of one particle.
    log_evidence : float
        The reference ``log Z``.
    reference : dict
        How ``log Z`` was obtained and how precise it is.
    """

    name: str
    description: str
    dim: int
    log_prior: Callable[[jax.Array], jax.Array]
    log_likelihood: Callable[[jax.Array], jax.Array]
    log_evidence: float
    reference: dict


def _standard_normal_logpdf(x: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(x**2) - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi)


def gaussian_problem() -> Problem:
    """The 2-D Gaussian problem: ``x ~ N(0, I)``, likelihood ``N(x; 0, Σ)``.

    Returns
    -------
    Problem
        With the exact ``log Z = log N(0; 0, I + Σ)``.
    """
    covariance = np.asarray(GAUSSIAN_LIKELIHOOD_COVARIANCE)
    dim = covariance.shape[0]
    precision = jnp.asarray(np.linalg.inv(covariance))
    constant = -0.5 * float(np.linalg.slogdet(covariance)[1]) - 0.5 * dim * np.log(2 * np.pi)

    # The quadratic form through the precision matrix: a per-particle triangular solve is much
    # slower inside XLA-CPU loops and would dominate both libraries' times.
    def log_likelihood(x):
        return -0.5 * x @ precision @ x + constant

    exact = stats.multivariate_normal(np.zeros(dim), np.eye(dim) + covariance).logpdf(np.zeros(dim))
    return Problem(
        name="gaussian",
        description=f"2-D Gaussian: prior N(0, I), likelihood N(x; 0, Σ), Σ = {covariance.tolist()}",
        dim=dim,
        log_prior=_standard_normal_logpdf,
        log_likelihood=log_likelihood,
        log_evidence=float(exact),
        reference={"method": "exact: log N(0; 0, I + Σ)", "standard_error": 0.0},
    )


def breast_cancer_design() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's breast-cancer data: standardised features with an intercept column first.

    Returns
    -------
    X : ndarray, shape (569, 31)
    y : ndarray, shape (569,)
        The 0/1 labels.
    """
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    design = np.hstack([np.ones((features.shape[0], 1)), features])
    return design, labels.astype(float)


def _log_joint_numpy(betas: np.ndarray, design: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log p(β) + log L(β)`` for rows of ``betas``, in NumPy float64."""
    eta = betas @ design.T
    log_likelihood = (eta * labels).sum(-1) - np.logaddexp(0.0, eta).sum(-1)
    dim = betas.shape[-1]
    return log_likelihood - 0.5 * (betas**2).sum(-1) - 0.5 * dim * np.log(2 * np.pi)


def _multivariate_t(rng, mean, covariance, df, size):
    """Draws from a multivariate t and their log densities (NumPy)."""
    dim = mean.size
    chol = np.linalg.cholesky(covariance)
    normal = rng.standard_normal((size, dim))
    scale = np.sqrt(rng.chisquare(df, size) / df)
    draws = mean + (normal @ chol.T) / scale[:, None]
    whitened = np.linalg.solve(chol, (draws - mean).T).T
    log_density = (
        special.gammaln((df + dim) / 2)
        - special.gammaln(df / 2)
        - 0.5 * dim * np.log(df * np.pi)
        - np.log(np.diag(chol)).sum()
        - 0.5 * (df + dim) * np.log1p((whitened**2).sum(-1) / df)
    )
    return draws, log_density


def logistic_reference(
    design: np.ndarray,
    labels: np.ndarray,
    *,
    num_draws: int = 1_000_000,
    adaptation_draws: int = 100_000,
    adaptation_rounds: int = 3,
    df: float = 5.0,
    seed: int = 20240601,
    batch: int = 50_000,
) -> dict[str, Any]:
    """``log Z`` of the logistic regression by adaptive importance sampling (NumPy, float64).

    A multivariate t proposal (``df`` degrees of freedom) starts at the Laplace approximation
    (mode found by Newton-CG, scale the inverse Hessian) and is refitted ``adaptation_rounds``
    times to the importance-weighted mean and covariance (population Monte Carlo); the final
    proposal is then used with ``num_draws`` fresh draws. ``Ẑ`` is the mean importance weight,
    unbiased for ``Z``; the standard error of ``log Ẑ`` is ``sd(w) / (mean(w) sqrt(n))`` by the
    delta method.

    Parameters
    ----------
    design, labels : ndarray
        From :func:`breast_cancer_design`.
    num_draws : int
        Draws of the final importance-sampling estimate.
    adaptation_draws : int
        Draws per adaptation round.
    adaptation_rounds : int
        Proposal refits.
    df : float
        Degrees of freedom of the t proposal.
    seed : int
        NumPy seed.
    batch : int
        Draws evaluated at once.

    Returns
    -------
    dict
        ``log_evidence``, ``standard_error``, ``ess_fraction``, ``laplace_log_evidence``,
        ``method`` and the settings.
    """
    dim = design.shape[1]

    def negative(beta):
        return -_log_joint_numpy(beta[None], design, labels)[0]

    def gradient(beta):
        return -(design.T @ (labels - special.expit(design @ beta)) - beta)

    def hessian(beta):
        p = special.expit(design @ beta)
        return design.T @ (design * (p * (1 - p))[:, None]) + np.eye(dim)

    mode = optimize.minimize(
        negative, np.zeros(dim), jac=gradient, hess=hessian, method="Newton-CG", tol=1e-12
    ).x
    precision = hessian(mode)
    laplace = (
        -negative(mode) + 0.5 * dim * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(precision)[1]
    )
    rng = np.random.default_rng(seed)

    def weights(mean, covariance, size):
        draws, log_q, log_w = [], [], []
        for start in range(0, size, batch):
            chunk, log_density = _multivariate_t(
                rng, mean, covariance, df, min(batch, size - start)
            )
            draws.append(chunk)
            log_q.append(log_density)
            log_w.append(_log_joint_numpy(chunk, design, labels) - log_density)
        return np.concatenate(draws), np.concatenate(log_w)

    mean, covariance = mode, np.linalg.inv(precision)
    for _ in range(adaptation_rounds):
        draws, log_w = weights(mean, covariance, adaptation_draws)
        normalised = np.exp(log_w - special.logsumexp(log_w))
        mean = normalised @ draws
        centred = draws - mean
        covariance = (centred * normalised[:, None]).T @ centred
    _, log_w = weights(mean, covariance, num_draws)
    shift = log_w.max()
    w = np.exp(log_w - shift)
    return {
        "method": (
            f"adaptive importance sampling (NumPy): multivariate t (df={df:g}) proposal started "
            f"at the Laplace approximation and refitted {adaptation_rounds} times to the "
            f"weighted moments of {adaptation_draws} draws, then {num_draws} fresh draws"
        ),
        "log_evidence": float(shift + np.log(w.mean())),
        "standard_error": float(w.std() / (w.mean() * np.sqrt(w.size))),
        "ess_fraction": float(w.sum() ** 2 / (w**2).sum() / w.size),
        "laplace_log_evidence": float(laplace),
        "num_draws": num_draws,
        "seed": seed,
    }


def logistic_problem(reference_draws: int = 1_000_000, adaptation_draws: int = 100_000) -> Problem:
    """Bayesian logistic regression on the breast-cancer data, prior ``N(0, I)``.

    Parameters
    ----------
    reference_draws, adaptation_draws : int
        Sizes of the importance-sampling reference (:func:`logistic_reference`).

    Returns
    -------
    Problem
    """
    design, labels = breast_cancer_design()
    reference = logistic_reference(
        design, labels, num_draws=reference_draws, adaptation_draws=adaptation_draws
    )
    design_j, labels_j = jnp.asarray(design), jnp.asarray(labels)

    def log_likelihood(beta):
        eta = design_j @ beta
        return jnp.sum(labels_j * eta - jnp.logaddexp(0.0, eta))

    return Problem(
        name="logistic",
        description=(
            f"logistic regression, breast-cancer data ({design.shape[0]} rows, "
            f"{design.shape[1] - 1} standardised features + intercept), prior N(0, I)"
        ),
        dim=design.shape[1],
        log_prior=_standard_normal_logpdf,
        log_likelihood=log_likelihood,
        log_evidence=reference["log_evidence"],
        reference=reference,
    )


def _initial_particles(key: jax.Array, num_particles: int, dim: int) -> jax.Array:
    return jax.random.normal(key, (num_particles, dim))


def probkit_runner(
    problem: Problem,
    num_particles: int,
    num_mcmc_steps: int,
    target_ess: float,
    max_steps: int = 500,
    *,
    jit: bool = True,
) -> Callable[[jax.Array], dict]:
    """``key -> {log_evidence, num_steps, completed}`` running probkit's adaptive ``tempered_smc``.

    Parameters
    ----------
    problem : Problem
        The model.
    num_particles, num_mcmc_steps, target_ess, max_steps
        The sampler's settings (random-walk move, systematic resampling at every step).
    jit : bool
        Wrap the whole run in ``jax.jit`` (False: call ``tempered_smc`` as is).
    """
    from probkit.inference.smc import tempered_smc

    def run(key):
        key_init, key_smc = jax.random.split(key)
        particles = _initial_particles(key_init, num_particles, problem.dim)
        result = tempered_smc(
            key_smc,
            problem.log_prior,
            problem.log_likelihood,
            particles,
            target_ess=target_ess,
            move="random_walk",
            num_mcmc_steps=num_mcmc_steps,
            resample_threshold=None,
            resampling="systematic",
            max_steps=max_steps,
        )
        return {
            "log_evidence": result.log_evidence,
            "num_steps": result.num_steps,
            "completed": result.completed,
        }

    return jax.jit(run) if jit else run


def _random_walk_factor(particles: jax.Array, weights: jax.Array) -> jax.Array:
    """Cholesky factor of ``(2.38² / d) Σ̂`` with the weighted covariance ``Σ̂``, as probkit's move.

    Regularised exactly as ``probkit.inference.smc.moves``: a relative jitter of ``1e-8``.
    """
    weights = weights / jnp.sum(weights)
    mean = weights @ particles
    centred = particles - mean
    covariance = (centred * weights[:, None]).T @ centred
    dim = covariance.shape[0]
    level = jnp.maximum(jnp.trace(covariance) / dim, jnp.finfo(covariance.dtype).tiny)
    covariance = covariance + 1e-8 * level * jnp.eye(dim, dtype=covariance.dtype)
    return jnp.linalg.cholesky(covariance * 2.38**2 / dim)


def blackjax_runner(
    problem: Problem,
    num_particles: int,
    num_mcmc_steps: int,
    target_ess: float,
    max_steps: int = 500,
) -> Callable[[jax.Array], dict]:
    """``key -> {log_evidence, num_steps, completed}`` running BlackJAX's adaptive tempered SMC.

    ``blackjax.adaptive_tempered_smc`` with systematic resampling and an additive-step
    random-walk Metropolis kernel whose factor ``L`` is recomputed from the weighted particles
    after every step (``blackjax.inner_kernel_tuning``), driven by a ``lax.while_loop`` until the
    tempering exponent reaches 1; the whole run is jitted.

    Parameters
    ----------
    problem : Problem
        The model.
    num_particles, num_mcmc_steps, target_ess, max_steps
        The sampler's settings.
    """
    import blackjax
    from blackjax.mcmc import random_walk

    additive_step = random_walk.build_additive_step()

    def mcmc_step(key, state, logdensity_fn, factor):
        return additive_step(key, state, logdensity_fn, random_walk.normal(factor))

    def update_parameters(key, state, info):
        del key, info
        return {"factor": _random_walk_factor(state.particles, state.weights)[None]}

    def run(key):
        key_init, key_smc = jax.random.split(key)
        particles = _initial_particles(key_init, num_particles, problem.dim)
        uniform = jnp.full((num_particles,), 1.0 / num_particles, particles.dtype)
        sampler = blackjax.inner_kernel_tuning(
            smc_algorithm=blackjax.adaptive_tempered_smc,
            logprior_fn=problem.log_prior,
            loglikelihood_fn=problem.log_likelihood,
            mcmc_step_fn=mcmc_step,
            mcmc_init_fn=random_walk.init,
            resampling_fn=blackjax.smc.resampling.systematic,
            mcmc_parameter_update_fn=update_parameters,
            initial_parameter_value={"factor": _random_walk_factor(particles, uniform)[None]},
            num_mcmc_steps=num_mcmc_steps,
            target_ess=target_ess,
        )
        state = sampler.init(particles)
        inner = state.sampler_state
        state = state._replace(
            sampler_state=inner._replace(tempering_param=jnp.zeros((), particles.dtype))
        )

        def cond(carry):
            state, steps, _, _ = carry
            return (state.sampler_state.tempering_param < 1.0) & (steps < max_steps)

        def body(carry):
            state, steps, log_evidence, key = carry
            key, step_key = jax.random.split(key)
            state, info = sampler.step(step_key, state)
            return state, steps + 1, log_evidence + info.log_likelihood_increment, key

        init = (state, jnp.int32(0), jnp.zeros((), particles.dtype), key_smc)
        state, steps, log_evidence, _ = jax.lax.while_loop(cond, body, init)
        return {
            "log_evidence": log_evidence,
            "num_steps": steps,
            "completed": state.sampler_state.tempering_param >= 1.0,
        }

    return jax.jit(run)


def _measure(runners: dict[str, Callable], seeds: Sequence[int], reference: float) -> dict:
    timings = time_calls(
        {name: (lambda seed, run=run: run(jax.random.key(seed))) for name, run in runners.items()},
        seeds,
    )
    measured = {}
    for name, timing in timings.items():
        outputs = timing.pop("outputs")
        estimates = [float(out["log_evidence"]) for out in outputs]
        steps = [int(out["num_steps"]) for out in outputs]
        mean_steps = float(np.mean(steps))
        measured[name] = {
            **timing,
            "steady_ms_per_smc_step": 1e3 * timing["steady_median_s"] / mean_steps,
            "mean_num_steps": mean_steps,
            "all_completed": bool(all(bool(out["completed"]) for out in outputs)),
            "log_evidence_estimates": estimates,
            "num_steps": steps,
            "seeds": list(seeds),
            **accuracy(estimates, reference),
        }
        # Var(log Ẑ) × time: the variance one second of computing would buy, inverted (lower is
        # better); it weighs a cheaper, noisier run against a dearer, more precise one.
        measured[name]["variance_times_time"] = (
            measured[name]["sd"] ** 2 * measured[name]["steady_median_s"]
        )
    return measured


def _time_eager(problem, settings, seeds: Sequence[int]) -> dict[str, Any]:
    """probkit called without ``jax.jit``, as a user might: every call traces and compiles again."""
    runner = probkit_runner(problem, **settings, jit=False)
    times = []
    for seed in seeds:
        start = time.perf_counter()
        out = runner(jax.random.key(seed))
        out["log_evidence"].block_until_ready()
        times.append(time.perf_counter() - start)
    return {"call_times_s": times, "seeds": list(seeds)}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--seeds",
        type=int,
        help="seeds per library and problem (default 100 gaussian, 40 logistic)",
    )
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=list(PROBLEMS))
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument(
        "--no-eager", action="store_true", help="skip timing un-jitted probkit calls"
    )
    return parser.parse_args(argv)


def _settings(problem: str, smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"num_particles": 64, "num_mcmc_steps": 2, "target_ess": 0.5}
    if problem == "gaussian":
        return {"num_particles": 1000, "num_mcmc_steps": 5, "target_ess": 0.5}
    return {"num_particles": 2000, "num_mcmc_steps": 10, "target_ess": 0.5}


def _num_seeds(problem: str, args: argparse.Namespace) -> int:
    if args.seeds:
        return args.seeds
    if args.smoke:
        return 3
    return 100 if problem == "gaussian" else 40


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``smc_tempered.json`` and ``smc_tempered.md``.

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
    _, reason = optional_import("blackjax")
    if reason and "blackjax" in args.libraries:
        skipped["blackjax"] = reason
    libraries = [name for name in args.libraries if name not in skipped]
    results: dict[str, Any] = {
        "benchmark": NAME,
        "smoke": bool(args.smoke),
        "machine": machine_info(),
        "timing": (
            "first_call_s: first call of the jitted run (trace + compile + one run); "
            "steady_median_s: median over the later calls, one seed each"
        ),
        "skipped": skipped,
        "problems": {},
    }
    for name in args.problems:
        if name == "logistic":
            _, reason = optional_import("sklearn")
            if reason:
                skipped["logistic"] = reason
                continue
            problem = logistic_problem(
                reference_draws=20_000 if args.smoke else 1_000_000,
                adaptation_draws=5_000 if args.smoke else 100_000,
            )
        else:
            problem = gaussian_problem()
        settings = _settings(name, args.smoke)
        seeds = list(range(_num_seeds(name, args)))
        entry: dict[str, Any] = {
            "description": problem.description,
            "dim": problem.dim,
            "reference_log_evidence": problem.log_evidence,
            "reference": problem.reference,
            "settings": {**settings, "resampling": "systematic, every step", "move": "RWM"},
            "libraries": {},
        }
        runners = {
            library: (probkit_runner if library == "probkit" else blackjax_runner)(
                problem, **settings
            )
            for library in libraries
        }
        print(f"[{NAME}] {name}: {', '.join(libraries)} ...", file=sys.stderr, flush=True)
        entry["libraries"] = _measure(runners, seeds, problem.log_evidence) if runners else {}
        if "probkit" in libraries and not args.smoke and not args.no_eager:
            print(f"[{NAME}] {name}: probkit without jit ...", file=sys.stderr, flush=True)
            entry["probkit_unjitted"] = _time_eager(problem, settings, seeds[:2])
        entry["load_average_after"] = list(os.getloadavg())
        timed = entry["libraries"]
        if {"probkit", "blackjax"} <= timed.keys():
            entry["steady_ratio_probkit_over_blackjax"] = (
                timed["probkit"]["steady_median_s"] / timed["blackjax"]["steady_median_s"]
            )
            entry["per_step_ratio_probkit_over_blackjax"] = (
                timed["probkit"]["steady_ms_per_smc_step"]
                / timed["blackjax"]["steady_ms_per_smc_step"]
            )
        results["problems"][name] = entry
    write_results(args.out, NAME, results, _markdown(results))
    return results


def _markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        "# Adaptive tempered SMC: probkit vs BlackJAX"
        + (" (smoke size)" if results["smoke"] else ""),
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPU cores, JAX backend "
        f"{machine['jax_backend']}, float64. Versions: {versions}. Run {machine['date']}.",
        "",
        "First call = trace + compile + one run of the jitted sampler; steady = median wall time "
        "of the later calls (one seed each), the libraries called in turn. Ratio = probkit / "
        "BlackJAX (above 1: probkit slower). sd² × steady s = Var(log Ẑ) times the steady run "
        "time, the cost of a given precision (lower is better).",
    ]
    for reason_key, reason in results["skipped"].items():
        lines += ["", f"**Skipped {reason_key}:** {reason}"]
    for name, entry in results["problems"].items():
        settings = entry["settings"]
        reference = entry["reference"]
        lines += [
            "",
            f"## {name}: {entry['description']}",
            "",
            f"Reference log Z = {entry['reference_log_evidence']:.4f} "
            f"(± {reference['standard_error']:.1g}; {reference['method']}). "
            f"{settings['num_particles']} particles, {settings['num_mcmc_steps']} RWM steps per "
            f"SMC step, target ESS {settings['target_ess']}, systematic resampling every step.",
            "",
        ]
        rows = []
        for library, stats_ in entry["libraries"].items():
            rows.append(
                [
                    library,
                    stats_["first_call_s"],
                    stats_["steady_median_s"],
                    stats_["steady_min_s"],
                    stats_["steady_ms_per_smc_step"],
                    stats_["mean_num_steps"],
                    stats_["mean_abs_error"],
                    f"{stats_['bias']:.3g} ± {stats_['bias_standard_error']:.2g}",
                    stats_["sd"],
                    stats_["variance_times_time"],
                    stats_["num_seeds"],
                ]
            )
        lines.append(
            markdown_table(
                [
                    "library",
                    "first call (s)",
                    "steady median (s)",
                    "steady min (s)",
                    "median ms / SMC step",
                    "mean # SMC steps",
                    "mean abs(log Ẑ − log Z)",
                    "bias ± se",
                    "sd(log Ẑ)",
                    "sd² × steady s",
                    "seeds",
                ],
                rows,
            )
        )
        if "steady_ratio_probkit_over_blackjax" in entry:
            lines += [
                "",
                f"Steady-state time ratio probkit / BlackJAX: "
                f"{entry['steady_ratio_probkit_over_blackjax']:.3g} per run, "
                f"{entry['per_step_ratio_probkit_over_blackjax']:.3g} per SMC step.",
            ]
        if "probkit_unjitted" in entry:
            times = ", ".join(f"{t:.3g}" for t in entry["probkit_unjitted"]["call_times_s"])
            lines += [
                "",
                f"probkit `tempered_smc` called without `jax.jit`: {times} s per call "
                "(it traces and compiles on every call).",
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
