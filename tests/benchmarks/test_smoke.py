"""The benchmarks run at their smoke size and write their JSON and markdown results.

The peer libraries (BlackJAX, scikit-learn for the logistic-regression data) come with the
``bench`` extra; without them the parts that need them are skipped, with the reason.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
HAVE_BLACKJAX = importlib.util.find_spec("blackjax") is not None
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
NO_BLACKJAX = (
    "blackjax is not installed (pip install -e '.[bench]'): its part of the benchmark is skipped"
)
NO_SKLEARN = "scikit-learn is not installed (pip install -e '.[bench]'): the logistic-regression problem is skipped"


def load(name):
    """Import benchmarks/<name>.py, with benchmarks/ on sys.path for its `_common` helper."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def read_outputs(out, name):
    payload = json.loads((out / f"{name}.json").read_text())
    markdown = (out / f"{name}.md").read_text()
    return payload, markdown


@pytest.fixture(scope="module")
def tempered_probkit(tmp_path_factory):
    """probkit alone on every problem that can run here (one compilation each)."""
    out = tmp_path_factory.mktemp("smc_tempered")
    problems = ["gaussian", "logistic"] if HAVE_SKLEARN else ["gaussian"]
    load("smc_tempered").main(
        ["--smoke", "--out", str(out), "--libraries", "probkit", "--problems", *problems]
    )
    return read_outputs(out, "smc_tempered")


def test_tempered_smc_probkit_smoke(tempered_probkit):
    payload, markdown = tempered_probkit
    assert payload["smoke"] is True
    gaussian = payload["problems"]["gaussian"]
    stats = gaussian["libraries"]["probkit"]
    assert stats["all_completed"]
    assert len(stats["log_evidence_estimates"]) == stats["num_seeds"] == 3
    assert np.isfinite(stats["log_evidence_estimates"]).all()
    assert stats["first_call_s"] > 0
    assert stats["steady_median_s"] > 0
    assert abs(stats["bias"]) < 1.0  # 64 particles on a 2-D Gaussian: a rough estimate
    assert "probkit" in markdown
    assert "gaussian" in markdown


def test_tempered_smc_logistic_smoke(tempered_probkit):
    if not HAVE_SKLEARN:
        pytest.skip(NO_SKLEARN)
    payload, _ = tempered_probkit
    logistic = payload["problems"]["logistic"]
    assert logistic["dim"] == 31
    reference = logistic["reference"]
    assert abs(reference["log_evidence"] - reference["laplace_log_evidence"]) < 2.0
    assert reference["standard_error"] < 0.1
    assert np.isfinite(logistic["libraries"]["probkit"]["log_evidence_estimates"]).all()


def test_tempered_smc_blackjax_smoke(tmp_path):
    if not HAVE_BLACKJAX:
        pytest.skip(NO_BLACKJAX)
    load("smc_tempered").main(
        ["--smoke", "--out", str(tmp_path), "--libraries", "blackjax", "--problems", "gaussian"]
    )
    payload, markdown = read_outputs(tmp_path, "smc_tempered")
    stats = payload["problems"]["gaussian"]["libraries"]["blackjax"]
    assert stats["all_completed"]
    assert np.isfinite(stats["log_evidence_estimates"]).all()
    assert abs(stats["bias"]) < 1.0
    assert "blackjax" in markdown


def test_tempered_smc_reports_a_missing_blackjax(tmp_path, monkeypatch):
    # Without blackjax the benchmark records why and runs the other libraries; nothing compiles
    # here because no library is left to run.
    monkeypatch.setitem(sys.modules, "blackjax", None)
    payload = load("smc_tempered").main(
        ["--smoke", "--out", str(tmp_path), "--libraries", "blackjax", "--problems", "gaussian"]
    )
    assert "blackjax" in payload["skipped"]
    assert payload["problems"]["gaussian"]["libraries"] == {}
    assert "Skipped blackjax" in (tmp_path / "smc_tempered.md").read_text()


def test_particle_filter_smoke(tmp_path):
    payload = load("particle_filter").main(["--smoke", "--out", str(tmp_path)])
    saved, markdown = read_outputs(tmp_path, "particle_filter")
    assert saved["kalman_log_evidence"] == pytest.approx(payload["kalman_log_evidence"])
    (run,) = saved["runs"].values()
    for library in ("probkit", "numpy"):
        stats = run[library]
        assert len(stats["log_evidence_estimates"]) == 3
        # 100 particles, T = 100: log Ẑ within a few nats of the Kalman value.
        assert stats["mean_abs_error"] < 5.0
    assert run["steady_ratio_probkit_over_numpy"] > 0
    assert "numpy" in markdown
