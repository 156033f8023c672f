"""``probkit exceedance COVARIANCE``: the zero-level excursions of a preset covariance.

Rice intensities, the Slepian IIA (validity, persistence exponent, survival function) and, on
request, a Monte Carlo comparison, a figure and a JSON file. :mod:`probkit.cli` adds the
subcommand with :func:`add_parser` and runs it with :func:`run`; nothing else imports this.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probkit._errors import ProbkitError
from probkit._validate import check_output_path
from probkit._version import __version__

__all__ = ["add_parser", "run"]


# --- probkit exceedance ----------------------------------------------------------------------

_PRESETS: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    # name: (required parameters, optional parameters with the defaults of probkit.exceedance),
    # written out so that building the parser does not import JAX (a test compares them).
    "sech_diffusion": (("d",), {}),
    "gaussian": ((), {"length_scale": 1.0}),
    "matern": (("nu",), {"length_scale": 1.0}),
    "damped_cosine": (("omega",), {"length_scale": 1.0}),
    "cauchy": ((), {"length_scale": 1.0, "beta": 1.0}),
    "random_acceleration": ((), {}),
    "jonswap": (("peak_period",), {"gamma": 3.3}),
}

_DEFAULT_TIMES = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Default table times, in mean excursion lengths ``π/√λ₂``."""

_CURVE_POINTS = 401
"""Points of the IIA curves (θ-fit window, figure): a fixed shape, compiled once per family."""

_FIT_UPPER = 0.1
_FIT_COUNT = 50.0
"""The θ fit uses the IIA window where ``50/n_excursions <= S_T <= 0.1``."""


def add_parser(commands) -> None:
    """Add the ``exceedance`` subcommand to the ``probkit`` parser's subcommands."""
    names = ", ".join(_preset_signature(name) for name in _PRESETS)
    exceedance = commands.add_parser(
        "exceedance",
        help="zero-level excursions of a stationary Gaussian process: Rice, Slepian IIA, simulation",
        description="Summarise the lengths of the excursions above 0 of a stationary Gaussian "
        "process with a preset correlation function, in float64: Rice's crossing intensity and "
        "mean excursion length, the Slepian-model IIA (validity, persistence exponent θ, "
        "survival function S_T(t) = P(T > t), persistence P(X > 0 on [0, t])) and, with "
        f"--simulate, a Monte Carlo comparison. Covariances: {names}.",
    )
    exceedance.add_argument("covariance", metavar="COVARIANCE", help=f"a preset: {names}")
    exceedance.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the covariance (repeatable), e.g. --param d=2",
    )
    exceedance.add_argument(
        "--times",
        nargs="+",
        metavar="T",
        help="times of the S_T(t) table (space- or comma-separated; default 0.5, 1, 2, 4 and 8 "
        "mean excursion lengths)",
    )
    exceedance.add_argument(
        "--simulate",
        type=int,
        metavar="N_PATHS",
        help="also simulate N_PATHS paths (circulant embedding) and compare",
    )
    exceedance.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="grid steps per simulated path (default: a window of about 40 mean lengths)",
    )
    exceedance.add_argument(
        "--dt", type=float, metavar="DT", help="simulation grid step (default 0.05/√λ₂)"
    )
    exceedance.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    exceedance.add_argument(
        "--figure",
        type=Path,
        metavar="PATH",
        help="also draw the density and S_T (needs matplotlib: probkit[report])",
    )
    exceedance.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the numbers as JSON"
    )
    exceedance.add_argument(
        "--overwrite", action="store_true", help="replace an existing figure or JSON file"
    )


def _preset_signature(name: str) -> str:
    required, optional = _PRESETS[name]
    parts = [*required, *(f"{key}={value:g}" for key, value in optional.items())]
    return f"{name}({', '.join(parts)})"


def _parse_params(name: str, items: Sequence[str]) -> dict[str, float]:
    if name not in _PRESETS:
        accepted = ", ".join(_preset_signature(n) for n in _PRESETS)
        raise ProbkitError(f"unknown covariance {name!r}; accepted: {accepted}.")
    required, optional = _PRESETS[name]
    accepted = ", ".join((*required, *optional)) or "none"
    params: dict[str, float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ProbkitError(f"--param {item!r}: write NAME=VALUE, e.g. --param d=2.")
        if key not in required and key not in optional:
            raise ProbkitError(
                f"--param {key}: {name} has no parameter {key!r}; accepted: {accepted} "
                f"({_preset_signature(name)})."
            )
        if key in params:
            raise ProbkitError(f"--param {key} is given twice.")
        try:
            params[key] = float(text)
        except ValueError:
            raise ProbkitError(f"--param {key}={text!r}: the value must be a number.") from None
    missing = [key for key in required if key not in params]
    if missing:
        example = " ".join(f"--param {key}=VALUE" for key in missing)
        raise ProbkitError(f"{name} needs {example} ({_preset_signature(name)}).")
    return params


def _parse_times(items: Sequence[str] | None) -> list[float] | None:
    if items is None:
        return None
    times = []
    for item in items:
        for text in item.split(","):
            if not text.strip():
                continue
            try:
                value = float(text)
            except ValueError:
                raise ProbkitError(f"--times {text!r}: times must be numbers.") from None
            if not math.isfinite(value) or value < 0:
                raise ProbkitError(f"--times {text!r}: times must be finite and >= 0.")
            times.append(value)
    if not times:
        raise ProbkitError("--times needs at least one time.")
    return sorted(set(times))


def _check_exceedance_arguments(arguments: argparse.Namespace) -> None:
    # Everything that can be refused is refused before any computation.
    if arguments.simulate is None and (arguments.steps is not None or arguments.dt is not None):
        raise ProbkitError("--steps and --dt set up the simulation: pass --simulate N_PATHS too.")
    if arguments.simulate is not None and arguments.simulate < 1:
        raise ProbkitError(f"--simulate {arguments.simulate}: the number of paths must be >= 1.")
    if arguments.steps is not None and arguments.steps < 1:
        raise ProbkitError(f"--steps {arguments.steps}: must be >= 1.")
    if arguments.dt is not None and not (math.isfinite(arguments.dt) and arguments.dt > 0):
        raise ProbkitError(f"--dt {arguments.dt}: must be a positive number.")
    check_output_path("--figure", arguments.figure, arguments.overwrite)
    check_output_path("--json", arguments.json, arguments.overwrite)
    if arguments.figure is not None:
        try:
            from matplotlib.backend_bases import FigureCanvasBase
        except ImportError:
            raise ProbkitError(
                '--figure draws with matplotlib; install it with pip install "probkit[report]".'
            ) from None
        suffix = arguments.figure.suffix.lower().lstrip(".")
        formats = FigureCanvasBase.get_supported_filetypes()
        if suffix and suffix not in formats:
            raise ProbkitError(
                f"--figure {arguments.figure}: matplotlib cannot write {suffix!r} files; use one "
                f"of {', '.join(sorted(formats))}."
            )


@functools.cache
def _iia_curves():
    import jax

    @jax.jit
    def curves(iia, times, curve_times, density_times):
        # One compilation per covariance family for all of the IIA's values.
        return {
            "var": iia.var(),
            "sf": iia.sf(times),
            "persistence": iia.persistence(times),
            "curve_sf": iia.sf(curve_times),
            "density": iia.pdf(density_times),
        }

    return curves


def _number(value: Any) -> float | None:
    """A JSON number: ``None`` for NaN and infinities."""
    value = float(value)
    return value if math.isfinite(value) else None


def _numbers(values: Any) -> list[float | None]:
    import numpy as np

    return [_number(v) for v in np.asarray(values, dtype=float).ravel()]


def run(arguments: argparse.Namespace) -> int:
    """Run ``probkit exceedance`` and return its exit status."""
    import jax

    params = _parse_params(arguments.covariance, arguments.param)
    times = _parse_times(arguments.times)
    _check_exceedance_arguments(arguments)
    start = time.perf_counter()
    # The IIA divides small quantities near t = 0 and its tail spans many decades: float64,
    # for this command's run only.
    with jax.enable_x64(True):
        summary, figure_data = _exceedance_summary(arguments, params, times)
    print(_format_exceedance(summary))
    if arguments.figure is not None:
        with jax.enable_x64(True):
            _draw_exceedance_figure(arguments.figure, summary, figure_data)
        print(f"wrote {arguments.figure}", file=sys.stderr)
    if arguments.json is not None:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        print(f"wrote {arguments.json}", file=sys.stderr)
    print(f"total {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _exceedance_summary(
    arguments: argparse.Namespace, params: dict[str, float], times: list[float] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    from probkit import exceedance

    name = arguments.covariance
    covariance = getattr(exceedance, name)(**params)
    lam2 = float(covariance.lam2)
    lam4 = float(covariance.lam4)
    up = float(exceedance.crossing_intensity(covariance, 0.0, "up"))
    both = float(exceedance.crossing_intensity(covariance, 0.0, "both"))
    mean_length = math.pi / math.sqrt(lam2)  # mean_excursion_length(covariance) at level 0
    if times is None:
        times = [factor * mean_length for factor in _DEFAULT_TIMES]
    table_times = np.asarray(times, dtype=float)

    simulate = arguments.simulate is not None
    dt = arguments.dt if arguments.dt is not None else 0.05 / math.sqrt(lam2)
    n_steps = arguments.steps if arguments.steps is not None else math.ceil(40 * mean_length / dt)
    window = n_steps * dt
    curve_end = max(8 * mean_length, 1.05 * float(table_times.max()), window if simulate else 0)
    curve_times = np.linspace(0.0, curve_end, _CURVE_POINTS)
    density_times = np.linspace(0.0, 5 * mean_length, _CURVE_POINTS)

    print(f"probkit {__version__}: Slepian IIA of {covariance!r}", file=sys.stderr, flush=True)
    iia = exceedance.SlepianIIA(covariance)
    validity = iia.validity()
    tail = iia.tail()
    values = jax.device_get(
        _iia_curves()(
            iia, jnp.asarray(table_times), jnp.asarray(curve_times), jnp.asarray(density_times)
        )
    )
    variance = float(values["var"])
    summary: dict[str, Any] = {
        "probkit": __version__,
        "covariance": {
            "name": name,
            "params": {
                key: params.get(key, _PRESETS[name][1].get(key))
                for key in (*_PRESETS[name][0], *_PRESETS[name][1])
            },
            "repr": repr(covariance),
        },
        "lam2": _number(lam2),
        "lam4": _number(lam4),
        "rice": {
            "up_crossing_intensity": up,
            "crossing_intensity": both,
            "mean_excursion_length": mean_length,
        },
        "validity": {
            k: _number(v) if isinstance(v, float) else v
            for k, v in dataclasses.asdict(validity).items()
        },
        "tail": {
            "kind": tail.kind,
            "theta": _number(tail.theta) if tail.kind == "exponential" else None,
            "constant": _number(tail.constant),
            "exponent": _number(tail.exponent),
        },
        "iia": {
            "mean": float(iia.mean()),
            "std": _number(math.sqrt(variance)) if variance >= 0 else None,
        },
        "table": {
            "times": _numbers(table_times),
            "sf_iia": _numbers(values["sf"]),
            "persistence_iia": _numbers(values["persistence"]),
        },
        "simulation": None,
    }
    figure_data: dict[str, Any] = {
        "curve_times": curve_times,
        "curve_sf": np.asarray(values["curve_sf"]),
        "density_times": density_times,
        "density": np.asarray(values["density"]),
        "simulation": None,
    }
    if arguments.figure is not None:
        figure_data["rice_bound"] = np.asarray(
            exceedance.rice_bound_pdf(covariance, jnp.asarray(density_times))
        )
    if simulate:
        simulation = _simulate_and_compare(
            arguments, covariance, summary, figure_data, n_steps=n_steps, dt=dt
        )
        summary["simulation"] = simulation
    return summary, figure_data


def _simulate_and_compare(
    arguments: argparse.Namespace,
    covariance,
    summary: dict[str, Any],
    figure_data: dict[str, Any],
    *,
    n_steps: int,
    dt: float,
) -> dict[str, Any]:
    import jax
    import numpy as np

    from probkit.exceedance import simulate_excursions

    window = n_steps * dt
    table_times = np.asarray(summary["table"]["times"], dtype=float)
    inside = table_times <= window
    print(
        f"simulating {arguments.simulate} paths of {n_steps} steps (dt = {dt:.4g}, "
        f"window {window:.4g}), seed {arguments.seed}",
        file=sys.stderr,
        flush=True,
    )
    # At least 16 batches where the batches stay below simulate_excursions' default size (2^18
    # grid points on CPU, 2^25 on accelerators): the standard errors come from batch blocks.
    per_batch = (2**18 if jax.default_backend() == "cpu" else 2**25) // (n_steps + 1)
    batch_size = max(1, min(per_batch, -(-arguments.simulate // 16)))
    key = jax.random.key(arguments.seed)
    simulation = simulate_excursions(
        covariance,
        key,
        n_paths=arguments.simulate,
        n_steps=n_steps,
        dt=dt,
        batch_size=batch_size,
        persistence_times=table_times[inside] if inside.any() else None,
    )
    # Block standard errors cover the dependence between the excursions of one path; with
    # few blocks of paths they are unreliable, and the binomial ones are used.
    n_blocks = simulation.blocks.n_paths.shape[0]
    method = "blocks" if n_blocks >= 10 else "binomial"
    sf, sf_se = simulation.sf(table_times, standard_error=method)
    sf = np.where(inside, sf, np.nan)
    sf_se = np.where(inside, sf_se, np.nan)
    persistence = np.full(table_times.shape, np.nan)
    persistence_se = np.full(table_times.shape, np.nan)
    persistence[inside] = simulation.persistence
    persistence_se[inside] = simulation.persistence_se
    summary["table"].update(
        sf_sim=_numbers(sf),
        sf_sim_se=_numbers(sf_se),
        persistence_sim=_numbers(persistence),
        persistence_sim_se=_numbers(persistence_se),
    )
    fit, note = _fit_theta(simulation, summary, figure_data, jax.random.fold_in(key, 1))
    figure_data["simulation"] = simulation
    figure_data["sim_sf"] = (sf, sf_se)
    return {
        "n_paths": simulation.n_paths,
        "n_steps": n_steps,
        "dt": dt,
        "window": window,
        "seed": arguments.seed,
        "n_excursions": simulation.n_excursions,
        "crossing_intensity": _number(simulation.crossing_intensity),
        "crossing_intensity_se": _number(simulation.crossing_intensity_se),
        "mean_length": _number(simulation.mean_length),
        "mean_length_se": _number(simulation.mean_length_se),
        "std_length": _number(simulation.std_length),
        "standard_error": method,
        "theta_fit": fit,
        "theta_fit_note": note,
    }


def _fit_theta(simulation, summary, figure_data, key) -> tuple[dict[str, Any] | None, str | None]:
    """Fit θ where the IIA puts ``S_T`` between ``50/n_excursions`` and 0.1 (tail exponential)."""
    import numpy as np

    if summary["tail"]["kind"] != "exponential":
        return None, f"the IIA tail is {summary['tail']['kind']}, not exponential: no θ to fit"
    n = simulation.n_excursions
    floor = _FIT_COUNT / max(n, 1)
    t, sf = figure_data["curve_times"], figure_data["curve_sf"]
    below = np.flatnonzero(sf <= _FIT_UPPER)
    if floor >= _FIT_UPPER or below.size == 0:
        return None, (
            f"too few excursions ({n}) for a tail fit: it needs S_T between "
            f"{_FIT_COUNT:g}/n = {floor:.3g} and {_FIT_UPPER:g}; simulate more paths"
        )
    t0 = float(t[below[0]])
    past = np.flatnonzero((t > t0) & (sf < floor))
    t1 = float(t[past[0]]) if past.size else float(t[-1])
    t1 = min(t1, simulation.window / 2)  # longer excursions rarely fit in a path
    mean_length = summary["rice"]["mean_excursion_length"]
    if t1 - t0 < mean_length:
        return None, (
            f"the fit window [{t0:.4g}, {t1:.4g}] (S_T from {_FIT_UPPER:g} to {floor:.3g}, "
            "at most half a path) is shorter than a mean length; simulate more or longer paths"
        )
    try:
        fit = simulation.fit_theta((t0, t1), n_bootstrap=200, key=key)
    except ProbkitError as error:
        return None, f"the tail fit on [{t0:.4g}, {t1:.4g}] failed: {error}"
    return {
        "theta": _number(fit.theta),
        "lower": _number(fit.lower),
        "upper": _number(fit.upper),
        "standard_error": _number(fit.standard_error),
        "window": [float(fit.window[0]), float(fit.window[1])],
        "n_in_window": float(fit.n_in_window),
        "resample": fit.resample,
    }, None


def _fmt(value: float | None, spec: str = ".6g") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def _covariance_label(covariance: dict[str, Any]) -> str:
    arguments = ", ".join(f"{k}={v:g}" for k, v in covariance["params"].items())
    return f"{covariance['name']}({arguments})"


def _format_exceedance(summary: dict[str, Any]) -> str:
    covariance, rice, tail = summary["covariance"], summary["rice"], summary["tail"]
    validity, iia, simulation = summary["validity"], summary["iia"], summary["simulation"]
    lam4 = "inf" if summary["lam4"] is None else _fmt(summary["lam4"])
    lines = [
        f"covariance       {_covariance_label(covariance)}",
        f"lambda2, lambda4 {_fmt(summary['lam2'])}, {lam4}",
        f"Rice             zero up-crossings {_fmt(rice['up_crossing_intensity'])} per unit time, "
        f"both directions {_fmt(rice['crossing_intensity'])}",
        f"mean length      pi/sqrt(lambda2) = {_fmt(rice['mean_excursion_length'])}",
        f"IIA validity     {validity['status']}: {validity['message']}",
    ]
    if validity["status"] != "proven":
        lines.append(
            f"                 min density {_fmt(validity['min_density'], '.3g')} at t = "
            f"{_fmt(validity['argmin_density'], '.4g')}, negative mass "
            f"{_fmt(validity['negative_mass'], '.3g')}"
        )
    if tail["kind"] == "exponential":
        lines.append(
            f"IIA tail         exponential: theta = {_fmt(tail['theta'])}, C = "
            f"{_fmt(tail['constant'])}  (S_T(t) ~ C exp(-theta t))"
        )
    elif tail["kind"] == "power_law":
        lines.append(
            f"IIA tail         power law: alpha = {_fmt(tail['exponent'], '.4g')}, c = "
            f"{_fmt(tail['constant'], '.4g')}  (S_T(t) ~ c t^-alpha; no persistence exponent)"
        )
    else:
        lines.append("IIA tail         unresolved: the IIA grid is too short to classify it")
    if validity["status"] == "invalid":
        lines[-1] += "; unreliable: the IIA is not a distribution here"
    std = "inf" if iia["std"] is None else _fmt(iia["std"])
    lines.append(f"IIA mean, sd     {_fmt(iia['mean'])}, {std}")
    if simulation is not None:
        lines.append(
            f"simulation       {simulation['n_paths']} paths x {simulation['n_steps']} steps "
            f"(dt = {simulation['dt']:.4g}, seed {simulation['seed']}): "
            f"{simulation['n_excursions']} excursions"
        )
        lines.append(
            f"  crossings      {_fmt(simulation['crossing_intensity'])} +- "
            f"{_fmt(simulation['crossing_intensity_se'], '.2g')} per unit time "
            f"(Rice {_fmt(rice['crossing_intensity'])})"
        )
        lines.append(
            f"  mean length    {_fmt(simulation['mean_length'])} +- "
            f"{_fmt(simulation['mean_length_se'], '.2g')}, sd {_fmt(simulation['std_length'])}"
        )
        fit = simulation["theta_fit"]
        if fit is not None:
            lines.append(
                f"  theta fit      {_fmt(fit['theta'], '.4g')} [{_fmt(fit['lower'], '.4g')}, "
                f"{_fmt(fit['upper'], '.4g')}] (95%, {fit['resample']} bootstrap) on "
                f"[{fit['window'][0]:.4g}, {fit['window'][1]:.4g}], "
                f"{fit['n_in_window']:.0f} excursions"
            )
        else:
            lines.append(f"  theta fit      none: {simulation['theta_fit_note']}")
    lines.append("")
    header = ["t", "t/mean", "S_T IIA"]
    table = summary["table"]
    columns = [table["times"], [t / rice["mean_excursion_length"] for t in table["times"]]]
    columns.append(table["sf_iia"])
    if simulation is not None:
        header += ["S_T sim", "+- se"]
        columns += [table["sf_sim"], table["sf_sim_se"]]
    header.append("P(X>0 on [0,t]) IIA")
    columns.append(table["persistence_iia"])
    if simulation is not None:
        header += ["P sim", "+- se"]
        columns += [table["persistence_sim"], table["persistence_sim_se"]]
    rows = [
        [_fmt(v, ".4g" if "se" in h else ".6g") for h, v in zip(header, row, strict=True)]
        for row in zip(*columns, strict=True)
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    if simulation is not None:
        lines.append(
            f"(standard errors: {simulation['standard_error']}; '-': beyond the simulated window "
            "or undefined)"
        )
    return "\n".join(lines)


def _draw_exceedance_figure(path: Path, summary: dict[str, Any], data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mean_length = summary["rice"]["mean_excursion_length"]
    simulation = data["simulation"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    try:
        t = data["density_times"]
        left.plot(t, data["density"], label="Slepian IIA")
        left.plot(t, data["rice_bound"], "--", label="Rice first-order bound")
        top = float(np.nanmax(data["density"]))
        if simulation is not None:
            edges, density = _coarse_histogram(simulation, mean_length / 10, t[-1])
            if density.size:
                left.stairs(density, edges, label="simulation", color="k", alpha=0.6)
                top = max(top, float(np.nanmax(density)))
        left.set_ylim(min(0.0, float(np.nanmin(data["density"])) * 1.2), 1.3 * top)
        left.set_xlim(0, t[-1])
        left.set_xlabel("excursion length t")
        left.set_ylabel("density")
        left.set_title(_covariance_label(summary["covariance"]), fontsize=9)
        left.legend(fontsize=8)

        # S_T on the table's range, extended to the simulation's longest excursions.
        times = np.asarray(summary["table"]["times"], dtype=float)
        end = 1.05 * float(times.max()) if times.max() > 0 else 8 * mean_length
        curve_t, curve_sf = data["curve_times"], data["curve_sf"]
        sim_t = sim_line = None
        if simulation is not None:
            grid = curve_t[curve_t <= simulation.window]
            line, _ = simulation.sf(grid)
            keep = np.isfinite(line) & (line > 0)
            sim_t, sim_line = grid[keep], line[keep]
            if sim_t.size:
                end = max(end, float(sim_t[-1]))
        shown = (curve_t <= end) & (curve_sf > 0)
        right.semilogy(curve_t[shown], curve_sf[shown], label="Slepian IIA")
        lowest = [float(curve_sf[shown].min())] if shown.any() else []
        if simulation is not None:
            sf, se = data["sim_sf"]
            points = np.isfinite(sf) & (sf > 0)
            right.errorbar(
                times[points],
                sf[points],
                yerr=np.nan_to_num(se[points]),
                fmt="o",
                color="k",
                ms=4,
                capsize=3,
                label="simulation",
            )
            right.semilogy(sim_t, sim_line, color="k", lw=0.8, alpha=0.5)
            lowest += [float(v) for v in sf[points]]
        if lowest:
            right.set_ylim(bottom=0.3 * min(lowest))
        right.set_xlim(0, end)
        right.set_xlabel("t")
        right.set_ylabel("S_T(t) = P(T > t)")
        status = summary["validity"]["status"]
        right.set_title(f"IIA {status}; tail {summary['tail']['kind']}", fontsize=9)
        right.legend(fontsize=8)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)


def _coarse_histogram(simulation, width: float, end: float):
    """The simulated density merged into bins of about ``width`` on ``[0, end]``."""
    import numpy as np

    histogram = simulation.pdf()
    edges, density = histogram.bin_edges, histogram.density
    if not np.all(np.isfinite(density)):
        return edges[:1], density[:0]
    group = max(1, round(width / float(edges[1] - edges[0])))
    keep = np.flatnonzero(edges[1:] <= end)
    n = (keep.size // group) * group
    if n == 0:
        return edges[:1], density[:0]
    mass = (density * np.diff(edges))[:n].reshape(-1, group).sum(axis=1)
    merged = edges[: n + 1 : group]
    return merged, mass / np.diff(merged)
