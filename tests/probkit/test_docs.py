"""The docs build cleanly and every Python example in them runs as written."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_spec = importlib.util.spec_from_file_location("run_examples", DOCS / "run_examples.py")
run_examples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_examples)

PAGES = sorted(p for p in DOCS.rglob("*.md") if run_examples.python_blocks(p))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_the_python_examples_of_a_page_run_in_order(page, tmp_path, monkeypatch):
    """Blocks titled with a file name are written as that module; the others run in order."""
    monkeypatch.setenv("PROBKIT_DOCS_SMALL", "1")  # pages run their examples at a small size
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []
    enabled = jax.config.jax_enable_x64
    try:
        written = run_examples.run_page(page, tmp_path)
    finally:
        # Pages switch float64 on globally, as a reader would; later tests in this worker must
        # not inherit it.
        jax.config.update("jax_enable_x64", enabled)
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
