"""The linear LLP model: its solver, its penalty choice, and the default that starts from it."""

import warnings

import numpy as np
import pytest
from scipy import special
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from probkit import ProbkitError
from probkit.llp import LLPClassifier, bag_counts, random_bags, validate_bags
from probkit.llp.linear import (
    L2_GRID,
    bag_loss,
    choose_l2,
    fit_linear,
    linear_logits,
    paired_difference,
)


def _logistic_data(n, d, seed, bias=-0.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (rng.random(n) < special.expit(2.0 * x @ rng.normal(size=d) + bias)).astype(int)
    return x, y


def _bags(y, size, seed=0):
    ids = random_bags(len(y), size, seed=seed)
    _, counts = bag_counts(ids, y)
    return ids, counts, validate_bags(ids, len(y), counts=counts)


@pytest.mark.parametrize("loss", ["bag", "instance"])
def test_bags_of_one_give_logistic_regression(loss):
    x, y = _logistic_data(300, 3, seed=0)
    bags = validate_bags(np.arange(300), 300, counts=y)
    fit = fit_linear(x, bags, loss=loss, targets=y * 1.0, l2=0.05, tol=1e-10)
    reference = LogisticRegression(C=1 / (0.05 * 300), tol=1e-12, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(fit.coef, reference.coef_[0], atol=1e-7)
    assert fit.intercept == pytest.approx(reference.intercept_[0], abs=1e-7)
    assert fit.gradient_norm <= 1e-10


def test_held_out_bags_are_left_out_of_the_fit():
    # Holding bags out equals fitting on the other bags alone (the same shapes are kept only so
    # that cross-validation compiles once).
    x, y = _logistic_data(400, 3, seed=1)
    _, _, bags = _bags(y, 8)
    held = np.zeros(bags.num_bags, bool)
    held[::3] = True
    rows, kept = bags.subset(np.flatnonzero(~held))
    with_mask = fit_linear(x, bags, l2=1e-2, held_out=held, tol=1e-10)
    alone = fit_linear(x[rows], kept, l2=1e-2, tol=1e-10)
    np.testing.assert_allclose(with_mask.coef, alone.coef, atol=1e-7)


def test_penalty_choice_follows_the_one_standard_error_rule():
    x, y = _logistic_data(640, 4, seed=2)
    _, _, bags = _bags(y, 16)
    choice = choose_l2(x, bags, seed=0)
    assert choice.grid == tuple(sorted(choice.grid))
    best = int(np.argmin(choice.cv_loss))
    within = [
        g
        for g in range(len(choice.grid))
        if choice.cv_loss[g] <= choice.cv_loss[best] + choice.cv_se[g]
    ]
    assert choice.l2 == choice.grid[max(within)]
    assert choice.held_out_bag_loss.shape == (bags.num_bags,)
    # Every bag was held out once: the losses are those of real predictions, and a model that
    # learned the signal predicts the held-out counts better than the constant does.
    gain, _se = paired_difference(choice.held_out_bag_loss, choice.constant_bag_loss, bags.sizes)
    assert gain < 0


def test_bag_loss_is_the_cross_entropy_of_the_mean_prediction():
    bags = validate_bags(np.array([0, 0, 1, 1, 1]), 5, counts=np.array([1, 3]))
    probability = np.array([0.2, 0.6, 0.9, 0.9, 0.6])
    expected = [-(0.5 * np.log(0.4) + 0.5 * np.log(0.6)), -np.log(0.8)]
    np.testing.assert_allclose(bag_loss(probability, bags), expected)


def test_the_default_keeps_the_linear_model_on_few_bags():
    # The case: 400 training rows of breast cancer in bags of 32 (13 bags). The default
    # used to train a 128-64 network there (test AUC 0.88); the linear DLLP reaches 0.98.
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:400], order[400:]
    ids, counts, _ = _bags(y[train], 32)
    model = LLPClassifier().fit(X[train], ids, counts)
    assert model.model_ == "linear"
    assert model.method_ == "dllp"
    assert model.selection_["chosen"] == "linear dllp"
    assert "min_validation_bags" in model.selection_["reason"]
    assert roc_auc_score(y[test], model.predict_proba(X[test])[:, 1]) > 0.97


def test_the_default_takes_a_network_when_held_out_bags_show_it_helps():
    # An XOR label: no linear model can rank it, a network can; 500 bags of 8, 50 held out (25
    # stop the networks' training, 25 judge the candidates).
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 2))
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int)
    ids, counts, _ = _bags(y, 8, seed=3)
    model = LLPClassifier(hidden=(16, 8), epochs=40, batch_rows=256).fit(X, ids, counts)
    assert model.model_ == "network", model.selection_
    names = [c["model"] for c in model.selection_["candidates"]]
    assert names == ["linear dllp", "network easyllp", "network dllp"]
    assert model.selection_["stopping_bags"] == model.selection_["judging_bags"] == 25
    X_test = rng.normal(size=(1000, 2))
    y_test = ((X_test[:, 0] > 0) ^ (X_test[:, 1] > 0)).astype(int)
    assert roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]) > 0.8


def test_the_default_keeps_the_linear_model_when_no_network_does_better():
    x, y = _logistic_data(4000, 3, seed=4)
    ids, counts, _ = _bags(y, 8, seed=4)
    model = LLPClassifier(hidden=(16, 8), epochs=20, batch_rows=256).fit(x, ids, counts)
    assert model.model_ == "linear", model.selection_
    networks = model.selection_["candidates"][1:]
    assert all(c["difference"] + 2 * c["difference_se"] >= 0 for c in networks)


@pytest.mark.parametrize("method", ["dllp", "easyllp", "soft-label"])
def test_linear_methods_predict_with_their_weights(method):
    x, y = _logistic_data(800, 3, seed=5)
    ids, counts, _ = _bags(y, 8, seed=5)
    model = LLPClassifier(method, hidden=(), basis="linear").fit(x, ids, counts)
    assert model.model_ == "linear"
    assert (model.basis_, model.hinge_basis_) == ("linear", None)
    assert model.n_validation_bags_ == 0
    standardised = (x - model.mean_) / model.scale_
    np.testing.assert_allclose(
        model.decision_function(x), standardised @ model.coef_ + model.intercept_
    )
    np.testing.assert_array_equal(model.embed(x), standardised)
    assert roc_auc_score(y, model.decision_function(x)) > 0.8


def test_bags_that_all_share_one_proportion_warn():
    x, _ = _logistic_data(400, 3, seed=6)
    ids = np.repeat(np.arange(50), 8)
    with pytest.warns(UserWarning, match="same proportion"):
        LLPClassifier("dllp", hidden=()).fit(x, ids, np.full(50, 4))


def test_a_model_that_learns_something_does_not_warn():
    x, y = _logistic_data(400, 3, seed=7)
    ids, counts, _ = _bags(y, 8, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LLPClassifier("dllp", hidden=()).fit(x, ids, counts)


def test_bad_linear_input_is_refused():
    x, y = _logistic_data(40, 2, seed=8)
    bags = validate_bags(np.arange(40) // 4, 40, counts=np.bincount(np.arange(40) // 4, y))
    with pytest.raises(ProbkitError, match="loss"):
        fit_linear(x, bags, loss="hinge")
    with pytest.raises(ProbkitError, match="targets"):
        fit_linear(x, bags, loss="instance")
    with pytest.raises(ProbkitError, match="l2"):
        fit_linear(x, bags, l2=-1.0)
    with pytest.raises(ProbkitError, match="held out"):
        fit_linear(x, bags, held_out=np.ones(bags.num_bags, bool))


def test_linear_logits_are_the_affine_map():
    x, y = _logistic_data(200, 2, seed=9)
    bags = validate_bags(np.arange(200) // 10, 200, counts=np.bincount(np.arange(200) // 10, y))
    fit = fit_linear(x, bags, l2=1e-2)
    np.testing.assert_allclose(linear_logits(fit, x), x @ fit.coef + fit.intercept)


def test_verbose_fits_report_their_stages_on_standard_error(capsys):
    x, y = _logistic_data(400, 3, seed=10)
    ids, counts, _ = _bags(y, 8, seed=10)
    LLPClassifier(verbose=1).fit(x, ids, counts)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("LLPClassifier")
    assert "400 rows × 3 features in 50 bags" in lines[0]
    assert any("linear dllp (" in line and "basis" in line and "l2 =" in line for line in lines)
    assert "chose linear dllp" in lines[-1]
    assert any("cross-validated the linear basis" in line for line in lines)
    LLPClassifier("dllp", hidden=(), verbose=2).fit(x, ids, counts)
    detailed = capsys.readouterr().err.splitlines()
    # One line per penalty of each basis's cross-validation.
    penalties = [line for line in detailed if ": cross-validated bag loss " in line]
    assert len(penalties) == 2 * len(L2_GRID)
    LLPClassifier().fit(x, ids, counts)
    assert capsys.readouterr().err == ""
    with pytest.raises(ProbkitError, match="verbose"):
        LLPClassifier(verbose=-1).fit(x, ids, counts)
