"""Offline binary data sets for LLP benchmarks: UCI Adult, Bank Marketing and Fair's affairs.

Adult and Bank Marketing are read from a folder (``PROBKIT_LLP_DATA``, or
``../shared/data/llp`` next to a source checkout) holding ``adult/adult.{data,test}.gz``
(the UCI files) and ``bank_marketing/{x,y}_{train,val,test}.csv.gz`` (the standardised splits
of the LLP-BP release, CC-BY-4.0, Moro et al. 2014). Fair's affairs data ship inside
statsmodels (6,366 rows; positive when any affair is reported).
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
from typing import NamedTuple

import numpy as np

from probkit._errors import ProbkitError

__all__ = ["BinaryDataset", "llp_data_folder", "load_adult", "load_bank_marketing", "load_fair"]

_ADULT_NUMERIC = (0, 2, 4, 10, 11, 12)  # age, fnlwgt, education-num, gains, losses, hours
_ADULT_LOG = (10, 11)  # capital gain and loss: heavy tails, log1p
_ADULT_CATEGORICAL = (1, 3, 5, 6, 7, 8, 9, 13)


class BinaryDataset(NamedTuple):
    """A train/test split of a binary classification data set (features as float32)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def llp_data_folder() -> pathlib.Path | None:
    """The folder of the LLP data files, or None when this machine has none."""
    candidates = []
    if os.environ.get("PROBKIT_LLP_DATA"):
        candidates.append(pathlib.Path(os.environ["PROBKIT_LLP_DATA"]))
    root = pathlib.Path(__file__).resolve().parents[2]  # the source checkout, if any
    candidates.append(root.parent / "shared" / "data" / "llp")
    for folder in candidates:
        if (folder / "adult" / "adult.data.gz").is_file():
            return folder
    return None


def _folder(folder) -> pathlib.Path:
    folder = pathlib.Path(folder) if folder is not None else llp_data_folder()
    if folder is None or not folder.is_dir():
        raise ProbkitError(
            "the LLP data folder was not found: set PROBKIT_LLP_DATA to a folder holding "
            "adult/ and bank_marketing/ (see probkit.llp.datasets)."
        )
    return folder


def _adult_rows(path: pathlib.Path) -> list[list[str]]:
    rows = []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            fields = [f.strip() for f in line.strip().rstrip(".").split(",")]
            if len(fields) == 15:
                rows.append(fields)
    return rows


def load_adult(folder=None) -> BinaryDataset:
    """UCI Adult: 32,561 training and 16,281 test rows, income above 50K as the positive class.

    Numeric columns are standardised with the training rows' statistics (capital gain and loss
    after ``log1p``); categorical columns are one-hot encoded with the training rows'
    categories (``?`` is a category of its own), 108 features in all.
    """
    folder = _folder(folder) / "adult"
    train, test = _adult_rows(folder / "adult.data.gz"), _adult_rows(folder / "adult.test.gz")

    def numeric(rows):
        values = np.array([[float(r[c]) for c in _ADULT_NUMERIC] for r in rows])
        for position, column in enumerate(_ADULT_NUMERIC):
            if column in _ADULT_LOG:
                values[:, position] = np.log1p(values[:, position])
        return values

    train_numeric, test_numeric = numeric(train), numeric(test)
    mean, std = train_numeric.mean(axis=0), train_numeric.std(axis=0)
    blocks_train, blocks_test = [(train_numeric - mean) / std], [(test_numeric - mean) / std]
    for column in _ADULT_CATEGORICAL:
        categories = sorted({r[column] for r in train})
        index = {c: i for i, c in enumerate(categories)}
        for rows, blocks in ((train, blocks_train), (test, blocks_test)):
            one_hot = np.zeros((len(rows), len(categories)))
            for i, r in enumerate(rows):
                if r[column] in index:
                    one_hot[i, index[r[column]]] = 1.0
            blocks.append(one_hot)

    def labels(rows):
        return np.array([r[14].startswith(">50K") for r in rows], dtype=np.int64)

    return BinaryDataset(
        "adult",
        np.hstack(blocks_train).astype(np.float32),
        labels(train),
        np.hstack(blocks_test).astype(np.float32),
        labels(test),
    )


def _csv(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rt") as handle:
        return np.loadtxt(io.StringIO(handle.read()), delimiter=",", skiprows=1, ndmin=2)


def load_bank_marketing(folder=None) -> BinaryDataset:
    """Bank Marketing as split by the LLP-BP release: train + validation (36,168) and test (9,043).

    16 standardised features; the positive class (11.7 %) is a subscribed term deposit.
    """
    folder = _folder(folder) / "bank_marketing"
    parts = {
        name: (_csv(folder / f"x_{name}.csv.gz"), _csv(folder / f"y_{name}.csv.gz")[:, 0])
        for name in ("train", "val", "test")
    }
    X_train = np.vstack([parts["train"][0], parts["val"][0]])
    y_train = np.concatenate([parts["train"][1], parts["val"][1]])
    return BinaryDataset(
        "bank_marketing",
        X_train.astype(np.float32),
        y_train.astype(np.int64),
        parts["test"][0].astype(np.float32),
        parts["test"][1].astype(np.int64),
    )


def load_fair(test_fraction: float = 0.25, seed: int = 0) -> BinaryDataset:
    """Fair's extramarital-affairs survey (statsmodels, 6,366 rows, 32 % positive): any affair.

    The eight covariates are standardised with the training rows' statistics; the split is a
    fixed-seed stratified shuffle.
    """
    from statsmodels.datasets import fair

    frame = fair.load_pandas().data
    y = (frame["affairs"].to_numpy() > 0).astype(np.int64)
    X = frame.drop(columns=["affairs"]).to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == label))
        test[rows[: round(test_fraction * len(rows))]] = True
    mean, std = X[~test].mean(axis=0), X[~test].std(axis=0)
    X = (X - mean) / std
    return BinaryDataset(
        "fair", X[~test].astype(np.float32), y[~test], X[test].astype(np.float32), y[test]
    )
