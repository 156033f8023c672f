"""Run the Python examples of the docs pages, in order, as a reader would.

``python docs/run_examples.py`` runs every page in its own folder, which regenerates the figures
the examples save next to their page (e.g. ``docs/guides/smc_diagnostics.png``). The test suite
imports :func:`run_page` and runs each page in a temporary folder instead.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PYTHON_BLOCK = re.compile(r'```python(?: title="(?P<title>[^"]+)")?\n(?P<code>.+?)```', re.S)
DOCS = Path(__file__).resolve().parent


def python_blocks(page: Path) -> list[tuple[str | None, str]]:
    """The ``(title, code)`` of each Python block of a page, in order."""
    return [(m.group("title"), m.group("code")) for m in PYTHON_BLOCK.finditer(page.read_text())]


def run_page(page: Path, folder: Path) -> list[str]:
    """Run a page's blocks in ``folder`` (the working directory must already be ``folder``).

    Blocks titled with a file name are written there as that module; blocks that define pytest
    tests are shown, not run. Returns the names of the modules written.
    """
    namespace = {"__name__": "docs_example"}
    written = []
    for title, code in python_blocks(page):
        if title and title.endswith(".py"):
            (folder / title).write_text(code)
            written.append(title[:-3])
        elif "def test_" not in code:
            exec(compile(code, page.name, "exec"), namespace)
    return written


if __name__ == "__main__":
    import os

    for page in sorted(DOCS.rglob("*.md")):
        if python_blocks(page):
            print(f"running {page.relative_to(DOCS)}", file=sys.stderr)
            os.chdir(page.parent)
            sys.path.insert(0, str(page.parent))
            run_page(page, page.parent)
