"""Helpers shared by the benchmarks: timing, machine description, JSON and markdown output.

Timing convention
-----------------
A jitted function is timed on its first call (tracing, compilation and one run: what a user
waits for the first time) and then on every later call with a fresh seed; the steady-state time
is the median of those later calls. Every call is synchronised with ``block_until_ready``, and
the libraries compared are called in turn, seed after seed (:func:`time_calls`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "COMPILE_EVENTS",
    "DEFAULT_OUT",
    "CompileClock",
    "accuracy",
    "load_benchmark",
    "machine_info",
    "markdown_table",
    "optional_import",
    "time_calls",
    "uci_folder",
    "write_results",
]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
"""Where the benchmarks write their results unless told otherwise (``benchmarks/results``)."""


def load_benchmark(name: str) -> Any:
    """Import ``benchmarks/<name>.py`` as a module (the smoke tests call its ``main``).

    The module is registered in ``sys.modules`` first, since dataclasses look their module up
    there. ``benchmarks/`` must be on ``sys.path`` for the script's own ``_common`` import.
    """
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", Path(__file__).resolve().parent / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def uci_folder() -> Path | None:
    """The folder of the UCI clustering tables (``PROBKIT_UCI``), or None when there is none.

    The same search as for the SIPU sets (:func:`probkit.theory.checks.cluster.clustbench_folder`);
    here rather than in the library because only ``cluster_uci.py`` and its smoke test read
    these tables.
    """
    # Imported on use: the checks module registers the cluster checks, which the other
    # benchmarks do not load.
    from probkit.theory.checks.cluster import clustbench_folder

    return clustbench_folder("uci", "PROBKIT_UCI", "wine.data.gz")


def optional_import(name: str) -> tuple[Any, str | None]:
    """Import a peer library if it is installed.

    Parameters
    ----------
    name : str
        The module name.

    Returns
    -------
    module : module or None
        The module, or None when it cannot be imported.
    reason : str or None
        Why it is unavailable (None when it imported).
    """
    try:
        return importlib.import_module(name), None
    except ImportError as error:
        return None, f"{name} is not installed ({error}); install it with pip install -e '.[bench]'"


def _block(value: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda leaf: leaf.block_until_ready() if hasattr(leaf, "block_until_ready") else leaf,
        value,
    )


def time_calls(fns: Mapping[str, Callable[[int], Any]], seeds: Sequence[int]) -> dict[str, dict]:
    """Time several functions of a seed, interleaved, each call to completion.

    Each function is first called once with ``seeds[0]`` (for a jitted function: tracing,
    compilation and one run). The later seeds are then run by every function in turn, the order
    reversed from one seed to the next, so that a load that comes and goes on a shared machine
    falls on all of them alike.

    Parameters
    ----------
    fns : mapping of str to callable
        ``fn(seed) -> pytree of arrays`` by name.
    seeds : sequence of int
        One call per seed and function.

    Returns
    -------
    dict
        By name: ``first_call_s``, ``steady_median_s``, ``steady_min_s`` and ``steady_times_s``
        (the later calls), ``compile_estimate_s`` (first call minus the steady median) and
        ``outputs`` (each call's result as NumPy, in the order of ``seeds``).
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list[Any]] = {name: [] for name in names}

    def call(name, seed):
        start = time.perf_counter()
        output = _block(fns[name](seed))
        times[name].append(time.perf_counter() - start)
        outputs[name].append(jax.tree_util.tree_map(np.asarray, output))

    for name in names:
        call(name, seeds[0])
    for index, seed in enumerate(seeds[1:]):
        for name in names if index % 2 == 0 else names[::-1]:
            call(name, seed)
    results = {}
    for name in names:
        steady = times[name][1:] or times[name]
        median = statistics.median(steady)
        results[name] = {
            "first_call_s": times[name][0],
            "steady_median_s": median,
            "steady_min_s": min(steady),
            "steady_times_s": steady,
            "compile_estimate_s": max(times[name][0] - median, 0.0),
            "outputs": outputs[name],
        }
    return results


def accuracy(estimates: Sequence[float], reference: float) -> dict[str, float]:
    """Summaries of ``log Ẑ`` estimates against a reference ``log Z``.

    Parameters
    ----------
    estimates : sequence of float
        One ``log Ẑ`` per seed.
    reference : float
        ``log Z``.

    Returns
    -------
    dict
        ``mean_abs_error`` (mean ``|log Ẑ - log Z|``), ``bias`` (mean ``log Ẑ - log Z``),
        ``bias_standard_error`` (``sd / sqrt(num_seeds)``), ``sd`` (sample standard deviation of
        ``log Ẑ``), ``rmse`` and ``num_seeds``.
    """
    values = np.asarray(estimates, dtype=float)
    errors = values - reference
    sd = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return {
        "mean_abs_error": float(np.mean(np.abs(errors))),
        "bias": float(np.mean(errors)),
        "bias_standard_error": sd / np.sqrt(values.size),
        "sd": sd,
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "num_seeds": int(values.size),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_state() -> dict[str, Any] | None:
    """The commit of the checkout the benchmark runs from, and whether its library code differs."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "probkit", "inference", "theory"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "uncommitted_library_changes": [c for c in changed if c.strip()]}


def machine_info() -> dict[str, Any]:
    """The machine, the library versions and the probkit checkout the numbers were measured with."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(device) for device in jax.devices()],
        "jax_device_kinds": sorted({device.device_kind for device in jax.devices()}),
        "device_used": str(jax.config.jax_default_device or jax.devices()[0]),
        "x64": bool(jax.config.jax_enable_x64),
        "versions": {
            name: _version(name)
            for name in ("probkit", "jax", "jaxlib", "numpyro", "numpy", "blackjax", "scikit-learn")
        },
        "probkit_checkout": _git_state(),
        "load_average_1_5_15_min": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats are written with 4 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if np.isnan(value) else f"{value:.4g}"
        return "n/a" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path | str, name: str, payload: dict, markdown: str) -> list[Path]:
    """Write ``<name>.json`` and ``<name>.md`` into ``out_dir`` (created if missing).

    Parameters
    ----------
    out_dir : path
        The output folder.
    name : str
        The benchmark's name, the stem of both files.
    payload : dict
        JSON-serialisable results.
    markdown : str
        The markdown report.

    Returns
    -------
    list of Path
        The two files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    text = json.dumps(_finite(payload), indent=2, default=_json_default, allow_nan=False)
    json_path.write_text(text + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return [json_path, md_path]


def _finite(value: Any) -> Any:
    # Strict JSON has no NaN or infinity: write them as null.
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


#: JAX monitoring events whose time spans count as compilation (tracing, lowering, XLA).
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileClock:
    """Wall time JAX spends tracing, lowering and compiling while the context is open.

    Listens to JAX's monitoring time spans for jaxpr tracing, MLIR lowering and XLA
    compilation and adds up the union of their intervals (nested traces are counted once).
    Eager operations that compile a kernel of their own count too.

    Attributes
    ----------
    seconds : float
        The measured time, once the context has closed.
    """

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.seconds = 0.0

    def _listen(self, event: str, start: float, end: float, **kwargs: Any) -> None:
        if event in COMPILE_EVENTS:
            self.spans.append((start, end))

    def __enter__(self) -> CompileClock:
        jax.monitoring.register_event_time_span_listener(self._listen)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_time_span_listener(self._listen)
        total, reach = 0.0, -np.inf
        for start, end in sorted(self.spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        self.seconds = total
