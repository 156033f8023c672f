"""The two ``probkit.cluster`` benchmarks run at their smoke size and write sane results.

``benchmarks/cluster_sipu.py`` needs Fränti's SIPU sets (skipped without them);
``benchmarks/cluster_throughput.py`` draws its own data. Peers come with scikit-learn (the
test extra) and pyclustering (optional; the benchmark records why it skipped X-means).
"""

import json

import pytest
from _common import load_benchmark as load

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
    ppp = payload["results"]["2000"]["PPP"]
    assert ppp["k"] == 10
    assert ppp["ari"] > 0.99
    assert ppp["passes"] > 0
    step = payload["results"]["2000"]["assignment_step"]
    assert 0 < step["fraction_of_matmul_peak"] < 1.5
