"""scikit-learn plumbing shared by probkit's estimators: parameters, the fitted check, ``X``.

probkit's estimators subclass :class:`sklearn.base.BaseEstimator` and the mixin of their kind,
with :class:`EstimatorMixin` on the left of ``BaseEstimator``. What is here raises
:class:`~probkit.ProbkitError` (the not-fitted error is also scikit-learn's
:class:`~sklearn.exceptions.NotFittedError`), as every probkit function does for bad input, while
keeping scikit-learn's bookkeeping: ``n_features_in_`` and, for data frames,
``feature_names_in_`` are set by ``fit`` and checked by every later method, with scikit-learn's
messages (which :func:`sklearn.utils.estimator_checks.check_estimator` matches).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.utils.validation import validate_data

from probkit._errors import NotFittedError, ProbkitError

__all__ = ["EstimatorMixin", "check_fitted", "validate_features"]


class EstimatorMixin:
    """What probkit adds to :class:`~sklearn.base.BaseEstimator`.

    ``set_params`` raises :class:`~probkit.ProbkitError` for an unknown parameter, with
    scikit-learn's message, which lists the valid names.
    """

    def set_params(self, **params: Any):
        """Set hyper-parameters by name; returns ``self``."""
        try:
            return super().set_params(**params)
        except ValueError as error:
            if isinstance(error, ProbkitError):
                raise
            raise ProbkitError(str(error)) from error


def check_fitted(estimator: Any, attribute: str, fit_call: str) -> None:
    """Raise ``NotFittedError`` unless ``estimator`` has ``attribute`` (set by its ``fit``).

    Parameters
    ----------
    estimator : object
        The estimator.
    attribute : str
        A fitted attribute that ``fit`` always sets.
    fit_call : str
        How to fit it, for the message, e.g. ``"fit(X)"``.
    """
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; call {fit_call} before using it."
        )


def validate_features(
    estimator: Any,
    X: Any,
    *,
    reset: bool,
    one_d_is_column: bool = False,
    dtype: Any = (np.float64, np.float32),
    finite: bool = True,
) -> np.ndarray:
    """``X`` as a finite 2-D float array, recorded by (``reset``) or checked against ``fit``.

    Parameters
    ----------
    estimator : object
        A :class:`sklearn.base.BaseEstimator`. With ``reset=True`` (in ``fit``) its
        ``n_features_in_`` and, when ``X`` is a data frame, ``feature_names_in_`` are set;
        with ``reset=False`` ``X`` must match them.
    X : array_like or data frame
        The rows.
    reset : bool
        True in ``fit``, False afterwards.
    one_d_is_column : bool
        Accept a 1-D ``X`` of shape ``(n,)`` as one column, ``(n, 1)``.
    dtype : dtype or tuple of dtypes
        Accepted float dtypes; other input is converted to the first.
    finite : bool
        Refuse NaN and infinite values (False: leave them for the caller to report).

    Returns
    -------
    numpy.ndarray
        The validated array, shape ``(n, n_features_in_)``.

    Raises
    ------
    ProbkitError
        Sparse, complex or non-numeric input, a wrong number of dimensions, no rows or no
        columns, NaN or infinite values, or (``reset=False``) other columns than in ``fit``.
    """
    if sparse.issparse(X):
        raise ProbkitError(
            f"`X` is a sparse {type(X).__name__}, but {type(estimator).__name__} needs dense "
            "data; pass X.toarray()."
        )
    if not hasattr(X, "shape"):
        # Lists and other array-likes; arrays and data frames keep their type (and column names).
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as error:
            raise ProbkitError(f"`X` must be an array of numbers; {error}") from error
    accepted = (1, 2) if one_d_is_column else (2,)
    shapes = "(n,) or (n, d)" if one_d_is_column else "(n, d)"
    if len(X.shape) not in accepted:
        hint = ""
        if len(X.shape) == 1:
            hint = (
                " Reshape your data: X.reshape(-1, 1) if it is one column, X.reshape(1, -1) if "
                "it is one row."
            )
        raise ProbkitError(f"`X` must have shape {shapes}; got shape {X.shape}.{hint}")
    if len(X.shape) == 1:
        fitted_columns = getattr(estimator, "n_features_in_", 1)
        if not reset and fitted_columns != 1:
            raise ProbkitError(
                f"`X` of shape {X.shape} is read as {X.shape[0]} row(s) of one column, but "
                f"{type(estimator).__name__} was fitted to {fitted_columns} columns. Reshape "
                "your data: X.reshape(1, -1) if it is one row."
            )
        X = np.reshape(np.asarray(X), (-1, 1))
    try:
        array = validate_data(estimator, X, reset=reset, dtype=dtype, ensure_all_finite=False)
    except (TypeError, ValueError) as error:
        if isinstance(error, ProbkitError):
            raise
        # scikit-learn's message says the fault and usually the fix; keep it, as a ProbkitError
        # that names the argument (its conversion errors do not: "could not convert string to
        # float: 'a'").
        message = str(error)
        if not message.startswith(("X ", "`X`")):
            message = f"`X` must be an array of numbers: {message}"
        raise ProbkitError(message) from error
    if finite:
        bad = ~np.isfinite(array).all(axis=1)
        if bad.any():
            raise ProbkitError(
                f"`X` holds NaN or inf in rows {np.flatnonzero(bad)[:5].tolist()} (of "
                f"{array.shape[0]}); {type(estimator).__name__} needs finite values: impute or "
                "drop those rows first."
            )
    return array
