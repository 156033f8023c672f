"""VonMisesMixtureModel is a scikit-learn estimator: scikit-learn's own checks pass, but for the
exemptions listed here with their reasons, and what those exemptions leave out is checked here.

The checked instance is the default one: ``n_components=1`` converges in a few EM iterations on
the checks' small data sets, and the whole run (some 50 fits, most of their time compiling) takes
about 15 s of one core.
"""

import numpy as np
import pytest
from scipy import stats
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from probkit import ProbkitError
from probkit.circular import VonMisesMixtureModel

# Checks that cannot pass, and why. They run as strict xfails: a check that starts passing fails
# its test, so that its entry here is removed.
EXPECTED_FAILED_CHECKS = {
    "check_fit1d": (
        "A 1-D X is one angle per row, shape (n,), as everywhere in probkit.circular; the check "
        "expects 1-D X to be refused. (The one_d_array tag would not say this: the checks read "
        "it as 'only 1-D X' and would then run on one column only.)"
    ),
    "check_dtype_object": (
        "X holding a non-number (the check puts a dict in an object array) raises ProbkitError, "
        "probkit's one error type for bad input, a ValueError; the check asks for numpy's "
        "TypeError."
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "The check fits 15 rows of 30 angles; fit refuses fewer rows than the mixture's free "
        "parameters ((2 D + 1) K - 1 = 60). "
        "test_integer_sample_weights_equal_repeated_rows checks the property at a size fit "
        "accepts."
    ),
}


@parametrize_with_checks(
    [VonMisesMixtureModel()],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
    xfail_strict=True,
)
# The checks' data are not angles: some exceed 2π, which fit warns may be degrees.
@pytest.mark.filterwarnings("ignore:`angles` reach:UserWarning")
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def two_torsions():
    rng = np.random.default_rng(1)
    loc = rng.choice([-2.0, 1.0], size=40)
    return np.column_stack(
        [
            stats.vonmises.rvs(4.0, loc=loc, random_state=rng),
            stats.vonmises.rvs(2.0, size=40, random_state=rng),
        ]
    )


def test_integer_sample_weights_equal_repeated_rows(x64, two_torsions):
    # Zero weights drop rows and integer weights repeat them. EM runs to a tight tolerance in
    # float64, so that both fits reach the same fixed point, not two stops near it.
    X = two_torsions
    weights = np.random.default_rng(2).integers(0, 4, size=len(X))
    options = {"n_components": 2, "tol": 1e-14, "max_iter": 2000}
    weighted = VonMisesMixtureModel(**options).fit(X, sample_weight=weights)
    repeated = VonMisesMixtureModel(**options).fit(np.repeat(X, weights, axis=0))
    assert weighted.converged_
    assert repeated.converged_
    np.testing.assert_allclose(weighted.weights_, repeated.weights_, atol=1e-12)
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-12)
    np.testing.assert_allclose(weighted.score_samples(X), repeated.score_samples(X), rtol=1e-12)


def test_unfitted_model_raises_an_error_that_is_both_probkit_and_scikit_learn():
    model = VonMisesMixtureModel()
    for method in (model.predict, model.predict_proba, model.score_samples, model.score):
        with pytest.raises(NotFittedError, match=r"call fit\(X\)") as caught:
            method(np.zeros(3))
        assert isinstance(caught.value, ProbkitError)


def test_one_d_input_is_one_angle_per_row_and_a_mismatch_says_how_to_reshape(two_torsions):
    one = VonMisesMixtureModel().fit(two_torsions[:, 0])
    assert one.n_features_in_ == 1
    np.testing.assert_array_equal(
        one.score_samples(two_torsions[:5, 0]), one.score_samples(two_torsions[:5, :1])
    )
    two = VonMisesMixtureModel().fit(two_torsions)
    with pytest.raises(ProbkitError, match=r"fitted to 2 columns\. Reshape your data"):
        two.predict(two_torsions[0])
    with pytest.raises(ProbkitError, match="X has 1 features, but VonMisesMixtureModel is"):
        two.predict(two_torsions[:, :1])
    with pytest.raises(ProbkitError, match=r"rows \[3\]"):
        two.predict(np.where(np.arange(40)[:, None] == 3, np.nan, two_torsions))


def test_unknown_parameters_and_sparse_input_raise_probkit_errors(two_torsions):
    sparse = pytest.importorskip("scipy.sparse")
    model = VonMisesMixtureModel()
    with pytest.raises(ProbkitError, match="Invalid parameter 'n_clusters'"):
        model.set_params(n_clusters=2)
    with pytest.raises(ProbkitError, match=r"sparse .*X\.toarray\(\)"):
        model.fit(sparse.csr_array(two_torsions))
