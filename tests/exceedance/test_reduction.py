"""The compiled path reduction against a plain per-path loop, and the fast threefry draws.

`_reduce_paths` locates crossings through a packed bit index and handles them in passes of a
fixed capacity; a direct loop over every grid interval of every path, written here in NumPy,
must give the same crossing counts, histogram and persistence counts exactly and the same
moments to rounding, whatever the capacity (one pass or many).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit._random import fast_threefry
from probkit.exceedance.simulate import _BitIndex, _reduce_paths, _slot_table

DT = 0.1
EDGES = np.arange(0.0, 6.01, 0.25)
LAGS = np.array([0, 1, 3, 7])


def _loop_reference(x, valid, level, dt, edges, lags):
    """Every interval of every valid path, one at a time."""
    rows, n_points = x.shape
    n_steps = n_points - 1
    up = down = 0
    counts = np.zeros(len(edges) + 1, np.int64)
    weighted = np.zeros(len(edges) + 1)
    moments = np.zeros(6)
    persistence = np.zeros(len(lags), np.int64)
    for row in range(rows):
        if not valid[row]:
            continue
        path = x[row]
        above = path > level
        last_up, last_fraction = -1, 0.0
        for j in range(n_steps):
            if above[j] == above[j + 1]:
                continue
            fraction = (level - path[j]) / (path[j + 1] - path[j])
            if above[j + 1]:
                up += 1
                last_up, last_fraction = j, fraction
                continue
            down += 1
            persistence += np.maximum(j - last_up - lags, 0)
            if last_up < 0:
                continue
            steps = (j - last_up) + fraction - last_fraction
            length = steps * dt
            weight = n_steps / (n_steps - steps)
            slot = np.searchsorted(edges, length, side="right")
            counts[slot] += 1
            weighted[slot] += weight
            moments += [weight, weight**2, weight * length, weight * length**2, length, length**2]
        if above[-1]:
            persistence += np.maximum(n_steps - last_up - lags, 0)
    return np.array([up, down]), counts, weighted, moments, persistence


def _paths(seed, rows, n_steps):
    """Smooth random paths plus the edge cases: always above, always below, ending above."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps + 1) * DT
    frequencies = rng.uniform(0.3, 3.0, size=(rows, 4, 1))
    phases = rng.uniform(0, 2 * np.pi, size=(rows, 4, 1))
    x = np.sum(np.sin(frequencies * t + phases), axis=1) / 2 + rng.normal(0, 0.05, (rows, 1))
    x[0] = 1.0 + 0.1 * np.sin(t)  # never crosses, above throughout
    x[1] = -1.0  # never crosses, below throughout
    x[2] = np.where(t < 1.0, -1.0, 1.0) + 0.01 * t  # one up-crossing, ends above
    return x


@pytest.fixture(scope="module")
def batch():
    x = _paths(5, rows=24, n_steps=300)
    valid = np.ones(24, bool)
    valid[-3:] = False  # the masked tail of a last batch
    return x, valid


@pytest.mark.parametrize("capacity", [8, 8192])
@pytest.mark.parametrize("level", [0.0, 0.4])
def test_reduction_equals_a_loop_over_every_interval(batch, capacity, level, x64):
    x, valid = batch
    table, cell = _slot_table(EDGES)
    with jax.enable_x64(True):
        out = jax.jit(_reduce_paths, static_argnames=("capacity", "use_table"))(
            jnp.asarray(x),
            jnp.asarray(valid),
            jnp.asarray(level),
            jnp.asarray(DT),
            jnp.asarray(EDGES),
            jnp.asarray(LAGS, jnp.int32),
            jnp.asarray(table, jnp.int32),
            jnp.asarray(cell),
            capacity=capacity,
            use_table=True,
        )
    crossings, counts, weighted, moments, persistence = (np.asarray(v) for v in out)
    expected = _loop_reference(x, valid, level, DT, EDGES, LAGS)
    assert expected[0].sum() > 20 * 8  # capacity 8 needs many passes
    np.testing.assert_array_equal(crossings, expected[0])
    np.testing.assert_array_equal(counts, expected[1])
    np.testing.assert_allclose(weighted, expected[2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(moments, expected[3], rtol=1e-12)
    np.testing.assert_array_equal(persistence, expected[4])


@pytest.mark.parametrize("size", [1, 31, 32, 33, 1000])
def test_bit_index_positions_are_the_true_entries(size):
    rng = np.random.default_rng(size)
    mask = rng.random(size) < 0.3
    mask[-1] = True  # the last entry, next to the padding
    index = _BitIndex.build(jnp.asarray(mask))
    true = np.flatnonzero(mask)
    assert int(index.total) == true.size
    positions = jax.jit(index.position)(jnp.arange(true.size, dtype=jnp.int32))
    np.testing.assert_array_equal(np.asarray(positions), true)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_threefry_draws_equal_jax_random(dtype):
    key = jax.random.key(42)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(3))

    def draws(wrap):
        def one(k):
            k = wrap(k)
            return (
                jax.random.normal(k, (5, 7), dtype),
                jax.random.uniform(k, (11,), dtype),
                jax.random.bits(k, (4,), jnp.uint8),
                jax.random.bits(k, (4,), jnp.uint16),
                jax.random.bits(k, (4,), jnp.uint32),
            )

        return jax.jit(jax.vmap(one))(keys)

    with jax.enable_x64(dtype == "float64"):
        for ours, theirs in zip(draws(fast_threefry), draws(lambda k: k), strict=True):
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
        if dtype == "float64":
            np.testing.assert_array_equal(
                jax.random.bits(fast_threefry(key), (9,), jnp.uint64),
                jax.random.bits(key, (9,), jnp.uint64),
            )


def test_fast_threefry_leaves_other_keys_alone():
    rbg = jax.random.key(0, impl="rbg")
    assert fast_threefry(rbg) is rbg
    with jax.threefry_partitionable(False):
        key = jax.random.key(0)
        assert fast_threefry(key) is key
