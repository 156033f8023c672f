"""Slepian IIA evaluation time: θ and a density on 1e5 points, after compilation.

Everything a user asks of the IIA (the grid, the divisor, the Cramér root θ, the renewal solver
by FFT, and the interpolated density) is one jitted function of the covariance's parameter here,
so that the first call measures tracing and compilation and the later calls (a new parameter
each, hence a full recomputation) the steady state. There is no peer library to compare with:
no open-source code computes the IIA (WAFO computes the exact distribution, in Fortran, under
the GPL, and does not install on Python 3.11).

``python benchmarks/iia_evaluation.py [--smoke] [--out DIR]``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from _common import DEFAULT_OUT, machine_info, markdown_table, time_calls, write_results

from probkit.exceedance import SlepianIIA, sech_diffusion


def evaluation(points_per_mean: int, n_means: int, n_eval: int):
    """A jitted function of a seed: build the IIA of d = 2 + seed/1000 and evaluate it."""
    times = jnp.linspace(0.01, 40 * jnp.pi / jnp.sqrt(0.25), n_eval)

    @jax.jit
    def run(d):
        iia = SlepianIIA(sech_diffusion(d), points_per_mean=points_per_mean, n_means=n_means)
        return iia.theta(), iia.pdf(times)

    return lambda seed: run(2.0 + seed / 1000)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``iia_evaluation.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    configurations = (
        [(64, 24, 1000)]
        if args.smoke
        else [(256, 48, 100_000), (1024, 48, 100_000), (2048, 96, 100_000)]
    )
    seeds = range(3 if args.smoke else 11)
    rows, runs = [], []
    with jax.enable_x64(True), jax.default_device(jax.devices("cpu")[0]):
        for points_per_mean, n_means, n_eval in configurations:
            timing = time_calls({"iia": evaluation(points_per_mean, n_means, n_eval)}, list(seeds))[
                "iia"
            ]
            grid = points_per_mean * n_means
            timing.pop("outputs")
            runs.append({"grid_points": grid, "evaluation_points": n_eval, **timing})
            rows.append([grid, n_eval, timing["first_call_s"], timing["steady_median_s"] * 1e3])
        payload = {"machine": machine_info(), "runs": runs}
    markdown = "\n".join(
        [
            "# Slepian IIA evaluation (sech diffusion d = 2, θ + density, CPU float64)",
            "",
            markdown_table(
                ["grid points", "density points", "first call (s)", "steady median (ms)"], rows
            ),
        ]
    )
    write_results(args.out, "iia_evaluation", payload, markdown)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()
