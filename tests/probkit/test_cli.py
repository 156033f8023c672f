"""`probkit check`: selection, reports, exit status, and a user's failing check."""

import json
import subprocess
import sys
import textwrap

import pytest

from probkit.cli import main
from probkit.theory import unregister

FAST = "population/resampling_variance_ordering"


def test_list_names_every_registered_check(capsys):
    assert main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    assert "population/resampling_preserves_measure_exactly" in out
    assert "population/offspring_counts_are_unbiased" in out


def test_check_prints_a_table_and_writes_json_and_html(tmp_path, capsys):
    status = main(["check", "--name", FAST, "--seed", "3", "--json", str(tmp_path / "r.json"),
                   "--html", str(tmp_path / "html")])  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0
    assert "resampling_variance_ordering" in captured.out
    assert "pass" in captured.out
    assert "[1/1]" in captured.err  # progress
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["seed"] == 3
    assert report["passed"] is True
    assert (tmp_path / "html" / "index.html").exists()


def test_existing_reports_are_not_overwritten_unless_asked(tmp_path, capsys):
    target = tmp_path / "r.json"
    target.write_text("keep me")
    assert main(["check", "--name", FAST, "--json", str(target)]) == 2
    assert target.read_text() == "keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert main(["check", "--name", FAST, "--json", str(target), "--overwrite"]) == 0
    assert json.loads(target.read_text())["passed"] is True


def test_bad_selections_exit_with_status_two(capsys):
    assert main(["check", "--capability", "nonsense"]) == 2
    assert main(["check", "--name", "population/no_such_check"]) == 2
    assert "probkit check --list" in capsys.readouterr().err


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's module that registers a check built on a resampler that forgets Z."""
    (tmp_path / "forgetful_checks.py").write_text(
        textwrap.dedent('''
        import math
        import jax.numpy as jnp
        from probkit.inference.population import Population, resample_from_uniforms
        from probkit.inference.resampling import systematic
        from probkit.theory import Outcome, register
        from probkit.theory.exact import (
            compare_measures, enumerate_transformation, labelled_population)

        def forgetful(uniforms, population):
            new = resample_from_uniforms(uniforms, population, "systematic")
            n = population.num_particles
            return Population(new.particles, jnp.full((n,), -math.log(n)))

        @register(capability="population", kind="exact")
        def forgetful_resampling_preserves_measure(context):
            """A resampler that forgets the evidence (it must fail)."""
            log_weights = jnp.log(jnp.array([0.5, 1.5, 2.0]))
            enumeration = enumerate_transformation(
                forgetful, labelled_population(log_weights),
                systematic.breakpoints(log_weights, 3))
            error = compare_measures(log_weights, enumeration).max_relative_error
            return Outcome.at_most(error, tolerance=1e-12)
    ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "forgetful_checks"
    unregister("population/forgetful_resampling_preserves_measure")
    sys.modules.pop("forgetful_checks", None)


def test_a_failing_check_makes_the_command_exit_non_zero(user_module, capsys):
    name = "population/forgetful_resampling_preserves_measure"
    status = main(["check", "--import", user_module, "--name", name, "--name", FAST])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL" in out
    assert "1 passed, 1 failed" in out


def test_the_console_script_is_installed():
    result = subprocess.run(["probkit", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("probkit ")
    result = subprocess.run([sys.executable, "-m", "probkit.cli", "check", "--list"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert "population/" in result.stdout
