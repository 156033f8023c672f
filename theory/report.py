"""Write a run of checks as a text table, a JSON file or an HTML page with the checks' figures."""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path

from probkit._errors import ProbkitError
from probkit.theory.check import CheckResult
from probkit.theory.runner import Report

__all__ = ["format_result_row", "format_table", "write_html", "write_json"]

_COLUMNS = ("capability", "check", "statistic", "reference", "tolerance / p-value", "verdict", "s")


def _number(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _criterion(result: CheckResult) -> str:
    if result.p_value is not None:
        return f"p={_number(result.adjusted_p_value)} (α={_number(result.alpha)})"
    if result.tolerance is not None:
        return f"≤ {_number(result.tolerance)}"
    return ""


def _verdict(result: CheckResult) -> str:
    if result.error is not None:
        return "ERROR"
    if result.skipped:
        return "skip"
    return "pass" if result.passed else "FAIL"


def format_result_row(result: CheckResult) -> tuple[str, ...]:
    """The table cells of one result."""
    return (
        result.capability,
        result.name,
        "" if result.skipped else _number(result.statistic),
        _number(result.reference),
        _criterion(result),
        _verdict(result),
        f"{result.seconds:.1f}",
    )


def format_table(report: Report) -> str:
    """The report as a plain-text table with a closing summary line."""
    rows = [_COLUMNS, *(format_result_row(r) for r in report.results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    failed = len(report.failures)
    skipped = sum(1 for result in report.results if result.skipped)
    lines.append("")
    lines.append(
        f"{len(report.results) - failed - skipped} passed, {failed} failed, {skipped} skipped "
        f"(seed {report.seed}, {report.size} size, family-wise α = {report.alpha:g}, Holm)"
    )
    for result in report.results:
        if result.skipped:
            lines.append(f"skipped {result.qualified_name}: {result.skipped}")
    for result in report.failures:
        if result.error:
            lines.append(f"\n{result.qualified_name} raised:\n{result.error}")
    return "\n".join(lines)


def _refuse_to_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ProbkitError(
            f"{str(path)!r} already exists; choose another path or pass overwrite=True "
            "(--overwrite on the command line) to replace it."
        )


def write_json(report: Report, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the report as JSON to ``path``; refuse to replace an existing file unless asked."""
    path = Path(path)
    _refuse_to_overwrite(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return path


def _figure_png(result: CheckResult) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    try:
        result.figure(axes)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
    finally:
        plt.close(figure)


def write_html(report: Report, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``index.html`` and one PNG per check figure into ``directory``.

    Needs matplotlib (``pip install "probkit[report]"``). Refuses to write into an existing,
    non-empty directory unless ``overwrite`` is true, and then replaces only its own files.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ProbkitError(
            'the HTML report draws figures with matplotlib; install it with pip install "probkit[report]".'
        ) from None
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise ProbkitError(
            f"{str(directory)!r} exists and is not empty; choose another directory or pass "
            "overwrite=True (--overwrite on the command line)."
        )
    directory.mkdir(parents=True, exist_ok=True)
    sections = []
    for result in report.results:
        image = ""
        if result.figure is not None:
            png = _figure_png(result)
            name = f"{result.capability}-{result.name}.png"
            (directory / name).write_bytes(png)
            image = f'<img src="{html.escape(name)}" alt="figure of {html.escape(result.name)}">'
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in format_result_row(result))
        details = html.escape(json.dumps(result.to_dict()["details"], indent=1))
        error = f"<pre class=error>{html.escape(result.error)}</pre>" if result.error else ""
        sections.append(
            f'<section class="{"pass" if result.passed else "fail"}">'
            f"<h2>{html.escape(result.qualified_name)}</h2><p>{html.escape(result.summary)}</p>"
            f"<p><em>{html.escape(result.description)}</em></p>"
            f"<table><tr>{''.join(f'<th>{c}</th>' for c in _COLUMNS)}</tr><tr>{cells}</tr></table>"
            f"{image}{error}<details><summary>details</summary><pre>{details}</pre></details>"
            "</section>"
        )
    failed = len(report.failures)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>probkit check</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; }}
section {{ border-left: 6px solid #2a2; padding-left: 1rem; margin: 2rem 0; }}
section.fail {{ border-left-color: #c22; }} img {{ max-width: 100%; }} pre.error {{ color: #c22; }}
</style></head><body>
<h1>probkit check</h1>
<p>{len(report.results) - failed} passed or skipped, {failed} failed — seed {report.seed},
{report.size} size, family-wise α = {report.alpha:g} (Holm).</p>
{"".join(sections)}
</body></html>
"""
    index = directory / "index.html"
    index.write_text(page)
    return index
