"""The scikit-learn-style VonMisesMixtureModel: parameter protocol, fitted attributes, and
agreement of every method with the functional fit it wraps.

Shapes and options match ``test_fit.py`` (1200 rows, K = 3, float64) so that both files share
one compiled EM program.
"""

import jax
import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone

from probkit._errors import ProbkitError
from probkit.circular.estimator import VonMisesMixtureModel
from probkit.circular.fit import VonMisesPrior, fit_vonmises_mixture

N = 1200


@pytest.fixture(scope="module")
def angles():
    rng = np.random.default_rng(20240601)
    labels = rng.choice(3, size=N, p=[0.5, 0.3, 0.2])
    locs, kappas = np.array([-2.0, 0.5, 2.5]), np.array([8.0, 4.0, 30.0])
    return stats.vonmises.rvs(kappas[labels], loc=locs[labels], random_state=rng)


@pytest.fixture(scope="module")
def model(angles):
    with jax.enable_x64(True):
        return VonMisesMixtureModel(n_components=3).fit(angles)


def test_hyper_parameters_are_stored_unchanged_and_settable():
    prior = VonMisesPrior(pseudo_count=2.0)
    model = VonMisesMixtureModel(n_components="auto", seed=3, prior=prior, candidates=(1, 2))
    params = model.get_params()
    assert params["n_components"] == "auto"
    assert params["prior"] is prior
    assert params["candidates"] == (1, 2)
    assert model.set_params(n_init=4, tol=1e-3) is model
    assert (model.n_init, model.tol) == (4, 1e-3)
    with pytest.raises(ProbkitError, match="n_clusters"):
        model.set_params(n_clusters=2)
    assert "n_components='auto'" in repr(model)
    rebuilt = VonMisesMixtureModel(**model.get_params())
    assert rebuilt.get_params() == model.get_params()


def test_sklearn_clone_copies_the_parameters():
    model = VonMisesMixtureModel(n_components=2, seed=1)
    assert clone(model).get_params() == model.get_params()


def test_fitted_attributes_equal_the_functional_fit(x64, angles, model):
    fit = fit_vonmises_mixture(angles, 3)
    np.testing.assert_array_equal(model.weights_, np.asarray(fit.weights))
    assert model.means_.shape == (3, 1)
    assert model.concentrations_.shape == (3, 1)
    np.testing.assert_array_equal(model.means_[:, 0], np.asarray(fit.loc))
    np.testing.assert_array_equal(model.concentrations_[:, 0], np.asarray(fit.concentration))
    assert model.n_components_ == 3
    assert model.n_features_in_ == 1
    assert model.converged_
    assert model.n_iter_ == int(fit.n_iter)
    assert model.lower_bound_ == pytest.approx(float(fit.log_likelihood) / N, rel=1e-12)
    assert not model.degenerate_.any()
    assert model.get_params()["n_components"] == 3


def test_methods_agree_with_each_other_and_with_the_fit(x64, angles, model):
    proba = model.predict_proba(angles)
    assert proba.shape == (N, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(angles), proba.argmax(1))
    log_density = model.score_samples(angles)
    np.testing.assert_allclose(
        log_density, np.asarray(model.fit_.log_prob(angles[:, None])), rtol=1e-12
    )
    assert model.score(angles) == pytest.approx(log_density.mean())
    # On the training data, bic(X) is the fit's own BIC: the same likelihood, p = 8, n = N.
    assert model.bic(angles) == pytest.approx(float(model.fit_.bic()), rel=1e-10)
    assert model.aic(angles) == pytest.approx(-2 * log_density.sum() + 2 * 8)
    # (n, 1) is the same data as (n,).
    np.testing.assert_array_equal(model.predict_proba(angles[:, None]), proba)


def test_sample_is_reproducible_and_follows_the_fitted_weights(x64, model):
    X, labels = model.sample(4000, seed=0)
    again, _ = model.sample(4000, seed=0)
    np.testing.assert_array_equal(X, again)
    assert X.shape == (4000, 1)
    assert X.min() >= -np.pi
    assert X.max() < np.pi
    # Label counts are multinomial: 5 standard errors, false-alarm rate < 2e-6 per component.
    share = np.bincount(labels, minlength=3) / 4000
    se = np.sqrt(model.weights_ * (1 - model.weights_) / 4000)
    assert np.all(np.abs(share - model.weights_) < 5 * se)


def test_auto_sets_the_chosen_number_of_components(x64, angles):
    model = VonMisesMixtureModel(n_components="auto", candidates=(1, 2, 3)).fit(angles)
    assert model.n_components_ == model.fit_.selection.chosen == 3
    assert model.n_components == "auto"


def test_sample_weight_reaches_the_fit(x64, angles, model):
    weighted = VonMisesMixtureModel(n_components=3).fit(angles, sample_weight=np.ones(N))
    np.testing.assert_allclose(weighted.weights_, model.weights_, rtol=1e-12)


def test_unfitted_and_mismatched_input_raise():
    model = VonMisesMixtureModel(n_components=2)
    with pytest.raises(ProbkitError, match="not fitted"):
        model.predict(np.zeros(3))
    with pytest.raises(ProbkitError, match="shape"):
        model.fit(np.zeros((2, 2, 2)))
