"""Which columns PPP clusters on, and in what units.

A table as a user brings it has columns in unrelated units (grams next to metres), constant
columns, columns that repeat another in other units, and columns computed from others (a
total next to its parts). Clustering on such a table must not depend on the units, and it must
not fail because the covariance of the columns is singular. This module screens the columns
and builds the affine map from the data's units to the coordinates PPP works in:

* **Screening.** Columns are taken in their order; a column is kept unless it is an affine
  function of the columns kept before it, up to a residual variance of
  :data:`DEPENDENCE_TOLERANCE` of its own: constant columns, duplicates in other units and
  exact linear combinations are dropped, each with its reason. Every dropped column is
  recorded as that affine function of the kept ones, so that centres, means and covariances
  can still be reported for every column.
* **Scaling.** ``"standard"`` centres each kept column and divides it by its standard
  deviation (labels then do not depend on any column's unit or offset); ``"robust"`` uses the
  median and the interquartile range instead (the standard deviation where that range is 0);
  ``"whiten"`` maps the columns to zero mean and identity covariance (labels then do not depend
  on any invertible linear map of the columns: units, rotations, mixing); ``"none"`` centres
  the data and divides by one global scale (for columns already in one meaningful unit; labels
  then depend on the relative units but not on rotations).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import scipy.linalg

__all__ = ["DEPENDENCE_TOLERANCE", "SCALINGS", "ColumnMap", "fit_column_map"]

Scaling = Literal["standard", "robust", "whiten", "none"]
SCALINGS = ("standard", "robust", "whiten", "none")

DEPENDENCE_TOLERANCE = 1e-10
"""Largest residual variance, as a fraction of a column's variance, at which the column counts
as an affine function of the columns before it. Columns written from others with six or seven
significant digits (Statlog's derived colour columns) leave residuals near 1e-13; a column that
carries information leaves far more."""


@dataclasses.dataclass(frozen=True)
class ColumnMap:
    """The affine map between a table's columns and PPP's working coordinates.

    Working coordinates are ``z = (x[kept] − center) @ matrix``; back in the data's units,
    ``x[kept] = z @ inverse + center`` and every column, dropped ones included, is
    ``x = x[kept] @ extension + offset``.

    Attributes
    ----------
    kept : numpy.ndarray
        Indices of the columns clustered on, in increasing order.
    dropped : tuple of (int, str)
        Each dropped column's index and the reason it was dropped.
    center, matrix, inverse : numpy.ndarray
        The centre ``(p,)`` and the scaling ``(p, p)`` of the kept columns, and its inverse.
    extension, offset : numpy.ndarray
        Every column as an affine function of the kept ones: ``(p, d)`` and ``(d,)``.
    scaling : str
        The scaling used (see the module documentation).
    dropped_spread : numpy.ndarray
        The training standard deviation of each dropped column (1 for constant ones).
    covariance : numpy.ndarray
        The training covariance of the kept columns, in the data's units, ``(p, p)``.
    """

    kept: np.ndarray
    dropped: tuple[tuple[int, str], ...]
    center: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    extension: np.ndarray
    offset: np.ndarray
    scaling: str
    dropped_spread: np.ndarray
    covariance: np.ndarray

    def to_working(self, data: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Rows of the full table in working coordinates, as ``dtype``.

        Computed in float64 over row chunks and written into one array of ``dtype``: no
        temporary as large as the table (fresh memory costs more than the arithmetic).
        """
        every_column = self.kept.size == data.shape[1] and bool(
            np.all(self.kept == np.arange(data.shape[1]))
        )
        diagonal = self.scaling != "whiten"  # every other scaling is one factor per column
        out = np.empty((data.shape[0], self.kept.size), dtype=dtype)
        for start in range(0, data.shape[0], _CHUNK_ROWS):
            rows = data[start : start + _CHUNK_ROWS]
            shifted = (rows if every_column else rows[:, self.kept]) - self.center
            if diagonal:  # a per-column scaling: no matrix product
                out[start : start + _CHUNK_ROWS] = shifted * np.diagonal(self.matrix)
            else:
                out[start : start + _CHUNK_ROWS] = shifted @ self.matrix
        return out

    def to_data(self, points: np.ndarray) -> np.ndarray:
        """Points in working coordinates back in the data's units, every column included."""
        return (points @ self.inverse + self.center) @ self.extension + self.offset

    def covariances_to_data(self, covariances: np.ndarray) -> np.ndarray:
        """Covariances in working coordinates back in the data's units (all columns)."""
        back = self.inverse @ self.extension  # (p, d)
        return np.einsum("ai,kab,bj->kij", back, covariances, back)

    @property
    def working_covariance(self) -> np.ndarray:
        """The training covariance in working coordinates, ``(p, p)``."""
        return self.matrix.T @ self.covariance @ self.matrix

    @property
    def log_jacobian(self) -> float:
        """``log |det matrix|``: log densities over the kept columns are working ones plus it."""
        return float(np.linalg.slogdet(self.matrix)[1])

    def departures(self, data: np.ndarray) -> np.ndarray:
        """Largest departure of each dropped column of ``data`` from its affine relation.

        In units of the column's training spread: 0 when the relation holds.
        """
        if not self.dropped:
            return np.zeros(0)
        columns = np.array([index for index, _ in self.dropped])
        predicted = data[:, self.kept] @ self.extension[:, columns] + self.offset[columns]
        return np.max(np.abs(data[:, columns] - predicted), axis=0) / self.dropped_spread


_CHUNK_ROWS = 1 << 16


def _centred_covariance(data: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``(data − mean)ᵀ(data − mean) / n``, centred row chunk by row chunk.

    Centring before the product keeps columns with large offsets exact (the raw second moment
    minus the squared mean cancels their digits); chunks keep the centred copy small, where a
    full one costs more in fresh memory than the product itself (0.25 s against 0.03 s at
    1e6 × 16).
    """
    d = data.shape[1]
    total = np.zeros((d, d))
    for start in range(0, data.shape[0], _CHUNK_ROWS):
        centred = data[start : start + _CHUNK_ROWS] - mean
        total += centred.T @ centred
    return total / data.shape[0]


def fit_column_map(data: np.ndarray, scaling: Scaling, names=None) -> ColumnMap:
    """Screen the columns of ``data`` (shape ``(n, d)``, finite) and fit the scaling.

    Parameters
    ----------
    data : numpy.ndarray
        The table, float32 or float64 (the statistics are taken in float64).
    scaling : {"standard", "robust", "whiten", "none"}
        How the kept columns are scaled (see the module documentation).
    names : sequence of str, optional
        Column names, used in the reasons.

    Returns
    -------
    ColumnMap
        The map; ``kept`` is empty when no column varies.
    """
    d = data.shape[1]
    names = [f"column {j}" for j in range(d)] if names is None else [repr(str(m)) for m in names]
    mean = data.mean(axis=0, dtype=np.float64)
    covariance = _centred_covariance(data, mean)
    spread = np.sqrt(np.maximum(np.diagonal(covariance), 0.0))
    # A column is constant when its spread is at rounding level for its magnitude.
    magnitude = np.maximum(np.abs(data.max(axis=0)), np.abs(data.min(axis=0))).astype(float)
    constant = spread <= 1e-12 * np.maximum(magnitude, 1e-300)
    unit = np.where(constant, 1.0, spread)
    correlation = covariance / np.outer(unit, unit)

    kept: list[int] = []
    dropped: list[tuple[int, str]] = []
    # A Cholesky factor of the kept columns' correlations, grown one column at a time: the
    # squared norm of a column's solve against it is the variance the kept columns explain.
    factor = np.zeros((d, d))
    for j in range(d):
        if constant[j]:
            dropped.append((j, "constant"))
            continue
        p = len(kept)
        cross = correlation[kept, j]
        explained = scipy.linalg.solve_triangular(factor[:p, :p], cross, lower=True) if p else cross
        residual = correlation[j, j] - explained @ explained
        if residual > DEPENDENCE_TOLERANCE:
            factor[p, :p] = explained
            factor[p, p] = np.sqrt(residual)
            kept.append(j)
            continue
        single = np.abs(cross) >= 1 - DEPENDENCE_TOLERANCE
        if single.any():
            reason = f"duplicates {names[kept[int(np.argmax(single))]]} up to units and offset"
        else:
            weights = np.linalg.lstsq(correlation[np.ix_(kept, kept)], cross, rcond=None)[0]
            used = [kept[i] for i in np.argsort(-np.abs(weights))[:4]]
            listed = ", ".join(names[i] for i in used) + (", ..." if p > 4 else "")
            reason = f"a linear combination of other columns ({listed})"
        dropped.append((j, reason))

    kept_index = np.asarray(kept, dtype=np.int64)
    p = kept_index.size
    columns = np.array([j for j, _ in dropped], dtype=np.int64)
    # Each dropped column as an affine function of the kept ones: the least-squares fit, from
    # the covariance already computed (normal equations in correlation units, where the kept
    # block is well conditioned by construction); a constant column gets its value.
    extension = np.zeros((p, d))
    extension[np.arange(p), kept_index] = 1.0
    if p and columns.size:
        weights = np.linalg.solve(
            correlation[np.ix_(kept_index, kept_index)], correlation[np.ix_(kept_index, columns)]
        )
        extension[:, columns] = weights * unit[columns] / unit[kept_index, None]
    offset = np.zeros(d)
    offset[columns] = mean[columns] - mean[kept_index] @ extension[:, columns]
    dropped_spread = unit[columns]
    kept_covariance = covariance[np.ix_(kept_index, kept_index)]
    if p == 0:
        empty = np.zeros((0, 0))
        return ColumnMap(
            kept_index,
            tuple(dropped),
            np.zeros(0),
            empty,
            empty,
            extension,
            offset,
            scaling,
            dropped_spread,
            empty,
        )

    if scaling == "robust":
        values = data[:, kept_index]
        center = np.median(values, axis=0).astype(np.float64)
        quartiles = np.percentile(values, [25, 75], axis=0).astype(np.float64)
        scale = (quartiles[1] - quartiles[0]) / 1.349  # the standard deviation of a Gaussian
        scale = np.where(scale > 0, scale, spread[kept_index])
        matrix = np.diag(1.0 / scale)
    elif scaling == "whiten":
        center = mean[kept_index]
        eigenvalues, vectors = np.linalg.eigh(kept_covariance)
        # The symmetric inverse square root: the whitened data of X and of X·A (A invertible)
        # differ by an orthogonal map, which PPP's splits and tests do not see.
        matrix = (vectors / np.sqrt(eigenvalues)) @ vectors.T
    elif scaling == "standard":
        center = mean[kept_index]
        matrix = np.diag(1.0 / spread[kept_index])
    else:
        center = mean[kept_index]
        matrix = np.eye(p) / np.sqrt(np.mean(spread[kept_index] ** 2))
    return ColumnMap(
        kept_index,
        tuple(dropped),
        center,
        matrix,
        np.linalg.inv(matrix),
        extension,
        offset,
        scaling,
        dropped_spread,
        kept_covariance,
    )
