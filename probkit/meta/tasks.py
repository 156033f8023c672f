"""Offline episode generators: sinusoid and sine/line regression, a linear-Gaussian model.

Sinusoid regression follows Finn et al. (2017); sine/line regression mixes it with lines as in
probabilistic MAML (Finn, Xu & Levine, 2018) and VAMPIRE; the linear-Gaussian model has an exact
posterior.

Every generator is a pure function of a PRNG key, so a fixed key gives a fixed list of episodes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from probkit._errors import ProbkitError
from probkit._validate import check_positive_int

__all__ = [
    "LinearGaussianEpisodes",
    "SineLineEpisodes",
    "SinusoidEpisodes",
    "linear_gaussian_episodes",
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
