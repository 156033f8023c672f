"""A seedless subsample of a table's rows that depends neither on their order nor on units.

PPP grows its tree on a subsample of large tables (``PPP(tree_rows=...)``): the tests that decide
the splits have all the power they need from a hundred thousand rows, and every pass over the
full data costs time. Drawing that subsample with a random generator would make the labels
depend on a seed; taking every m-th row would make them depend on the rows' order. Instead
each row is hashed from its own values and the rows with the smallest hashes are kept, in hash
order: the same table in any row order gives the same subsample, and so the same tree.

The values hashed are the row's working coordinates (the columns after PPP's scaling, which
removes units and offsets; rotated onto the fourth-moment axes under whitening, which removes
rotations), in absolute value (a column whose sign is flipped gives the same hashes) and on a
grid of 1/1024 of a standard deviation. The grid is what makes the sample unit-free in
practice: the scaling of the same table in other units agrees to rounding, about 1e-16
relative, and a value moves to another grid cell only when it lies that close to a cell's
edge (about once in 1e13 values). Rows in the same cell of every column share a hash and are
kept or left out together.

The hash mixes each column's cell index into the row's hash with the SplitMix64 finaliser
(Steele et al., OOPSLA 2014), whose avalanche spreads every input bit over the output, so the
selection behaves as a uniform random subsample for any table not built to defeat it. Written
with NumPy because no library hashes the rows of an array by value.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hashed_subsample", "row_hashes"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_CHUNK_ROWS = 1 << 14
_GRID = 1024.0
"""Cells per working unit (a standard deviation under the default scaling)."""


def _splitmix64(z: np.ndarray, scratch: np.ndarray) -> None:
    # In place: the pass over the rows is bound by memory traffic, not arithmetic.
    for shift, multiplier in ((30, _MIX1), (27, _MIX2)):
        np.right_shift(z, np.uint64(shift), out=scratch)
        np.bitwise_xor(z, scratch, out=z)
        np.multiply(z, multiplier, out=z)
    np.right_shift(z, np.uint64(31), out=scratch)
    np.bitwise_xor(z, scratch, out=z)


def row_hashes(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every row of a 64-bit integer array ``words`` (shape ``(n, d)``).

    Mixing after every column: a plain multiply-add of the words collides on structured
    values (85 distinct rows of small integers gave 47 hashes).
    """
    words = np.asarray(words).view(np.uint64)
    hashes = np.full(words.shape[0], _GOLDEN, dtype=np.uint64)
    scratch = np.empty_like(hashes)
    for column in range(words.shape[1]):
        np.bitwise_xor(hashes, words[:, column], out=hashes)
        _splitmix64(hashes, scratch)
    return hashes


def _grid_cells(rows: np.ndarray, rotation: np.ndarray | None) -> np.ndarray:
    values = np.asarray(rows, dtype=np.float64)
    if rotation is not None:
        values = values @ rotation
    # Column-major, so that each column the hash reads is contiguous.
    return np.floor(np.abs(values.T) * _GRID).astype(np.int64).T


def hashed_subsample(working: np.ndarray, size: int, rotation=None) -> np.ndarray:
    """Indices of ``size`` rows of ``working``: those with the smallest hashes, in hash order.

    Parameters
    ----------
    working : numpy.ndarray
        The rows in working coordinates (unit-free), shape ``(n, d)``.
    size : int
        Rows to keep.
    rotation : numpy.ndarray, optional
        A ``(d, d)`` matrix applied to the rows before hashing (the fourth-moment axes under
        whitening, which make the coordinates rotation-free).

    Returns
    -------
    numpy.ndarray
        ``min(size, n)`` row indices, in increasing order of their hashes.
    """
    hashes = np.empty(working.shape[0], dtype=np.uint64)
    # Row chunks: a converted copy of the whole table costs more in fresh memory than hashing.
    for start in range(0, working.shape[0], _CHUNK_ROWS):
        cells = _grid_cells(working[start : start + _CHUNK_ROWS], rotation)
        hashes[start : start + _CHUNK_ROWS] = row_hashes(cells)
    if size >= hashes.size:
        return np.argsort(hashes, kind="stable")
    chosen = np.argpartition(hashes, size - 1)[:size]
    return chosen[np.argsort(hashes[chosen], kind="stable")]
