"""BP on a field sharded over devices gives the marginals and log Z of the field on one device."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import pytest

from probkit import ProbkitError
from probkit.inference.bp import (
    binary_mrf,
    shard_mrf,
)

FIELD = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from probkit.inference.bp import (
        CountFactors, belief_propagation, binary_mrf, pad_mrf, shard_mrf,
    )


    def field(seed, n=200):
        # Ragged bags of 5 to 12 members (two padded widths), soft and hard counts, a loopy
        # random graph and variables in no bag.
        rng = np.random.default_rng(seed)
        sizes = rng.integers(5, 13, size=40)
        sizes = sizes[np.cumsum(sizes) <= n - 7]
        bag_of = np.full(n, -1)
        bag_of[: sizes.sum()] = np.repeat(np.arange(len(sizes)), sizes)
        labels = rng.uniform(size=n) < 0.3
        counts = np.bincount(bag_of[bag_of >= 0], labels[bag_of >= 0])
        strength = np.where(np.arange(len(sizes)) % 2 == 0, np.inf, 0.7)
        edges = np.unique(np.sort(rng.integers(0, n, size=(2 * n, 2)), axis=1), axis=0)
        edges = edges[edges[:, 0] != edges[:, 1]]
        factors = CountFactors.from_bags(bag_of, counts, strength=strength)
        unary = jnp.asarray(rng.normal(-0.5, 1.0, n))
        return binary_mrf(unary, edges, rng.uniform(0, 0.5, len(edges)), factors)
    """
)


def test_shard_mrf_refuses_bad_input():
    with pytest.raises(ProbkitError, match="mrf"):
        shard_mrf("not a field")
    with pytest.raises(ProbkitError, match="devices"):
        shard_mrf(binary_mrf(jnp.zeros(3)), devices=[])


def test_four_devices_give_the_marginals_of_one():
    script = FIELD + textwrap.dedent(
        """
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 4
        mrf = field(1)  # 397 edges; 11 bags of width 8 and 11 of width 16
        single = belief_propagation(mrf)
        # Padding alone (neutral edges, empty bags up to multiples of 4) changes nothing.
        layout = pad_mrf(mrf, 4)
        assert layout.edges.shape[0] % 4 == 0 and layout.edges.shape[0] > mrf.edges.shape[0]
        assert all(block.mask.shape[0] % 4 == 0 for block in layout.count_factors.blocks)
        assert any(not block.mask.any(axis=1).all() for block in layout.count_factors.blocks)
        padded = belief_propagation(layout)
        np.testing.assert_allclose(padded.marginals, single.marginals, rtol=0, atol=1e-12)
        np.testing.assert_allclose(padded.log_partition, single.log_partition, rtol=1e-12)
        # Sharded over the four devices: the same iterations, marginals and log Z.
        sharded_field = shard_mrf(mrf)
        assert len(sharded_field.directed.source.sharding.device_set) == 4
        assert len(sharded_field.count_factors.blocks[0].members.sharding.device_set) == 4
        sharded = belief_propagation(sharded_field)
        assert int(sharded.iterations) == int(single.iterations)
        np.testing.assert_allclose(sharded.marginals, single.marginals, rtol=0, atol=1e-12)
        np.testing.assert_allclose(sharded.log_partition, single.log_partition, rtol=1e-12)
        print("ok")
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
