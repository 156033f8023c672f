"""``benchmarks/meta_sinusoid.py`` and ``benchmarks/meta_fewshot.py`` run at their smoke sizes.

Each runs a subset of its methods (the full lists are exercised by the benchmarks themselves);
the few-shot one also confirms that its closed-form Gauss-Newton fit is the library's
:func:`probkit.meta.ggn_fit`.
"""

import json
import math

from _common import load_benchmark as load


def test_meta_sinusoid_benchmark_smoke(tmp_path):
    module = load("meta_sinusoid")
    arguments = ["--smoke", "--methods", "maml", "niw_meta_map", "--out", str(tmp_path)]
    assert module.main(arguments) == 0
    payload = json.loads((tmp_path / "meta_sinusoid.json").read_text())
    methods = payload["results"]["5"]["methods"]
    assert set(methods) >= {"maml", "niw_meta_map", "niw_meta_map_refitted", "zero"}
    for name in ("maml", "niw_meta_map", "zero"):
        assert math.isfinite(methods[name]["mse"]["mean"])
        assert 0.0 <= methods[name]["coverage"]["mean"] <= 1.0
    rows = payload["cost"]["rows"]
    assert set(rows) == {"maml", "niw_meta_map"}
    assert "NIW-Meta (GGN fit at the MAP)" in (tmp_path / "meta_sinusoid.md").read_text()


def test_meta_fewshot_benchmark_smoke(tmp_path):
    module = load("meta_fewshot")
    arguments = ["--smoke", "--datasets", "digits", "--shots", "1"]
    arguments += ["--methods", "centroid", "niw_meta", "niw_meta_protonet", "--out", str(tmp_path)]
    assert module.main(arguments) == 0
    payload = json.loads((tmp_path / "meta_fewshot.json").read_text())
    (entry,) = payload["results"].values()
    names = ("centroid", "niw_meta", "niw_meta_probit", "niw_meta_average")
    for name in (*names, "niw_meta_protonet", "niw_meta_protonet_probit"):
        assert 0.0 <= entry["methods"][name]["accuracy"]["mean"] <= 1.0
    # The reliability table of the default predictive, for the figure.
    table = entry["reliability"]["niw_meta"]
    assert sum(table["counts"]) == 20 * 5 * 15  # smoke: 20 test episodes of 5 × 15 queries
    # The script's closed-form fit of the local posterior against the library's (float32).
    check = entry["ggn_fit_against_library"]["niw_meta"]
    assert check["mean"] < 1e-4
    assert check["precision"] < 1e-4
