"""Reading clustering benchmark sets stored in the clustering-benchmarks layout.

Gagolewski's ``clustering-data-v1`` repository (and the ``clustbench`` package that reads it)
stores each set as ``NAME.data.gz`` (whitespace-separated rows) with one or more reference
labelings ``NAME.labels0.gz``, ``NAME.labels1.gz``, ... (1-based cluster numbers, 0 for
noise). Fränti's SIPU sets (S1–S4, A1–A3, Unbalance, D31, R15, ...) come in that layout.
probkit ships no data: point :func:`load_clustbench` at a folder you have.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np

from probkit._errors import ProbkitError

__all__ = ["BenchmarkSet", "load_clustbench"]


class BenchmarkSet(NamedTuple):
    """A benchmark data set and its reference partition.

    Attributes
    ----------
    name : str
        The set's name (the file stem).
    data : numpy.ndarray
        The rows, shape ``(n, d)``.
    labels : numpy.ndarray
        The reference labels, shape ``(n,)``: 0, 1, ... for clusters, −1 for noise.
    n_clusters : int
        The number of reference clusters (noise excluded).
    """

    name: str
    data: np.ndarray
    labels: np.ndarray
    n_clusters: int


def load_clustbench(folder, name: str, labeling: int = 0) -> BenchmarkSet:
    """Read ``NAME.data.gz`` and ``NAME.labels{labeling}.gz`` from ``folder``.

    Parameters
    ----------
    folder : str or path-like
        The battery's folder (e.g. the ``sipu`` folder of clustering-data-v1).
    name : str
        The set's name, e.g. ``"s1"``.
    labeling : int
        Which reference labeling to read.

    Returns
    -------
    BenchmarkSet
    """
    folder = pathlib.Path(folder)
    data_path = folder / f"{name}.data.gz"
    labels_path = folder / f"{name}.labels{labeling}.gz"
    for path in (data_path, labels_path):
        if not path.is_file():
            raise ProbkitError(
                f"no file {path}; `folder` must hold {name}.data.gz and "
                f"{name}.labels{labeling}.gz (the clustering-benchmarks layout)."
            )
    data = np.loadtxt(data_path, ndmin=2)
    raw = np.loadtxt(labels_path, dtype=np.int64, ndmin=1)
    if raw.shape[0] != data.shape[0]:
        raise ProbkitError(
            f"{labels_path.name} has {raw.shape[0]} labels for {data.shape[0]} rows of data."
        )
    labels = raw - 1  # 1-based clusters, 0 = noise  ->  0-based clusters, -1 = noise
    return BenchmarkSet(name, data, labels, int(np.unique(labels[labels >= 0]).size))
