"""PPP: recovery of known partitions, determinism and invariances, the fitted attributes, the
split rules, and bad input. Data sets keep to at most 4096 rows and two or three columns, so
that every test reuses the same few compiled passes."""

from __future__ import annotations

import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from probkit import ProbkitError
from probkit.cluster import PPP, SplitDecision
from probkit.cluster import ppp as ppp_module

CENTRES = np.array([[0.0, 0.0], [9.0, 0.0], [0.0, 9.0], [9.0, 9.0], [4.5, 18.0]])
SIZES = (400, 80, 250, 600, 150)  # unbalanced, up to 7.5:1


def _blobs(seed=0, centres=CENTRES, sizes=SIZES, scale=1.0):
    rng = np.random.default_rng(seed)
    X = np.concatenate(
        [rng.normal(c, scale, (s, len(c))) for c, s in zip(centres, sizes, strict=True)]
    )
    return X, np.repeat(np.arange(len(sizes)), sizes)


@pytest.fixture(scope="module")
def blobs():
    return _blobs()


@pytest.fixture(scope="module")
def fitted(blobs):
    return PPP().fit(blobs[0])


def test_recovers_unbalanced_blobs(fitted, blobs):
    y = blobs[1]
    assert fitted.n_clusters_ == 5
    assert adjusted_rand_score(y, fitted.labels_) > 0.99
    # Every true centre has exactly one fitted centre within a unit of it.
    distance = np.linalg.norm(CENTRES[:, None] - fitted.cluster_centers_[None], axis=-1)
    assert np.all(np.sort(distance.min(axis=1)) < 0.5)
    assert sorted(np.bincount(fitted.labels_)) == pytest.approx(sorted(SIZES), abs=5)


def test_fitted_attributes_are_consistent(fitted, blobs):
    X = blobs[0]
    k = fitted.n_clusters_
    assert fitted.labels_.shape == (X.shape[0],)
    assert set(fitted.labels_) == set(range(k))
    assert np.array_equal(fitted.predict(X), fitted.labels_)
    proba = fitted.predict_proba(X)
    assert proba.shape == (X.shape[0], k)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert fitted.weights_.sum() == pytest.approx(1.0)
    assert fitted.means_.shape == (k, 2)
    assert fitted.covariances_.shape == (k, 2, 2)
    # The separable core: k-means and the mixture agree there, with posterior >= 0.8.
    core = fitted.core_mask_
    assert core.mean() > 0.95
    assert np.all(np.argmax(proba[core], axis=1) == fitted.labels_[core])
    assert np.all(proba[core].max(axis=1) >= 0.8 - 1e-6)
    # The mixture in the data's units: score_samples is the density of weights_, means_ and
    # covariances_ (scipy as the oracle), and rescaling the data by c shifts it by -d log c.
    density = sum(
        w * stats.multivariate_normal(m, c).pdf(X)
        for w, m, c in zip(fitted.weights_, fitted.means_, fitted.covariances_, strict=True)
    )
    assert np.allclose(fitted.score_samples(X), np.log(density), rtol=0, atol=1e-4)
    scaled = PPP().fit(1e3 * X)
    assert np.allclose(scaled.means_, 1e3 * fitted.means_, rtol=1e-5, atol=1e-3)
    assert np.allclose(scaled.covariances_, 1e6 * fitted.covariances_, rtol=1e-3, atol=1e-2)
    shift = scaled.score_samples(1e3 * X) - fitted.score_samples(X)
    assert np.allclose(shift, -2 * np.log(1e3), atol=1e-3)


def test_verbose_prints_the_stages(blobs, capsys):
    PPP(verbose=1).fit(blobs[0])
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("PPP")
    assert "level 1: 2 clusters after testing 1, 1 split" in lines[0]
    assert "merging" in lines[-2]
    assert lines[-1].endswith("mixture and labels: 5 clusters")
    PPP().fit(blobs[0])
    assert capsys.readouterr().err == ""


def test_tree_is_auditable(fitted):
    tree = fitted.tree_
    assert all(isinstance(record, SplitDecision) for record in tree)
    splits = [r for r in tree if r.action == "split"]
    merges = [r for r in tree if r.action == "merge"]
    assert fitted.n_clusters_ == 1 + len(splits) - len(merges)
    assert tree[0].node == 0
    assert tree[0].size == 1000 + 480
    for record in splits:
        assert record.p_value < 0.02
        assert record.dip >= 0.01
        assert len(record.children) == 2
    leaves = [r for r in tree if r.action == "leaf"]
    assert all(r.p_value >= 0.02 or r.dip < 0.01 for r in leaves)
    summary = fitted.summary()
    assert "5 clusters" in summary
    assert summary.count("\n") == len(tree) + 1


def test_labels_do_not_depend_on_row_order_or_refitting(fitted, blobs):
    X, _ = blobs
    permutation = np.random.default_rng(5).permutation(X.shape[0])
    assert np.array_equal(PPP().fit(X[permutation]).labels_, fitted.labels_[permutation])
    assert np.array_equal(PPP().fit(X).labels_, fitted.labels_)


def test_labels_are_invariant_to_column_units_and_offsets(fitted, blobs):
    # The default scaling: each column's unit and offset, and the order of magnitude of the
    # whole table, leave the partition as it is.
    X, _ = blobs
    for moved in (X + np.array([1e3, -5e2]), 1e-4 * X, X * [1e3, 1e-2] + [5e4, -3.0]):
        model = PPP().fit(moved)
        assert model.n_clusters_ == fitted.n_clusters_
        assert adjusted_rand_score(fitted.labels_, model.labels_) == 1.0


@pytest.mark.parametrize("scale", ["whiten", "none"])
def test_whitening_and_one_global_scale_are_invariant_to_rotations(blobs, scale):
    X, _ = blobs
    base = PPP(scale=scale).fit(X)
    assert base.n_clusters_ == 5
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for moved in (X @ rotation.T, 1e5 * X @ rotation.T + [3.0, -1e4]):
        model = PPP(scale=scale).fit(moved)
        assert adjusted_rand_score(base.labels_, model.labels_) == 1.0
    if scale == "whiten":  # any invertible mixing of the columns, not only rotations
        mixed = PPP(scale=scale).fit(X @ np.array([[2.0, 0.5], [-1.0, 30.0]]))
        assert adjusted_rand_score(base.labels_, mixed.labels_) == 1.0


def test_the_fitted_scaling_is_applied_by_predict(blobs):
    X, _ = blobs
    units = np.array([1e3, 1e-2])
    model = PPP().fit(X * units)
    assert np.array_equal(model.predict(X * units), model.labels_)
    # Centres come back in the data's units: the mean of each cluster's rows (up to the
    # float32 sums of the device passes).
    for k in range(model.n_clusters_):
        mean = (X * units)[model.labels_ == k].mean(axis=0)
        assert np.allclose(
            model.cluster_centers_[k], mean, rtol=0, atol=1e-5 * (X * units).std(axis=0)
        )


def test_a_single_gaussian_is_not_split():
    X = np.random.default_rng(7).normal(size=(3000, 2)) * [1.0, 4.0]
    model = PPP().fit(X)
    assert model.n_clusters_ == 1
    assert model.tree_[0].action == "leaf"
    assert model.core_mask_.all()


def test_one_column():
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(0, 1, 300), rng.normal(8, 1, 200)])[:, None]
    model = PPP().fit(X)
    assert model.n_clusters_ == 2
    assert {r.direction for r in model.tree_ if r.action == "split"} <= {"2-means axis"}


@pytest.mark.parametrize("rule", ["gaussian", "agreement", "bic"])
def test_the_other_split_rules_find_separated_blobs(rule):
    X, y = _blobs(1, CENTRES[:3] * 2, (300, 300, 300))
    model = PPP(rule).fit(X)
    assert model.n_clusters_ == 3
    assert adjusted_rand_score(y, model.labels_) > 0.99


def _small_table(seed=0, size=60, d=10, spread=1.5):
    # Three Gaussian groups of 60 rows in 10 dimensions whose means differ a little in every
    # column (like the classes of a real table): the size of Wine, and no single direction
    # shows the groups as modes. Over seeds 0-3 the "gaussian" rule finds 3, 3, 3 and 2 groups
    # and the dip rule 1, 2, 1, 2.
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (3, d))
    X = np.concatenate([rng.normal(c, 1.0, (size, d)) for c in centres])
    return X, np.repeat(np.arange(3), size)


def test_the_gaussian_rule_finds_the_groups_of_a_small_table_and_the_default_warns():
    X, y = _small_table()
    with pytest.warns(UserWarning, match=r"PPP found one cluster.*validate='gaussian'"):
        default = PPP().fit(X)
    assert default.n_clusters_ == 1
    model = PPP("gaussian").fit(X)
    assert model.n_clusters_ == 3
    assert adjusted_rand_score(y, model.labels_) > 0.8
    root = model.tree_[0]
    assert root.action == "split"
    assert root.gaussian_p_value < model.alpha
    assert root.cluster_index < root.reference_index
    assert all(r.gaussian_p_value >= model.alpha for r in model.tree_ if r.action == "leaf")


def test_one_gaussian_cluster_gives_no_warning_and_no_split():
    X = np.random.default_rng(3).normal(size=(300, 6)) * np.linspace(1.0, 3.0, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PPP().fit(X).n_clusters_ == 1
        assert PPP("gaussian").fit(X).n_clusters_ == 1


def _three_in_a_row(seed, spacing, size=150):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal([c, 0.0], 1.5, (size, 2)) for c in (-spacing, 0, spacing)])


def test_three_clusters_in_a_row_get_a_three_way_split(monkeypatch):
    # 2-means cuts the middle cluster in two; neither child (a cluster and part of its
    # neighbour) is then bimodal enough to split, so without the three-way split PPP finds 2.
    # Both columns are in one unit and the second is pure noise: scaling each column by its
    # own spread would stretch the noise to the size of the signal, so the units are kept.
    X = _three_in_a_row(seed=2, spacing=5.5)
    model = PPP(scale="none").fit(X)
    assert model.n_clusters_ == 3
    # The clusters overlap (3.7 SD apart): score against the nearest-true-centre partition.
    nearest = np.argmin(np.abs(X[:, :1] - [[-5.5, 0.0, 5.5]]), axis=1)
    assert adjusted_rand_score(nearest, model.labels_) > 0.95
    (three_way,) = [r for r in model.tree_ if len(r.children) == 3]
    assert three_way.action == "split"
    assert three_way.size == X.shape[0]

    monkeypatch.setattr(ppp_module, "_three_way_offsets", lambda *args: None)
    assert PPP(scale="none").fit(X).n_clusters_ == 2


def test_three_way_offsets_need_a_cut_over_a_hill():
    rng = np.random.default_rng(11)
    row = np.concatenate([rng.normal(c, 1.0, 300) for c in (-6.0, 0.0, 6.0)])
    offsets, sizes = ppp_module._three_way_offsets(row, 0.2, min_size=20)
    np.testing.assert_allclose(offsets, [-6.0, 0.0, 6.0], atol=0.3)
    np.testing.assert_allclose(sizes, [300, 300, 300], atol=5)
    assert ppp_module._three_way_offsets(row, -3.0, min_size=20) is None  # cut in a valley
    assert ppp_module._three_way_offsets(row, 0.2, min_size=400) is None  # segments too small
    pair = np.concatenate([rng.normal(c, 1.0, 300) for c in (-4.0, 4.0)])
    assert ppp_module._three_way_offsets(pair, 0.1, min_size=20) is None
    single = rng.normal(size=3000)
    assert ppp_module._three_way_offsets(single, 0.0, min_size=20) is None


def test_merging_is_optional_and_capacity_is_reported(blobs):
    X, _ = blobs
    with pytest.warns(UserWarning, match="max_clusters=3"):
        capped = PPP(max_clusters=3).fit(X)
    assert capped.n_clusters_ == 3
    assert any(r.action == "capacity" for r in capped.tree_)
    unmerged = PPP(merge=False).fit(X)
    assert not any(r.action == "merge" for r in unmerged.tree_)


def test_merging_joins_the_halves_of_an_over_split_cluster():
    # A uniform strip with two Gaussian blobs: the "agreement" rule over-splits the strip (its
    # two halves agree with 2-means perfectly), and the merge pass joins what is unimodal.
    rng = np.random.default_rng(4)
    strip = rng.uniform([0.0, 0.0], [12.0, 1.0], (1200, 2))
    blobs = rng.normal([[6.0, 10.0]], 0.5, (300, 2))
    X = np.concatenate([strip, blobs])
    merged = PPP("agreement").fit(X)
    unmerged = PPP("agreement", merge=False).fit(X)
    merges = [r for r in merged.tree_ if r.action == "merge"]
    assert merges
    assert merged.n_clusters_ < unmerged.n_clusters_
    for record in merges:
        assert record.p_value >= 0.02 or record.dip < 0.01
        assert len(record.merged) == 2


def test_constant_columns_are_dropped_with_a_warning(fitted, blobs):
    X, _ = blobs
    padded = np.column_stack([X[:, 0], np.full(X.shape[0], 7.0), X[:, 1]])
    with pytest.warns(UserWarning, match=r"dropped column\(s\) of `X`: 1: constant"):
        model = PPP().fit(padded)
    assert np.array_equal(model.labels_, fitted.labels_)
    assert model.dropped_columns_.tolist() == [1]
    assert np.allclose(model.cluster_centers_[:, 1], 7.0)
    assert model.predict(padded).shape == (X.shape[0],)


def test_duplicated_and_dependent_columns_are_dropped_with_a_warning(fitted, blobs):
    # A column repeated in other units, and a column that is a sum of two others (the way
    # Statlog carries colour channels next to their mean), would make every covariance
    # singular; they are dropped, named, and the partition is the one of the kept columns.
    X, _ = blobs
    table = np.column_stack([X[:, 0], X[:, 1], 1e3 * X[:, 0] - 7.0, 0.5 * X[:, 0] + 2 * X[:, 1]])
    with pytest.warns(UserWarning, match="PPP dropped column") as caught:
        model = PPP().fit(table)
    message = str(caught[0].message)
    assert "2: duplicates column 0 up to units and offset" in message
    assert "3: a linear combination of other columns" in message
    assert model.dropped_columns_.tolist() == [2, 3]
    assert np.array_equal(model.labels_, fitted.labels_)
    # Every column of the centres and the mixture, dropped ones included, in the data's units.
    assert np.allclose(model.cluster_centers_[:, 2], 1e3 * model.cluster_centers_[:, 0] - 7.0)
    assert np.allclose(model.means_[:, 3], 0.5 * model.means_[:, 0] + 2 * model.means_[:, 1])
    assert model.covariances_.shape == (5, 4, 4)
    assert np.allclose(model.covariances_[:, 2, 2], 1e6 * model.covariances_[:, 0, 0])
    # New rows that break the relation are flagged.
    broken = table.copy()
    broken[:, 2] += 100.0
    with pytest.warns(UserWarning, match=r"column\(s\) \[2, 3\] were dropped"):
        model.predict(broken)


def test_dropped_columns_are_named_from_a_table():
    pandas = pytest.importorskip("pandas")
    X, _ = _blobs()
    frame = pandas.DataFrame({"length_m": X[:, 0], "width": X[:, 1], "length_mm": 1e3 * X[:, 0]})
    with pytest.warns(UserWarning, match="'length_mm': duplicates 'length_m'"):
        model = PPP().fit(frame)
    assert model.feature_names_in_.tolist() == ["length_m", "width", "length_mm"]
    assert model.n_clusters_ == 5


def test_sklearn_parameter_protocol():
    import jax

    with_devices = clone(PPP(devices=jax.devices()))  # devices cannot be deep-copied
    assert with_devices.devices == jax.devices()
    model = PPP("bic", alpha=0.05)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert copy.validate == "bic"
    assert model.set_params(alpha=0.1).alpha == 0.1
    with pytest.raises(ProbkitError, match="Invalid parameter 'beta' for estimator PPP"):
        model.set_params(beta=1)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones(10), r"shape \(n, d\); got shape \(10,\).*X.reshape\(-1, 1\)"),
        (
            np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0], [1.0, 1.0]]),
            r"NaN or inf in rows \[0\]",
        ),
        (np.array([[1.0, np.inf]] * 5), "NaN or inf"),
        (np.random.default_rng(0).normal(size=(4, 3)), "at least d \\+ 2 = 5 rows"),
        (np.ones((10, 2)), "every column is constant"),
        ([["a", "b"]], "`X` must be an array of numbers: could not convert string"),
        (np.zeros((1, 3)), "1 sample"),
    ],
)
def test_bad_input_is_refused(X, match):
    with pytest.raises(ProbkitError, match=match):
        PPP().fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"validate": "gmm"}, "`validate`"),
        ({"scale": "zscore"}, "`scale`"),
        ({"alpha": 0.0}, "`alpha`"),
        ({"alpha": 1.5}, "`alpha`"),
        ({"min_dip": -1.0}, "`min_dip`"),
        ({"agreement": (0.9,)}, "`agreement`"),
        ({"max_clusters": 0}, "`max_clusters`"),
        ({"max_clusters": 10**9}, "`max_clusters` must be at most 65536"),
        ({"min_cluster_size": 0}, "`min_cluster_size`"),
        ({"tol": 0}, "`tol`"),
        ({"verbose": -1}, "`verbose`"),
        ({"tree_rows": 999}, "`tree_rows` must be None"),
        ({"tree_rows": 2000.0}, "`tree_rows` must be None"),
        ({"tree_rows": True}, "`tree_rows` must be None"),
    ],
)
def test_bad_parameters_are_refused(params, match, blobs):
    with pytest.raises(ProbkitError, match=match):
        PPP(**params).fit(blobs[0])


def test_predicting_needs_a_fit_and_the_same_columns(fitted):
    with pytest.raises(ProbkitError, match="not fitted"):
        PPP().predict(np.zeros((2, 2)))
    with pytest.raises(ProbkitError, match="X has 3 features, but PPP is expecting 2"):
        fitted.predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):  # scikit-learn's own class, too
        PPP().predict_proba(np.zeros((2, 2)))


def _four_blobs():
    rng = np.random.default_rng(0)
    centres = [[0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8]]
    sizes = (500, 90, 300, 1111)
    return np.concatenate([rng.normal(c, 1.0, (n, 3)) for c, n in zip(centres, sizes, strict=True)])


def test_devices_hosts_and_threads_do_not_change_the_labels():
    # Two fresh processes joined by jax.distributed (CPU collectives over gloo), two devices
    # each and single-threaded XLA: PPP sharded over the two local devices, then over the four
    # devices of both "hosts" (every process gets all labels), must give the labels of one
    # device with XLA's default thread pool here.
    script = textwrap.dedent(
        """
        import hashlib, sys
        import jax, numpy as np
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.config.update("jax_num_cpu_devices", 2)
        jax.distributed.initialize(ADDRESS, num_processes=2, process_id=int(sys.argv[1]))
        sys.path.insert(0, TESTS_FOLDER)
        from test_ppp import _four_blobs
        from probkit.cluster import PPP
        assert jax.device_count() == 4 and jax.local_device_count() == 2
        X = _four_blobs()
        local = PPP(devices=jax.local_devices()).fit(X)
        model = PPP(devices=jax.devices()).fit(X)
        assert np.array_equal(local.labels_, model.labels_)
        assert np.array_equal(local.core_mask_, model.core_mask_)
        print(hashlib.sha256(model.labels_.astype(np.int64).tobytes()).hexdigest())
        """
    )
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    script = script.replace("ADDRESS", repr(f"localhost:{port}"))
    script = script.replace("TESTS_FOLDER", repr(str(pathlib.Path(__file__).parent)))
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(rank)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-2000:]
    here = PPP().fit(_four_blobs())
    assert here.n_clusters_ == 4
    digest = hashlib.sha256(here.labels_.astype(np.int64).tobytes())
    # gloo logs its connections to stdout: the digest is the last line.
    assert [out.strip().splitlines()[-1] for out, _ in outputs] == [digest.hexdigest()] * 2


def test_tree_on_a_subsample_finds_the_clusters_and_labels_every_row():
    # 1600 rows, the tree grown on 1000 of them: the same five clusters, every row labelled
    # by the centres refined on all rows, and the mixture still a distribution. (The smallest
    # cluster keeps about 90 rows in the subsample; SIZES' 80-row cluster would keep about 54,
    # too few for the dip test beside its 600-row neighbour: the price of a subsample, which
    # is why `tree_rows` is far larger by default.)
    X, y = _blobs(sizes=(400, 200, 250, 600, 150))
    sampled = PPP(tree_rows=1000).fit(X)
    full = PPP(tree_rows=None).fit(X)
    assert (sampled.tree_rows_, full.tree_rows_) == (1000, X.shape[0])
    assert sampled.tree_[0].size == 1000
    assert full.tree_[0].size == X.shape[0]
    assert sampled.n_clusters_ == 5
    assert adjusted_rand_score(y, sampled.labels_) > 0.99
    assert adjusted_rand_score(full.labels_, sampled.labels_) > 0.99
    assert np.array_equal(sampled.labels_, sampled.predict(X))
    assert sampled.weights_.sum() == pytest.approx(1.0)
    assert "grown on 1000 rows" in sampled.summary()


def test_a_table_within_tree_rows_is_not_subsampled(blobs):
    X = blobs[0]
    exact = PPP(tree_rows=X.shape[0]).fit(X)
    assert exact.tree_rows_ == X.shape[0]
    assert np.array_equal(exact.labels_, PPP(tree_rows=None).fit(X).labels_)
