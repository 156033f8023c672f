"""A scikit-learn-style estimator for von Mises mixtures on angles and torsions.

:class:`VonMisesMixtureModel` wraps :func:`~probkit.circular.fit.fit_vonmises_mixture` with the
conventions of :class:`sklearn.mixture.GaussianMixture`: hyper-parameters in ``__init__``, all
work in ``fit``, fitted attributes ending in ``_``, ``predict``/``predict_proba``/
``score_samples``/``score``/``sample``/``bic``/``aic``. It is a scikit-learn estimator
(:class:`~sklearn.base.BaseEstimator` and :class:`~sklearn.base.DensityMixin`): it clones, sits
in pipelines and grid searches, and passes
:func:`~sklearn.utils.estimator_checks.check_estimator` but for the checks listed, with their
reasons, in ``tests/circular/test_estimator_sklearn.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin

from probkit._sklearn import EstimatorMixin, check_fitted, validate_features
from probkit._validate import check_positive_int
from probkit.circular.fit import VonMisesMixtureFit, VonMisesPrior, fit_vonmises_mixture

__all__ = ["VonMisesMixtureModel"]


class VonMisesMixtureModel(DensityMixin, EstimatorMixin, BaseEstimator):
    """Mixture of products of von Mises distributions, fitted by EM (scikit-learn conventions).

    Parameters
    ----------
    n_components : int or "auto"
        Number of components ``K``, or ``"auto"`` to choose it among ``candidates``.
    n_init : int
        EM restarts (run in parallel); the best by log-likelihood is kept.
    seed : None, int or jax.random key
        None: deterministic seeding (the same data give the same fit, whatever the row
        order). Otherwise k-means++ seeding from this seed.
    tol : float
        Relative tolerance on the change of the (penalised) log-likelihood.
    max_iter : int
        Maximum number of EM iterations.
    concentration_bounds : (float, float)
        Bounds ``(lo, hi)`` on every concentration; ``hi`` must be finite.
    prior : VonMisesPrior, optional
        Conjugate-type prior on each component (MAP instead of maximum likelihood).
    criterion : {"bic", "icl", "heldout"}
        Model choice when ``n_components="auto"``.
    candidates : iterable of int, optional
        Candidate numbers of components for ``"auto"`` (default 1 to 6).
    heldout_fraction : float
        Share of rows held out by ``criterion="heldout"``.

    Attributes
    ----------
    weights_ : numpy.ndarray
        Mixture weights, shape ``(K,)``.
    means_ : numpy.ndarray
        Component locations (circular means) in radians, shape ``(K, D)``.
    concentrations_ : numpy.ndarray
        Component concentrations ``κ``, shape ``(K, D)``.
    n_components_ : int
        The number of components fitted (the chosen one for ``"auto"``).
    n_features_in_ : int
        ``D``, the number of angles per row.
    feature_names_in_ : numpy.ndarray of str
        The column names, when ``X`` was a data frame with string column names.
    converged_ : bool
        Whether EM met ``tol`` before ``max_iter``.
    n_iter_ : int
        EM iterations of the best restart.
    log_likelihood_ : float
        Log-likelihood of the training data (data-weighted).
    lower_bound_ : float
        Mean (penalised) log-likelihood per unit of data weight, as in scikit-learn.
    degenerate_ : numpy.ndarray
        Boolean per component: concentration at the upper bound or weight below ``1/n``.
    fit_ : VonMisesMixtureFit
        The full result (trace, selection table, ``distribution``).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate(
    ...     [
    ...         stats.vonmises.rvs(8.0, loc=-2.0, size=600, random_state=rng),
    ...         stats.vonmises.rvs(4.0, loc=1.0, size=400, random_state=rng),
    ...     ]
    ... )
    >>> model = VonMisesMixtureModel(n_components=2).fit(X)
    >>> model.predict(np.array([-2.0, 1.0])).tolist() != [0, 0]
    True
    """

    def __init__(
        self,
        n_components: int | str = 1,
        *,
        n_init: int = 1,
        seed: Any = None,
        tol: float = 1e-6,
        max_iter: int = 500,
        concentration_bounds: tuple[float, float] = (0.0, 1e6),
        prior: VonMisesPrior | None = None,
        criterion: str = "bic",
        candidates: Any = None,
        heldout_fraction: float = 0.2,
    ):
        self.n_components = n_components
        self.n_init = n_init
        self.seed = seed
        self.tol = tol
        self.max_iter = max_iter
        self.concentration_bounds = concentration_bounds
        self.prior = prior
        self.criterion = criterion
        self.candidates = candidates
        self.heldout_fraction = heldout_fraction

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> VonMisesMixtureModel:
        """Fit the mixture to angles ``X`` by EM.

        Parameters
        ----------
        X : array_like or data frame
            Radians, shape ``(n,)``, ``(n, 1)`` or ``(n, D)``; finite.
        y : None
            Ignored (scikit-learn API).
        sample_weight : array_like, optional
            Non-negative weight per row.

        Returns
        -------
        VonMisesMixtureModel
            ``self``, fitted.
        """
        X = validate_features(self, X, reset=True, one_d_is_column=True)
        fit = fit_vonmises_mixture(
            X,
            self.n_components,
            weights=sample_weight,
            n_init=self.n_init,
            seed=self.seed,
            tol=self.tol,
            max_iter=self.max_iter,
            concentration_bounds=self.concentration_bounds,
            prior=self.prior,
            candidates=self.candidates,
            criterion=self.criterion,
            heldout_fraction=self.heldout_fraction,
        )
        self.fit_ = fit
        self.weights_ = np.asarray(fit.weights)
        self.means_ = np.asarray(fit.loc)
        self.concentrations_ = np.asarray(fit.concentration)
        self.n_components_ = fit.n_components
        self.converged_ = bool(fit.converged)
        self.n_iter_ = int(fit.n_iter)
        self.log_likelihood_ = float(fit.log_likelihood)
        objective = fit.log_likelihood + fit.log_prior
        self.lower_bound_ = float(objective / fit.n_observations)
        self.degenerate_ = np.asarray(fit.degenerate)
        return self

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then return the most probable component of each row of ``X``."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    # -- using the fit -----------------------------------------------------------------------

    def _check_fitted(self) -> VonMisesMixtureFit:
        check_fitted(self, "fit_", "fit(X)")
        return self.fit_

    def _as_2d(self, X: Any) -> np.ndarray:
        self._check_fitted()
        return validate_features(self, X, reset=False, one_d_is_column=True)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log density of the mixture at each row of ``X``, shape ``(n,)``."""
        return np.asarray(self._check_fitted().log_prob(self._as_2d(X)))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log density per row of ``X`` (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component for each row, shape ``(n, K)``."""
        return np.asarray(self._check_fitted().responsibilities(self._as_2d(X)))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each row, shape ``(n,)``."""
        return np.argmax(self.predict_proba(X), axis=1)

    def _n_parameters(self) -> int:
        return (2 * self.n_features_in_ + 1) * self.n_components_ - 1

    def bic(self, X: Any) -> float:
        """Bayesian information criterion of the fitted model on ``X``: ``-2 log L + p ln n``."""
        X = self._as_2d(X)
        log_likelihood = float(np.sum(self.score_samples(X)))
        return -2.0 * log_likelihood + self._n_parameters() * float(np.log(X.shape[0]))

    def aic(self, X: Any) -> float:
        """Akaike information criterion of the fitted model on ``X``: ``-2 log L + 2p``."""
        log_likelihood = float(np.sum(self.score_samples(X)))
        return -2.0 * log_likelihood + 2.0 * self._n_parameters()

    def sample(self, n_samples: int = 1, seed: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw angles from the fitted mixture.

        Uses NumPy's von Mises sampler, which stays exact at large concentrations (it switches
        to a normal approximation above ``κ = 10⁶``), in float64.

        Parameters
        ----------
        n_samples : int
            Number of rows.
        seed : None, int or numpy.random.Generator
            Seed for :func:`numpy.random.default_rng`.

        Returns
        -------
        X : numpy.ndarray
            Angles in ``[-π, π)``, shape ``(n_samples, D)``.
        labels : numpy.ndarray
            The component of each row, shape ``(n_samples,)``.
        """
        self._check_fitted()
        n_samples = check_positive_int("n_samples", n_samples)
        rng = np.random.default_rng(seed)
        weights = np.asarray(self.weights_, dtype=float)
        labels = rng.choice(self.n_components_, size=n_samples, p=weights / weights.sum())
        loc = self.means_[labels].astype(float)
        kappa = self.concentrations_[labels].astype(float)
        X = rng.vonmises(loc, kappa)
        # numpy returns [-π, π]; fold π onto -π so that the range is half-open.
        return np.where(np.pi <= X, X - 2 * np.pi, X), labels
