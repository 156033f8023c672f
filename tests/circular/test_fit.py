"""EM for von Mises mixtures: exactness against scipy, EM's monotonicity, parameter recovery,
weights, determinism, batching, model choice, degeneracy, float32 and bad input.

Every fit in float64 shares one of two compiled programs (K = 1 and K = 3 on 1200 rows; model
choice over K ≤ 3 reuses the K = 3 program), so the module stays within a few compilations.
"""

import warnings

import jax
import numpy as np
import pytest
from scipy import special, stats

from probkit._errors import ProbkitError
from probkit.circular.fit import VonMisesPrior, fit_vonmises_mixture

N = 1200
LOCS = np.array([-2.0, 0.5, 2.5])
KAPPAS = np.array([8.0, 4.0, 30.0])
PROPORTIONS = np.array([0.5, 0.3, 0.2])


def draw_mixture(rng, n, locs=LOCS, kappas=KAPPAS, proportions=PROPORTIONS):
    labels = rng.choice(len(proportions), size=n, p=proportions)
    return stats.vonmises.rvs(kappas[labels], loc=locs[labels], random_state=rng)


@pytest.fixture(scope="module")
def three_components():
    return draw_mixture(np.random.default_rng(20240601), N)


@pytest.fixture(scope="module")
def three_component_fit(three_components):
    with jax.enable_x64(True):
        return fit_vonmises_mixture(three_components, 3)


def sorted_by_loc(fit):
    order = np.argsort(np.asarray(fit.loc))
    return (np.asarray(a)[order] for a in (fit.weights, fit.loc, fit.concentration))


@pytest.mark.parametrize("kappa", [0.5, 5.0, 2000.0])
def test_one_component_matches_scipy_vonmises_fit(x64, kappa):
    angles = stats.vonmises.rvs(kappa, loc=0.3, size=N, random_state=np.random.default_rng(7))
    fit = fit_vonmises_mixture(angles, 1)
    kappa_scipy, loc_scipy, _ = stats.vonmises.fit(angles, fscale=1)
    np.testing.assert_allclose(float(fit.concentration[0]), kappa_scipy, rtol=1e-6)
    np.testing.assert_allclose(float(fit.loc[0]), loc_scipy, rtol=0, atol=1e-9)
    log_likelihood = stats.vonmises.logpdf(angles, kappa_scipy, loc=loc_scipy).sum()
    np.testing.assert_allclose(float(fit.log_likelihood), log_likelihood, rtol=1e-9)
    assert bool(fit.converged)


def test_em_objective_trace_is_monotone_non_decreasing(x64, three_component_fit):
    fit = three_component_fit
    n_iter = int(fit.n_iter)
    trace = np.asarray(fit.log_likelihood_trace)
    assert bool(fit.converged)
    assert 1 < n_iter < trace.size
    assert np.all(np.isfinite(trace[:n_iter]))
    assert np.all(np.isnan(trace[n_iter:]))
    # EM cannot decrease the likelihood; allow float64 rounding of a sum of 1200 terms.
    assert np.diff(trace[:n_iter]).min() >= -1e-10 * abs(trace[n_iter - 1])
    assert trace[n_iter - 1] == pytest.approx(float(fit.log_likelihood), rel=1e-12)


def test_recovers_three_component_parameters_within_monte_carlo_error(x64, three_component_fit):
    weights, loc, kappa = sorted_by_loc(three_component_fit)
    n_k = PROPORTIONS * N
    ratio = special.i1e(KAPPAS) / special.i0e(KAPPAS)
    # Asymptotic standard errors from the per-observation Fisher information of a von Mises
    # law: I(μ) = κ A(κ), I(κ) = A'(κ) = 1 - A² - A/κ; weights: binomial. The components are
    # well separated, so mixing inflates them little. 5 standard errors per parameter: a
    # two-sided false-alarm rate below 6e-7 each, 5e-6 for all nine (normal approximation).
    se_loc = 1 / np.sqrt(n_k * KAPPAS * ratio)
    se_kappa = 1 / np.sqrt(n_k * (1 - ratio**2 - ratio / KAPPAS))
    se_weight = np.sqrt(PROPORTIONS * (1 - PROPORTIONS) / N)
    assert np.all(np.abs(loc - LOCS) < 5 * se_loc)
    assert np.all(np.abs(kappa - KAPPAS) < 5 * se_kappa)
    assert np.all(np.abs(weights - PROPORTIONS) < 5 * se_weight)


def test_log_prob_and_responsibilities_match_scipy_mixture_density(
    x64, three_components, three_component_fit
):
    fit = three_component_fit
    weights, loc, kappa = (np.asarray(a) for a in (fit.weights, fit.loc, fit.concentration))
    densities = np.stack(
        [
            w * stats.vonmises.pdf(three_components, k, loc=m)
            for w, m, k in zip(weights, loc, kappa, strict=True)
        ],
        axis=1,
    )
    log_density = np.log(densities.sum(1))
    np.testing.assert_allclose(np.asarray(fit.log_prob(three_components)), log_density, rtol=1e-10)
    np.testing.assert_allclose(float(fit.log_likelihood), log_density.sum(), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(fit.responsibilities(three_components)),
        densities / densities.sum(1, keepdims=True),
        rtol=1e-9,
        atol=1e-14,
    )
    p = fit.n_parameters
    assert p == 8
    log_n = np.log(N)
    assert float(fit.bic()) == pytest.approx(-2 * float(fit.log_likelihood) + p * log_n)
    assert float(fit.aic()) == pytest.approx(-2 * float(fit.log_likelihood) + 2 * p)
    assert float(fit.icl()) >= float(fit.bic())


def test_integer_weights_equal_repeated_rows(x64):
    rng = np.random.default_rng(11)
    distinct = draw_mixture(rng, 500)
    counts = rng.integers(1, 5, size=distinct.size)
    # Keep the rows whose counts add up to exactly N, so both fits have N rows (one program).
    keep = np.searchsorted(np.cumsum(counts), N)
    counts, distinct = counts[: keep + 1], distinct[: keep + 1]
    counts[-1] -= counts.sum() - N
    assert counts.sum() == N
    assert counts.min() >= 0
    repeated = np.repeat(distinct, counts)
    # Zero-weight rows pad the weighted data to N rows; they must not matter either.
    padded = np.concatenate([distinct, np.zeros(N - distinct.size)])
    weights = np.concatenate([counts, np.zeros(N - distinct.size)])
    weighted_fit = fit_vonmises_mixture(padded, 3, weights=weights)
    repeated_fit = fit_vonmises_mixture(repeated, 3)
    for a, b in zip(sorted_by_loc(weighted_fit), sorted_by_loc(repeated_fit), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    assert float(weighted_fit.log_likelihood) == pytest.approx(
        float(repeated_fit.log_likelihood), rel=1e-12
    )


def test_deterministic_init_is_reproducible_and_independent_of_row_order(
    x64, three_components, three_component_fit
):
    again = fit_vonmises_mixture(three_components, 3)
    for name in ("weights", "loc", "concentration", "log_likelihood_trace"):
        np.testing.assert_array_equal(
            np.asarray(getattr(again, name)), np.asarray(getattr(three_component_fit, name))
        )
    permutation = np.random.default_rng(5).permutation(N)
    permuted = fit_vonmises_mixture(three_components[permutation], 3)
    for a, b in zip(sorted_by_loc(permuted), sorted_by_loc(three_component_fit), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_batched_fit_equals_separate_fits(x64, three_components):
    rng = np.random.default_rng(3)
    data = np.stack([three_components, draw_mixture(rng, N), draw_mixture(rng, N, locs=LOCS[::-1])])
    batched = fit_vonmises_mixture(data, 3, batched=True)
    assert batched.weights.shape == (3, 3)
    assert batched.log_likelihood_trace.shape[0] == 3
    for b in range(3):
        single = fit_vonmises_mixture(data[b], 3)
        one = jax.tree_util.tree_map(lambda leaf, b=b: leaf[b], batched)
        for x, y in zip(sorted_by_loc(one), sorted_by_loc(single), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-9)
        assert int(one.n_iter) == int(single.n_iter)


@pytest.fixture(scope="module")
def two_components():
    rng = np.random.default_rng(99)
    return draw_mixture(
        rng,
        N,
        locs=np.array([-1.5, 1.5]),
        kappas=np.array([6.0, 10.0]),
        proportions=np.array([0.6, 0.4]),
    )


@pytest.mark.parametrize("criterion", ["bic", "icl", "heldout"])
def test_auto_picks_the_true_number_of_well_separated_components(x64, two_components, criterion):
    # Fixed data; with 1200 rows the penalty for a spurious third component (BIC: 7 ln 1200 ≈ 50
    # nats) dwarfs the likelihood it could gain by chance, and held-out rows do not reward it.
    fit = fit_vonmises_mixture(two_components, "auto", candidates=(1, 2, 3), criterion=criterion)
    assert fit.selection.chosen == 2 == fit.n_components
    assert fit.selection.candidates == (1, 2, 3)
    assert len(fit.selection.scores) == 3
    scores = fit.selection.as_dict()
    if criterion == "heldout":
        assert scores[2] == max(scores.values())
    else:
        assert scores[2] == min(scores.values())
        assert scores[2] == pytest.approx(float(fit.bic() if criterion == "bic" else fit.icl()))


def test_concentration_bound_is_respected_and_reported(x64, three_components):
    with pytest.warns(RuntimeWarning, match="degenerate"):
        fit = fit_vonmises_mixture(three_components, 3, concentration_bounds=(0.0, 20.0))
    _, _loc, kappa = sorted_by_loc(fit)
    assert kappa.max() == 20.0
    order = np.argsort(np.asarray(fit.loc))
    # Only the κ = 30 component at 2.5 rad reaches the bound.
    np.testing.assert_array_equal(np.asarray(fit.degenerate)[order], [False, False, True])


def test_collapse_onto_repeated_point_is_flagged_and_prior_prevents_it(x64):
    rng = np.random.default_rng(3)
    angles = np.concatenate(
        [stats.vonmises.rvs(2.0, size=N - 100, random_state=rng), np.full(100, 2.5)]
    )
    with pytest.warns(RuntimeWarning, match="degenerate"):
        collapsed = fit_vonmises_mixture(angles, 3)
    assert np.asarray(collapsed.degenerate).sum() == 1
    assert float(np.max(collapsed.concentration)) == 1e6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guarded = fit_vonmises_mixture(angles, 3, prior=VonMisesPrior(pseudo_count=1.0))
    assert not np.asarray(guarded.degenerate).any()
    assert float(np.max(guarded.concentration)) < 100


def test_map_m_step_solves_the_prior_augmented_equation(x64):
    angles = stats.vonmises.rvs(3.0, loc=1.0, size=N, random_state=np.random.default_rng(8))
    prior = VonMisesPrior(pseudo_count=50.0, resultant=30.0, location=-0.5)
    fit = fit_vonmises_mixture(angles, 1, prior=prior)
    # VonMisesPrior Notes: μ = atan2(S', C'), A(κ) = R'/(N + c).
    c_aug = np.cos(angles).sum() + 30.0 * np.cos(-0.5)
    s_aug = np.sin(angles).sum() + 30.0 * np.sin(-0.5)
    kappa = float(fit.concentration[0])
    assert float(fit.loc[0]) == pytest.approx(np.arctan2(s_aug, c_aug), abs=1e-10)
    assert special.i1e(kappa) / special.i0e(kappa) == pytest.approx(
        np.hypot(c_aug, s_aug) / (N + 50.0), rel=1e-10
    )
    assert float(fit.log_prior) == pytest.approx(
        30.0 * kappa * np.cos(float(fit.loc[0]) + 0.5) - 50.0 * (np.log(special.i0e(kappa)) + kappa)
    )


def test_float32_fit_of_concentrated_data_matches_float64_scipy():
    angles = stats.vonmises.rvs(1e4, loc=1.0, size=N, random_state=np.random.default_rng(2)).astype(
        np.float32
    )
    fit = fit_vonmises_mixture(angles, 1, seed=0, n_init=2)
    assert fit.concentration.dtype == np.float32
    kappa_scipy, loc_scipy, _ = stats.vonmises.fit(angles.astype(np.float64), fscale=1)
    # The chord form of the dispersion keeps ~eps/|θ-μ| ≈ 1e-5 relative precision at κ = 1e4;
    # 1 - R̄ from float32 sums would be off by ~1e-2.
    np.testing.assert_allclose(float(fit.concentration[0]), kappa_scipy, rtol=1e-4)
    np.testing.assert_allclose(float(fit.loc[0]), loc_scipy, atol=1e-5)
    again = fit_vonmises_mixture(angles, 1, seed=0, n_init=2)
    np.testing.assert_array_equal(np.asarray(again.concentration), np.asarray(fit.concentration))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"angles": np.array([0.1, np.nan, 0.3, 0.2])}, "angles"),
        ({"angles": np.ones((2, 2, 2))}, "shape"),
        ({"weights": -np.ones(N)}, "weights"),
        ({"weights": np.full(N, np.inf)}, "weights"),
        ({"weights": np.ones(3)}, "weights"),
        ({"angles": np.linspace(-1, 1, 5), "n_components": 3}, "5 sample.*8 free parameters"),
        ({"angles": np.linspace(-1, 1, 2), "n_components": 3}, "2 sample"),
        ({"n_components": 0}, "n_components"),
        ({"n_components": "many"}, "n_components"),
        ({"concentration_bounds": (0.0, np.inf)}, "concentration_bounds"),
        ({"concentration_bounds": (5.0, 1.0)}, "concentration_bounds"),
        ({"prior": VonMisesPrior(pseudo_count=1.0, resultant=2.0)}, "prior"),
        ({"n_components": "auto", "criterion": "aic"}, "criterion"),
        ({"n_components": "auto", "batched": True, "angles": np.zeros((2, 10))}, "batched"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_bad_input_raises_probkit_error_before_tracing(kwargs, match):
    arguments = {"angles": np.linspace(-3, 3, N), "n_components": 2, **kwargs}
    with pytest.raises(ProbkitError, match=match):
        fit_vonmises_mixture(arguments.pop("angles"), arguments.pop("n_components"), **arguments)


def test_degrees_warn_and_radians_in_zero_to_two_pi_do_not():
    with pytest.warns(UserWarning, match="deg2rad"), pytest.raises(ProbkitError):
        fit_vonmises_mixture(np.linspace(-180, 180, N), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ProbkitError, match="n_components"):
            fit_vonmises_mixture(np.linspace(0, 2 * np.pi, N, endpoint=False), 0)
