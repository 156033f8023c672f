import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal, stats

from probkit import ProbkitError
from probkit.theory.calibration import (
    batch_means_standard_error,
    gandy_scott_test,
    geweke_test,
    holm_combined_p_value,
    mean_z_test,
)


def test_mean_z_test_matches_the_z_formula():
    samples = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0], [6.0, 0.0]])
    z, p = mean_z_test(samples, np.array([2.0, 0.0]))
    se = samples[:, 0].std(ddof=1) / 2
    assert z[0] == pytest.approx((3.0 - 2.0) / se)
    assert z[1] == 0.0
    assert p[1] == 1.0


def test_mean_z_test_rejects_a_constant_column_that_misses_its_mean():
    z, p = mean_z_test(np.ones((10, 1)), np.array([0.0]))
    assert np.isinf(z[0])
    assert p[0] == 0.0


def test_mean_z_test_has_its_false_alarm_rate_under_the_null():
    """Under the null, p-values are uniform: 2 000 tests at level 0.05 reject about 100 times.

    Binomial(2000, 0.05) has sd 9.7; the band ±45 has false-alarm rate below 1e-5.
    """
    rng = np.random.default_rng(0)
    samples = rng.exponential(size=(500, 2000))
    _, p = mean_z_test(samples, np.ones(2000))
    assert abs(np.sum(p < 0.05) - 100) < 45


def test_holm_combined_p_value_is_the_smallest_adjusted_p_value():
    assert holm_combined_p_value([0.01, 0.5, 0.02]) == pytest.approx(0.03)


# ---------------------------------------------------------------------------------------------
# MCMC kernel tests: geweke_test and gandy_scott_test on a conjugate normal–normal model
# ---------------------------------------------------------------------------------------------
#
# θ ~ N(0, 1), y_i | θ ~ N(θ, 1), i = 1..5: the posterior is N(Σy / 6, 1 / 6). Every kernel is a
# module-level function so that repeated calls reuse the compiled simulators.

NUM_OBSERVATIONS = 5
FALSE_ALARM_RATE = 1e-3
# A broken kernel must be rejected far beyond the false-alarm rate: each size below is chosen so
# that the expected |z| of the broken statistic is above 8 (numbers in each test's docstring).
DETECTION_LEVEL = 1e-6


def sample_prior(key):
    return jax.random.normal(key)


def sample_data(key, theta):
    return theta + jax.random.normal(key, (NUM_OBSERVATIONS,))


def log_posterior(theta, y):
    return -0.5 * theta**2 - 0.5 * jnp.sum((y - theta) ** 2)


def log_posterior_with_prior_variance_two(theta, y):
    # Bug: the prior N(0, 1) coded with variance 2.
    return -0.25 * theta**2 - 0.5 * jnp.sum((y - theta) ** 2)


def log_posterior_without_last_observation(theta, y):
    # Bug: an off-by-one drops y_5 from the likelihood.
    return -0.5 * theta**2 - 0.5 * jnp.sum((y[:-1] - theta) ** 2)


def exact_gibbs(key, theta, y):
    precision = 1.0 + NUM_OBSERVATIONS
    return jnp.sum(y) / precision + jax.random.normal(key) / jnp.sqrt(precision)


def random_walk_metropolis(log_density, *, step=1.0, num_steps=5, drift=0.0):
    """``num_steps`` Metropolis steps with proposal θ + step·(drift + ε), ε ~ N(0, 1).

    With ``drift != 0`` the proposal is asymmetric, and the acceptance ratio below omits the
    Hastings factor q(θ | θ') / q(θ' | θ) it then needs: a deliberate bug.
    """

    def transition(key, theta, y):
        def one_step(index, theta):
            key_move, key_accept = jax.random.split(jax.random.fold_in(key, index))
            proposal = theta + step * (drift + jax.random.normal(key_move))
            log_ratio = log_density(proposal, y) - log_density(theta, y)
            accept = jnp.log(jax.random.uniform(key_accept)) < log_ratio
            return jnp.where(accept, proposal, theta)

        return jax.lax.fori_loop(0, num_steps, one_step, theta)

    return transition


POSTERIOR_KERNELS = {
    "exact_gibbs": exact_gibbs,
    "random_walk": random_walk_metropolis(log_posterior),
}
BROKEN_KERNELS = {
    "prior_variance_two": random_walk_metropolis(log_posterior_with_prior_variance_two),
    "forgotten_observation": random_walk_metropolis(log_posterior_without_last_observation),
    "asymmetric_proposal_without_hastings": random_walk_metropolis(log_posterior, drift=0.5),
}


def geweke_statistics(theta, y):
    # Geweke's choice: θ, θ² and every θ y_i.
    return jnp.concatenate([jnp.stack([theta, theta**2]), theta * y])


GEWEKE_SIZES = {"num_marginal": 100_000, "num_successive": 50_000}


def run_geweke(kernel, seed):
    return geweke_test(
        jax.random.key(seed),
        sample_prior=sample_prior,
        sample_data=sample_data,
        transition=kernel,
        test_functions=geweke_statistics,
        **GEWEKE_SIZES,
    )


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", list(POSTERIOR_KERNELS))
def test_geweke_test_passes_kernels_that_keep_the_posterior(name):
    """Exact Gibbs and 5-step random-walk Metropolis keep p(θ | y): p-value above 1e-3."""
    result = run_geweke(POSTERIOR_KERNELS[name], seed=1)
    assert result.p_value > FALSE_ALARM_RATE, result
    assert result.z.shape == result.p_values.shape == (2 + NUM_OBSERVATIONS,)
    # Batches of 1 562 sweeps span far more than the chain's autocorrelation time (≈ 11 sweeps
    # for θ under exact Gibbs), so the batch means are nearly uncorrelated. Threshold: 4 sd of
    # the lag-1 autocorrelation of 32 independent means (≈ 1 / sqrt(32)).
    assert np.all(np.abs(result.batch_autocorrelation) < 4 / np.sqrt(32))
    # The marginal-conditional moments agree with the closed form: E θ² = 1, E θ y_i = 1.
    assert result.marginal_mean[1:] == pytest.approx(
        1.0, abs=6 * result.marginal_standard_error.max()
    )


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("name", "culprit"),
    [
        # Stationary law of θ becomes N(0, 2): E θ² and E θ y_i are off by ≈ 1.01; expected
        # |z| ≈ 25 (bias and standard errors measured with M = 5·10⁵, n = 10⁶, scaled to these
        # sizes).
        ("prior_variance_two", 1),
        # Only E θ y_5 is off, by ≈ 0.18 (0.2 for an exact draw given y_1..y_4); expected
        # |z| ≈ 12. This bug is invisible when g is evaluated after y is redrawn.
        ("forgotten_observation", 2 + NUM_OBSERVATIONS - 1),
        # The drift pushes θ up: E θ off by ≈ 1.0; expected |z| ≈ 58.
        ("asymmetric_proposal_without_hastings", 0),
    ],
)
def test_geweke_test_rejects_kernels_with_the_wrong_target(name, culprit):
    result = run_geweke(BROKEN_KERNELS[name], seed=1)
    assert result.p_value < DETECTION_LEVEL, result
    assert np.argmin(result.p_values) == culprit or result.p_values[culprit] < DETECTION_LEVEL


# Gandy–Scott: the target is the posterior for one fixed data set, sampled exactly.
OBSERVED = np.array([1.2, 2.5, 0.7, 1.9, 3.4])
POSTERIOR_MEAN = OBSERVED.sum() / (1 + NUM_OBSERVATIONS)
POSTERIOR_SD = (1 + NUM_OBSERVATIONS) ** -0.5
NUM_DRAWS = 4_000


def sample_posterior(key):
    return POSTERIOR_MEAN + POSTERIOR_SD * jax.random.normal(key)


def posterior_statistics(theta):
    return jnp.stack([theta, theta**2])


def on_observed_data(kernel):
    return lambda key, theta: kernel(key, theta, OBSERVED)


ONE_DATA_SET_KERNELS = {
    name: on_observed_data(kernel)
    for name, kernel in {**POSTERIOR_KERNELS, **BROKEN_KERNELS}.items()
}


def run_gandy_scott(kernel, seed, **options):
    return gandy_scott_test(
        jax.random.key(seed),
        sample_target=sample_posterior,
        transition=kernel,
        test_functions=posterior_statistics,
        num_draws=NUM_DRAWS,
        **options,
    )


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", list(POSTERIOR_KERNELS))
def test_gandy_scott_test_passes_kernels_that_keep_the_posterior(name):
    """θ is tested against its closed-form cdf (one-sample KS), θ² against fresh exact draws."""
    posterior_cdf = stats.norm(POSTERIOR_MEAN, POSTERIOR_SD).cdf
    result = run_gandy_scott(ONE_DATA_SET_KERNELS[name], seed=2, target_cdfs=[posterior_cdf, None])
    assert result.p_value > FALSE_ALARM_RATE, result
    assert result.reversibility_pairs.tolist() == [[0, 1]]


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    "name",
    # Expected paired z of θ' − θ at 4 000 draws (measured with 10⁶ draws, scaled by
    # sqrt(4 000 / 10⁶)): prior variance 2 → 15, forgotten observation → −35, asymmetric
    # proposal → 17.
    list(BROKEN_KERNELS),
)
def test_gandy_scott_test_rejects_kernels_with_the_wrong_target(name):
    result = run_gandy_scott(ONE_DATA_SET_KERNELS[name], seed=2)
    assert result.p_value < DETECTION_LEVEL, result
    assert result.mean_p_values.min() < DETECTION_LEVEL


def sample_standard_normal_pair(key):
    key_first, key_second = jax.random.split(key)
    return (jax.random.normal(key_first), jax.random.normal(key_second))


def rotate_then_random_walk(key, position):
    """A quarter turn, then a random-walk Metropolis step: keeps N(0, I₂), is not reversible.

    Both pieces keep N(0, I₂) but they do not commute, so the composition is invariant and
    not reversible: from (x₁, x₂) the turn goes to (−x₂, x₁), never back.
    """
    first, second = position
    rotated = jnp.stack([-second, first])
    key_move, key_accept = jax.random.split(key)
    proposal = rotated + 0.5 * jax.random.normal(key_move, (2,))
    log_ratio = 0.5 * (rotated @ rotated - proposal @ proposal)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_ratio
    moved = jnp.where(accept, proposal, rotated)
    return (moved[0], moved[1])


def pair_statistics(position):
    return jnp.stack(position)


@pytest.mark.usefixtures("x64")
def test_gandy_scott_reversibility_test_catches_an_invariant_kernel_that_is_not_reversible():
    """Invariance holds (p > 1e-3 without the reversibility test); reversibility fails.

    After the quarter turn alone, x₁ x₂' − x₁' x₂ = x₁² + x₂² has mean 2 and sd 2, so the
    expected z at 2 000 draws is about 2 / (2 / sqrt(2000)) ≈ 45 (somewhat less after the
    Metropolis step).
    """
    options = {
        "sample_target": sample_standard_normal_pair,
        "transition": rotate_then_random_walk,
        "test_functions": pair_statistics,
        "num_draws": 2_000,
    }
    invariance_only = gandy_scott_test(jax.random.key(4), reversibility=False, **options)
    assert invariance_only.p_value > FALSE_ALARM_RATE, invariance_only
    assert invariance_only.reversibility_p_values.shape == (0,)
    with_reversibility = gandy_scott_test(jax.random.key(4), **options)
    assert with_reversibility.reversibility_p_values[0] < DETECTION_LEVEL
    assert with_reversibility.p_value < DETECTION_LEVEL


# ---------------------------------------------------------------------------------------------
# Batch means on an AR(1) chain, whose variance of the mean has a closed form
# ---------------------------------------------------------------------------------------------


def ar1_variance_of_mean(coefficient, innovation_sd, length):
    """Var(x̄) for n stationary AR(1) samples: γ₀/n · (1 + 2 Σ_{h<n} (1 − h/n) φ^h)."""
    phi = coefficient
    stationary_variance = innovation_sd**2 / (1 - phi**2)
    weighted_sum = phi / (1 - phi) - phi * (1 - phi**length) / (length * (1 - phi) ** 2)
    return stationary_variance / length * (1 + 2 * weighted_sum)


def test_batch_means_standard_error_matches_the_closed_form_for_an_ar1_chain():
    """Two AR(1) columns, φ = 0.9 (integrated autocorrelation time 19), innovation sd 1 and 2.

    400 independent stationary chains of 2¹⁴ samples, 32 batches of 512. The root mean square
    of the 400 standard errors must be within 5 % of the true standard error of the mean: the
    estimator's downward bias is 2φ / ((1 − φ²) b) ≈ 1.9 % in variance, and the Monte Carlo sd
    of the root mean square is sqrt(2 / 31) / 2 / sqrt(400) ≈ 0.6 %. The Student-t intervals
    with 31 degrees of freedom must cover the true mean 0 in 95 % ± 4.5 % of the chains
    (4 binomial sd); the i.i.d. standard error would be sqrt(19) ≈ 4.4 times too small.
    """
    coefficient, length, replicates = 0.9, 2**14, 400
    innovation_sd = np.array([1.0, 2.0])
    rng = np.random.default_rng(2004)
    innovations = rng.normal(size=(replicates, length, 2)) * innovation_sd
    innovations[:, 0] /= np.sqrt(1 - coefficient**2)  # a stationary start
    chains = signal.lfilter([1.0], [1.0, -coefficient], innovations, axis=1)

    results = [batch_means_standard_error(chain, num_batches=32) for chain in chains]
    standard_errors = np.array([result.standard_error for result in results])
    means = np.array([result.mean for result in results])
    assert results[0].batch_size == 512
    assert results[0].degrees_of_freedom == 31

    true_standard_error = np.sqrt(ar1_variance_of_mean(coefficient, innovation_sd, length))
    root_mean_square = np.sqrt(np.mean(standard_errors**2, axis=0))
    np.testing.assert_allclose(root_mean_square, true_standard_error, rtol=0.05)

    half_width = stats.t.ppf(0.975, 31) * standard_errors
    coverage = np.mean(np.abs(means) < half_width, axis=0)
    np.testing.assert_allclose(coverage, 0.95, atol=0.045)

    iid_standard_error = chains.std(axis=1).mean(axis=0) / np.sqrt(length)
    assert np.all(iid_standard_error < true_standard_error / 4)


# ---------------------------------------------------------------------------------------------
# Bad input: ProbkitError naming the argument, raised before the simulators run
# ---------------------------------------------------------------------------------------------


GEWEKE_ARGUMENTS = {
    "sample_prior": sample_prior,
    "sample_data": sample_data,
    "transition": exact_gibbs,
    "test_functions": geweke_statistics,
    "num_marginal": 1_000,
    "num_successive": 1_000,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_functions": lambda theta, y: theta}, "1-D array"),
        ({"test_functions": lambda theta, y: jnp.outer(y, y)}, "1-D array"),
        ({"test_functions": lambda theta, y: (theta, theta**2)}, "one array of shape"),
        ({"test_functions": lambda theta, y: jnp.zeros(0)}, "1-D array"),
        ({"transition": lambda key, theta, y: jnp.stack([theta, theta])}, "transition"),
        ({"transition": "gibbs"}, "transition"),
        ({"num_marginal": 0}, "num_marginal"),
        ({"num_marginal": 1}, "num_marginal"),
        ({"num_marginal": 1e4}, "num_marginal"),
        ({"num_successive": -5}, "num_successive"),
        ({"num_successive": 20}, "num_successive"),
        ({"num_batches": 5}, "num_batches"),
        ({"burn_in": -1}, "burn_in"),
    ],
)
def test_geweke_test_rejects_bad_input_by_name(change, message):
    with pytest.raises(ProbkitError, match=message):
        geweke_test(jax.random.key(0), **{**GEWEKE_ARGUMENTS, **change})


def test_geweke_test_rejects_a_key_that_is_not_a_prng_key():
    with pytest.raises(ProbkitError, match="key"):
        geweke_test(0, **GEWEKE_ARGUMENTS)


GANDY_SCOTT_ARGUMENTS = {
    "sample_target": sample_posterior,
    "transition": ONE_DATA_SET_KERNELS["exact_gibbs"],
    "test_functions": posterior_statistics,
    "num_draws": 1_000,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_functions": lambda theta: theta[None]}, "reversibility=False"),
        ({"test_functions": lambda theta: theta}, "1-D array"),
        ({"transition": lambda key, theta: theta.astype(jnp.float32)}, "dtype"),
        ({"num_draws": 1}, "num_draws"),
        ({"target_cdfs": [None]}, "target_cdfs"),
        ({"target_cdfs": [None, 0.5]}, r"target_cdfs\[1\]"),
        ({"reversibility": "yes"}, "reversibility"),
    ],
)
def test_gandy_scott_test_rejects_bad_input_by_name(change, message, x64):
    with pytest.raises(ProbkitError, match=message):
        gandy_scott_test(jax.random.key(0), **{**GANDY_SCOTT_ARGUMENTS, **change})


def test_gandy_scott_test_reports_a_kernel_that_returns_nan(x64):
    with pytest.raises(ProbkitError, match=r"NaN or inf .* kernel's output"):
        gandy_scott_test(
            jax.random.key(0),
            **{**GANDY_SCOTT_ARGUMENTS, "transition": lambda key, theta: jnp.sqrt(theta - 10.0)},
        )


@pytest.mark.parametrize(
    ("samples", "options", "message"),
    [
        (np.zeros((100, 2, 2)), {}, "shape"),
        (np.full(100, np.nan), {}, "NaN"),
        (np.zeros(20), {}, "num_batches"),
        (np.zeros(100), {"num_batches": 3}, "at least 10"),
    ],
)
def test_batch_means_standard_error_rejects_bad_input(samples, options, message):
    with pytest.raises(ProbkitError, match=message):
        batch_means_standard_error(samples, **options)
