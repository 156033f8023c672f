import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.inference.population import Population, resample_from_uniforms
from probkit.inference.resampling import Resampler, multinomial, systematic
from probkit.theory.check import CheckContext
from probkit.theory.checks.population import EXACT_TOLERANCE, exact_measure_error
from probkit.theory.exact import (
    collapse_enumeration,
    compare_measures,
    enumerate_transformation,
    labelled_population,
    offspring_count_moments,
    resampling_enumeration,
)

pytestmark = pytest.mark.usefixtures("x64")

LOG_WEIGHTS = np.log([0.3, 1e-9, 1.2, 2.5])
CASES = [LOG_WEIGHTS, np.array([-700.0, 0.0, -30.0])]
QUICK = CheckContext(seed=0, size="quick")


def forgetful_resample(uniforms, population):
    """Systematic resampling that forgets the evidence: new weights 1/n instead of Z/n."""
    resampled = resample_from_uniforms(uniforms, population, "systematic")
    n = population.num_particles
    return Population(resampled.particles, jnp.full((n,), -math.log(n)))


def test_the_oracle_catches_a_resampler_that_forgets_the_evidence():
    population = labelled_population(LOG_WEIGHTS)  # total mass Z = 4.0, far from 1
    breakpoints = systematic.breakpoints(LOG_WEIGHTS, 4)
    enumeration = enumerate_transformation(forgetful_resample, population, breakpoints)
    error = compare_measures(LOG_WEIGHTS, enumeration).max_relative_error
    assert error > 0.1


def test_the_oracle_catches_biased_ancestors():
    # Deterministic midpoints (j + 1/2) / n instead of (j + u) / n: ancestors are no longer
    # unbiased, and the map no longer depends on u, so no breakpoint is missing either.
    biased = Resampler(
        name="midpoint",
        num_uniforms=lambda m: 1,
        ancestors=lambda u, lw, m: systematic.ancestors(jnp.full_like(u, 0.5), lw, m),
        breakpoints=lambda lw, m: [np.empty(0)],
    )
    error, _ = exact_measure_error(biased, CASES, QUICK)
    assert error > 0.01


def test_the_oracle_refuses_breakpoints_that_miss_a_jump():
    hiding = systematic._replace(breakpoints=lambda lw, m: [np.empty(0)])
    with pytest.raises(ProbkitError, match="miss a jump"):
        resampling_enumeration(LOG_WEIGHTS, hiding)


def test_shipped_resamplers_pass_where_the_broken_ones_fail():
    for method in ("multinomial", "stratified", "systematic", "residual"):
        error, rows = exact_measure_error(method, CASES, QUICK)
        assert error <= EXACT_TOLERANCE, (method, rows)


def test_multinomial_boxes_are_the_index_tuples_with_their_probabilities():
    # An independent oracle: the n**n ancestor tuples with probability Π p_{a_j}.
    p = np.exp(LOG_WEIGHTS - np.logaddexp.reduce(LOG_WEIGHTS))
    n = len(p)
    exact = {tup: math.prod(p[list(tup)]) for tup in itertools.product(range(n), repeat=n)}
    enumeration = resampling_enumeration(LOG_WEIGHTS, "multinomial")
    assert enumeration.num_pieces == n**n
    found = {}
    for labels, probability in zip(enumeration.labels, enumeration.probabilities, strict=True):
        found[tuple(int(i) for i in labels)] = (
            found.get(tuple(int(i) for i in labels), 0.0) + probability
        )
    assert set(found) == set(exact)
    for tup, probability in exact.items():
        assert found[tup] == pytest.approx(probability, rel=1e-9, abs=1e-15)


def test_systematic_offspring_counts_are_floor_or_ceil_of_their_mean():
    enumeration = resampling_enumeration(LOG_WEIGHTS, "systematic", 7)
    counts = enumeration.offspring_counts()
    mean, _ = offspring_count_moments(enumeration)
    expected = 7 * np.exp(LOG_WEIGHTS - np.logaddexp.reduce(LOG_WEIGHTS))
    # Absolute tolerance: a box's width is a difference of cdf values of order 1.
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-12 * 7)
    assert np.all((counts == np.floor(expected)) | (counts == np.ceil(expected)))


def test_collapse_enumeration_puts_z_on_one_particle_drawn_by_weight():
    enumeration = collapse_enumeration(LOG_WEIGHTS)
    np.testing.assert_allclose(np.exp(enumeration.log_weights), 4.0 + 1e-9, rtol=1e-12)
    np.testing.assert_allclose(
        enumeration.expected_measure(), np.exp(LOG_WEIGHTS), rtol=0, atol=1e-12 * 4.0
    )


def test_the_oracle_needs_float64():
    with jax.enable_x64(False), pytest.raises(ProbkitError, match="float64"):
        labelled_population(LOG_WEIGHTS)


def test_the_oracle_refuses_grids_that_are_too_large():
    many = np.zeros(6)
    with pytest.raises(ProbkitError, match="max_pieces"):
        enumerate_transformation(
            lambda u, p: resample_from_uniforms(u, p, multinomial, 6),
            labelled_population(many),
            multinomial.breakpoints(many, 6),
            max_pieces=1000,
        )
