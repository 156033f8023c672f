"""Bags: validation of the ``(bags, counts)`` input, bag construction and bag-aware splitting.

In learning from label proportions each row ``i`` belongs to a bag ``b(i)`` and only the bag's
count of positives ``k_b`` (or its proportion ``k_b / m_b``) is observed. Everything here works
on a bag id per row; ids may be any integers and are renumbered ``0..B-1`` in order of first
appearance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from probkit._errors import ProbkitError

__all__ = [
    "BagKFold",
    "Bags",
    "bag_counts",
    "bag_train_test_split",
    "feature_bags",
    "random_bags",
]


@dataclasses.dataclass(frozen=True)
class Bags:
    """Validated bags: a dense id per row, the bags' sizes and counts, and a padded layout.

    Attributes
    ----------
    bag_of : numpy.ndarray of int, shape (n,)
        The bag of each row, ``0..num_bags-1``.
    sizes : numpy.ndarray of int, shape (num_bags,)
        ``m_b``.
    counts : numpy.ndarray of float, shape (num_bags,)
        ``k_b``, the number of positives (a proportion times the size when proportions were
        given; need not be an integer then).
    ids : numpy.ndarray, shape (num_bags,)
        The caller's id of each bag.
    """

    bag_of: np.ndarray
    sizes: np.ndarray
    counts: np.ndarray
    ids: np.ndarray

    @property
    def num_bags(self) -> int:
        """The number of bags ``B``."""
        return int(self.sizes.shape[0])

    @property
    def proportions(self) -> np.ndarray:
        """``k_b / m_b``."""
        return self.counts / self.sizes

    @property
    def integer_counts(self) -> bool:
        """True when every count is a whole number (a hard count constraint is possible)."""
        return bool(np.all(self.counts == np.round(self.counts)))

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """``members`` (B, w) and ``mask`` (B, w): the rows of each bag, padded to the largest size."""
        width = int(self.sizes.max())
        order = np.argsort(self.bag_of, kind="stable")
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        slot = np.arange(width)
        mask = slot[None, :] < self.sizes[:, None]
        members = np.where(mask, order[np.minimum(starts[:, None] + slot, len(order) - 1)], 0)
        return members, mask

    def subset(self, bags: np.ndarray) -> tuple[np.ndarray, Bags]:
        """The rows of the given bags (positions in this object) and their :class:`Bags`."""
        bags = np.asarray(bags)
        rows = np.flatnonzero(np.isin(self.bag_of, bags))
        renumber = np.full(self.num_bags, -1)
        renumber[bags] = np.arange(len(bags))
        return rows, Bags(
            bag_of=renumber[self.bag_of[rows]],
            sizes=self.sizes[bags],
            counts=self.counts[bags],
            ids=self.ids[bags],
        )


def _check_bag_ids(bags: Any, n: int) -> np.ndarray:
    bags = np.asarray(bags)
    if bags.ndim != 1 or bags.shape[0] != n:
        raise ProbkitError(
            f"bags must give one bag id per row of X: shape ({n},), got {bags.shape}."
        )
    if bags.dtype.kind == "f":
        if not np.all(np.isfinite(bags)):
            rows = np.flatnonzero(~np.isfinite(bags))[:5].tolist()
            raise ProbkitError(
                f"rows {rows} have no bag (NaN or infinite id); every row needs a bag."
            )
        if np.any(bags != np.round(bags)):
            raise ProbkitError("bags must be integer ids (or strings), got fractional values.")
        bags = bags.astype(np.int64)
    if bags.dtype.kind in "iu" and np.any(bags < 0):
        rows = np.flatnonzero(bags < 0)[:5].tolist()
        raise ProbkitError(f"rows {rows} have a negative bag id; every row needs a bag (ids ≥ 0).")
    return bags


def validate_bags(bags: Any, n: int, counts: Any = None, proportions: Any = None) -> Bags:
    """Check a bag id per row and one count (or proportion) per bag; return :class:`Bags`.

    Parameters
    ----------
    bags : array_like, shape (n,)
        Bag ids (non-negative integers or strings).
    n : int
        Number of rows.
    counts, proportions : array_like, optional
        Exactly one of: the number of positives of each bag, in ``[0, m_b]``, or the fraction,
        in ``[0, 1]``; indexed by the sorted unique bag ids (``numpy.unique(bags)``) or, when
        given as a dict, by id.

    Raises
    ------
    ProbkitError
        Naming the offending bags: counts outside ``[0, size]``, proportions outside ``[0, 1]``,
        missing bag values, values for bags with no rows, rows without a bag.
    """
    bag_ids = _check_bag_ids(bags, n)
    if (counts is None) == (proportions is None):
        raise ProbkitError("give exactly one of counts (positives per bag) or proportions.")
    ids, bag_of, sizes = np.unique(bag_ids, return_inverse=True, return_counts=True)
    name = "counts" if counts is not None else "proportions"
    given = counts if counts is not None else proportions
    if isinstance(given, dict):
        missing = [i for i in ids.tolist() if i not in given]
        if missing:
            raise ProbkitError(f"{name} has no value for bags {missing[:5]}.")
        known = set(ids.tolist())
        empty = [i for i in given if i not in known]
        if empty:
            # A count for a bag with no rows is a misaligned table (ids of another split, or
            # of other types), not a value to drop quietly.
            raise ProbkitError(
                f"{name} has values for bags {empty[:5]} that no row of X belongs to; give "
                "values only for the bags in `bags` (a bag needs at least one row)."
            )
        values = np.array([given[i] for i in ids.tolist()], dtype=np.float64)
    else:
        values = np.asarray(given, dtype=np.float64)
        if values.shape != ids.shape:
            raise ProbkitError(
                f"{name} must hold one value per bag ({len(ids)} bags, in the order of "
                f"numpy.unique(bags)), got shape {values.shape}."
            )
    if not np.all(np.isfinite(values)):
        bad = ids[~np.isfinite(values)][:5].tolist()
        raise ProbkitError(f"{name} of bags {bad} are not finite.")
    if counts is None:
        bad = (values < 0) | (values > 1)
        if np.any(bad):
            raise ProbkitError(
                f"proportions must lie in [0, 1]; bags {ids[bad][:5].tolist()} have "
                f"{values[bad][:5].tolist()}."
            )
        values = values * sizes
    else:
        bad = (values < 0) | (values > sizes)
        if np.any(bad):
            raise ProbkitError(
                f"counts must lie in [0, bag size]; bags {ids[bad][:5].tolist()} have counts "
                f"{values[bad][:5].tolist()} and sizes {sizes[bad][:5].tolist()}."
            )
    return Bags(bag_of=bag_of.astype(np.int64), sizes=sizes, counts=values, ids=ids)


def bag_counts(bags: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The sorted bag ids and each bag's number of positive labels (to build LLP data)."""
    y = np.asarray(y)
    ids, bag_of = np.unique(np.asarray(bags), return_inverse=True)
    return ids, np.bincount(bag_of, weights=(y > 0).astype(float), minlength=len(ids))


def random_bags(n: int, bag_size: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Shuffle ``n`` rows into disjoint bags of ``bag_size`` (the last bag keeps the remainder).

    Returns a bag id per row. The LLP-BP release drops the remainder; keeping it as a smaller
    bag loses no data (every learner here handles ragged bags).
    """
    if bag_size < 1:
        raise ProbkitError(f"bag_size must be a positive integer, got {bag_size}.")
    rng = np.random.default_rng(seed)
    bag_of = np.empty(n, dtype=np.int64)
    bag_of[rng.permutation(n)] = np.arange(n) // bag_size
    return bag_of


def feature_bags(column: Any) -> np.ndarray:
    """Bags defined by the value of a (categorical) column, as in LLP-Bench's feature bags."""
    _, bag_of = np.unique(np.asarray(column), return_inverse=True)
    return bag_of.astype(np.int64)


def bag_train_test_split(
    bags: Any, test_fraction: float = 0.1, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into train and test by whole bags; returns the two row-index arrays."""
    if not 0.0 < test_fraction < 1.0:
        raise ProbkitError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    ids = np.unique(np.asarray(bags))
    if len(ids) < 2:
        raise ProbkitError("a bag-level split needs at least two bags.")
    rng = np.random.default_rng(seed)
    num_test = min(len(ids) - 1, max(1, round(test_fraction * len(ids))))
    test_ids = rng.permutation(ids)[:num_test]
    is_test = np.isin(np.asarray(bags), test_ids)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


@dataclasses.dataclass(frozen=True)
class BagKFold:
    """K-fold cross-validation over whole bags (a scikit-learn style splitter).

    ``split(X, y=None, groups=bags)`` yields train and test row indices; no bag is split.
    Equivalent to scikit-learn's ``GroupKFold`` with shuffled groups.
    """

    n_splits: int = 5
    seed: int = 0

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds."""
        return self.n_splits

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_rows, test_rows)`` for each fold; ``groups`` are the bag ids."""
        if groups is None:
            raise ProbkitError("BagKFold.split needs groups=bags (a bag id per row).")
        ids = np.unique(np.asarray(groups))
        if len(ids) < self.n_splits:
            raise ProbkitError(f"{len(ids)} bags cannot make {self.n_splits} folds.")
        shuffled = np.random.default_rng(self.seed).permutation(ids)
        for fold in np.array_split(shuffled, self.n_splits):
            is_test = np.isin(np.asarray(groups), fold)
            yield np.flatnonzero(~is_test), np.flatnonzero(is_test)
