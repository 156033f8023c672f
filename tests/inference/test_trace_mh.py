"""Single-site trace MH on NumPyro models: exact invariance by enumeration, conjugate moments,
support handling, jit/vmap and the NumPyro adaptor, bad input."""

import itertools

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import MCMC
from numpyro.infer.util import compute_log_probs, log_density
from scipy import integrate, stats

from probkit import ProbkitError
from probkit.inference.mhg.numpyro_kernel import NumPyroKernel
from probkit.inference.mhg.trace import single_site_mh
from probkit.theory.models import DiscreteSites
from probkit.theory.transition import (
    invariance_errors,
    prior_conditional_probabilities,
    single_site_transition_matrix,
)

pytestmark = pytest.mark.usefixtures("x64")

# --- (1) exact invariance on finite state spaces --------------------------------------------------
# The transition matrix enumerates every state, site and proposed value, with acceptance from the
# kernel's own `propose` (probkit.theory.transition.single_site_transition_matrix).

SPACE = DiscreteSites()
CARDINALITY = dict(SPACE.cardinality)
PRIOR = prior_conditional_probabilities(SPACE.model, (SPACE.y,))


def stationarity_error(transition, pi):
    return float(np.max(np.abs(pi @ transition.matrix - pi)))


def test_the_hand_written_posterior_is_numpyros_joint_density():
    pi = SPACE.exact_posterior()
    feasible = pi > 0
    states = np.array(list(itertools.product(*(range(k) for _, k in SPACE.cardinality))))
    stacked = {site: jnp.asarray(states[feasible, i]) for i, site in enumerate(CARDINALITY)}
    log_joint = np.asarray(
        jax.jit(jax.vmap(lambda p: log_density(SPACE.model, (SPACE.y,), {}, p)[0]))(stacked)
    )
    expected = np.log(pi[feasible])
    np.testing.assert_allclose(log_joint - log_joint[0], expected - expected[0], atol=1e-12)


@pytest.mark.parametrize("validation", [True, False], ids=["validated", "unvalidated"])
@pytest.mark.parametrize("rule", ["metropolis", "barker"])
def test_prior_proposal_kernel_is_exactly_reversible_by_enumeration(validation, rule):
    """The exact transition matrix on all 36 configurations (12 impossible) keeps π to 1e-12,
    with and without NumPyro's own support validation: the kernel checks supports itself."""
    with numpyro.validation_enabled(validation):
        kernel = single_site_mh(SPACE.model, (SPACE.y,), rule=rule)
        transition = single_site_transition_matrix(kernel, CARDINALITY, PRIOR, rule=rule)
    pi = SPACE.exact_posterior()
    assert max(invariance_errors(transition).values()) < 1e-12
    assert np.max(np.abs(transition.target - pi)) < 1e-15
    # Not the identity: the chain moves between all possible configurations.
    feasible = pi > 0
    power = np.linalg.matrix_power(transition.matrix[np.ix_(feasible, feasible)], 16)
    assert np.all(power > 0)


WEIGHTS_B = np.array([0.6, 0.3, 0.1])


def skewed_b(key, value):
    return jax.random.categorical(key, jnp.log(jnp.asarray(WEIGHTS_B)), shape=jnp.shape(value))


def skewed_b_log_density(to, _from):
    return jnp.log(jnp.asarray(WEIGHTS_B))[to]


def flip_c(key, value):
    return 1 - value


def uniform_b(key, value):
    return jax.random.randint(key, jnp.shape(value), 0, 3)


def user_probabilities(site, position, cardinality):
    """q of the user proposals below: b independent of its value, c flipped; others prior."""
    if site == "b":
        return jnp.asarray(WEIGHTS_B)
    if site == "c":
        return jnp.stack([position["c"] == 1, position["c"] == 0]).astype(float)
    return PRIOR(site, position, cardinality)


def test_user_proposals_are_exactly_reversible_by_enumeration():
    """b: an asymmetric independence proposal with its density; c: a deterministic flip."""
    proposals = {"b": (skewed_b, skewed_b_log_density), "c": (flip_c, None)}
    kernel = single_site_mh(SPACE.model, (SPACE.y,), proposals=proposals)
    transition = single_site_transition_matrix(kernel, CARDINALITY, user_probabilities)
    assert max(invariance_errors(transition).values()) < 1e-12


def test_the_exact_check_catches_an_asymmetric_proposal_declared_symmetric():
    kernel = single_site_mh(SPACE.model, (SPACE.y,), proposals={"b": (skewed_b, None)})
    transition = single_site_transition_matrix(kernel, CARDINALITY, user_probabilities)
    assert stationarity_error(transition, SPACE.exact_posterior()) > 1e-3


def test_the_exact_check_catches_a_dropped_prior_proposal_correction():
    kernel = single_site_mh(SPACE.model, (SPACE.y,))

    def full_joint_ratio(position, i, value):
        # Wrong: ρ = p(x')/p(x) for a proposal drawn from p_i(· | pa).
        proposal, _ = kernel.propose(position, i, value)
        return proposal.log_density - kernel.init(position).log_density

    transition = single_site_transition_matrix(
        kernel, CARDINALITY, PRIOR, log_ratio_fn=full_joint_ratio
    )
    assert stationarity_error(transition, SPACE.exact_posterior()) > 1e-3


def test_the_exact_check_catches_densities_that_ignore_a_moved_support():
    """monad-bayes PR #6: with NumPyro's validation off, DiscreteUniform(0, b).log_prob(d) is
    finite for d > b, so reusing d after b shrinks must be caught by a support check."""
    kernel = single_site_mh(SPACE.model, (SPACE.y,))

    def unchecked_ratio(position, i, value):
        site = kernel.sites[i]
        proposed = dict(position, **{site: value})
        with numpyro.validation_enabled(False):
            new, _ = compute_log_probs(SPACE.model, (SPACE.y,), {}, proposed)
            old, _ = compute_log_probs(SPACE.model, (SPACE.y,), {}, position)
        return sum(new[k] - old[k] for k in new if k != site)

    transition = single_site_transition_matrix(
        kernel, CARDINALITY, PRIOR, log_ratio_fn=unchecked_ratio
    )
    pi = SPACE.exact_posterior()
    assert stationarity_error(transition, pi) > 1e-3
    assert (pi @ transition.matrix)[pi == 0].sum() > 1e-3  # mass leaks into impossible states


PROBS_B = np.asarray(SPACE.probs_b)


def scaled_model(y):
    with handlers.scale(scale=0.5):  # a tempered prior factor: p(a)^0.5
        a = numpyro.sample("a", dist.Bernoulli(0.3))
    b = numpyro.sample("b", dist.Categorical(jnp.asarray(PROBS_B)[a]))
    numpyro.sample("y", dist.Poisson(1.0 + a + b), obs=y)


def test_a_scaled_site_keeps_its_tempered_factor_exactly():
    """Under scale s the proposal p_i no longer cancels p_i^s; π ∝ p(a)^0.5 p(b | a) p(y | a, b)."""
    pi = np.array(
        [
            (0.3 if a else 0.7) ** 0.5 * PROBS_B[a, b] * stats.poisson.pmf(SPACE.y, 1.0 + a + b)
            for a in range(2)
            for b in range(3)
        ]
    )
    pi /= pi.sum()
    kernel = single_site_mh(scaled_model, (SPACE.y,))
    probabilities = prior_conditional_probabilities(scaled_model, (SPACE.y,))
    transition = single_site_transition_matrix(kernel, {"a": 2, "b": 3}, probabilities)
    assert stationarity_error(transition, pi) < 1e-12
    assert max(invariance_errors(transition).values()) < 1e-12


# --- (2) a continuous conjugate model under jit, scan and vmap ------------------------------------

Y_NORMAL = jnp.array([0.4, 1.3, 0.9, 1.7])
K_POISSON = jnp.array([3, 1, 2])


def conjugate_model(y, k):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    theta = numpyro.sample("theta", dist.Normal(mu, 1.0))
    with numpyro.plate("y_plate", y.shape[0]):
        numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)
    rate = numpyro.sample("rate", dist.Exponential(1.0))
    with numpyro.plate("k_plate", k.shape[0]):
        numpyro.sample("k", dist.Poisson(rate), obs=k)


def conjugate_moments():
    """(mu, theta): Gaussian with precision [[2, -1], [-1, 1 + n]] and linear term (0, Σy);
    rate: Gamma(1 + Σk, 1 + m)."""
    n = Y_NORMAL.size
    covariance = np.linalg.inv(np.array([[2.0, -1.0], [-1.0, 1.0 + n]]))
    mean = covariance @ np.array([0.0, float(Y_NORMAL.sum())])
    shape, rate = 1.0 + float(K_POISSON.sum()), 1.0 + K_POISSON.size
    return {
        "mu": (mean[0], covariance[0, 0]),
        "theta": (mean[1], covariance[1, 1]),
        "rate": (shape / rate, shape / rate**2),
    }


def run_chains(kernel, key, num_chains, num_steps):
    """Vmapped chains from prior draws, each a jit-compiled lax.scan; returns (chains, steps) draws."""

    @jax.jit
    def run(key):
        key_init, key_run = jax.random.split(key)

        def chain(key_init, key_run):
            state = kernel.init(kernel.initial_position(key_init))

            def body(state, key):
                state, info = kernel.step(key, state)
                return state, (state.position, info.acceptance_probability)

            return jax.lax.scan(body, state, jax.random.split(key_run, num_steps))[1]

        return jax.vmap(chain)(
            jax.random.split(key_init, num_chains), jax.random.split(key_run, num_chains)
        )

    return run(key)


def z_scores(draws, mean, variance):
    """z of the sample mean and of the mean of (x - mean)² (whose expectation is the variance),
    each with its Monte Carlo standard error sd / √ESS (arviz's ESS over chains)."""
    draws = np.asarray(draws, dtype=float)
    scores = []
    for statistic, expected in ((draws, mean), ((draws - mean) ** 2, variance)):
        error = statistic.std() / np.sqrt(az.ess(statistic))
        scores.append((statistic.mean() - expected) / error)
    return np.array(scores)


def test_single_site_chains_recover_a_conjugate_posterior():
    """Means and variances of three sites (one with a child site, one with a child observation);
    each |z| < 4 has a false-alarm rate of 6e-5, so 6e-4 for the six together."""
    kernel = single_site_mh(conjugate_model, (Y_NORMAL, K_POISSON))
    positions, acceptance = run_chains(kernel, jax.random.key(11), num_chains=8, num_steps=3_000)
    assert 0.2 < float(acceptance.mean()) < 0.9
    for site, (mean, variance) in conjugate_moments().items():
        draws = np.asarray(positions[site])[:, 500:]  # burn-in from prior draws
        assert np.all(np.abs(z_scores(draws, mean, variance)) < 4.0), site


# --- (3) a user proposal that leaves the support --------------------------------------------------

Y_SCALE = jnp.array([0.3, -0.5, 0.2, 0.1])


def scale_model(y):
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(0.0, sigma), obs=y)


def random_walk_sigma(key, value):
    return value + 0.4 * jax.random.normal(key, jnp.shape(value))


def scale_posterior_moments():
    def unnormalised(s):
        return stats.halfnorm.pdf(s) * np.prod(stats.norm.pdf(np.asarray(Y_SCALE), 0.0, s))

    mass = integrate.quad(unnormalised, 0, np.inf)[0]
    mean = integrate.quad(lambda s: s * unnormalised(s), 0, np.inf)[0] / mass
    second = integrate.quad(lambda s: s**2 * unnormalised(s), 0, np.inf)[0] / mass
    return mean, second - mean**2


@pytest.mark.parametrize("validation", [True, False], ids=["validated", "unvalidated"])
def test_a_proposal_outside_the_support_is_rejected(validation):
    with numpyro.validation_enabled(validation):
        kernel = single_site_mh(
            scale_model, (Y_SCALE,), proposals={"sigma": (random_walk_sigma, None)}
        )
        state = kernel.init({"sigma": jnp.asarray(0.2)})
        proposal, log_ratio = jax.jit(kernel.propose, static_argnums=1)(
            state.position, "sigma", jnp.asarray(-0.1)
        )
    assert float(log_ratio) == -np.inf
    assert float(proposal.log_density) == -np.inf


def test_a_random_walk_on_a_half_normal_scale_stays_correct():
    """Posterior mean and variance of σ against quadrature, |z| < 4 (false alarm 1.3e-4)."""
    kernel = single_site_mh(scale_model, (Y_SCALE,), proposals={"sigma": (random_walk_sigma, None)})
    key = jax.random.key(5)

    @jax.jit
    def run(key):
        def chain(key):
            key_init, key_run = jax.random.split(key)
            state = kernel.init(kernel.initial_position(key_init))

            def body(state, key):
                state, info = kernel.step(key, state)
                return state, (state.position["sigma"], info.proposal["sigma"], info.is_accepted)

            return jax.lax.scan(body, state, jax.random.split(key_run, 6_000))[1]

        return jax.vmap(chain)(jax.random.split(key, 4))

    sigma, proposed, accepted = (np.asarray(x) for x in run(key))
    assert np.all(sigma > 0)
    outside = proposed <= 0
    assert outside.sum() > 100  # the walk does step outside ...
    assert not np.any(accepted[outside])  # ... and every such step is rejected
    mean, variance = scale_posterior_moments()
    assert np.all(np.abs(z_scores(sigma[:, 500:], mean, variance)) < 4.0)


# --- (4) the NumPyro adaptor ------------------------------------------------------------------------


Y_MIXED = jnp.array([1.2, 0.7, 1.9])


def mixed_model(y):
    z = numpyro.sample("z", dist.Bernoulli(0.4))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(1.5 * z, sigma), obs=y)


def mixed_posterior_moments():
    """P(z = 1 | y) and the mean and variance of σ, by summing over z and integrating over σ."""

    def joint(s, z):
        prior = (0.4 if z else 0.6) * stats.halfnorm.pdf(s)
        return prior * np.prod(stats.norm.pdf(np.asarray(Y_MIXED), 1.5 * z, s))

    mass = {z: [integrate.quad(lambda s, z=z, k=k: s**k * joint(s, z), 0, np.inf)[0]
                for k in range(3)] for z in (0, 1)}  # fmt: skip
    total = mass[0][0] + mass[1][0]
    mean = (mass[0][1] + mass[1][1]) / total
    return {
        "z": (mass[1][0] / total, mass[1][0] / total * (1 - mass[1][0] / total)),
        "sigma": (mean, (mass[0][2] + mass[1][2]) / total - mean**2),
    }


def test_runs_under_numpyro_mcmc_vectorized_without_init_params():
    """A discrete and a continuous site, both with their default (prior) proposal, started from
    the kernel's own prior draws. Means against quadrature, |z| < 4 each (false alarm 1.3e-4)."""
    kernel = single_site_mh(mixed_model, (Y_MIXED,))
    mcmc = MCMC(
        NumPyroKernel(kernel),
        num_warmup=200,
        num_samples=2_000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2))
    samples = mcmc.get_samples(group_by_chain=True)
    assert {name: value.shape for name, value in samples.items()} == {
        "z": (4, 2_000),
        "sigma": (4, 2_000),
    }
    assert np.all(samples["sigma"] > 0)
    for site, (mean, variance) in mixed_posterior_moments().items():
        assert abs(z_scores(samples[site], mean, variance)[0]) < 4.0, site
    extra = mcmc.get_extra_fields(group_by_chain=True)
    log_joint = jax.vmap(jax.vmap(lambda p: kernel.init(p).log_density))(samples)
    np.testing.assert_allclose(-extra["potential_energy"], log_joint, rtol=1e-12)


# --- (5) bad input ---------------------------------------------------------------------------------


def test_a_model_without_latent_sites_is_refused():
    def observed_only(y):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ProbkitError, match="no latent sample site"):
        single_site_mh(observed_only, (0.5,))


def test_a_proposal_for_an_unknown_site_is_refused():
    with pytest.raises(ProbkitError, match=r"`proposals` names 'y'.*latent sites are 'a', 'b'"):
        single_site_mh(SPACE.model, (SPACE.y,), proposals={"y": (uniform_b, None)})


@pytest.mark.parametrize(
    "pair",
    [uniform_b, (uniform_b,), (uniform_b, "symmetric"), ("sample", None), (uniform_b, None, None)],
    ids=["bare_function", "one", "density_not_callable", "sampler_not_callable", "three"],
)
def test_a_proposal_that_is_not_a_pair_of_callables_is_refused(pair):
    with pytest.raises(ProbkitError, match=r"`proposals\['b'\]` must be a pair"):
        single_site_mh(SPACE.model, (SPACE.y,), proposals={"b": pair})


def test_a_proposal_of_the_wrong_shape_is_refused():
    with pytest.raises(ProbkitError, match=r"`proposals\['b'\]`: sample_fn returns shape \(2,\)"):
        single_site_mh(
            SPACE.model, (SPACE.y,), proposals={"b": (lambda key, v: jnp.zeros(2, int), None)}
        )


def test_a_model_whose_structure_depends_on_a_value_is_refused():
    def branching(y):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        if z:  # Python control flow on a sampled value
            numpyro.sample("w", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y)

    with pytest.raises(ProbkitError, match="fixed structure"):
        single_site_mh(branching, (0.3,))


def test_positions_and_sites_are_checked():
    kernel = single_site_mh(SPACE.model, (SPACE.y,))
    with pytest.raises(ProbkitError, match="exactly the latent sites"):
        kernel.init({"a": 0, "b": 1})
    with pytest.raises(ProbkitError, match="log density at the initial position is -inf"):
        kernel.init({"a": 0, "b": 0, "c": 0, "d": 2})  # d > b: impossible
    with pytest.raises(ProbkitError, match="`site` 'y' is not a latent site"):
        kernel.propose({"a": 0, "b": 0, "c": 0, "d": 0}, "y", 1)
    with pytest.raises(ProbkitError, match="`rule`"):
        single_site_mh(SPACE.model, (SPACE.y,), rule="glauber")
