"""The ``probkit.cluster`` benchmarks run at their smoke size and write sane results.

``benchmarks/cluster_sipu.py`` needs Fränti's SIPU sets and ``benchmarks/cluster_uci.py`` the
UCI tables (each skipped without its data); ``benchmarks/cluster_throughput.py`` draws its own
data. Peers come with scikit-learn (the test extra) and pyclustering (optional; the benchmarks
record why they skipped X-means).
"""

import json

import numpy as np
import pytest
from _common import load_benchmark as load
from _common import uci_folder

from probkit.theory.checks.cluster import sipu_folder


@pytest.mark.skipif(sipu_folder() is None, reason="SIPU sets not found (PROBKIT_SIPU)")
def test_sipu_benchmark_smoke(tmp_path):
    module = load("cluster_sipu")
    assert (
        module.main(
            ["--smoke", "--out", str(tmp_path), "--methods", "PPP (dip),KMeans (k given),HDBSCAN"]
        )
        == 0
    )
    payload = json.loads((tmp_path / "cluster_sipu.json").read_text())
    s1 = payload["results"]["s1"]["methods"]
    assert s1["PPP (dip)"]["ci_zero_runs"] == s1["PPP (dip)"]["runs"] == 2
    assert s1["PPP (dip)"]["distinct_partitions"] == 1
    assert "| s1 (15) |" in (tmp_path / "cluster_sipu.md").read_text()


def test_throughput_benchmark_smoke(tmp_path):
    module = load("cluster_throughput")
    assert module.main(["--smoke", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "cluster_throughput.json").read_text())
    for name in ("PPP (default)", "PPP (tree on every row)"):
        ppp = payload["results"]["2000"][name]
        assert ppp["k"] == 10
        assert ppp["ari"] > 0.99
        assert ppp["passes"] > 0
        assert ppp["tree_rows"] == 2000  # below tree_rows: the whole table
    rare = payload["rare_clusters"]
    assert [fit["tree_rows"] for fit in rare["fits"]] == [4096] * 4
    assert "The price of the subsample" in (tmp_path / "cluster_throughput.md").read_text()
    step = payload["results"]["2000"]["assignment_step"]
    assert 0 < step["fraction_of_matmul_peak"] < 1.5


@pytest.mark.skipif(uci_folder() is None, reason="UCI tables not found (PROBKIT_UCI)")
def test_uci_benchmark_smoke(tmp_path):
    # Structure only: PPP's accuracy on these tables is not asserted, since its method changes.
    module = load("cluster_uci")
    chosen = ["PPP", "GMM + BIC (baseline)", "HDBSCAN", "oracle: nearest true centroid"]
    assert module.main(["--smoke", "--out", str(tmp_path), "--methods", ",".join(chosen)]) == 0
    payload = json.loads((tmp_path / "cluster_uci.json").read_text())
    assert set(payload["results"]) == {"raw", "standardised"}
    for entries in payload["results"].values():
        assert set(entries) == {"wine", "ecoli"}
        assert entries["wine"]["k_true"] == 3
        assert entries["wine"]["n"] == 178
        for entry in entries.values():
            assert list(entry["methods"]) == chosen
            for row in entry["methods"].values():
                assert row["runs"] in (1, 2)
                if row["crashed_runs"] == row["runs"]:
                    assert row["crash"].startswith("crash: ")
                    continue
                assert -1 <= row["ari_mean"] <= 1
                assert row["k_min"] <= row["k_median"] <= row["k_max"]
                assert 1 <= row["distinct_partitions"] <= row["runs"]
                assert 0 <= row["noise_fraction"] <= 1
    for method in chosen:
        for summary in payload["summary"][method].values():
            assert summary["tables"] == 2
            assert 0 <= summary["tables_with_k_1"] <= summary["tables_run"]
    markdown = (tmp_path / "cluster_uci.md").read_text()
    assert markdown.count("| wine (178, 13, 3) |") == 2  # one row per input's table
    assert markdown.count("| ecoli (336, 7, 8) |") == 2
    assert "| PPP |" in markdown  # its summary row

    # A method that raises is recorded, not propagated.
    def fails(X, k, seed, truth):
        raise RuntimeError("boom")

    row = module.evaluate(
        np.zeros((4, 2)), np.array([0, 0, 1, 1]), module.Method(fails, "seeds", "auto-k"), 2, 2
    )
    assert row["crashed_runs"] == 2
    assert row["crash"] == "crash: RuntimeError: boom"
