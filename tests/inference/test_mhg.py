"""Kernels of probkit.inference.mhg: invariance from an exact start, NaN handling, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.inference.mhg import (
    acceptance_log_probability,
    mala,
    metropolis_hastings,
    random_walk,
)
from probkit.theory.calibration import holm_combined_p_value, mean_z_test

pytestmark = pytest.mark.usefixtures("x64")


def log_target(x):
    # A correlated 2-D Gaussian: mean (1, -1), covariance [[1, .8], [.8, 2]].
    mean = jnp.array([1.0, -1.0])
    precision = jnp.linalg.inv(jnp.array([[1.0, 0.8], [0.8, 2.0]]))
    d = x["v"] - mean
    return -0.5 * d @ precision @ d


def exact_draws(key, size):
    chol = np.linalg.cholesky(np.array([[1.0, 0.8], [0.8, 2.0]]))
    z = jax.random.normal(key, (size, 2))
    return {"v": jnp.array([1.0, -1.0]) + z @ chol.T}


KERNELS = {
    "random_walk": lambda: random_walk(log_target, 1.2),
    "random_walk_matrix": lambda: random_walk(log_target, jnp.array([[1.0, 0.0], [0.6, 1.1]])),
    "random_walk_barker": lambda: random_walk(log_target, 1.0, rule="barker"),
    "mala": lambda: mala(log_target, 0.9),
    "asymmetric_mh": lambda: metropolis_hastings(
        log_target,
        lambda key, x: {"v": 0.5 * x["v"] + jax.random.normal(key, (2,))},
        lambda y, x: -0.5 * jnp.sum((y["v"] - 0.5 * x["v"]) ** 2),
    ),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_one_step_from_an_exact_draw_stays_exact(name):
    """Gandy–Scott style: x ~ π, x' ~ K(x, ·) ⇒ x' ~ π.

    z-tests of the first and second moments of x' over 40 000 independent one-step chains,
    combined by Holm; false-alarm rate 1e-3 per kernel.
    """
    kernel = KERNELS[name]()
    key_x, key_step = jax.random.split(jax.random.key(3))
    draws = exact_draws(key_x, 40_000)

    @jax.jit
    def one_step(keys, positions):
        def step(key, position):
            state, info = kernel.step(key, kernel.init(position))
            return state.position["v"], info.acceptance_probability

        return jax.vmap(step)(keys, positions)

    moved, acceptance = one_step(jax.random.split(key_step, 40_000), draws)
    moved = np.asarray(moved)
    assert 0.05 < float(acceptance.mean()) < 1.0  # the kernel moves
    statistics = np.column_stack([moved, moved**2, moved[:, 0] * moved[:, 1]])
    expected = np.array([1.0, -1.0, 2.0, 3.0, 0.8 - 1.0])
    _, p = mean_z_test(statistics, expected)
    assert holm_combined_p_value(p) > 1e-3


def test_a_nan_ratio_is_a_rejection():
    assert float(acceptance_log_probability(jnp.nan)) == -np.inf
    nan_outside = random_walk(lambda x: jnp.where(x > 1.0, jnp.nan, -0.5 * x**2), 5.0)
    state = nan_outside.init(jnp.asarray(0.0))
    for key in jax.random.split(jax.random.key(0), 50):
        state, _info = nan_outside.step(key, state)
        assert np.isfinite(float(state.log_density))
        assert float(state.position) <= 1.0


def test_kernels_refuse_bad_input():
    with pytest.raises(ProbkitError, match="scale"):
        random_walk(log_target, -1.0)
    with pytest.raises(ProbkitError, match="scale"):
        random_walk(log_target, jnp.ones((2, 3)))
    with pytest.raises(ProbkitError, match="step_size"):
        mala(log_target, 0.0)
    with pytest.raises(ProbkitError, match="rule"):
        random_walk(log_target, 1.0, rule="glauber")
    with pytest.raises(ProbkitError, match="initial position"):
        random_walk(lambda x: jnp.log(x), 1.0).init(jnp.asarray(-1.0))
    with pytest.raises(ProbkitError, match="scalar"):
        random_walk(lambda x: x, 1.0).init(jnp.zeros(3))
