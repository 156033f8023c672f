import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probkit import ProbkitError
from probkit.inference.population import (
    Population,
    collapse,
    ess,
    expectation,
    is_degenerate,
    log_evidence,
    normalized_weights,
    push_evidence,
    resample,
    resample_from_uniforms,
    reweight,
    spawn,
)
from probkit.inference.resampling import RESAMPLERS
from probkit.theory.calibration import mean_z_test

METHODS = list(RESAMPLERS)


def population(weights, dtype=None):
    weights = np.asarray(weights, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_weights = jnp.asarray(np.log(weights), dtype=dtype)
    return Population(jnp.arange(len(weights)), log_weights)


# --- spawn, summaries ----------------------------------------------------------------------------


def test_spawn_gives_equal_weights_of_total_mass_one(dtype):
    pop = spawn(5, {"x": jnp.zeros((5, 2)), "k": jnp.arange(5)})
    assert pop.log_weights.dtype == dtype
    np.testing.assert_allclose(np.exp(pop.log_weights), 0.2, rtol=1e-6)
    assert abs(float(pop.log_evidence)) < 1e-6
    assert pop.num_particles == 5


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4", None])
def test_spawn_rejects_a_bad_particle_count(bad):
    with pytest.raises(ProbkitError, match="num_particles"):
        spawn(bad, jnp.zeros((4,)))


def test_spawn_rejects_particles_whose_leading_axis_disagrees():
    with pytest.raises(ProbkitError, match="particles"):
        spawn(4, jnp.zeros((3, 2)))
    with pytest.raises(ProbkitError, match="disagree"):
        spawn(4, (jnp.zeros((4,)), jnp.zeros((3,))))
    with pytest.raises(ProbkitError, match="scalar leaf"):
        spawn(1, jnp.float32(1.0))


def test_ess_is_n_for_equal_weights_and_one_for_a_single_weight(dtype):
    assert float(ess(spawn(8, jnp.arange(8)))) == pytest.approx(8.0, rel=1e-5)
    assert float(ess(population([0.0, 3.0, 0.0], dtype))) == pytest.approx(1.0, rel=1e-6)


def test_summaries_are_exact_for_log_weights_far_outside_the_dtype_range(dtype):
    # exp(-1e4) underflows in both dtypes; everything is computed in log space. The offsets are
    # exactly representable next to 1e4 in float32, so the expected values are exact.
    pop = Population(jnp.arange(3), jnp.asarray([-1e4, -1e4, -1e4 + 0.5], dtype))
    w = np.array([1.0, 1.0, math.exp(0.5)])
    assert float(ess(pop)) == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-5)
    assert float(log_evidence(pop)) == pytest.approx(-1e4 + math.log(w.sum()), rel=1e-6)
    np.testing.assert_allclose(normalized_weights(pop), w / w.sum(), rtol=1e-5)


def test_expectation_is_the_weighted_mean_of_a_pytree(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    w = rng.gamma(1.0, size=6)
    pop = Population({"x": jnp.asarray(x, dtype)}, jnp.asarray(np.log(w), dtype))
    result = expectation(pop, lambda p: {"mean": p["x"], "square": jnp.sum(p["x"] ** 2)})
    np.testing.assert_allclose(result["mean"], w @ x / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(result["square"], w @ (x**2).sum(1) / w.sum(), rtol=1e-5)


# --- reweight ------------------------------------------------------------------------------------


def test_reweight_multiplies_weights_by_the_potential_and_updates_the_evidence(dtype):
    pop = spawn(4, jnp.arange(4.0, dtype=dtype))
    by_function = reweight(pop, lambda x: -0.5 * x**2)
    by_values = reweight(pop, -0.5 * jnp.arange(4.0) ** 2)
    expected = math.log(np.mean(np.exp(-0.5 * np.arange(4.0) ** 2)))
    assert float(by_function.log_evidence) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(by_function.log_weights, by_values.log_weights, rtol=1e-6)
    assert by_function.log_weights.dtype == dtype


def test_reweight_rejects_wrong_shapes_and_nan_potentials():
    pop = spawn(4, jnp.arange(4.0))
    with pytest.raises(ProbkitError, match="one value per particle"):
        reweight(pop, jnp.zeros(3))
    with pytest.raises(ProbkitError, match="log_potential"):
        reweight(pop, lambda x: jnp.log(x - 1.0))  # log of a negative number: NaN


def test_reweight_accepts_a_zero_potential():
    pop = reweight(spawn(3, jnp.arange(3.0)), jnp.array([0.0, -jnp.inf, 0.0]))
    assert float(ess(pop)) == pytest.approx(2.0)


# --- resample ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_resample_keeps_the_evidence_in_equal_weights(method, dtype):
    pop = population([0.5, 0.0, 1.5, 2.0], dtype)
    for num_samples in (None, 1, 7):
        new = resample(jax.random.key(1), pop, method, num_samples)
        m = num_samples or 4
        assert new.num_particles == m
        assert new.log_weights.dtype == dtype
        np.testing.assert_allclose(new.log_weights, math.log(4.0 / m), rtol=1e-5, atol=1e-6)
        assert 1 not in np.asarray(new.particles)


@pytest.mark.parametrize("method", METHODS)
def test_resample_is_the_same_under_jit_and_vmap(method, dtype):
    pop = population(np.random.default_rng(3).gamma(1.0, size=9), dtype)
    keys = jax.random.split(jax.random.key(7), 5)
    eager = [resample(k, pop, method).particles for k in keys]
    jitted = jax.jit(lambda k: resample(k, pop, method).particles)
    vmapped = jax.vmap(jitted)(keys)
    for k, expected, batched in zip(keys, eager, vmapped, strict=True):
        np.testing.assert_array_equal(jitted(k), expected)
        np.testing.assert_array_equal(batched, expected)


@pytest.mark.parametrize("method", METHODS)
def test_resample_carries_pytree_particles_together(method):
    pop = Population(
        {"a": jnp.arange(5), "b": jnp.arange(5.0)[:, None] * jnp.ones((5, 3))},
        jnp.log(jnp.array([1.0, 2.0, 0.0, 3.0, 1.0])),
    )
    new = resample(jax.random.key(0), pop, method)
    np.testing.assert_array_equal(new.particles["b"][:, 0], new.particles["a"].astype(float))


@settings(max_examples=60, deadline=None)
@given(
    # A fixed size keeps one compilation per method; zeros anywhere, trailing ones included.
    weights=st.lists(
        st.one_of(st.just(0.0), st.floats(1e-30, 1e30)), min_size=32, max_size=32
    ).filter(lambda w: any(x > 0 for x in w)),
    seed=st.integers(0, 2**31 - 1),
    method=st.sampled_from(METHODS),
)
def test_resample_never_selects_a_zero_weight_particle_in_float32(weights, seed, method):
    pop = population(weights, jnp.float32)
    new = resample(jax.random.key(seed), pop, method)
    chosen = np.asarray(new.particles)
    assert np.all(np.asarray(weights)[chosen] > 0)


@pytest.mark.parametrize("method", METHODS)
def test_uniform_draws_at_the_top_of_the_float32_range_skip_trailing_zero_weights(method):
    # In float32 the cumulative sum of these weights falls short of the total the queries
    # are scaled by, which once let a query past the last positive weight pick a zero one.
    weights = [0.1] * 7 + [0.3, 0.0, 0.0]
    pop = population(weights, jnp.float32)
    top = jnp.nextafter(jnp.float32(1.0), jnp.float32(0.0))
    size = RESAMPLERS[method].num_uniforms(10)
    new = resample_from_uniforms(jnp.full((size,), top), pop, method)
    assert np.all(np.asarray(new.particles) < 8)


def test_resample_from_uniforms_rejects_the_wrong_number_of_uniforms():
    with pytest.raises(ProbkitError, match="uniforms"):
        resample_from_uniforms(jnp.zeros(3), population([1.0, 2.0]), "stratified")


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ProbkitError, match="`method` must be one of"):
        resample(jax.random.key(0), population([1.0, 2.0]), "magic")


# --- degenerate populations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda p: resample(jax.random.key(0), p),
        lambda p: collapse(jax.random.key(0), p),
        push_evidence,
        normalized_weights,
        lambda p: expectation(p, lambda x: x),
    ],
)
def test_eager_calls_on_an_all_zero_population_raise(call):
    zero = Population(jnp.arange(3.0), jnp.full(3, -jnp.inf))
    with pytest.raises(ProbkitError, match="zero measure"):
        call(zero)


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_eager_calls_on_nan_or_plus_inf_log_weights_raise(bad):
    broken = Population(jnp.arange(3.0), jnp.array([0.0, bad, 0.0]))
    for call in (lambda p: resample(jax.random.key(0), p), push_evidence, normalized_weights):
        with pytest.raises(ProbkitError, match="NaN or \\+inf"):
            call(broken)


@pytest.mark.parametrize("log_weights", [[-jnp.inf] * 3, [0.0, jnp.nan, 0.0], [0.0, jnp.inf, 1.0]])
@pytest.mark.parametrize("method", METHODS)
def test_traced_degenerate_populations_become_the_zero_population_without_nan(log_weights, method):
    degenerate = Population(jnp.arange(3.0), jnp.asarray(log_weights))

    @jax.jit
    def run(p):
        new = resample(jax.random.key(0), p, method)
        normalised, log_z = push_evidence(p)
        return new, normalised, log_z, ess(p), is_degenerate(p), normalized_weights(p)

    new, normalised, log_z, size, flag, weights = run(degenerate)
    assert bool(flag)
    assert np.all(np.isneginf(new.log_weights))
    assert np.all(np.isneginf(normalised.log_weights))
    assert float(log_z) == -np.inf
    assert float(new.log_evidence) == -np.inf
    assert float(size) == 0.0
    np.testing.assert_array_equal(weights, 0.0)


# --- push_evidence and collapse ------------------------------------------------------------------


def test_push_evidence_normalises_and_returns_log_z(dtype):
    pop = population([1.0, 3.0], dtype)
    normalised, log_z = push_evidence(pop)
    np.testing.assert_allclose(np.exp(normalised.log_weights), [0.25, 0.75], rtol=1e-6)
    assert float(log_z) == pytest.approx(math.log(4.0), rel=1e-6)


def test_collapse_is_properly_weighted_by_monte_carlo():
    """E[Z f(x_I)] = Σ w_i f(x_i) through the keyed, jitted collapse.

    Two-sided z-test with the Monte Carlo standard error of 20 000 replicates; false-alarm rate
    1e-4 (|z| > 3.89).
    """
    weights = np.array([0.4, 0.0, 2.5, 1.1])
    pop = population(weights)
    f = jnp.array([1.0, 100.0, -2.0, 3.5])

    @jax.jit
    def draws(keys):
        one = jax.vmap(lambda k: collapse(k, pop))(keys)
        return jnp.exp(one.log_weight) * f[one.particle], one.particle

    values, particles = draws(jax.random.split(jax.random.key(11), 20_000))
    assert 1 not in np.asarray(particles)
    z, _ = mean_z_test(np.asarray(values)[:, None], np.array([weights @ np.asarray(f)]))
    assert abs(z[0]) < 3.89


def test_traced_reweight_with_a_nan_potential_gives_the_zero_population():
    pop = jax.jit(lambda p: reweight(p, lambda x: jnp.log(x - 1.0)))(spawn(3, jnp.arange(3.0)))
    assert np.all(np.isneginf(pop.log_weights))
    assert bool(is_degenerate(pop))


def test_collapse_names_itself_when_the_population_is_empty_of_mass():
    zero = Population(jnp.arange(3.0), jnp.full(3, -jnp.inf))
    with pytest.raises(ProbkitError, match="cannot collapse"):
        collapse(jax.random.key(0), zero)
