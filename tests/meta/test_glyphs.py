"""Glyph-Omniglot: the rendered classes, their splits and the episodes drawn from them."""

import jax
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.meta import glyph_episodes
from probkit.meta.glyphs import (
    INSTANCES,
    LOOKALIKE_SIMILARITY,
    SIDE,
    SPLIT_SHARES,
    glyph_data,
    reference_images,
)


@pytest.fixture(scope="module")
def data():
    return glyph_data()


def test_the_classes_are_distinct_characters_split_without_overlap(data):
    classes = len(data.characters)
    assert len(set(data.characters)) == classes
    assert data.images.shape == (classes, INSTANCES, SIDE * SIDE)
    # The splits partition the classes, in the stated shares (rounded).
    together = np.concatenate(list(data.splits.values()))
    np.testing.assert_array_equal(np.sort(together), np.arange(classes))
    for name, share in SPLIT_SHARES.items():
        assert abs(data.splits[name].size - share * classes) <= 1
    # Hundreds of meta-training classes: the point of the data set.
    assert data.splits["train"].size >= 500
    # Every instance is a drawing: pixels in [0, 1] and ink on every canvas.
    assert float(data.images.min()) >= 0.0
    assert float(data.images.max()) <= 1.0
    assert np.all(data.images.sum(axis=-1) > 1.0)


def test_no_two_classes_look_alike(data):
    references = reference_images()
    assert references.shape == (len(data.characters), SIDE * SIDE)
    similarity = references @ references.T
    np.fill_diagonal(similarity, 0.0)
    assert float(similarity.max()) <= LOOKALIKE_SIMILARITY + 1e-6


def test_a_pixel_classifier_is_above_chance_and_far_from_perfect(data):
    # Nearest class mean of the raw pixels over 200 test episodes, 5-way 1-shot, 15 queries
    # per class (15 000 queries): measured 49.3 % on 600 episodes. Its standard error over
    # episodes is about 1.5 points, so 35 % and 75 % are each more than 9 standard errors away
    # (false alarm below 1e-15 if the data set is as described): distortions keep a class
    # recognisable, and raw pixels do not solve the task (a learned embedding has room).
    e = glyph_episodes(jax.random.key(0), 200, shots=1, split="test")
    distances = np.sum(
        (np.asarray(e.query_x)[:, :, None, :] - np.asarray(e.support_x)[:, None, :, :]) ** 2,
        axis=-1,
    )
    predicted = np.asarray(e.support_y)[np.arange(200)[:, None], np.argmin(distances, axis=-1)]
    accuracy = float(np.mean(predicted == np.asarray(e.query_y)))
    assert 0.35 < accuracy < 0.75


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_episodes_hold_distinct_instances_of_their_splits_classes(data, split):
    ways, shots, queries = 5, 2, 3
    e = glyph_episodes(jax.random.key(1), 30, ways=ways, shots=shots, queries=queries, split=split)
    assert e.support_x.shape == (30, ways * shots, SIDE * SIDE)
    assert e.query_x.shape == (30, ways * queries, SIDE * SIDE)
    pool = set(data.splits[split].tolist())
    flat = data.images.reshape(-1, SIDE * SIDE)
    for i in range(30):
        classes = np.asarray(e.classes[i])
        assert len(set(classes.tolist())) == ways
        assert set(classes.tolist()) <= pool
        support, query = np.asarray(e.support_index[i]), np.asarray(e.query_index[i])
        assert len(set(support) | set(query)) == ways * (shots + queries)
        # Row r of the bank is instance r % INSTANCES of class r // INSTANCES.
        np.testing.assert_array_equal(support // INSTANCES, classes[np.asarray(e.support_y[i])])
        np.testing.assert_array_equal(query // INSTANCES, classes[np.asarray(e.query_y[i])])
        np.testing.assert_array_equal(np.asarray(e.support_x[i]), flat[support])
        np.testing.assert_array_equal(np.bincount(e.query_y[i], minlength=ways), queries)
    again = glyph_episodes(
        jax.random.key(1), 30, ways=ways, shots=shots, queries=queries, split=split
    )
    np.testing.assert_array_equal(again.query_index, e.query_index)


def test_impossible_requests_are_refused():
    with pytest.raises(ProbkitError, match="shots \\+ queries"):
        glyph_episodes(jax.random.key(0), 2, shots=6, queries=15)
    with pytest.raises(ProbkitError, match="ways"):
        glyph_episodes(jax.random.key(0), 2, ways=10_000)
    with pytest.raises(ProbkitError, match="split"):
        glyph_episodes(jax.random.key(0), 2, split="val")
    with pytest.raises(ProbkitError, match="num_episodes"):
        glyph_episodes(jax.random.key(0), 0)
