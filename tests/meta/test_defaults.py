"""NIWMeta's defaults, its validation on held-out episodes, the probed Gauss-Newton fit and the
class probabilities of a Gaussian over logits.

The defaults' agreement with theory (the empirical-Bayes estimate, the adapted intervals'
coverage) is a registered check (``probkit check --capability meta``); these tests cover the
choices, the warnings and the refusals.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate, stats

from probkit import ProbkitError
from probkit.meta import (
    NIWMeta,
    class_probabilities,
    ggn_fit,
    linear_gaussian_episodes,
    linear_gaussian_fit,
)

NOISE = 1.0


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _linear_loss(params, episode):
    design, targets = episode
    residual = targets - design @ params
    return 0.5 * jnp.sum(residual**2) / NOISE


def _linear_outputs(params, episode):
    return episode[0] @ params


def _linear_output_loss(outputs, episode):
    return 0.5 * jnp.sum((episode[1] - outputs) ** 2) / NOISE


def _exact_fit(key, start, episode):
    return linear_gaussian_fit(episode[0], episode[1], NOISE)


# --- the defaults ----------------------------------------------------------------------------


def test_the_default_fit_is_read_at_the_map():
    plain = NIWMeta(_linear_loss, jnp.zeros(2))
    assert (plain.fit, plain.fit_target) == ("laplace", "posterior")
    network = NIWMeta(
        _linear_loss, jnp.zeros(2), outputs=_linear_outputs, output_loss=_linear_output_loss
    )
    assert (network.fit, network.fit_target) == ("ggn", "posterior")
    # SGLD samples the loss, and a callable is an exact fit of it: both keep the loss target.
    assert NIWMeta(_linear_loss, jnp.zeros(2), fit="sgld").fit_target == "loss"
    assert NIWMeta(_linear_loss, jnp.zeros(2), fit=_exact_fit).fit_target == "loss"
    # An explicit choice is kept.
    assert NIWMeta(_linear_loss, jnp.zeros(2), fit_target="loss").fit_target == "loss"


def test_the_default_optimizer_moves_the_spread_ten_times_faster_than_the_mean():
    learner = NIWMeta(_linear_loss, jnp.zeros(2), fit=_exact_fit)
    state = learner.init()
    grads = jax.tree.map(jnp.ones_like, state.raw)
    updates, _ = learner.optimizer.update(grads, state.opt_state, state.raw)
    # Adam's first step is -learning_rate · sign(gradient) in every coordinate.
    np.testing.assert_allclose(updates["loc"], -1e-3, rtol=1e-6)
    for name in ("log_precision", "log_df", "log_kappa"):
        np.testing.assert_allclose(updates[name], -1e-2, rtol=1e-6)


def test_the_initial_state_has_the_types_an_update_returns():
    # Otherwise a jitted training loop traces its step twice (weak and strong integer types).
    learner = NIWMeta(_linear_loss, jnp.zeros(2), fit=_exact_fit)
    data = linear_gaussian_episodes(jax.random.key(0), 8, 5, jnp.zeros(2), 0.5, NOISE)
    state = learner.init()
    updated, _ = learner.update(jax.random.key(1), state, (data.design, data.targets))

    def avals(tree):
        return jax.tree.map(lambda a: (a.shape, a.dtype, a.weak_type), tree)

    assert avals(state) == avals(updated)


# --- validation on held-out episodes -----------------------------------------------------------


def _split(data, shots):
    support = (data.design[:, :shots], data.targets[:, :shots])
    query = (data.design[:, shots:], data.targets[:, shots:])
    return support, query


def _trained(strict=False, steps=1500):
    learner = NIWMeta(_linear_loss, jnp.zeros(2), fit=_exact_fit, strict=strict)
    data = linear_gaussian_episodes(
        jax.random.key(2), 200, 6, jnp.array([0.4, -0.3]), jnp.array([0.3, 0.3]), NOISE
    )

    @jax.jit
    def train(state):
        def step(state, index):
            return learner._update_impl(jax.random.key(index), state, (data.design, data.targets))[
                0
            ], None

        return jax.lax.scan(step, state, jnp.arange(steps))[0]

    return learner, train(learner.init())


def _held_out(mean=(0.4, -0.3), num=60):
    data = linear_gaussian_episodes(
        jax.random.key(3), num, 16, jnp.asarray(mean), jnp.array([0.3, 0.3]), NOISE
    )
    return _split(data, 4)


def test_a_trained_learner_validates_without_warning():
    learner, state = _trained()
    support, query = _held_out()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = learner.validate(jax.random.key(0), state, support, query)
    assert report.steps == 1500
    assert report.improvement > 0
    assert report.adapted_query_loss < report.prior_query_loss
    assert 0 < report.support_share < 1
    assert report.problems() == []


def test_an_untrained_learner_warns_or_raises_when_strict():
    learner = NIWMeta(_linear_loss, jnp.zeros(2), fit=_exact_fit)
    support, query = _held_out()
    with pytest.warns(UserWarning, match="initial value"):
        report = learner.validate(jax.random.key(0), learner.init(), support, query)
    assert report.steps == 0
    assert report.law_change == 0.0
    strict = NIWMeta(_linear_loss, jnp.zeros(2), fit=_exact_fit, strict=True)
    with pytest.raises(ProbkitError, match="initial value"):
        strict.validate(jax.random.key(0), strict.init(), support, query)


def test_adapting_that_does_not_help_warns():
    # Queries of other episodes: the support says nothing about them, so the adapted mean
    # predicts them no better than the prior's mean does (worse: it chases the wrong episode).
    learner, state = _trained()
    support, query = _held_out()
    shuffled = jax.tree.map(lambda a: jnp.roll(a, 1, axis=0), query)
    with pytest.warns(UserWarning, match="does not lower the query loss"):
        report = learner.validate(jax.random.key(0), state, support, shuffled)
    assert report.improvement <= 1.6448536269514722 * report.improvement_standard_error
    strict_learner, strict_state = _trained(strict=True)
    with pytest.raises(ProbkitError, match="does not lower"):
        strict_learner.validate(jax.random.key(0), strict_state, support, shuffled)


def test_a_significant_but_small_improvement_warns():
    # The trained learner lowers the query loss by a few per cent only (four support points
    # of two parameters against twelve noisy queries): significant, yet below a 50 % bar.
    learner, state = _trained()
    support, query = _held_out()
    report = learner.validate(jax.random.key(0), state, support, query)
    share = report.improvement / report.prior_query_loss
    assert 0 < share < 0.5
    with pytest.warns(UserWarning, match="by 50 %"):
        learner.validate(jax.random.key(0), state, support, query, min_relative_improvement=0.5)
    for bad in (-0.1, 1.0, np.nan, "0.1", None, True):
        with pytest.raises(ProbkitError, match="min_relative_improvement"):
            learner.validate(jax.random.key(0), state, support, query, min_relative_improvement=bad)


def test_validation_refuses_mismatched_or_single_episodes():
    learner, state = _trained(steps=2)
    support, query = _held_out()
    with pytest.raises(ProbkitError, match="same episodes"):
        learner.validate(jax.random.key(0), state, support, jax.tree.map(lambda a: a[:5], query))
    with pytest.raises(ProbkitError, match="at least 2"):
        learner.validate(
            jax.random.key(0),
            state,
            jax.tree.map(lambda a: a[:1], support),
            jax.tree.map(lambda a: a[:1], query),
        )
    with pytest.raises(ProbkitError, match="leading size"):
        learner.validate(jax.random.key(0), state, (support[0], support[1][:3]), query)


# --- the probed Gauss-Newton fit ---------------------------------------------------------------


def _softmax_problem():
    key_x, key_w, key_y = jax.random.split(jax.random.key(11), 3)
    x = jax.random.normal(key_x, (12, 3))
    labels = jax.random.randint(key_y, (12,), 0, 4)
    start = 0.5 * jax.random.normal(key_w, (3 * 4,))

    def outputs(theta):
        return jnp.tanh(x @ theta.reshape(3, 4))

    def output_loss(z):
        return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], axis=1))

    return outputs, output_loss, start


def test_probed_curvature_is_an_unbiased_estimate_of_the_exact_one():
    outputs, output_loss, start = _softmax_problem()
    options = {"num_steps": 3, "min_precision": 0.0, "max_precision": np.inf}
    exact = ggn_fit(outputs, output_loss, start, **options)
    probes = 4000
    probed = ggn_fit(
        outputs, output_loss, start, num_probes=probes, key=jax.random.key(0), **options
    )
    np.testing.assert_allclose(probed.mean, exact.mean, rtol=1e-12)
    # Each probe's (Jᵀ S ε)²_k is χ²₁ times the exact diagonal: relative sd √(2/probes) = 0.022.
    # Six of those over 12 coordinates: a false alarm below 1e-6 (the χ² tail is lighter).
    relative = np.abs(np.asarray(probed.precision / exact.precision) - 1.0)
    assert np.max(relative) < 6 * np.sqrt(2.0 / probes)
    assert np.max(relative) > 0  # it is an estimate


def test_probed_curvature_needs_a_key_and_a_positive_count():
    outputs, output_loss, start = _softmax_problem()
    with pytest.raises(ProbkitError, match="key"):
        ggn_fit(outputs, output_loss, start, num_steps=1, num_probes=4)
    for bad in (0, 2.0, True, "4"):
        with pytest.raises(ProbkitError, match="num_probes"):
            ggn_fit(outputs, output_loss, start, num_steps=1, num_probes=bad, key=jax.random.key(0))
    # A NumPy integer (a count read from an array or a config) is an integer.
    numpy_count = ggn_fit(
        outputs, output_loss, start, num_steps=1, num_probes=np.int64(4), key=jax.random.key(0)
    )
    python_count = ggn_fit(
        outputs, output_loss, start, num_steps=1, num_probes=4, key=jax.random.key(0)
    )
    np.testing.assert_array_equal(numpy_count.precision, python_count.precision)


def test_the_learner_passes_its_key_to_probed_fits():
    learner = NIWMeta(
        _linear_loss,
        jnp.zeros(2),
        outputs=_linear_outputs,
        output_loss=_linear_output_loss,
        fit_options={"num_probes": 2},
    )
    data = linear_gaussian_episodes(jax.random.key(0), 4, 5, jnp.zeros(2), 0.5, NOISE)
    _, info = learner.update(jax.random.key(1), learner.init(), (data.design, data.targets))
    assert bool(info["applied"])


# --- class probabilities -----------------------------------------------------------------------


def test_probit_probabilities_are_mackays_approximation_of_the_expected_sigmoid():
    # Two classes with logits (z, 0), z ~ N(μ, s²): the probit is σ(μ/√(1 + πs²/8)), within 0.02
    # of E σ(z) (MacKay 1992); the draws are placed at normal quantiles scaled so that their
    # mean and unbiased variance are μ and s² (up to the quantiles' mean, below 1e-12).
    for mean, sd in ((0.0, 1.0), (2.0, 0.5), (-1.5, 3.0), (4.0, 2.0)):
        grid = stats.norm.ppf((np.arange(20000) + 0.5) / 20000)
        z = mean + sd * grid / grid.std(ddof=1)
        draws = jnp.stack([jnp.asarray(z), jnp.zeros_like(z)], axis=-1)
        probit = float(class_probabilities(draws)[0])
        expected = integrate.quad(
            lambda u, m=mean, s=sd: stats.norm.pdf(u) / (1.0 + np.exp(-(m + s * u))), -12, 12
        )[0]
        assert abs(probit - 1.0 / (1.0 + np.exp(-mean / np.sqrt(1 + np.pi * sd**2 / 8)))) < 1e-3
        assert abs(probit - expected) < 0.02


def test_class_probabilities_average_and_keep_the_mean_class():
    draws = jax.random.normal(jax.random.key(0), (64, 10, 5)) * 3.0 + jnp.arange(5.0)
    probit = class_probabilities(draws)
    average = class_probabilities(draws, "average")
    np.testing.assert_allclose(average, jnp.mean(jax.nn.softmax(draws), axis=0), rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(probit, -1), 1.0, rtol=1e-12)
    # The probit keeps the most probable class of the mean logits and tempers its confidence.
    mean = jnp.mean(draws, axis=0)
    np.testing.assert_array_equal(jnp.argmax(probit, -1), jnp.argmax(mean, -1))
    assert np.all(np.max(probit, -1) < np.max(jax.nn.softmax(mean), -1))
    # A single draw has no spread: its softmax.
    np.testing.assert_allclose(class_probabilities(draws[:1]), jax.nn.softmax(draws[0]))


def test_a_known_mean_centres_the_probit():
    # Draws scattered around known logits: the probit divides those logits by
    # √(1 + π D/8), D the mean over pairs of classes of the mean square deviation of
    # z_j − z_k from its known value (computed here pair by pair).
    centre = jnp.array([[0.3, 0.0, -0.2]])
    draws = centre + jnp.array([[[0.5, -0.5, 2.0]], [[-0.5, 0.5, 2.0]]])
    probit = class_probabilities(draws, mean=centre)
    deviations = np.asarray(draws - centre)[:, 0]
    pairs = [(0, 1), (0, 2), (1, 2)]
    spread = np.mean([np.mean((deviations[:, j] - deviations[:, k]) ** 2) for j, k in pairs])
    expected = jax.nn.softmax(centre / np.sqrt(1.0 + np.pi / 8.0 * spread), axis=-1)
    np.testing.assert_allclose(probit, expected, rtol=1e-12)
    assert int(jnp.argmax(probit)) == 0
    assert int(jnp.argmax(class_probabilities(draws))) == 2  # the draws' mean: (0.3, 0, 1.8)
    # A shift shared by every logit of a draw moves no probability and changes nothing.
    shifted = draws + jnp.array([5.0, -3.0])[:, None, None]
    np.testing.assert_allclose(class_probabilities(shifted, mean=centre), probit, rtol=1e-12)
    with pytest.raises(ProbkitError, match="shape of one draw"):
        class_probabilities(draws, mean=centre[0])


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ((jnp.zeros((4, 3)), "median"), "method"),
        ((jnp.zeros(3),), "leading axis"),
    ],
)
def test_class_probabilities_refuse_bad_input(arguments, match):
    with pytest.raises(ProbkitError, match=match):
        class_probabilities(*arguments)


def test_the_default_predictive_is_linearised():
    learner = NIWMeta(_linear_loss, jnp.zeros(2), fit=_exact_fit, optimizer=optax.adam(1e-2))
    data = linear_gaussian_episodes(jax.random.key(5), 1, 4, jnp.zeros(2), 0.5, NOISE)
    posterior = learner.adapt(jax.random.key(0), learner.init(), (data.design[0], data.targets[0]))

    def cubic(params):
        return params**3

    default = learner.sample_outputs(jax.random.key(1), posterior, cubic, 3)
    linear = learner.sample_outputs(jax.random.key(1), posterior, cubic, 3, linearized=True)
    direct = learner.sample_outputs(jax.random.key(1), posterior, cubic, 3, linearized=False)
    np.testing.assert_allclose(default, linear)
    assert not np.allclose(default, direct)
