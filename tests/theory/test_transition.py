"""The exact transition-matrix oracle, and the power of the MHG checks against broken kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.inference.mhg import involutive, padded
from probkit.theory.calibration import gandy_scott_test, holm_combined_p_value, mean_z_test
from probkit.theory.checks.mhg import (
    DroppedFactorKernel,
    lattice_kernel,
    polynomial_kernel,
    random_dimension_kernel,
    random_dimension_statistics,
    stack_padded,
    stationary_chain_means,
)
from probkit.theory.models import PolynomialRegression, RandomDimensionProgram
from probkit.theory.transition import invariance_errors, mhg_transition_matrix, state_key

pytestmark = pytest.mark.usefixtures("x64")

LATTICE = [jnp.int32(x) for x in range(12)]


def steps(name, x):
    return [jnp.int32(v) for v in (-2, -1, 1, 2)]


def broken(kernel, dropped):
    return DroppedFactorKernel(
        kernel.log_density_fn, kernel.moves, kernel.move_probabilities, kernel.rule, False, dropped
    )


def test_lattice_matrix_is_stochastic_and_invariant():
    transition = mhg_transition_matrix(lattice_kernel(), LATTICE, steps)
    errors = invariance_errors(transition)
    assert max(errors.values()) < 1e-12
    assert np.all(transition.matrix >= 0)
    # the kernel moves: off-diagonal mass is substantial
    assert np.mean(np.diag(transition.matrix)) < 0.9


def test_a_wrong_ratio_breaks_invariance_by_far_more_than_rounding():
    transition = mhg_transition_matrix(broken(lattice_kernel(), "aux_density"), LATTICE, steps)
    assert invariance_errors(transition)["stationarity"] > 1e-4


def test_missing_auxiliary_values_are_refused():
    with pytest.raises(ProbkitError, match="aux_support"):
        mhg_transition_matrix(lattice_kernel(), LATTICE, lambda name, x: steps(name, x)[:3])


def test_a_proposal_outside_the_listed_states_is_refused():
    with pytest.raises(ProbkitError, match="not in `states`"):
        mhg_transition_matrix(lattice_kernel(), LATTICE[:8], steps)


def test_bad_arguments_are_refused():
    kernel = involutive(lambda x: 0.0, lambda k, x: x, lambda v, x: 0.0, lambda x, v: (v, x))
    with pytest.raises(ProbkitError, match="MHGKernel"):
        mhg_transition_matrix(object(), LATTICE, steps)
    with pytest.raises(ProbkitError, match="more than once"):
        mhg_transition_matrix(kernel, [jnp.int32(0), jnp.int32(0)], steps)


def test_state_key_ignores_padding():
    a = padded(np.array([1.0, 2.0]), 3)
    b = type(a)(a.values.at[2].set(9.0), a.size)
    assert state_key(a) == state_key(b)
    assert state_key(a) != state_key(padded(np.array([1.0, 2.0, 0.0]), 3))


def test_polynomial_check_detects_a_dropped_jacobian():
    """The statistical dimension check has power: a birth without its Jacobian 0.6 is biased."""
    model = PolynomialRegression()
    exact = model.posterior_k()
    rng = np.random.default_rng(0)
    starts = stack_padded(
        [rng.normal(size=int(rng.choice(model.max_terms, p=exact)) + 1) for _ in range(128)],
        model.max_terms,
    )

    def statistics(x):
        return (x.size == jnp.arange(1, model.max_terms + 1)).astype(float)

    means = stationary_chain_means(
        broken(polynomial_kernel(model), "jacobian"), starts, statistics, 2_000, jax.random.key(0)
    )
    _, p = mean_z_test(means, exact)
    assert holm_combined_p_value(p) < 1e-6


def test_gandy_scott_detects_a_birth_without_its_index_factor():
    model = RandomDimensionProgram(capacity=12)
    kernel = broken(random_dimension_kernel(model), "aux_density")
    result = gandy_scott_test(
        jax.random.key(0),
        sample_target=model.posterior_draw,
        transition=lambda k, x: kernel.step(k, kernel.init(x))[0].position,
        test_functions=random_dimension_statistics,
        num_draws=20_000,
    )
    assert result.p_value < 1e-6
