"""A piecewise-linear additive basis for the linear LLP model: each column and its hinges.

A logistic model on the standardised features is the simplest strong learner from bag counts,
but it draws every feature's effect as a straight line, and a bag count says little about
the shape of an effect. Adding, for every column with enough distinct values, the hinges
``max(0, x − t)`` at a few of its quantiles ``t`` (linear splines, the basis of MARS) lets
each effect bend while the model stays one linear layer on fixed features, fitted by the
same L-BFGS with its penalty chosen by the same cross-validation over bags. On Bank Marketing in
bags of 8 it raised the linear DLLP's test AUC from 0.836 to 0.853–0.858, the level of the
networks (``benchmarks/results/llp_bags.md``); where the bags cannot show the bends, the
cross-validation keeps the straight lines (:class:`~probkit.llp.LLPClassifier`'s
``basis="auto"``).

Written here because it is four quantiles and a ``maximum`` per column: scikit-learn's
``SplineTransformer`` would add B-splines of every column (binary ones included), whose
local support needs more knots for the same bend and whose columns no longer contain the
straight line the linear model starts from.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["HINGE_QUANTILES", "MIN_DISTINCT_VALUES", "HingeBasis", "fit_hinge_basis"]

HINGE_QUANTILES = (0.2, 0.4, 0.6, 0.8)
"""The quantiles of a column at which its hinges bend: four bends, each with a fifth of the rows
or more on its far side, so that every hinge is supported by many bags."""

MIN_DISTINCT_VALUES = 8
"""Columns with fewer distinct values (indicators, small counts) get no hinges: a bend between
a handful of values is a per-value effect, which their own column and the others already give
the model room for."""


class HingeBasis(NamedTuple):
    """Hinge features of standardised columns, each centred and scaled on the training rows.

    Attributes
    ----------
    columns : numpy.ndarray of int, shape (h,)
        The column each hinge bends.
    knots : numpy.ndarray, shape (h,)
        Where it bends (in the column's standardised units).
    mean, scale : numpy.ndarray, shape (h,)
        The training mean and standard deviation of ``max(0, x − knot)``, so that the penalty
        treats the hinges like the standardised columns.
    """

    columns: np.ndarray
    knots: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @property
    def size(self) -> int:
        """The number of hinges."""
        return int(self.columns.size)

    def transform(self, standardised: np.ndarray) -> np.ndarray:
        """The columns followed by their hinges, shape ``(n, d + h)``."""
        standardised = np.asarray(standardised, np.float64)
        hinges = np.maximum(standardised[:, self.columns] - self.knots, 0.0)
        return np.concatenate([standardised, (hinges - self.mean) / self.scale], axis=1)


def fit_hinge_basis(standardised: np.ndarray) -> HingeBasis:
    """The hinges of every column of ``standardised`` with enough distinct values.

    Knots are the column's :data:`HINGE_QUANTILES` (repeated quantiles of a column that is
    mostly one value give one knot); a hinge that is zero on every training row is left out.
    """
    standardised = np.asarray(standardised, np.float64)
    columns, knots, means, scales = [], [], [], []
    for j in range(standardised.shape[1]):
        values = standardised[:, j]
        if np.unique(values).size < MIN_DISTINCT_VALUES:
            continue
        for knot in np.unique(np.quantile(values, HINGE_QUANTILES)):
            hinge = np.maximum(values - knot, 0.0)
            scale = hinge.std()
            if scale > 0:
                columns.append(j)
                knots.append(knot)
                means.append(hinge.mean())
                scales.append(scale)
    return HingeBasis(
        np.asarray(columns, np.int64),
        np.asarray(knots, np.float64),
        np.asarray(means, np.float64),
        np.asarray(scales, np.float64),
    )
