"""probkit kernels under numpyro.infer.MCMC: conjugate posteriors, every chain method, the
state's fields and arviz's view of them, ready kernels, bad input."""

import functools
import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, init_to_value
from numpyro.infer.util import potential_energy

from probkit import ProbkitError
from probkit.inference.mhg import involutive, mala, random_walk
from probkit.inference.mhg.numpyro_kernel import NumPyroKernel

pytestmark = pytest.mark.usefixtures("x64")

# --- conjugate models ----------------------------------------------------------------------------

Y = jnp.array([0.3, 1.1, 0.8, -0.2, 1.5])
PRIOR_MEAN, PRIOR_SD = 0.5, 2.0


def normal_model(y):
    theta = numpyro.sample("theta", dist.Normal(PRIOR_MEAN, PRIOR_SD))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)


def normal_posterior():
    """θ | y ~ N(m, v): precision 1/s0² + n, m = (m0/s0² + Σy) v."""
    precision = 1.0 / PRIOR_SD**2 + Y.size
    return (PRIOR_MEAN / PRIOR_SD**2 + float(Y.sum())) / precision, 1.0 / precision


ALPHA, BETA, KAPPA, MU = 2.0, 1.0, 1.0, 0.0


def normal_gamma_model(y):
    tau = numpyro.sample("tau", dist.Gamma(ALPHA, BETA))
    theta = numpyro.sample("theta", dist.Normal(MU, 1.0 / jnp.sqrt(KAPPA * tau)))
    numpyro.deterministic("sd", 1.0 / jnp.sqrt(tau))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(theta, 1.0 / jnp.sqrt(tau)), obs=y)


def normal_gamma_posterior():
    """τ | y ~ Gamma(αn, βn); θ | y ~ Student-t(2αn, μn, βn/(αn κn)), variance βn/(κn(αn − 1))."""
    y = np.asarray(Y)
    n, mean = y.size, y.mean()
    kappa_n = KAPPA + n
    mu_n = (KAPPA * MU + n * mean) / kappa_n
    alpha_n = ALPHA + n / 2
    beta_n = BETA + 0.5 * np.sum((y - mean) ** 2) + KAPPA * n * (mean - MU) ** 2 / (2 * kappa_n)
    return {
        "tau": (alpha_n / beta_n, alpha_n / beta_n**2),
        "theta": (mu_n, beta_n / (kappa_n * (alpha_n - 1))),
    }


def z_scores(draws, mean, variance):
    """z of the sample mean and of the mean of (x − mean)² (whose expectation is the variance,
    i.e. the sd squared), each over its Monte Carlo standard error sd / √ESS, with arviz's ESS
    over the (chain, draw) array."""
    draws = np.asarray(draws, dtype=float)
    scores = []
    for statistic, expected in ((draws, mean), ((draws - mean) ** 2, variance)):
        error = statistic.std() / np.sqrt(az.ess(statistic))
        scores.append((statistic.mean() - expected) / error)
    return np.array(scores)


BUILDERS = {
    "random_walk": lambda log_density_fn: random_walk(log_density_fn, 0.9),
    "mala": lambda log_density_fn: mala(log_density_fn, 0.6),
}


CHAIN_KEYS = jax.random.split(jax.random.key(7), 4)


@functools.cache
def conjugate_run(builder, chain_method, num_chains, num_samples=3_000):
    """Chain c always runs from key CHAIN_KEYS[c], whatever the method and number of chains."""
    mcmc = MCMC(
        NumPyroKernel(BUILDERS[builder], model=normal_model),
        num_warmup=300,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(CHAIN_KEYS[:num_chains], Y)
    return mcmc


# --- model-based builders ---------------------------------------------------------------------------


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_builder_recovers_the_conjugate_posterior_with_vectorized_chains(builder):
    """Posterior mean and sd of θ from 4 vectorized chains of 3 000 draws; |z| < 4 for each of
    the two moments (false-alarm rate 1.3e-4 per kernel, fixed seed)."""
    mcmc = conjugate_run(builder, "vectorized", 4)
    theta = mcmc.get_samples(group_by_chain=True)["theta"]
    assert theta.shape == (4, 3_000)
    accept = mcmc.get_extra_fields()["accept_prob"]
    assert 0.2 < float(accept.mean()) < 0.95
    assert np.all(np.abs(z_scores(theta, *normal_posterior())) < 4.0)


def test_sequential_chains_equal_vectorized_chains_and_are_correct():
    """Same keys, same chains: vmap and a loop over chains give the same draws (to rounding)."""
    vectorized = conjugate_run("random_walk", "vectorized", 4)
    sequential = conjugate_run("random_walk", "sequential", 2)
    a = vectorized.get_samples(group_by_chain=True)
    b = sequential.get_samples(group_by_chain=True)
    assert a["theta"].shape == (4, 3_000)
    assert b["theta"].shape == (2, 3_000)
    np.testing.assert_allclose(a["theta"][:2], b["theta"], rtol=1e-10)
    extra_a = vectorized.get_extra_fields(group_by_chain=True)
    extra_b = sequential.get_extra_fields(group_by_chain=True)
    assert set(extra_a) == set(extra_b) == {"potential_energy", "accept_prob", "is_accepted"}
    for name in extra_a:
        np.testing.assert_allclose(extra_a[name][:2], extra_b[name], rtol=1e-10)
    assert np.all(np.abs(z_scores(b["theta"], *normal_posterior())) < 4.0)


def test_arviz_shows_acceptance_rate_and_lp():
    mcmc = conjugate_run("random_walk", "vectorized", 4)
    idata = az.from_numpyro(mcmc)
    stats = idata.sample_stats
    assert {"acceptance_rate", "lp", "is_accepted"} <= set(stats.data_vars)
    assert stats["acceptance_rate"].shape == (4, 3_000)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    np.testing.assert_array_equal(stats["acceptance_rate"], extra["accept_prob"])
    # lp is the model's log joint at the draw (θ is unconstrained already).
    theta = np.asarray(idata.posterior["theta"])
    expected = jax.vmap(
        jax.vmap(lambda t: -potential_energy(normal_model, (Y,), {}, {"theta": t}))
    )(theta)
    np.testing.assert_allclose(stats["lp"], expected, rtol=1e-10)
    assert "y" in idata.log_likelihood  # arviz found the model through the kernel


def test_a_constrained_site_comes_back_constrained_with_deterministic_sites():
    """Normal–gamma: τ > 0 is moved as log τ and returned as τ. Posterior means and variances of
    τ and θ, |z| < 4 each (four tests: false-alarm rate 2.5e-4)."""
    mcmc = MCMC(
        NumPyroKernel(lambda f: random_walk(f, 0.7), model=normal_gamma_model),
        num_warmup=300,
        num_samples=3_000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(3), Y, extra_fields=("z.tau",))
    samples = mcmc.get_samples(group_by_chain=True)
    unconstrained_tau = mcmc.get_extra_fields(group_by_chain=True)["z.tau"]
    assert np.all(samples["tau"] > 0)
    assert np.any(unconstrained_tau < 0)
    np.testing.assert_allclose(samples["tau"], np.exp(unconstrained_tau), rtol=1e-12)
    np.testing.assert_allclose(samples["sd"], 1.0 / np.sqrt(samples["tau"]), rtol=1e-12)
    for site, (mean, variance) in normal_gamma_posterior().items():
        assert np.all(np.abs(z_scores(samples[site], mean, variance)) < 4.0), site


def test_init_strategy_and_unconstrained_init_params_choose_the_start():
    kernel = NumPyroKernel(
        lambda f: random_walk(f, 0.5),
        model=normal_gamma_model,
        init_strategy=init_to_value(values={"tau": 2.0, "theta": 0.1}),
    )
    state = kernel.init(jax.random.key(0), 0, None, (Y,), {})
    np.testing.assert_allclose(state.z["tau"], np.log(2.0), rtol=1e-12)
    start = {"tau": jnp.asarray(0.0), "theta": jnp.asarray(-1.0)}  # unconstrained: τ = 1
    state = kernel.init(jax.random.key(0), 0, start, (Y,), {})
    assert float(state.potential_energy) == pytest.approx(
        float(potential_energy(normal_gamma_model, (Y,), {}, start)), rel=1e-12
    )


# --- ready kernels ---------------------------------------------------------------------------------

COVARIANCE = np.array([[1.0, 0.6], [0.6, 2.0]])


def log_gaussian(x):
    return -0.5 * x @ jnp.linalg.solve(jnp.asarray(COVARIANCE), x)


def test_a_ready_kernel_runs_from_init_params():
    """Four vectorized chains from given starts; mean and variance of each coordinate, |z| < 4
    (four tests: false-alarm rate 2.5e-4)."""
    mcmc = MCMC(
        NumPyroKernel(random_walk(log_gaussian, 1.4)),
        num_warmup=200,
        num_samples=3_000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(1), init_params=jnp.zeros((4, 2)))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert draws.shape == (4, 3_000, 2)
    for i in range(2):
        assert np.all(np.abs(z_scores(draws[..., i], 0.0, COVARIANCE[i, i])) < 4.0)


def test_a_potential_fn_and_a_builder_make_a_kernel():
    kernel = NumPyroKernel(lambda f: random_walk(f, 1.4), potential_fn=lambda x: -log_gaussian(x))
    mcmc = MCMC(kernel, num_warmup=100, num_samples=1_000, progress_bar=False)
    mcmc.run(jax.random.key(2), init_params=jnp.ones(2))
    extra = mcmc.get_extra_fields()
    samples = mcmc.get_samples()
    np.testing.assert_allclose(
        extra["potential_energy"], -jax.vmap(log_gaussian)(samples), rtol=1e-12
    )


class Point(NamedTuple):
    """A custom position pytree, as reversible-jump kernels use."""

    x: jax.Array
    k: jax.Array


class PointInfo(NamedTuple):
    acceptance_probability: jax.Array
    is_accepted: jax.Array
    move: jax.Array
    proposal: Point


class PointState(NamedTuple):
    position: Point
    log_density: jax.Array


class IndependentGaussianKernel:
    """Exact draws of x ~ N(0, 1) with k counting moves: always accepted. It has an
    ``initial_position``, so runs need no init_params."""

    def init(self, position):
        return PointState(position, -0.5 * position.x**2)

    def step(self, key, state):
        x = jax.random.normal(key, dtype=state.position.x.dtype)
        position = Point(x, state.position.k + 1)
        info = PointInfo(jnp.ones_like(x), jnp.asarray(True), jnp.asarray(3), position)
        return self.init(position), info

    def initial_position(self, key):
        return Point(jax.random.normal(key, dtype=jnp.result_type(float)), jnp.asarray(0))


def test_custom_positions_and_info_fields_pass_through():
    mcmc = MCMC(
        NumPyroKernel(IndependentGaussianKernel()),
        num_warmup=10,
        num_samples=200,
        num_chains=3,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(4))
    samples = mcmc.get_samples(group_by_chain=True)
    assert isinstance(samples, Point)
    assert samples.x.shape == samples.k.shape == (3, 200)
    np.testing.assert_array_equal(samples.k[0], np.arange(11, 211))
    extra = mcmc.get_extra_fields()
    assert np.all(extra["accept_prob"] == 1.0)
    assert np.all(extra["is_accepted"])


def test_a_run_continues_from_post_warmup_state_without_init_params():
    mcmc = MCMC(
        NumPyroKernel(random_walk(log_gaussian, 1.0)),
        num_warmup=50,
        num_samples=100,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), init_params=jnp.zeros(2))
    last = mcmc.last_state
    mcmc.post_warmup_state = last
    mcmc.run(jax.random.key(1))
    assert mcmc.get_samples().shape == (100, 2)
    assert int(mcmc.last_state.num_steps) == int(last.num_steps) + 100


def test_diagnostics_string_reports_the_acceptance_rate():
    kernel = NumPyroKernel(random_walk(log_gaussian, 1.0))
    state = kernel.init(jax.random.key(0), 0, jnp.zeros(2), (), {})
    sample = jax.jit(lambda state: kernel.sample(state, (), {}))
    for _ in range(20):
        state = sample(state)
    text = kernel.get_diagnostics_str(state)
    assert text == f"acc. rate={float(state.mean_accept_prob):.2f}"
    assert 0.0 < float(state.mean_accept_prob) < 1.0


# --- chain_method="parallel" on several (host) devices ------------------------------------------------

PARALLEL_SCRIPT = textwrap.dedent("""
    import arviz as az, jax, numpy as np, numpyro, numpyro.distributions as dist
    from numpyro.infer import MCMC
    from probkit.inference.mhg import random_walk
    from probkit.inference.mhg.numpyro_kernel import NumPyroKernel

    jax.config.update("jax_enable_x64", True)
    assert jax.local_device_count() == 2

    def model(y):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)

    mcmc = MCMC(NumPyroKernel(lambda f: random_walk(f, 1.0), model=model), num_warmup=100,
                num_samples=2_000, num_chains=2, chain_method="parallel", progress_bar=False)
    mcmc.run(jax.random.key(0), 1.0)
    theta = np.asarray(mcmc.get_samples(group_by_chain=True)["theta"])
    assert theta.shape == (2, 2_000) and not np.allclose(theta[0], theta[1])
    assert mcmc.get_extra_fields(group_by_chain=True)["accept_prob"].shape == (2, 2_000)
    # Posterior N(1/2, 1/2): |z| < 4 for the mean, false-alarm rate 6e-5.
    assert abs(theta.mean() - 0.5) < 4 * np.sqrt(0.5 / az.ess(theta))
    print("ok")
""")


def test_parallel_chains_run_on_two_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", PARALLEL_SCRIPT], capture_output=True,
                            text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


# --- bad input --------------------------------------------------------------------------------------


def discrete_model(y):
    z = numpyro.sample("z", dist.Bernoulli(0.5))
    numpyro.sample("y", dist.Normal(z, 1.0), obs=y)


def rw_builder(log_density_fn):
    return random_walk(log_density_fn, 1.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "`kernel` is missing"),
        ({"kernel": 3}, "`kernel` must be a kernel"),
        ({"kernel": rw_builder}, "needs a target: pass `model=`"),
        (
            {"kernel": rw_builder, "model": normal_model, "potential_fn": log_gaussian},
            "either `model=` or `potential_fn=`, not both",
        ),
        (
            {"kernel": random_walk(log_gaussian, 1.0), "model": normal_model},
            "already closes over its target",
        ),
        ({"kernel": rw_builder, "model": "model"}, "`model` must be callable"),
        ({"kernel": rw_builder, "model": normal_model, "init_strategy": 1}, "`init_strategy`"),
        (
            {"kernel": rw_builder, "model": normal_model, "initial_position": lambda key: 0.0},
            "`initial_position` is for kernels without a model",
        ),
        ({"kernel": random_walk(log_gaussian, 1.0), "initial_position": 2}, "`initial_position`"),
        ({"kernel": lambda f: f, "potential_fn": log_gaussian}, "the builder must return a kernel"),
    ],
    ids=[
        "nothing",
        "not_a_kernel",
        "builder_without_target",
        "model_and_potential",
        "ready_kernel_with_model",
        "model_not_callable",
        "init_strategy_not_callable",
        "initial_position_with_model",
        "initial_position_not_callable",
        "builder_returns_no_kernel",
    ],
)
def test_bad_construction_is_refused(arguments, message):
    with pytest.raises(ProbkitError, match=message):
        NumPyroKernel(**arguments)


def test_a_ready_kernel_without_init_params_is_refused():
    mcmc = MCMC(NumPyroKernel(random_walk(log_gaussian, 1.0)), num_warmup=1, num_samples=1)
    with pytest.raises(ProbkitError, match="`init_params` is missing"):
        mcmc.run(jax.random.key(0))


def test_a_start_outside_the_support_is_refused():
    kernel = NumPyroKernel(random_walk(lambda x: jnp.where(x[0] > 0, 0.0, -jnp.inf), 1.0))
    with pytest.raises(ProbkitError, match="`init_params`: the log density"):
        kernel.init(jax.random.key(0), 0, -jnp.ones(2), (), {})


def observed_only(y):
    numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (discrete_model, r"latent site\(s\) 'z' are discrete.*single_site_mh"),
        (observed_only, "no latent sample site"),
    ],
    ids=["discrete", "no_latent_site"],
)
def test_a_model_a_builder_cannot_move_is_refused(model, message):
    mcmc = MCMC(NumPyroKernel(rw_builder, model=model), num_warmup=1, num_samples=1)
    with pytest.raises(ProbkitError, match=message):
        mcmc.run(jax.random.key(0), 0.5)


def test_an_mhg_kernel_is_validated_when_the_run_starts():
    """check=True runs the round trips on the first chain's initial position, even vectorized."""
    hurried = involutive(
        lambda x: jnp.where(x > 0, 2.0 * jnp.log(x) - 2.0 * x, -jnp.inf),
        lambda key, x: jnp.exp(0.8 * jax.random.normal(key, dtype=x.dtype)),
        lambda v, x: -jnp.log(v) - 0.5 * (jnp.log(v) / 0.8) ** 2,
        lambda x, v: (x * v, 1.0 / v),
        log_abs_det_jacobian=lambda x, v: jnp.log(v),  # wrong sign
        check=True,
    )
    mcmc = MCMC(NumPyroKernel(hurried), num_warmup=5, num_samples=5, num_chains=2,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    with pytest.raises(ProbkitError, match="analytic log-Jacobian"):
        mcmc.run(jax.random.key(0), init_params=jnp.array([1.0, 2.0]))
