"""The hinge basis of the linear LLP model, and the default's choice between it and the columns."""

import numpy as np
import pytest
from scipy import special
from sklearn.metrics import roc_auc_score

from probkit import ProbkitError
from probkit.llp import LLPClassifier, bag_counts, random_bags
from probkit.llp.basis import HINGE_QUANTILES, MIN_DISTINCT_VALUES, fit_hinge_basis


def test_hinges_bend_each_continuous_column_at_its_quantiles():
    rng = np.random.default_rng(0)
    continuous = rng.normal(size=1000)
    indicator = (rng.random(1000) < 0.3).astype(float)
    small_count = rng.integers(0, MIN_DISTINCT_VALUES - 1, 1000).astype(float)
    X = np.column_stack([continuous, indicator, small_count])
    basis = fit_hinge_basis(X)
    assert basis.size == len(HINGE_QUANTILES)
    np.testing.assert_array_equal(basis.columns, 0)
    np.testing.assert_allclose(basis.knots, np.quantile(continuous, HINGE_QUANTILES))
    expanded = basis.transform(X)
    assert expanded.shape == (1000, 3 + basis.size)
    np.testing.assert_array_equal(expanded[:, :3], X)  # the columns come first, unchanged
    # Each hinge is max(0, x − knot), centred and scaled on the training rows.
    hinge = np.maximum(continuous - basis.knots[1], 0.0)
    np.testing.assert_allclose(expanded[:, 4], (hinge - hinge.mean()) / hinge.std())
    np.testing.assert_allclose(expanded[:, 3:].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(expanded[:, 3:].std(axis=0), 1.0)


def test_a_column_that_is_mostly_one_value_gets_fewer_knots():
    values = np.concatenate([np.zeros(900), np.linspace(1, 2, 100)])
    basis = fit_hinge_basis(values[:, None])
    # The 20 %, 40 %, 60 % and 80 % quantiles are all 0: one knot, one hinge.
    assert basis.size == 1
    assert basis.knots[0] == 0.0


def _bent_data(n, seed):
    # A U-shaped effect: a straight line cannot rank the rows, hinges can.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    logits = 2.5 * (np.abs(x[:, 0]) - 0.8) + 0.5 * x[:, 1]
    y = (rng.random(n) < special.expit(logits)).astype(int)
    return x, y


def _linear_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (rng.random(n) < special.expit(x @ np.array([1.5, -1.0, 0.5]))).astype(int)
    return x, y


def _fit(x, y, size, seed, **params):
    ids = random_bags(len(y), size, seed=seed)
    _, counts = bag_counts(ids, y)
    return LLPClassifier("dllp", hidden=(), **params).fit(x, ids, counts)


def test_the_hinges_are_chosen_where_an_effect_bends():
    x, y = _bent_data(4000, seed=1)
    model = _fit(x, y, 8, seed=1)
    assert model.basis_ == "hinge"
    record = model.basis_choice_
    assert record["chosen"] == "hinge"
    assert record["difference"] + 2 * record["difference_se"] < 0
    assert set(record["cv_loss"]) == {"linear", "hinge"}
    straight = _fit(x, y, 8, seed=1, basis="linear")
    assert straight.basis_ == "linear"
    x_test, y_test = _bent_data(4000, seed=2)
    auc = roc_auc_score(y_test, model.decision_function(x_test))
    assert auc > roc_auc_score(y_test, straight.decision_function(x_test)) + 0.1
    # The weights act on the columns and then the hinges.
    standardised = (x_test - model.mean_) / model.scale_
    features = model.hinge_basis_.transform(standardised)
    np.testing.assert_allclose(
        model.decision_function(x_test), features @ model.coef_ + model.intercept_
    )
    np.testing.assert_array_equal(model.embed(x_test), features)


def test_the_straight_lines_are_kept_where_effects_are_straight():
    # The data are a logistic model: the hinges' held-out loss is no better, and the straight
    # lines, the simpler model, win the tie.
    x, y = _linear_data(4000, seed=3)
    model = _fit(x, y, 8, seed=3)
    assert model.basis_ == "linear", model.basis_choice_
    assert model.hinge_basis_ is None
    assert model.basis_choice_["difference"] + 2 * model.basis_choice_["difference_se"] >= 0


def test_basis_hinge_and_a_given_penalty_skip_the_choice():
    x, y = _bent_data(800, seed=4)
    model = _fit(x, y, 8, seed=4, basis="hinge", l2=1e-3)
    assert (model.basis_, model.basis_choice_, model.penalty_choice_) == ("hinge", None, None)
    assert model.l2_ == 1e-3
    assert model.coef_.size == 2 + model.hinge_basis_.size


def test_a_table_without_continuous_columns_keeps_the_columns():
    rng = np.random.default_rng(5)
    x = (rng.random((800, 3)) < 0.5).astype(float)
    y = (rng.random(800) < special.expit(x @ np.array([2.0, -1.0, 1.0]) - 1)).astype(int)
    model = _fit(x, y, 8, seed=5, basis="hinge")
    assert (model.basis_, model.hinge_basis_, model.basis_choice_) == ("linear", None, None)


def test_the_default_records_its_basis_in_the_selection():
    x, y = _bent_data(4000, seed=6)
    ids = random_bags(len(y), 8, seed=6)
    _, counts = bag_counts(ids, y)
    model = LLPClassifier(hidden=(8,), epochs=5).fit(x, ids, counts)
    assert model.selection_["basis"] == "hinge"
    assert model.selection_["basis_choice"]["chosen"] == "hinge"
    if model.model_ == "linear":
        assert model.basis_ == "hinge"


def test_an_unknown_basis_is_refused():
    x, y = _linear_data(100, seed=7)
    with pytest.raises(ProbkitError, match="basis"):
        _fit(x, y, 8, seed=7, basis="spline")


@pytest.mark.parametrize("seed", ["a", -1, 1.5, None])
def test_a_seed_that_is_not_a_non_negative_int_is_refused(seed):
    x, y = _linear_data(100, seed=8)
    with pytest.raises(ProbkitError, match="random_state must be an int >= 0"):
        _fit(x, y, 8, seed=8, random_state=seed)
