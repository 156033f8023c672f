"""Populations sharded over devices resample, and SMC runs, as on one device (DESIGN.md, Scale)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from probkit.inference.population import Population, resample, ess

    # float64: a sharded cumulative sum rounds differently from a sequential one; in float32 that
    # moves a few ancestors whose query lies within 1e-7 of a boundary, in float64 none here.
    jax.config.update("jax_enable_x64", True)
    assert len(jax.devices()) == 4
    mesh = Mesh(np.array(jax.devices()), ("particles",))
    rows = NamedSharding(mesh, PartitionSpec("particles"))
    n = 4096
    key_x, key_w, key_r = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key_x, (n, 3))
    log_w = jax.random.normal(key_w, (n,)) * 2.0
    local = Population(x, log_w)
    sharded = Population(jax.device_put(x, rows), jax.device_put(log_w, rows))
    assert len(sharded.log_weights.sharding.device_set) == 4
    for method in ("multinomial", "stratified", "systematic", "residual"):
        step = jax.jit(lambda k, p: resample(k, p, method))
        a, b = step(key_r, local), step(key_r, sharded)
        np.testing.assert_array_equal(np.asarray(a.particles), np.asarray(b.particles))
        np.testing.assert_allclose(np.asarray(a.log_weights), np.asarray(b.log_weights), rtol=1e-6)
    np.testing.assert_allclose(float(ess(local)), float(ess(sharded)), rtol=1e-5)

    # A whole tempered SMC run with its particles sharded over the devices.
    from probkit.inference.smc import tempered_smc
    y = jnp.array([0.5, 1.2, 0.3])
    log_prior = lambda z: -0.5 * jnp.sum(z**2)
    log_likelihood = lambda z: -0.5 * jnp.sum((y - z[0]) ** 2)
    particles = jax.random.normal(key_x, (n, 2))
    run = jax.jit(lambda k, p: tempered_smc(k, log_prior, log_likelihood, p, num_mcmc_steps=2))
    single = run(key_r, particles)
    spread = run(key_r, jax.device_put(particles, rows))
    assert len(spread.population.particles.sharding.device_set) == 4
    np.testing.assert_allclose(float(single.log_evidence), float(spread.log_evidence), rtol=1e-9)
    print("ok")
""")


def test_resampling_a_population_sharded_over_four_devices_matches_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
