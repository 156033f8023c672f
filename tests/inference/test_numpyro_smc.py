"""SMC on NumPyro models: the density split, the front end and its outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy

from probkit import ProbkitError
from probkit.inference import SMC
from probkit.inference.numpyro_bridge import model_densities
from probkit.theory.checks.smc import hierarchical_model
from probkit.theory.models import NormalNormal

pytestmark = pytest.mark.usefixtures("x64")

Y3 = jnp.array([0.1, 0.5, -0.3])


def test_prior_plus_likelihood_is_numpyros_log_joint_with_jacobians():
    densities = model_densities(hierarchical_model, (Y3,))
    draws = densities.sample_prior(jax.random.key(0), 5)
    for i in range(5):
        u = jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], draws)
        total = densities.log_prior(u) + densities.log_likelihood(u)
        expected = -potential_energy(hierarchical_model, (Y3,), {}, u)
        assert float(total) == pytest.approx(float(expected), rel=1e-10)
    assert densities.latent_sites == ("mu", "tau", "theta")
    assert densities.observed_sites == ("y",)


def normal_model(y):
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    numpyro.deterministic("theta_squared", theta**2)
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)


def test_smc_on_a_conjugate_model_gets_the_posterior_and_the_evidence():
    """Posterior N(Σy/(n+1), 1/(n+1)); tolerances: 4 sd of a mean over an ESS of ≥ 250 particles,
    and 0.1 nats for log Z (the single-run sd here is about 0.02)."""
    model = NormalNormal()
    y = jnp.asarray(model.observations)
    smc = SMC(normal_model, num_particles=1_000)
    smc.run(jax.random.key(0), y)
    samples = smc.get_samples()
    n = y.size
    posterior_sd = np.sqrt(1 / (n + 1))
    assert samples["theta"].shape == (1_000,)
    assert float(samples["theta"].mean()) == pytest.approx(
        float(y.sum()) / (n + 1), abs=4 * posterior_sd / np.sqrt(250)
    )
    np.testing.assert_allclose(samples["theta_squared"], samples["theta"] ** 2, rtol=1e-12)
    assert smc.log_evidence == pytest.approx(model.log_evidence(), abs=0.1)
    history = smc.history()
    assert history["temperature"][-1] == 1.0
    assert len(history["ess"]) == smc.num_steps


def test_to_arviz_holds_the_posterior_and_the_per_step_diagnostics():
    smc = SMC(normal_model, num_particles=300)
    smc.run(jax.random.key(1), jnp.asarray(NormalNormal().observations))
    idata = smc.to_arviz()
    assert idata.posterior["theta"].shape == (1, 300)
    stats = idata.sample_stats
    assert float(stats["log_marginal_likelihood"][0]) == pytest.approx(smc.log_evidence)
    for name in ("temperature", "ess", "acceptance_rate", "resampled", "log_evidence_increment"):
        assert stats[name].dims == ("chain", "smc_step")
    assert float(stats["log_evidence_increment"].sum()) == pytest.approx(smc.log_evidence)


def test_print_summary_reports_sites_and_evidence(capsys):
    smc = SMC(normal_model, num_particles=200)
    smc.run(jax.random.key(2), jnp.asarray(NormalNormal().observations))
    smc.print_summary()
    out = capsys.readouterr().out
    assert "theta" in out
    assert "log evidence" in out


def test_models_smc_cannot_handle_are_refused_clearly():
    def discrete(y):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y)

    def unobserved():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ProbkitError, match="discrete"):
        SMC(discrete).run(jax.random.key(0), 1.0)
    with pytest.raises(ProbkitError, match="no observed site"):
        SMC(unobserved).run(jax.random.key(0))
    with pytest.raises(ProbkitError, match="num_particles"):
        SMC(normal_model, num_particles=0)
    with pytest.raises(ProbkitError, match="run"):
        SMC(normal_model).get_samples()
