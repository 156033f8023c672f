"""Packaging and import rules: the wheel's contents, a light top-level import, no global config."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def test_importing_probkit_is_light_and_loads_subpackages_on_use():
    out = run_python(
        "import sys, probkit; print('jax' in sys.modules, probkit.__version__);"
        "probkit.inference; print('probkit.inference' in sys.modules)"
    )
    assert out.splitlines() == ["False " + __import__("probkit").__version__, "True"]


def test_inference_does_not_import_theory_or_the_cli():
    out = run_python(
        "import sys, probkit.inference;"
        "print(any(m.startswith(('probkit.theory', 'probkit.cli')) for m in sys.modules))"
    )
    assert out == "False"


def test_importing_the_library_leaves_jax_in_float32():
    out = run_python(
        "import probkit.inference, probkit.theory, jax.numpy as jnp; print(jnp.ones(1).dtype)"
    )
    assert out == "float32"


def test_probkit_error_is_a_value_error():
    from probkit import ProbkitError

    assert issubclass(ProbkitError, ValueError)


def test_not_fitted_error_is_probkit_and_scikit_learn_and_loads_scikit_learn_on_use():
    out = run_python(
        "import pickle, sys, probkit, probkit.inference; print('sklearn' in sys.modules);"
        "from probkit._errors import NotFittedError; from sklearn import exceptions;"
        "print(issubclass(NotFittedError, probkit.ProbkitError),"
        " issubclass(NotFittedError, exceptions.NotFittedError));"
        "print(type(pickle.loads(pickle.dumps(NotFittedError('x')))).__qualname__)"
    )
    assert out.splitlines() == ["False", "True True", "NotFittedError"]


def test_the_wheel_installs_subpackages_under_probkit_only(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("probkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "probkit/inference/population.py" in names
    assert "probkit/theory/check.py" in names
    assert "probkit/theory/checks/population.py" in names
    assert not [n for n in names if n.startswith(("inference/", "theory/", "tests/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "probkit = probkit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
