"""The ``probkit`` command.

- ``probkit check`` runs the registered checks against theory.
- ``probkit exceedance COVARIANCE`` summarises the zero-level excursions of a stationary
  Gaussian process with a preset covariance: Rice intensities, the Slepian IIA (validity,
  persistence exponent, survival function) and, on request, a Monte Carlo comparison, a figure
  and a JSON file.
- ``probkit cluster FILE.csv`` clusters the rows of a CSV file with PPP, writes their labels and
  prints the split tree.

Exit status: 0 on success (every selected check passes), 1 when a check fails, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from probkit import _cli_cluster as cluster_command
from probkit import _cli_exceedance as exceedance_command
from probkit._errors import ProbkitError
from probkit._validate import check_output_path
from probkit._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probkit", description="probkit: inference building blocks checked against theory."
    )
    parser.add_argument("--version", action="version", version=f"probkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="run the registered checks against theory and report them",
        description="Run every registered check (or a selection) in float64 and report a table; "
        "exit non-zero if any check fails.",
    )
    check.add_argument(
        "--capability",
        action="append",
        metavar="NAME",
        help="run only this capability's checks (repeatable)",
    )
    check.add_argument(
        "--name",
        action="append",
        metavar="CAPABILITY/CHECK",
        help="run only this check (repeatable)",
    )
    check.add_argument("--list", action="store_true", help="list the selected checks and exit")
    size = check.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="size",
        action="store_const",
        const="quick",
        help="small sizes, seconds per check (default)",
    )
    size.add_argument(
        "--full",
        dest="size",
        action="store_const",
        const="full",
        help="full sizes: more replicates, more power",
    )
    check.set_defaults(size="quick")
    check.add_argument("--seed", type=int, default=0, help="seed of every check (default 0)")
    check.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="family-wise false-alarm rate of the statistical checks (default 1e-3)",
    )
    check.add_argument("--json", type=Path, metavar="PATH", help="also write a JSON report")
    check.add_argument(
        "--html",
        type=Path,
        metavar="DIR",
        help="also write an HTML report with the checks' figures",
    )
    check.add_argument(
        "--overwrite", action="store_true", help="replace an existing JSON file or HTML directory"
    )
    check.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        default=[],
        help="import MODULE first, registering the checks it defines (repeatable)",
    )
    exceedance_command.add_parser(commands)
    cluster_command.add_parser(commands)
    return parser


def _select(arguments: argparse.Namespace):
    from probkit.theory import get_check, registered_checks

    if arguments.imports and "" not in sys.path and os.getcwd() not in sys.path:
        # Like `python -m`, find a user's check modules in the current directory.
        sys.path.insert(0, os.getcwd())
    for module in arguments.imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ProbkitError(f"--import {module}: {exc}") from exc
    if arguments.name:
        checks = [get_check(name) for name in arguments.name]
        if arguments.capability:
            checks = [c for c in checks if c.capability in arguments.capability]
        return checks
    return registered_checks(arguments.capability)


def _check_outputs(arguments: argparse.Namespace) -> None:
    # Refuse before running, not after minutes of checks.
    if arguments.overwrite:
        return
    check_output_path("--json", arguments.json, arguments.overwrite)
    if arguments.html is not None and arguments.html.exists() and any(arguments.html.iterdir()):
        raise ProbkitError(f"--html {arguments.html} is not empty; pass --overwrite to replace it.")


def _progress(index: int, total: int, result) -> None:
    verdict = (
        "ERROR"
        if result.error
        else "skip"
        if result.skipped
        else ("pass" if result.passed else "FAIL")
    )
    reason = f": {result.skipped}" if result.skipped else ""
    print(
        f"[{index + 1}/{total}] {result.qualified_name}: {verdict}{reason} "
        f"({result.seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def _run_check_command(arguments: argparse.Namespace) -> int:
    import jax

    # The checks compare with theory to 1e-12: the command runs in float64 throughout.
    jax.config.update("jax_enable_x64", True)
    from probkit.theory import DEFAULT_ALPHA, run_checks
    from probkit.theory.report import format_table, write_html, write_json

    checks = _select(arguments)
    if arguments.list:
        width = max((len(c.qualified_name) for c in checks), default=0)
        for check in checks:
            print(f"{check.qualified_name:{width}s}  {check.kind:11s}  {check.summary}")
        return 0
    if not checks:
        raise ProbkitError("no check matches the selection; `probkit check --list` lists them.")
    _check_outputs(arguments)
    alpha = DEFAULT_ALPHA if arguments.alpha is None else arguments.alpha
    print(
        f"probkit {__version__}: running {len(checks)} check(s) at {arguments.size} size, "
        f"seed {arguments.seed}",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    report = run_checks(
        checks, seed=arguments.seed, size=arguments.size, alpha=alpha, progress=_progress
    )
    print(format_table(report))
    print(f"total {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if arguments.json is not None:
        print(
            f"wrote {write_json(report, arguments.json, overwrite=arguments.overwrite)}",
            file=sys.stderr,
        )
    if arguments.html is not None:
        print(
            f"wrote {write_html(report, arguments.html, overwrite=arguments.overwrite)}",
            file=sys.stderr,
        )
    return 0 if report.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``probkit`` command with ``argv`` (default: the process's arguments).

    Returns
    -------
    int
        The exit status: 0 success, 1 a check failed (``probkit check``), 2 bad usage.
    """
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "check":
            return _run_check_command(arguments)
        if arguments.command == "exceedance":
            return exceedance_command.run(arguments)
        if arguments.command == "cluster":
            return cluster_command.run(arguments)
    except ProbkitError as error:
        print(f"probkit: error: {error}", file=sys.stderr)
        return 2
    return 2  # argparse makes the command required; kept for completeness


if __name__ == "__main__":
    sys.exit(main())
