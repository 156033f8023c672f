"""``benchmarks/llp_bags.py`` runs at its smoke size (Fair's data, shipped with statsmodels)."""

import json

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
