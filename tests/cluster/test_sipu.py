"""Fränti's SIPU sets, when this machine has them (skipped otherwise): PPP, with no k given,
finds every cluster of the Gaussian-cluster sets (centroid index 0)."""

from __future__ import annotations

import pytest

from probkit.cluster import PPP, adjusted_rand_index, centroid_index, centroids_of, load_clustbench
from probkit.theory.checks.cluster import sipu_folder

FOLDER = sipu_folder()
needs_data = pytest.mark.skipif(FOLDER is None, reason="SIPU sets not found (PROBKIT_SIPU)")

# (set, smallest ARI). S3 and S4 overlap so much that the nearest-true-centre partition itself
# has ARI 0.73 and 0.64 against the reference labels; the bounds sit just below what the
# clusters' overlap allows. A1's columns differ in spread by 2.3 times: PPP's default scaling
# (each column by its standard deviation) stretches its clusters into ellipses, and the
# k-means boundaries between them then cost 5 % of ARI (0.916; 0.966 with scale="none").
EXPECTED = [
    ("s1", 0.98),
    ("s2", 0.93),
    ("s3", 0.70),
    ("s4", 0.60),
    ("a1", 0.90),
    ("a2", 0.95),
    ("a3", 0.95),
    ("unbalance", 0.99),
    ("d31", 0.93),
    ("r15", 0.98),
]


@needs_data
@pytest.mark.parametrize(("name", "min_ari"), EXPECTED)
def test_every_cluster_is_found(name, min_ari):
    data = load_clustbench(FOLDER, name)
    model = PPP().fit(data.data)
    assert model.n_clusters_ == data.n_clusters
    assert centroid_index(model.cluster_centers_, centroids_of(data.data, data.labels)) == 0
    assert adjusted_rand_index(data.labels, model.labels_) >= min_ari


def test_the_check_is_skipped_without_the_data(monkeypatch):
    from probkit.theory import checks
    from probkit.theory.check import get_check
    from probkit.theory.report import format_table
    from probkit.theory.runner import run_checks

    monkeypatch.setattr(checks.cluster, "sipu_folder", lambda: None)
    report = run_checks([get_check("cluster/centroid_index_on_franti_sets")])
    (result,) = report.results
    assert result.skipped.startswith("Fränti's SIPU sets not found")
    assert report.passed
    table = format_table(report)
    assert "skip" in table
    assert "nan" not in table  # no statistic for a check that did not run, only its reason
    assert "skipped cluster/centroid_index_on_franti_sets: Fränti's SIPU sets not found" in table
    assert "0 passed, 0 failed, 1 skipped" in table


def test_the_sets_are_found_beside_the_working_directory(monkeypatch, tmp_path):
    # A regular (not editable) install run from the project's root finds ../shared as well.
    from probkit.theory.checks import cluster

    folder = tmp_path / "shared" / "data" / "clustering" / "sipu"
    folder.mkdir(parents=True)
    (folder / "s1.data.gz").write_bytes(b"")
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.delenv("PROBKIT_SIPU", raising=False)
    monkeypatch.setattr(
        cluster, "__file__", str(tmp_path / "elsewhere" / "site" / "a" / "b" / "c.py")
    )
    monkeypatch.chdir(project)
    assert cluster.sipu_folder() == folder.resolve()
