"""LLPClassifier: the scikit-learn contract, the bag-size-one limit, learning, and bad input."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from probkit import ProbkitError
from probkit.llp import METHODS, LLPClassifier, bag_counts, random_bags
from probkit.llp.classifier import AUTO_NEIGHBORS_GRID, AUTO_SIMILARITY_GRID

# 80 bags of eight: min_validation_bags=5 keeps 8 of them for early stopping and selection, as
# the default does from 200 bags on.
SMALL = {"hidden": (16, 8), "epochs": 30, "batch_rows": 128, "min_validation_bags": 5}
FLOOR = {"soft-label": 0.75, "bp-paper": 0.6}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(640, 4))
    y = (X[:, 0] + 0.7 * X[:, 1] + 0.4 * rng.normal(size=640) > 0.3).astype(int)
    X_test = rng.normal(size=(400, 4))
    y_test = (X_test[:, 0] + 0.7 * X_test[:, 1] > 0.3).astype(int)
    return X, y, X_test, y_test


@pytest.mark.parametrize("method", METHODS)
def test_every_method_learns_an_easy_problem_from_bags_of_eight(data, method):
    X, y, X_test, y_test = data
    bags = random_bags(len(y), 8, seed=1)
    _ids, counts = bag_counts(bags, y)
    strength = "auto" if method == "bp" else 0.5  # "auto" chooses on held-out bags
    model = LLPClassifier(method, similarity_strength=strength, **SMALL).fit(X, bags, counts)
    proba = model.predict_proba(X_test)
    assert proba.shape == (400, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(model.predict(X_test))) <= {0, 1}
    # A linear rule on the labels reaches AUC 1 on the noiseless test labels and a method that
    # learned nothing scores 0.5. Soft labels blur every bag towards its proportion, and the
    # paper's λ's are far too strong for these data (see the guide): both stay well below the
    # others, whose floor is 0.9.
    auc = roc_auc_score(y_test, proba[:, 1])
    assert auc > FLOOR.get(method, 0.9), auc
    if method.startswith("bp"):
        assert len(model.rounds_) == 2
        assert model.rounds_[0]["similarity_strength"] in (
            (0.0, 0.1, 0.3, 1.0) if method == "bp" else (10.0,)
        )
        assert set(model.timings_) == {"knn", "bp", "train"}


def test_bags_of_one_are_supervised_learning(data):
    X, y, _, _ = data
    bags = np.arange(len(y))
    counts = y.astype(float)
    soft = LLPClassifier("soft-label", **SMALL).fit(X, bags, counts)
    easy = LLPClassifier("easyllp", **SMALL).fit(X, bags, counts)
    # EasyLLP's debiased label m (α − p) + p equals the label itself when m = 1.
    np.testing.assert_array_equal(easy.decision_function(X), soft.decision_function(X))
    dllp = LLPClassifier("dllp", **SMALL).fit(X, bags, counts)
    np.testing.assert_allclose(dllp.predict_proba(X), soft.predict_proba(X), atol=2e-3)
    # A hard count on a bag of one is the label: BP's marginals are the labels exactly.
    bp = LLPClassifier("bp", similarity_strength=1.0, rounds=1, aggregate_weight=0.0, **SMALL).fit(
        X, bags, counts
    )
    marginals = bp.rounds_[0]["marginals"]
    assert set(np.unique(marginals)) <= {0.0, 1.0}
    assert bp.rounds_[0]["bag_count_mae"] == 0.0


def test_parameters_follow_scikit_learn(data):
    model = LLPClassifier("dllp", rounds=3)
    assert model.get_params()["rounds"] == 3
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert "rounds=3" in repr(model)
    with pytest.raises(ProbkitError, match="Invalid parameter 'lam'"):
        model.set_params(lam=1.0)


def test_bad_input_is_refused_naming_the_bags(data):
    X, y, _, _ = data
    bags = random_bags(len(y), 8, seed=1)
    _ids, counts = bag_counts(bags, y)
    model = LLPClassifier("dllp", **SMALL)
    with pytest.raises(ProbkitError, match="not fitted"):
        model.predict(X)
    bad = X.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ProbkitError, match=rf"rows \[5\] \(bags \[{bags[5]}\]\)"):
        model.fit(bad, bags, counts)
    too_many = counts.copy()
    too_many[3] = 9
    with pytest.raises(ProbkitError, match=r"bags \[3\]"):
        model.fit(X, bags, too_many)
    with pytest.raises(ProbkitError, match="method"):
        LLPClassifier("mean-map").fit(X, bags, counts)
    with pytest.raises(ProbkitError, match="similarity_strength"):
        LLPClassifier("bp", similarity_strength=-1.0).fit(X, bags, counts)
    with pytest.raises(ProbkitError, match="hidden"):
        LLPClassifier("dllp", hidden=(0,)).fit(X, bags, counts)
    with pytest.raises(ProbkitError, match=r"hidden=\(\) \(the linear model\)"):
        LLPClassifier("bp", hidden=()).fit(X, bags, counts)
    for bad in (-1.0, float("nan"), "large"):
        with pytest.raises(ProbkitError, match="l2"):
            LLPClassifier("dllp", hidden=(), l2=bad).fit(X, bags, counts)
    model.fit(X, bags, counts)
    with pytest.raises(ProbkitError, match="4"):
        model.predict(X[:, :3])


def _within_bag_permutation(labels, bags, seed):
    # Shuffles the labels inside every bag: each bag keeps its count, the rows' labels change.
    rng = np.random.default_rng(seed)
    permuted = labels.copy()
    for bag in np.unique(bags):
        members = np.flatnonzero(bags == bag)
        permuted[members] = labels[rng.permutation(members)]
    return permuted


def test_auto_neighbours_and_strength_are_chosen_on_held_out_bags_only(data):
    X, y, _, _ = data
    bags = random_bags(len(y), 8, seed=2)
    permuted = _within_bag_permutation(y, bags, seed=5)
    assert np.any(permuted != y)
    settings = {
        "rounds": 2,
        "n_neighbors": "auto",
        "hidden": (16, 8),
        "epochs": 8,
        "min_validation_bags": 5,
    }
    fits = []
    for labels in (y, permuted):
        _ids, counts = bag_counts(bags, labels)
        fits.append(LLPClassifier("bp", **settings).fit(X, bags, counts))
    first, second = fits
    candidates = first.rounds_[0]["candidates"]
    # Every (k, λ_s) of the grids is tried once (λ_s = 0, which ignores the graph, with the
    # smallest k only), and the kept pair has the smallest held-out bag loss.
    assert [(c["n_neighbors"], c["similarity_strength"]) for c in candidates] == [
        (k, s)
        for k in AUTO_NEIGHBORS_GRID
        for s in AUTO_SIMILARITY_GRID
        if s > 0 or k == AUTO_NEIGHBORS_GRID[0]
    ]
    losses = [c["validation_loss"] for c in candidates]
    chosen = candidates[int(np.argmin(losses))]
    assert first.rounds_[0]["n_neighbors"] == chosen["n_neighbors"]
    assert first.rounds_[0]["similarity_strength"] == chosen["similarity_strength"]
    assert first.rounds_[0]["validation_loss"] == min(losses)
    # The later round keeps the choice.
    assert first.rounds_[1]["n_neighbors"] == chosen["n_neighbors"]
    assert first.rounds_[1]["similarity_strength"] == chosen["similarity_strength"]
    assert "candidates" not in first.rounds_[1]
    # Labels shuffled inside the bags leave every count, and so every loss and the choice, as
    # they were: the selection sees bags, never instance labels.
    assert second.rounds_[0]["candidates"] == candidates
    np.testing.assert_array_equal(second.decision_function(X), first.decision_function(X))


def test_fixed_neighbours_are_recorded_and_bad_values_refused(data):
    X, y, _, _ = data
    bags = random_bags(len(y), 8, seed=1)
    _ids, counts = bag_counts(bags, y)
    model = LLPClassifier(
        "bp", n_neighbors=7, similarity_strength=0.3, rounds=1, hidden=(8,), epochs=2
    ).fit(X, bags, counts)
    assert model.rounds_[0]["n_neighbors"] == 7
    assert model.rounds_[0]["candidates"] == [
        {
            "n_neighbors": 7,
            "similarity_strength": 0.3,
            "validation_loss": model.rounds_[0]["validation_loss"],
        }
    ]
    for bad in ("many", 0, -3, 2.5, True):
        with pytest.raises(ProbkitError, match="n_neighbors"):
            LLPClassifier("bp", n_neighbors=bad).fit(X, bags, counts)
    for bad in (0, 99, "cpu", [], ["cpu:0"]):
        with pytest.raises(ProbkitError, match="devices"):
            LLPClassifier("bp", devices=bad).fit(X, bags, counts)


SHARDED_FIT = textwrap.dedent(
    """
    import jax
    import numpy as np

    from probkit.llp import LLPClassifier, bag_counts, random_bags

    assert len(jax.devices()) == 4
    rng = np.random.default_rng(0)
    X = rng.normal(size=(203, 3))  # 203 rows: edges and bags that 4 does not divide
    y = (X[:, 0] + 0.5 * rng.normal(size=203) > 0).astype(int)
    bags = random_bags(len(y), 8, seed=0)
    _ids, counts = bag_counts(bags, y)
    settings = {"similarity_strength": 0.3, "rounds": 1, "hidden": (8,), "epochs": 3}
    one = LLPClassifier("bp", **settings).fit(X, bags, counts)
    four = LLPClassifier("bp", devices=4, **settings).fit(X, bags, counts)
    listed = LLPClassifier("bp", devices=jax.devices()[:2], **settings).fit(X, bags, counts)
    for sharded in (four, listed):
        for a, b in zip(one.rounds_, sharded.rounds_, strict=True):
            assert a["iterations"] == b["iterations"]
            np.testing.assert_allclose(b["marginals"], a["marginals"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            sharded.predict_proba(X), one.predict_proba(X), rtol=0, atol=1e-4
        )
    print("ok")
    """
)


def test_bp_sharded_over_four_devices_gives_the_fit_of_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    result = subprocess.run(
        [sys.executable, "-c", SHARDED_FIT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_probabilities_of_extreme_logits_neither_overflow_nor_lose_the_small_class(monkeypatch):
    # A long fit can reach logits beyond ±710, where exp overflows; the probabilities must
    # still be exact, sum to one, and raise no warning.
    model = LLPClassifier()
    logits = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    monkeypatch.setattr(model, "decision_function", lambda X: logits)
    with np.errstate(all="raise"):
        proba = model.predict_proba(np.zeros((5, 1)))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=0)
    np.testing.assert_allclose(proba[:, 1], [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-15)
    assert proba[3, 0] == pytest.approx(np.exp(-40.0), rel=1e-12)  # not 1 − 1 = 0


def test_bags_are_held_out_only_when_there_are_enough_of_them(data):
    X, y, _, _ = data
    for size, expected in ((8, 0), (2, 32)):  # 80 bags give 8 (< 20): none; 320 give 32
        bags = random_bags(len(y), size, seed=3)
        _ids, counts = bag_counts(bags, y)
        model = LLPClassifier("dllp", hidden=(8,), epochs=2).fit(X, bags, counts)
        assert model.n_validation_bags_ == expected
    bags = random_bags(len(y), 8, seed=3)
    _ids, counts = bag_counts(bags, y)
    model = LLPClassifier("dllp", hidden=(8,), epochs=2, min_validation_bags=8)
    assert model.fit(X, bags, counts).n_validation_bags_ == 8
    with pytest.raises(ProbkitError, match="min_validation_bags"):
        LLPClassifier("dllp", min_validation_bags=0).fit(X, bags, counts)
