"""The MHG engine: padded states, Jacobians, involutive and reversible-jump kernels, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.inference.mhg import (
    Move,
    Padded,
    birth_death,
    check_moves,
    delete_row,
    insert_row,
    involutive,
    log_abs_det_jacobian,
    padded,
    random_walk_move,
    reversible_jump,
)
from probkit.inference.smc.runner import Stage, run_stages
from probkit.inference.smc.state import init_state
from probkit.inference.smc.transformations import Move as SMCMove
from probkit.theory.calibration import holm_combined_p_value, mean_z_test
from probkit.theory.checks.mhg import random_dimension_kernel
from probkit.theory.models import RandomDimensionProgram

pytestmark = pytest.mark.usefixtures("x64")


# --- padded states -------------------------------------------------------------------------------


def test_insert_then_delete_gives_back_the_state():
    state = padded(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), 5)
    for index in range(4):
        grown = insert_row(state, index, jnp.array([7.0, 8.0]))
        assert int(grown.size) == 4
        np.testing.assert_array_equal(grown.active()[index], [7.0, 8.0])
        back, row = delete_row(grown, index)
        np.testing.assert_array_equal(back.values, state.values)
        np.testing.assert_array_equal(row, [7.0, 8.0])
        assert int(back.size) == 3
    # padding stays zero, so equal states have equal arrays
    assert np.all(np.asarray(insert_row(state, 0, jnp.ones(2)).values)[4:] == 0)


def test_padded_constructor_refuses_bad_input():
    with pytest.raises(ProbkitError, match="capacity"):
        padded(np.zeros(3), 2)
    with pytest.raises(ProbkitError, match="leading axis"):
        padded(1.0, 3)
    empty = padded(np.zeros((0, 2)), 3)
    assert empty.values.shape == (3, 2)
    assert int(empty.size) == 0


# --- Jacobians -----------------------------------------------------------------------------------


def test_automatic_jacobian_of_a_linear_map_matches_slogdet():
    matrix = np.array([[2.0, 0.3, 0.0], [0.1, -1.5, 0.4], [0.0, 0.7, 0.9]])

    def fn(x, u):
        z = jnp.concatenate([x, u]) @ jnp.asarray(matrix).T
        return z[:2], z[2:]

    got = log_abs_det_jacobian(fn, jnp.array([0.2, -0.1]), jnp.array([0.5]))
    np.testing.assert_allclose(got, np.linalg.slogdet(matrix)[1], rtol=1e-13)


def test_automatic_jacobian_ignores_padding_and_flags_dimension_mismatch():
    state = padded(np.array([0.5, -1.0]), 6)

    def birth(x, u):  # insert 3u at the end: Jacobian 3, whatever the capacity
        return insert_row(x, x.size, 3.0 * u), jnp.zeros((0,))

    np.testing.assert_allclose(log_abs_det_jacobian(birth, state, jnp.asarray(0.7)), np.log(3.0))

    def lossy(x, u):  # drops u: 3 coordinates in, 2 out
        return x, jnp.zeros((0,))

    assert np.isnan(log_abs_det_jacobian(lossy, state, jnp.asarray(0.7)))


# --- involutive kernels --------------------------------------------------------------------------


def reflection_kernel(check=False, shift=0.0):
    return involutive(
        lambda x: -0.5 * ((x - 1.0) / 1.5) ** 2,
        lambda key, x: x + 0.8 * jax.random.normal(key, dtype=x.dtype),
        lambda v, x: -0.5 * ((v - x) / 0.8) ** 2,
        lambda x, v: (2 * v - x, v + shift),
        check=check,
    )


def test_involutive_kernel_keeps_its_target_from_an_exact_start():
    """x ~ N(1, 1.5²), one reflection step: moments of x' (z-tests, Holm, false-alarm rate 1e-3)."""
    kernel = reflection_kernel()
    draws = 1.0 + 1.5 * jax.random.normal(jax.random.key(1), (40_000,))
    step = jax.jit(jax.vmap(lambda k, x: kernel.step(k, kernel.init(x))))
    states, info = step(jax.random.split(jax.random.key(2), draws.shape[0]), draws)
    moved = np.asarray(states.position)
    assert 0.2 < float(info.is_accepted.mean()) < 0.99
    _, p = mean_z_test(np.column_stack([moved, moved**2]), np.array([1.0, 1.0 + 2.25]))
    assert holm_combined_p_value(p) > 1e-3


def test_check_mode_names_a_move_that_is_not_an_involution():
    with pytest.raises(ProbkitError, match=r"'involution'.*round trip"):
        reflection_kernel(check=True, shift=0.1).init(jnp.asarray(0.3))
    kernel = reflection_kernel(check=True)
    state = kernel.init(jnp.asarray(0.3))
    _, info = jax.jit(kernel.step)(jax.random.key(0), state)
    assert float(info.check_error) < 1e-12


def test_check_mode_catches_a_wrong_analytic_jacobian():
    kernel = involutive(
        lambda x: -0.5 * x**2,
        lambda key, x: jax.random.normal(key, dtype=x.dtype),
        lambda v, x: -0.5 * v**2,
        lambda x, v: (2.0 * v, 0.5 * x),  # an involution with Jacobian |det| = 1 ... of -1
        log_abs_det_jacobian=lambda x, v: jnp.log(2.0),  # wrong: it is log 1
    )
    with pytest.raises(ProbkitError, match="analytic log-Jacobian"):
        check_moves(kernel, jnp.asarray(0.4), jax.random.key(0))


# --- reversible jump -----------------------------------------------------------------------------


def test_kernel_moves_under_jit_and_vmap_identically():
    kernel = random_dimension_kernel(RandomDimensionProgram())
    start = padded(np.array([0.5, 1.0]), 20)
    state = kernel.init(start)
    keys = jax.random.split(jax.random.key(0), 3)
    batched = Padded(jnp.stack([start.values] * 3), jnp.stack([start.size] * 3))
    vmapped, _ = jax.jit(jax.vmap(lambda k, x: kernel.step(k, kernel.init(x))))(keys, batched)
    step = jax.jit(kernel.step)
    for i, key in enumerate(keys):
        single, _ = step(key, state)
        np.testing.assert_allclose(vmapped.position.values[i], single.position.values, atol=1e-14)
        assert int(vmapped.position.size[i]) == int(single.position.size)


def test_a_birth_past_the_capacity_is_refused():
    birth, death = birth_death(lambda key, x: jax.random.normal(key), lambda u, x: -0.5 * u**2)
    kernel = reversible_jump(
        lambda x: jnp.zeros(()), [birth, death], lambda x: jnp.array([1.0, 0.0])
    )
    full = padded(np.array([0.1, 0.2]), 2)
    state, info = kernel.step(jax.random.key(0), kernel.init(full))
    assert not bool(info.in_capacity)
    assert not bool(info.is_accepted)
    assert float(info.acceptance_probability) == 0.0
    np.testing.assert_array_equal(state.position.values, full.values)


def test_reversible_jump_serves_as_an_smc_rejuvenation_move():
    """A population of exact posterior draws stays a posterior sample after RJ moves (P(k|y), Holm 1e-3)."""
    model = RandomDimensionProgram()
    rng = np.random.default_rng(0)
    values = np.zeros((4_000, model.capacity))
    sizes = np.zeros(4_000, dtype=np.int32)
    for i in range(4_000):
        draw = model.sample_posterior(rng)
        values[i, : draw.size], sizes[i] = draw, draw.size
    state = init_state(Padded(jnp.asarray(values), jnp.asarray(sizes)))
    kernel = random_dimension_kernel(model)
    stage = Stage((SMCMove(lambda s, t: kernel, num_steps=5),), num_steps=1)
    final, _ = jax.jit(lambda key, s: run_stages(key, s, [stage]))(jax.random.key(1), state)
    sizes = np.asarray(final.population.particles.size)
    exact = model.posterior_k()[:4]
    _, p = mean_z_test((sizes[:, None] == np.arange(4)).astype(float), exact)
    assert holm_combined_p_value(p) > 1e-3
    assert float(final.log_evidence) == pytest.approx(0.0, abs=1e-12)


BIRTH, DEATH = birth_death(lambda key, x: jax.random.normal(key), lambda u, x: -0.5 * u**2)


def flat_target(x):
    return -0.5 * jnp.sum(jnp.where(x.mask, x.values**2, 0.0))


@pytest.mark.parametrize(
    ("moves", "probabilities", "match"),
    [
        ([BIRTH, BIRTH], None, "unique"),
        ([BIRTH], None, "no such move"),
        ([BIRTH, DEATH._replace(reverse="walk"), random_walk_move(0.1)], None, "pair up"),
        ([], None, "non-empty"),
        ([BIRTH, DEATH], "0.5", "function"),
    ],
)
def test_bad_moves_are_refused_when_the_kernel_is_built(moves, probabilities, match):
    with pytest.raises(ProbkitError, match=match):
        reversible_jump(flat_target, moves, probabilities)


def test_bad_kernels_are_refused_at_init_naming_the_move():
    start = padded(np.array([0.3]), 4)
    not_summing = reversible_jump(flat_target, [BIRTH, DEATH], lambda x: jnp.array([0.5, 0.2]))
    with pytest.raises(ProbkitError, match="sum to one"):
        not_summing.init(start)
    lossy = Move("lossy", lambda key, x: jax.random.normal(key), lambda u, x: -0.5 * u**2,
                 lambda x, u: (x, u + 0.0 * jnp.zeros(2)))  # fmt: skip
    wrong_shape = reversible_jump(flat_target, [lossy])
    with pytest.raises(ProbkitError, match="'lossy'"):
        wrong_shape.init(start)

    def grow_without_aux(x, u):
        return insert_row(x, x.size, 1.0), u  # adds a coordinate, consumes none

    unmatched = reversible_jump(
        flat_target, [Move("grow", lambda key, x: jnp.zeros(0), lambda u, x: 0.0, grow_without_aux)]
    )
    with pytest.raises(ProbkitError, match="'grow' does not match dimensions"):
        unmatched.init(start)
    with pytest.raises(ProbkitError, match="initial position"):
        reversible_jump(lambda x: -jnp.inf, [BIRTH, DEATH]).init(start)


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
def test_reversible_jump_runs_in_both_precisions(dtype):
    """The random-dimension kernel with the dtype's own positions: finite, typed, moving."""
    model = RandomDimensionProgram(capacity=8)
    kernel = random_dimension_kernel(model)
    start = padded(np.array([0.5, 1.0]), 8, dtype=dtype)

    @jax.jit
    def run(key):
        def body(state, k):
            state, info = kernel.step(k, state)
            return state, (state.position.size, info.is_accepted)

        return jax.lax.scan(body, kernel.init(start), jax.random.split(key, 2_000))

    final, (sizes, accepted) = run(jax.random.key(0))
    assert final.position.values.dtype == dtype
    assert np.isfinite(float(final.log_density))
    assert 0.1 < float(accepted.mean()) < 0.95
    assert len(np.unique(np.asarray(sizes))) > 3


def test_end_placement_gives_other_indices_probability_zero():
    birth, death = birth_death(
        lambda key, x: jax.random.normal(key), lambda u, x: -0.5 * u**2, placement="end"
    )
    state = padded(np.array([0.1, 0.2]), 4)
    assert float(birth.aux_log_density((jnp.int32(2), 0.3), state)) == pytest.approx(-0.045)
    assert float(birth.aux_log_density((jnp.int32(1), 0.3), state)) == -np.inf
    assert float(death.aux_log_density(jnp.int32(1), state)) == 0.0
    assert float(death.aux_log_density(jnp.int32(0), state)) == -np.inf


def test_check_moves_names_only_the_condition_that_fails():
    kernel = involutive(
        lambda x: -0.5 * x**2,
        lambda key, x: jnp.exp(0.5 * jax.random.normal(key, dtype=x.dtype)),
        lambda v, x: -jnp.log(v) - 0.5 * (jnp.log(v) / 0.5) ** 2,
        lambda x, v: (x * v, 1.0 / v),
        log_abs_det_jacobian=lambda x, v: jnp.log(v),  # the right one is -log v
    )
    with pytest.raises(ProbkitError) as raised:
        check_moves(kernel, jnp.asarray(0.7), jax.random.key(0))
    message = str(raised.value)
    assert "analytic log-Jacobian differs" in message
    assert "does not give back" not in message
