"""Belief propagation with count factors: layout, errors, float32, vmap and the clique expansion.

Exactness against enumeration (trees, count messages, symmetries, the Gaussian rate) is tested by
the registered checks of ``probkit.theory.checks.llp``, which the suite runs one by one.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from probkit import ProbkitError
from probkit.inference.bp import (
    CountFactors,
    belief_propagation,
    binary_mrf,
    clique_expansion,
    poisson_binomial_pmf,
)
from probkit.theory.enumerate_mrf import enumerate_binary_mrf


def test_ragged_bags_are_padded_into_power_of_two_blocks():
    sizes = [3, 8, 9, 20, 1]
    bag_of = np.repeat(np.arange(5), sizes)
    bag_of = np.random.default_rng(0).permutation(bag_of)
    factors = CountFactors.from_bags(bag_of, [1, 2, 3, 4, 0])
    assert [b.members.shape[1] for b in factors.blocks] == [8, 16, 32]
    seen = {}
    for block in factors.blocks:
        for members, mask, bag in zip(
            np.asarray(block.members),
            np.asarray(block.mask),
            np.asarray(block.bag_index),
            strict=True,
        ):
            seen[int(bag)] = np.sort(members[mask])
            table = np.asarray(block.log_potential)[list(block.bag_index).index(bag)]
            assert np.isfinite(table).sum() == 1  # hard: one allowed count
    for bag in range(5):
        np.testing.assert_array_equal(seen[bag], np.flatnonzero(bag_of == bag))


def test_clique_expansion_defines_the_same_distribution(x64):
    rng = np.random.default_rng(1)
    bag_of = np.repeat([0, 1], [4, 5])
    factors = CountFactors.from_bags(bag_of, [1.0, 3.5], strength=[0.7, 2.0])
    edges = np.array([[0, 1], [2, 6], [3, 8]])  # (0, 1) lies inside a bag: couplings add up
    mrf = binary_mrf(jnp.asarray(rng.normal(size=9)), edges, rng.normal(size=3), factors)
    clique = clique_expansion(mrf)
    assert clique.count_factors is None
    assert clique.edges.shape[0] == 4 * 3 // 2 + 5 * 4 // 2 + 2
    a, b = enumerate_binary_mrf(mrf), enumerate_binary_mrf(clique)
    np.testing.assert_allclose(a.marginals, b.marginals, rtol=0, atol=1e-13)
    # The expansion drops the constant −λ k² of each bag.
    assert a.log_partition == pytest.approx(b.log_partition - 0.7 * 1.0 - 2.0 * 3.5**2, abs=1e-12)


def test_clique_expansion_refuses_hard_constraints():
    factors = CountFactors.from_bags(np.zeros(3, int), [1])
    with pytest.raises(ProbkitError, match="finite strength"):
        clique_expansion(binary_mrf(jnp.zeros(3), count_factors=factors))


def test_poisson_binomial_pmf_matches_the_product_of_generating_functions(x64):
    p = np.random.default_rng(2).uniform(size=(2, 12))
    pmf = np.asarray(poisson_binomial_pmf(jnp.asarray(p), jnp.asarray(1 - p)))
    for row in range(2):
        coefficients = np.array([1.0])
        for pj in p[row]:
            coefficients = np.convolve(coefficients, [1 - pj, pj])
        np.testing.assert_allclose(pmf[row], coefficients, rtol=1e-12, atol=1e-15)


@pytest.fixture(scope="module")
def llp_field():
    # A loopy LLP-sized field: 600 variables, a random graph of mean degree 4, ragged bags of
    # 9 to 16 members (one padded block), a few variables in no bag.
    rng = np.random.default_rng(3)
    n = 600
    sizes = rng.integers(9, 17, size=60)
    sizes = sizes[np.cumsum(sizes) <= n - 10]
    bag_of = np.full(n, -1)
    bag_of[: sizes.sum()] = np.repeat(np.arange(len(sizes)), sizes)
    labels = rng.uniform(size=n) < 0.3
    counts = np.bincount(bag_of[bag_of >= 0], labels[bag_of >= 0])
    counts[:2] = 0  # hard zeros fix their bags exactly
    edges = np.unique(np.sort(rng.integers(0, n, size=(2 * n, 2)), axis=1), axis=0)
    edges = edges[edges[:, 0] != edges[:, 1]]
    unary, coupling = rng.normal(-0.5, 1.0, n), rng.uniform(0, 0.6, len(edges))
    with jax.enable_x64(True):
        factors = CountFactors.from_bags(bag_of, counts)
        exact = belief_propagation(
            binary_mrf(jnp.asarray(unary), edges, coupling, factors), method="exact"
        )
        assert bool(exact.converged)
    return unary, edges, coupling, bag_of, counts, np.asarray(exact.marginals)


@pytest.mark.parametrize("method", ["exact", "tree", "gaussian"])
def test_float32_loopy_run_is_finite_converged_and_close_to_float64(llp_field, method):
    unary, edges, coupling, bag_of, counts, reference = llp_field
    factors = CountFactors.from_bags(bag_of, counts)
    mrf = binary_mrf(jnp.asarray(unary, jnp.float32), edges, coupling, factors)
    result = belief_propagation(mrf, method=method)
    assert result.marginals.dtype == jnp.float32
    assert bool(result.converged), float(result.residual)
    marginals = np.asarray(result.marginals, dtype=np.float64)
    assert np.all(np.isfinite(marginals))
    assert np.isfinite(float(result.log_partition))
    if method == "gaussian":  # a CLT approximation, rough on bags of 9 to 16 (see the checks)
        assert np.mean(np.abs(marginals - reference)) < 0.05
    else:
        np.testing.assert_allclose(marginals, reference, atol=2e-4)
    # A hard count of 0 fixes its bag at 0 (exactly, under every rule).
    assert np.all(marginals[np.isin(bag_of, np.flatnonzero(counts == 0))] == 0.0)


def test_vmap_over_fields_matches_separate_runs(llp_field):
    unary, edges, coupling, bag_of, counts, _ = llp_field
    factors = CountFactors.from_bags(bag_of, counts, strength=2.0)
    mrf = binary_mrf(jnp.asarray(unary, jnp.float32), edges, coupling, factors)
    fields = jnp.stack([mrf.unary, mrf.unary - 1.0])
    batched = jax.vmap(
        lambda h: belief_propagation(dataclasses.replace(mrf, unary=h), method="exact").marginals
    )(fields)
    for row in range(2):
        single = belief_propagation(dataclasses.replace(mrf, unary=fields[row]), method="exact")
        np.testing.assert_allclose(
            np.asarray(batched[row]), np.asarray(single.marginals), atol=1e-6
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unary": [0.0, np.nan]}, "unary holds non-finite"),
        ({"unary": np.zeros((2, 2))}, "1-D"),
        ({"edges": [[0, 0]], "coupling": [1.0]}, "self-loops"),
        ({"edges": [[0, 1], [1, 0]], "coupling": [1.0, 1.0]}, "same pair twice"),
        ({"edges": [[0, 5]], "coupling": [1.0]}, "outside"),
        ({"edges": [[0, 1]], "coupling": [np.inf]}, "coupling must be finite"),
        ({"edges": [[0, 1]], "coupling": [1.0, 2.0]}, "one entry per edge"),
    ],
)
def test_binary_mrf_rejects_bad_fields(kwargs, match):
    arguments = {"unary": np.zeros(3)} | kwargs
    with pytest.raises(ProbkitError, match=match):
        binary_mrf(**arguments)


@pytest.mark.parametrize(
    ("bag_of", "counts", "kwargs", "match"),
    [
        ([0, 0, 1], [1, 3], {}, r"integer count in \[0, bag size\]"),
        ([0, 0, 1], [1.5, 0], {}, "integer count"),
        ([0, 0, 2], [1, 0, 1], {}, r"bags \[1\] have no members"),
        ([0, 0, 3], [1, 0], {}, "outside"),
        ([0.0, 1.0], [1, 0], {}, "integer array"),
        ([0, 1], [np.nan, 0], {"strength": 1.0}, "not finite"),
        ([0, 1], [1, 0], {"strength": -1.0}, "strength must be"),
        ([0, 1], [1, 0], {"log_potential": [[0.0, 0.0], [0.0]]}, "shape"),
        ([0, 1], [1, 0], {"log_potential": [[0.0, np.inf], [0.0, 0.0]]}, "finite or -inf"),
    ],
)
def test_count_factors_reject_bad_bags(bag_of, counts, kwargs, match):
    with pytest.raises(ProbkitError, match=match):
        CountFactors.from_bags(np.asarray(bag_of), counts, **kwargs)


def test_belief_propagation_rejects_bad_options_and_overlapping_bags():
    factors = CountFactors.from_bags(np.array([0, 0, 1]), [1, 0])
    mrf = binary_mrf(jnp.zeros(3), count_factors=factors)
    with pytest.raises(ProbkitError, match="damping"):
        belief_propagation(mrf, damping=1.0)
    with pytest.raises(ProbkitError, match="method"):
        belief_propagation(mrf, method="clique")
    free = CountFactors.from_bags(np.array([0, 0]), [1], log_potential=[[0.0, -1.0, 0.0]])
    with pytest.raises(ProbkitError, match="free tables"):
        belief_propagation(binary_mrf(jnp.zeros(2), count_factors=free), method="gaussian")
    overlapping = dataclasses.replace(
        factors,
        blocks=(factors.blocks[0]._replace(members=jnp.zeros_like(factors.blocks[0].members)),),
    )
    with pytest.raises(ProbkitError, match="disjoint"):
        binary_mrf(jnp.zeros(3), count_factors=overlapping)
