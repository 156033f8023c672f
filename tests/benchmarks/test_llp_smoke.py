"""``benchmarks/llp_bags.py`` runs at its smoke size (Fair's data, shipped with statsmodels)."""

import json

import pytest
from _common import load_benchmark as load


def test_llp_benchmark_smoke(tmp_path):
    module = load("llp_bags")
    assert module.main(["--smoke", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "llp_bags.json").read_text())
    fair = payload["results"]["fair"]
    assert 0.6 < fair["oracle_auc"] <= 1.0
    for method in ("bp", "dllp"):
        assert 0.0 <= fair["sizes"]["16"][method]["auc_mean"] <= 1.0
    bp_run = fair["sizes"]["16"]["bp"]["runs"][0]
    assert set(bp_run["timings"]) == {"knn", "bp", "train"}
    assert bp_run["rounds"][0]["iterations"] >= 1  # loopy BP need not converge: reported
    assert "| 16 |" in (tmp_path / "llp_bags.md").read_text()


def test_llp_scale_benchmark_smoke(tmp_path):
    module = load("llp_scale")
    assert module.main(["--smoke", "--knn-backend", "exact", "--out", str(tmp_path)]) == 0
    (run,) = json.loads((tmp_path / "llp_scale.json").read_text())["runs"]
    assert run["rows"] == 1024
    assert run["knn"]["edges"] >= 1024 * 5 // 2
    for stage in ("knn", "bp", "train"):
        assert run[stage]["first_call_s"] > 0
        assert run[stage]["steady_s"] > 0
    # The marginals and the network both beat chance on the logistic model's labels.
    assert run["bp"]["marginal_auc"] > 0.6
    assert run["train"]["test_auc"] > 0.55
    # The exact backend finds the exact neighbours.
    assert run["knn"]["recall"] == 1.0
    assert run["knn"]["distance_ratio"] == pytest.approx(1.0)
    assert run["default"]["chosen"].startswith(("linear", "network"))
    assert run["default"]["test_auc"] > 0.55
    assert "| 1e+03 | 16 | exact |" in (tmp_path / "llp_scale.md").read_text()


def test_llp_diagnose_benchmark_smoke(tmp_path):
    module = load("llp_diagnose")
    assert module.main(["--smoke", "--out", str(tmp_path)]) == 0
    cells = json.loads((tmp_path / "llp_diagnose.json").read_text())["cells"]
    graph = cells["graph|fair"]["representations"]["features|k=5"]
    # Shares and AUCs are in range, and a homophilous graph beats the label-blind rate.
    assert 0.0 <= graph["chance_same_label"] < graph["same_label_edges"] <= 1.0
    assert 0.5 < graph["neighbour_vote_auc"] <= 1.0
    assert set(graph["networks"]) >= {"oracle"}
    assert {"ablation|fair|16|0|λs=0", "ablation|fair|16|0|easyllp"} <= set(cells)
    assert "large|fair|64|0" in cells
    assert (tmp_path / "llp_diagnose.md").read_text().strip()
