"""Bag validation, construction and bag-aware splitting."""

import numpy as np
import pytest

from probkit import ProbkitError
from probkit.llp import (
    BagKFold,
    bag_counts,
    bag_train_test_split,
    feature_bags,
    random_bags,
    validate_bags,
)


def test_validate_bags_renumbers_ids_and_converts_proportions():
    bags = np.array([10, 30, 10, 20, 30, 30])
    from_counts = validate_bags(bags, 6, counts=[1, 0, 2])
    from_proportions = validate_bags(bags, 6, proportions={10: 0.5, 20: 0.0, 30: 2 / 3})
    np.testing.assert_array_equal(from_counts.bag_of, [0, 2, 0, 1, 2, 2])
    np.testing.assert_array_equal(from_counts.sizes, [2, 1, 3])
    np.testing.assert_allclose(from_proportions.counts, from_counts.counts)
    members, mask = from_counts.padded()
    assert members.shape == (3, 3)
    for bag in range(3):
        np.testing.assert_array_equal(
            np.sort(members[bag][mask[bag]]), np.flatnonzero(from_counts.bag_of == bag)
        )


@pytest.mark.parametrize(
    ("bags", "kwargs", "match"),
    [
        ([0, 0, 1], {"counts": [3, 0]}, r"bags \[0\] have counts \[3.0\]"),
        ([0, 0, 1], {"counts": [-1, 0]}, r"bags \[0\]"),
        (["a", "b", "b"], {"proportions": [0.5, 1.5]}, r"bags \['b'\]"),
        ([0, 0, 1], {"counts": [1]}, "one value per bag"),
        ([0, 0, 1], {"counts": {0: 1}}, r"no value for bags \[1\]"),
        ([0, 0, 1], {"counts": {0: 1, 1: 0, 7: 2}}, r"bags \[7\] that no row of X belongs to"),
        ([0, np.nan, 1], {"counts": [1, 0]}, r"rows \[1\] have no bag"),
        ([0, -np.inf, 1], {"counts": [1, 0]}, r"rows \[1\] have no bag \(NaN or infinite id\)"),
        ([0, -1, 1], {"counts": [1, 0]}, r"rows \[1\] have a negative bag id"),
        ([0, 0], {"counts": [1]}, r"one bag id per row"),
        ([0, 0, 1], {"counts": [1, 0], "proportions": [0.5, 0]}, "exactly one"),
        ([0, 0, 1], {"counts": [np.nan, 0]}, "not finite"),
    ],
)
def test_bad_bags_are_named(bags, kwargs, match):
    with pytest.raises(ProbkitError, match=match):
        validate_bags(
            np.asarray(bags, dtype=object if isinstance(bags[0], str) else None), 3, **kwargs
        )


def test_random_bags_keep_the_remainder_and_are_seeded():
    bag_of = random_bags(103, 10, seed=4)
    sizes = np.bincount(bag_of)
    assert sizes.tolist() == [10] * 10 + [3]
    np.testing.assert_array_equal(bag_of, random_bags(103, 10, seed=4))
    assert not np.array_equal(bag_of, random_bags(103, 10, seed=5))


def test_bag_counts_and_feature_bags():
    column = np.array(["x", "y", "x", "z"])
    bag_of = feature_bags(column)
    ids, counts = bag_counts(bag_of, [1, 0, 1, 1])
    np.testing.assert_array_equal(ids, [0, 1, 2])
    np.testing.assert_array_equal(counts, [2, 0, 1])


def test_bag_splits_never_cut_a_bag():
    bag_of = random_bags(200, 7, seed=0)
    train, test = bag_train_test_split(bag_of, 0.25, seed=1)
    assert np.intersect1d(bag_of[train], bag_of[test]).size == 0
    assert len(train) + len(test) == 200
    folds = list(BagKFold(4, seed=2).split(np.zeros((200, 1)), groups=bag_of))
    assert len(folds) == 4
    tested = np.concatenate([test for _, test in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(200))
    for train, test in folds:
        assert np.intersect1d(bag_of[train], bag_of[test]).size == 0
    with pytest.raises(ProbkitError, match="groups=bags"):
        next(BagKFold(2).split(np.zeros((4, 1))))
