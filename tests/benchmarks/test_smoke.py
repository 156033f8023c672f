"""The benchmarks run at their smoke size and write their JSON and markdown results.

The peer libraries (BlackJAX, scikit-learn for the logistic-regression data) come with the
``bench`` extra; without them the parts that need them are skipped, with the reason.
"""

import importlib.util
import json
import sys

import numpy as np
import pytest
from _common import load_benchmark as load

HAVE_BLACKJAX = importlib.util.find_spec("blackjax") is not None
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
NO_BLACKJAX = (
    "blackjax is not installed (pip install -e '.[bench]'): its part of the benchmark is skipped"
)
NO_SKLEARN = "scikit-learn is not installed (pip install -e '.[bench]'): the logistic-regression problem is skipped"


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


HAVE_ARVIZ = importlib.util.find_spec("arviz") is not None
HAVE_NUMPYRO_DCC = importlib.util.find_spec("numpyro.contrib.stochastic_support") is not None


@pytest.mark.parametrize("algorithm", ["rwm", "mala"])
def test_mhg_kernels_smoke(tmp_path, algorithm):
    if not (HAVE_BLACKJAX and HAVE_ARVIZ):
        pytest.skip("blackjax and arviz are needed (pip install -e '.[bench]')")
    args = ["--smoke", "--out", str(tmp_path), "--targets", "gaussian10"]
    load("mhg_kernels").main([*args, "--algorithms", algorithm])
    payload, markdown = read_outputs(tmp_path, "mhg_kernels")
    assert payload["dtype"].startswith("float64")
    pair = payload["targets"]["gaussian10"]["algorithms"][algorithm]
    for library in ("probkit", "blackjax"):
        stats = pair["libraries"][library]
        assert stats["first_call_s"] > 0
        assert stats["steady_median_s"] > 0
        assert 0.05 < stats["acceptance_rate"] < 0.99
        assert stats["ess_bulk_min"] > 0
    # Same algorithm, same step size, same seed: the two libraries' chains coincide.
    assert pair["same_seed_max_abs_difference"] < 1e-8
    assert pair["ratios_probkit_over_blackjax"]["steady_median_s"] > 0
    assert "gaussian10" in markdown


def test_reversible_jump_probkit_smoke(tmp_path):
    payload = load("reversible_jump").main(
        ["--smoke", "--out", str(tmp_path), "--libraries", "probkit"]
    )
    saved, markdown = read_outputs(tmp_path, "reversible_jump")
    assert sum(saved["model"]["exact_posterior_k"]) == pytest.approx(1.0)
    curve = payload["probkit"]["curve"]
    assert [point["counted_steps"] for point in curve] == [50, 100]
    for point in curve:
        for run in point["runs"]:
            assert sum(run["estimate"]) == pytest.approx(1.0)
            assert 0.0 <= run["total_variation"] <= 1.0
        # 8 short chains from k = 0: a rough estimate, but not a broken one.
        assert point["mean_total_variation"] < 0.5
    assert "probkit reversible jump" in markdown


def test_reversible_jump_dcc_smoke(tmp_path):
    if not HAVE_NUMPYRO_DCC:
        pytest.skip("numpyro.contrib.stochastic_support is not available")
    payload = load("reversible_jump").main(
        ["--smoke", "--out", str(tmp_path), "--libraries", "dcc"]
    )
    (run,) = payload["dcc"]["runs"]
    assert run["num_slps"] == 1  # max_slps = 1 at the smoke size
    assert sum(run["estimate"]) == pytest.approx(1.0)
    # With one SLP its weight is one: the error is the posterior mass of the SLPs not found.
    assert run["total_variation"] == pytest.approx(run["undiscovered_posterior_mass"])
    assert "NumPyro DCC" in read_outputs(tmp_path, "reversible_jump")[1]


def test_exceedance_simulation_smoke(tmp_path):
    load("exceedance_simulation").main(["--smoke", "--no-float64", "--out", str(tmp_path)])
    saved, markdown = read_outputs(tmp_path, "exceedance_simulation")
    (run,) = saved["runs"]
    for library in ("probkit_float32", "numpy_float64"):
        stats = run["libraries"][library]
        assert stats["steady_median_s"] > 0
        # 120 paths x 1024 steps: the crossing intensity within 5 standard errors of Rice.
        assert abs(stats["accuracy_all_seeds"]["intensity_z"]) < 5
    assert run["throughput_ratio_over_numpy"]["probkit_float32"] > 0
    assert "numpy_float64" in markdown


def test_iia_evaluation_smoke(tmp_path):
    load("iia_evaluation").main(["--smoke", "--out", str(tmp_path)])
    saved, markdown = read_outputs(tmp_path, "iia_evaluation")
    (run,) = saved["runs"]
    assert run["grid_points"] == 64 * 24
    assert run["steady_median_s"] > 0
    assert "steady median" in markdown
