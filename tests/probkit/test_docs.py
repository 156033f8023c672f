"""The docs build cleanly and every Python example in them runs as written."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PYTHON_BLOCK = re.compile(r'```python(?: title="(?P<title>[^"]+)")?\n(?P<code>.+?)```', re.S)


def python_blocks(page: Path):
    return [(m.group("title"), m.group("code")) for m in PYTHON_BLOCK.finditer(page.read_text())]


PAGES = sorted(p for p in DOCS.rglob("*.md") if python_blocks(p))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_the_python_examples_of_a_page_run_in_order(page, tmp_path, monkeypatch):
    """Blocks titled with a file name are written as that module; the others run in order."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace = {"__name__": "docs_example"}
    written = []
    try:
        for title, code in python_blocks(page):
            if title and title.endswith(".py"):
                (tmp_path / title).write_text(code)
                written.append(title[:-3])
            elif "def test_" in code:
                continue  # a pytest module shown as an example; run by pytest, not exec
            else:
                exec(compile(code, f"{page.name}", "exec"), namespace)
    finally:
        from probkit.theory import registered_checks, unregister

        for module in written:
            for check in registered_checks():
                if check.function.__module__ == module:
                    unregister(check.qualified_name)
            sys.modules.pop(module, None)


@pytest.mark.skipif(shutil.which("mkdocs") is None, reason="mkdocs is in the docs extra")
def test_the_docs_build_strictly(tmp_path):
    result = subprocess.run(
        ["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "population" / "index.html").exists()
