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


# --- probkit exceedance -------------------------------------------------------------------------
# The suite is compile-bound: the sech_diffusion runs share one compilation of the IIA.


def _number_after(label, text):
    import re

    match = re.search(re.escape(label) + r"\s*=?\s*([-+0-9.eE]+)", text)
    assert match, f"{label!r} not in the output:\n{text}"
    return float(match.group(1))


def test_exceedance_prints_rice_the_iia_and_a_table(capsys):
    assert main(["exceedance", "sech_diffusion", "--param", "d=2"]) == 0
    out = capsys.readouterr().out
    assert "sech_diffusion(d=2)" in out
    assert _number_after("both directions", out) == pytest.approx(1 / 6.283185307, rel=1e-5)
    assert "proven" in out
    assert round(_number_after("theta", out), 4) == 0.1862  # MSBC 1996
    assert round(_number_after("IIA mean, sd", out), 4) == 6.2832  # π/√λ₂
    assert "S_T IIA" in out
    assert "P(X>0 on [0,t]) IIA" in out
    assert "0.371018" in out  # S_T at one mean length


def test_exceedance_reports_an_invalid_iia(capsys):
    assert main(["exceedance", "damped_cosine", "--param", "omega=2"]) == 0
    out = capsys.readouterr().out
    assert "IIA validity     invalid" in out
    assert "negative mass" in out
    assert "min density -0.00223" in out


def test_exceedance_simulates_and_writes_json_and_a_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figure, report = tmp_path / "exceedance.png", tmp_path / "exceedance.json"
    args = ["exceedance", "sech_diffusion", "--param", "d=2", "--simulate", "64",
            "--steps", "512", "--dt", "0.1", "--seed", "1",
            "--figure", str(figure), "--json", str(report)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "S_T sim" in out
    assert "crossings" in out
    summary = json.loads(report.read_text())
    assert summary["covariance"] == {
        "name": "sech_diffusion",
        "params": {"d": 2.0},
        "repr": "StationaryCovariance(sech_diffusion, lam2=0.25)",
    }
    assert summary["validity"]["status"] == "proven"
    assert summary["tail"]["kind"] == "exponential"
    assert summary["tail"]["theta"] == pytest.approx(0.18621, abs=1e-5)
    assert summary["iia"]["mean"] == pytest.approx(6.283185307, rel=1e-9)
    simulation = summary["simulation"]
    assert simulation["n_paths"] == 64
    assert simulation["n_steps"] == 512
    assert simulation["crossing_intensity"] == pytest.approx(0.159, rel=0.2)
    # 64 short paths hold a few hundred excursions: too few for a tail fit, and it says so.
    assert simulation["theta_fit"] is None
    assert "too few excursions" in simulation["theta_fit_note"]
    table = summary["table"]
    assert len(table["times"]) == len(table["sf_iia"]) == len(table["sf_sim"]) == 5
    assert table["sf_sim"][1] == pytest.approx(table["sf_iia"][1], abs=0.15)
    assert all(se is not None and se >= 0 for se in table["sf_sim_se"])
    assert figure.stat().st_size > 0
    # The outputs exist now: a second run refuses before computing anything.
    before = report.read_text()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert report.read_text() == before


def test_exceedance_refuses_bad_covariances_and_parameters(capsys):
    assert main(["exceedance", "ornstein_uhlenbeck"]) == 2
    err = capsys.readouterr().err
    assert "unknown covariance 'ornstein_uhlenbeck'" in err
    assert "sech_diffusion(d)" in err
    assert "matern(nu, length_scale=1)" in err
    assert main(["exceedance", "sech_diffusion", "--param", "dim=2"]) == 2
    assert "no parameter 'dim'; accepted: d" in capsys.readouterr().err
    assert main(["exceedance", "matern"]) == 2
    assert "needs --param nu=VALUE" in capsys.readouterr().err
    assert main(["exceedance", "sech_diffusion", "--param", "d=two"]) == 2
    assert "must be a number" in capsys.readouterr().err
    assert main(["exceedance", "sech_diffusion", "--param", "d=-1"]) == 2  # from the preset
    assert "`d` must be a finite positive number" in capsys.readouterr().err
    assert main(["exceedance", "matern", "--param", "nu=1"]) == 2
    assert "not mean-square differentiable" in capsys.readouterr().err
    assert main(["exceedance", "gaussian", "--dt", "0.1"]) == 2
    assert "--simulate" in capsys.readouterr().err


def test_exceedance_figure_needs_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)  # as if not installed
    args = ["exceedance", "gaussian", "--figure", str(tmp_path / "f.png")]
    assert main(args) == 2
    assert "probkit[report]" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


def test_exceedance_presets_match_the_library():
    import inspect

    from probkit import exceedance
    from probkit._cli_exceedance import _PRESETS

    for name, (required, optional) in _PRESETS.items():
        parameters = inspect.signature(getattr(exceedance, name)).parameters.values()
        positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert tuple(p.name for p in positional if p.default is p.empty) == required, name
        assert {p.name: p.default for p in positional if p.default is not p.empty} == optional
