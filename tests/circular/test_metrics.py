"""Binned KL and circular Wasserstein-1 between torsion samples, checked against exact oracles."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog, minimize_scalar
from scipy.stats import entropy, vonmises, wasserstein_distance

from probkit import ProbkitError
from probkit.circular.metrics import binned_kl, binned_kl_to_density, circular_emd

TWO_PI = 2 * np.pi


def geodesic(x, y):
    d = np.abs(np.subtract.outer(x, y)) % TWO_PI
    return np.minimum(d, TWO_PI - d)


def transport_lp(a, b, wa, wb):
    """W1 by the optimal-transport linear program with the arc-length cost (exact oracle)."""
    n, m = len(a), len(b)
    cost = geodesic(a, b).ravel()
    rows = np.kron(np.eye(n), np.ones(m))  # Σ_j π_ij = wa_i
    cols = np.kron(np.ones(n), np.eye(m))  # Σ_i π_ij = wb_j
    result = linprog(
        cost, A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([wa, wb]), method="highs"
    )
    assert result.status == 0
    return result.fun


def random_weighted_sample(rng, size):
    angles = rng.uniform(-np.pi, np.pi, size)
    weights = rng.random(size) + 0.05
    return angles, weights / weights.sum()


# --------------------------------------------------------------------------- circular EMD


@pytest.mark.parametrize("seed", range(6))
def test_circular_emd_equals_the_transport_linear_program(seed):
    rng = np.random.default_rng(seed)
    a, wa = random_weighted_sample(rng, rng.integers(1, 9))
    b, wb = random_weighted_sample(rng, rng.integers(1, 9))
    if seed == 0:  # shared support points (ties) must not matter
        b[: min(len(a), len(b)) // 2] = a[: min(len(a), len(b)) // 2]
    got = circular_emd(a, b, weights_a=wa, weights_b=wb)
    assert got == pytest.approx(transport_lp(a, b, wa, wb), abs=1e-9)


def test_circular_emd_equals_pot_on_the_geodesic_cost_matrix():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(11)
    for _ in range(5):
        a, wa = random_weighted_sample(rng, 40)
        b, wb = random_weighted_sample(rng, 25)
        want = ot.emd2(wa, wb, geodesic(a, b))
        assert circular_emd(a, b, weights_a=wa, weights_b=wb) == pytest.approx(want, abs=1e-9)
        # POT's own circle solver (on [0, 1), found by a binary search) agrees to its tolerance.
        on_unit_circle = ot.wasserstein_circle(
            (a + np.pi) / TWO_PI, (b + np.pi) / TWO_PI, wa, wb, p=1
        )
        assert circular_emd(a, b, weights_a=wa, weights_b=wb) == pytest.approx(
            TWO_PI * float(np.squeeze(on_unit_circle)), abs=1e-5
        )


def test_circular_emd_equals_brute_force_minimisation_over_the_cdf_offset():
    """W1 = min_c ∫|F - G - c| dt (Rabin et al. 2011), minimised numerically on a fine grid."""
    rng = np.random.default_rng(5)
    a = rng.vonmises(0.5, 2.0, 60)
    b = rng.vonmises(-2.5, 1.0, 45)
    t = np.linspace(0, TWO_PI, 400_001)[:-1] + TWO_PI / 800_000  # midpoints
    F = np.searchsorted(np.sort(a + np.pi), t, side="right") / a.size
    G = np.searchsorted(np.sort(b + np.pi), t, side="right") / b.size
    best = minimize_scalar(
        lambda c: np.mean(np.abs(F - G - c)) * TWO_PI, bounds=(-1, 1), method="bounded",
        options={"xatol": 1e-10},
    )  # fmt: skip
    assert circular_emd(a, b) == pytest.approx(best.fun, abs=1e-4)


@pytest.mark.parametrize(
    ("x", "y"),
    [(0.0, 1.0), (-3.0, 3.0), (np.pi - 0.01, -np.pi + 0.01), (0.0, np.pi), (-1.0, 2.0), (2.0, 2.0)],
)
def test_circular_emd_between_point_masses_is_the_arc_length(x, y):
    want = min(abs(x - y), TWO_PI - abs(x - y))
    assert circular_emd([x], [y]) == pytest.approx(want, abs=1e-12)


def test_circular_emd_is_small_across_the_branch_cut_where_the_line_distance_is_not():
    eps = 1e-3
    a, b = np.array([np.pi - eps]), np.array([-(np.pi - eps)])
    assert circular_emd(a, b) == pytest.approx(2 * eps, abs=1e-12)
    # The distance on the line treats ±(π - ε) as almost 2π apart ...
    assert wasserstein_distance(a, b) == pytest.approx(TWO_PI - 2 * eps)
    # ... and VonMisesNet's metric, POT's emd2_1d with its default squared-Euclidean cost, squares it.
    ot = pytest.importorskip("ot")
    assert ot.emd2_1d(a, b) == pytest.approx((TWO_PI - 2 * eps) ** 2)


def test_circular_emd_of_trans_conformers_split_across_plus_minus_pi():
    """Two samples of the same trans well, one wrapped to +179°, the other to -179°."""
    rng = np.random.default_rng(2)
    well = np.pi + 0.05 * rng.standard_normal(300)  # centred on 180°
    a = (well + np.pi) % TWO_PI - np.pi
    b = a.copy()
    b[b > 0] -= TWO_PI  # the same angles, written as values below -π ...
    assert circular_emd(a, b) == pytest.approx(0.0, abs=1e-12)  # ... are the same distribution
    assert wasserstein_distance(a, np.where(a > 0, a - TWO_PI, a)) > 1.0  # the line disagrees


def test_circular_emd_is_rotation_invariant_and_symmetric():
    rng = np.random.default_rng(3)
    a, wa = random_weighted_sample(rng, 30)
    b, wb = random_weighted_sample(rng, 20)
    d = circular_emd(a, b, weights_a=wa, weights_b=wb)
    for shift in rng.uniform(-10, 10, 5):
        assert circular_emd(a + shift, b + shift, weights_a=wa, weights_b=wb) == pytest.approx(
            d, abs=1e-11
        )
    assert circular_emd(b, a, weights_a=wb, weights_b=wa) == pytest.approx(d, abs=1e-13)


def test_circular_emd_satisfies_the_triangle_inequality():
    rng = np.random.default_rng(4)
    for _ in range(50):
        (a, wa), (b, wb), (c, wc) = (
            random_weighted_sample(rng, rng.integers(1, 20)) for _ in "abc"
        )
        ab = circular_emd(a, b, weights_a=wa, weights_b=wb)
        bc = circular_emd(b, c, weights_a=wb, weights_b=wc)
        ac = circular_emd(a, c, weights_a=wa, weights_b=wc)
        assert ac <= ab + bc + 1e-12


def test_circular_emd_is_zero_for_equal_distributions_and_weights_act_as_multiplicities():
    rng = np.random.default_rng(6)
    a = rng.uniform(-np.pi, np.pi, 10)
    assert circular_emd(a, a) == 0.0
    counts = rng.integers(1, 5, a.size)
    assert circular_emd(a, np.repeat(a, counts), weights_a=counts) == pytest.approx(0.0, abs=1e-13)
    assert circular_emd(a, a + TWO_PI * rng.integers(-3, 4, a.size)) == pytest.approx(0, abs=1e-12)


def test_circular_emd_is_at_most_pi_and_reaches_it_for_antipodal_masses():
    assert circular_emd([0.0], [np.pi]) == pytest.approx(np.pi)
    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = rng.uniform(-np.pi, np.pi, (2, 15))
        assert 0.0 <= circular_emd(a, b) <= np.pi


# --------------------------------------------------------------------------- binned KL


def raw_histogram(angles, bins=32):
    return np.histogram(angles, bins=np.linspace(-np.pi, np.pi, bins + 1))[0]


def test_binned_kl_without_smoothing_equals_scipy_entropy_of_histograms():
    rng = np.random.default_rng(0)
    p = rng.uniform(-np.pi, np.pi, 5000)
    q = rng.vonmises(1.0, 0.5, 4000)
    hp, hq = raw_histogram(p), raw_histogram(q)
    assert (hp > 0).all()
    assert (hq > 0).all()
    assert binned_kl(p, q, smoothing=0) == pytest.approx(entropy(hp, hq), rel=1e-12)
    assert binned_kl(p, q, smoothing=0, bins=7) == pytest.approx(
        entropy(raw_histogram(p, 7), raw_histogram(q, 7)), rel=1e-12
    )


def test_binned_kl_is_infinite_on_an_empty_bin_only_without_smoothing():
    rng = np.random.default_rng(1)
    p = rng.uniform(-np.pi, np.pi, 500)
    q = rng.vonmises(0.0, 50.0, 500)  # leaves most bins empty
    assert binned_kl(p, q, smoothing=0) == np.inf
    smoothed = binned_kl(p, q)
    assert np.isfinite(smoothed)
    assert smoothed > 0


def test_binned_kl_reproduces_vonmisesnet_floored_metric():
    """Upstream: normalise, floor at 1e-10, then scipy.stats.entropy(hist_pred, hist_true)."""
    rng = np.random.default_rng(2)
    pred = rng.vonmises(0.0, 1.0, 560)
    true = rng.vonmises(0.3, 30.0, 560)

    def upstream(v):
        h = raw_histogram(v) / v.size
        return np.where(h < 1e-10, 1e-10, h)

    want = entropy(upstream(pred), upstream(true))
    assert want > 5  # dominated by the floor, not by the data
    assert binned_kl(pred, true, smoothing=0, floor=1e-10) == pytest.approx(want, rel=1e-12)


def test_binned_kl_applies_additive_smoothing_per_bin():
    p = np.array([-3.0, -3.0, 0.1])  # bins 0, 0, 16 of 32
    q = np.array([0.1, 0.1, 0.1, 2.0])  # bins 16, 16, 16, 26
    alpha = 0.5
    hp = (raw_histogram(p) + alpha) / (3 + 32 * alpha)
    hq = (raw_histogram(q) + alpha) / (4 + 32 * alpha)
    assert binned_kl(p, q, smoothing=alpha) == pytest.approx(np.sum(hp * np.log(hp / hq)))


def test_binned_kl_is_non_negative_and_zero_for_identical_inputs():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.vonmises(rng.uniform(-3, 3), rng.uniform(0.1, 10), rng.integers(1, 300))
        q = rng.vonmises(rng.uniform(-3, 3), rng.uniform(0.1, 10), rng.integers(1, 300))
        assert binned_kl(p, q) >= 0.0
        assert binned_kl(p, p) == 0.0
        assert binned_kl(p, p + TWO_PI) == 0.0  # angles are wrapped before binning


def test_binned_kl_shrinks_as_smoothing_grows_for_equal_sample_sizes():
    """Equal sizes: smoothing mixes both histograms with the uniform in the same proportion, and
    KL is jointly convex and zero at the uniform, so it cannot increase."""
    rng = np.random.default_rng(4)
    p, q = rng.vonmises(0.0, 3.0, 200), rng.vonmises(2.0, 1.0, 200)
    values = [binned_kl(p, q, smoothing=s) for s in (0.01, 0.1, 0.5, 1, 10, 1e3, 1e6)]
    assert all(b <= a for a, b in itertools.pairwise(values))
    assert values[-1] < 1e-6


def test_binned_kl_weights_match_repeated_samples_without_smoothing():
    rng = np.random.default_rng(5)
    p = rng.uniform(-np.pi, np.pi, 40)
    counts = rng.integers(1, 6, p.size)
    q = rng.vonmises(0.0, 0.3, 3000)
    assert binned_kl(p, q, weights_p=counts, smoothing=0) == pytest.approx(
        binned_kl(np.repeat(p, counts), q, smoothing=0), rel=1e-12
    )
    # Equal weights carry n observations (Kish n_eff = n): identical to no weights at any smoothing.
    assert binned_kl(p, q, weights_p=np.full(p.size, 7.0), weights_q=np.full(q.size, 0.1)) == (
        pytest.approx(binned_kl(p, q), rel=1e-12)
    )


def test_binned_kl_to_density_is_zero_for_exact_bin_masses():
    """A "sample" of bin centres weighted by exact von Mises bin masses (from the cdf) has the
    density's binned distribution, so the divergence is zero up to the quadrature error."""
    kappa, loc, bins = 8.0, 0.7, 32
    edges = np.linspace(-np.pi, np.pi, bins + 1)
    masses = np.diff(vonmises.cdf(edges, kappa, loc=loc))  # scipy's cdf is on [loc-π, loc+π]
    masses = np.where(masses < 0, masses + 1, masses)  # the bin that straddles loc ± π
    centres = 0.5 * (edges[1:] + edges[:-1])

    def log_density(t):
        return vonmises.logpdf(t, kappa, loc=loc)

    for density_first in (False, True):
        kl = binned_kl_to_density(
            centres, log_density, weights=masses, smoothing=0, density_first=density_first
        )
        assert abs(kl) < 1e-12


def test_binned_kl_to_density_accepts_distributions_and_unnormalised_log_densities():
    numpyro = pytest.importorskip("numpyro")
    rng = np.random.default_rng(6)
    sample = rng.vonmises(1.0, 4.0, 3000)
    exact = binned_kl_to_density(sample, lambda t: vonmises.logpdf(t, 4.0, loc=1.0))
    shifted = binned_kl_to_density(sample, lambda t: 4.0 * np.cos(t - 1.0) + 123.0)
    as_distribution = binned_kl_to_density(sample, numpyro.distributions.VonMises(1.0, 4.0))
    assert shifted == pytest.approx(exact, rel=1e-10)
    assert as_distribution == pytest.approx(exact, rel=1e-4)  # numpyro evaluates in float32
    assert exact < 0.02
    assert binned_kl_to_density(sample, lambda t: vonmises.logpdf(t, 4.0, loc=-2.0)) > 1.0


def test_binned_kl_to_density_orders_its_arguments_as_documented():
    rng = np.random.default_rng(7)
    sample = rng.vonmises(0.0, 1.0, 500)

    def log_density(t):
        return vonmises.logpdf(t, 10.0, loc=0.5)

    forward = binned_kl_to_density(sample, log_density, smoothing=1.0)
    reverse = binned_kl_to_density(sample, log_density, smoothing=1.0, density_first=True)
    assert forward != pytest.approx(reverse, rel=1e-3)
    # Both equal the discrete KL against the exact bin masses (from the von Mises cdf).
    edges = np.linspace(-np.pi, np.pi, 33)
    masses = np.diff(vonmises.cdf(edges, 10.0, loc=0.5))
    masses = np.where(masses < 0, masses + 1, masses)
    sample_hist = (raw_histogram(sample) + 1.0) / (500 + 32.0)
    assert forward == pytest.approx(np.sum(sample_hist * np.log(sample_hist / masses)), rel=1e-6)
    assert reverse == pytest.approx(np.sum(masses * np.log(masses / sample_hist)), rel=1e-6)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: circular_emd([], [0.0]), "`a` is empty"),
        (lambda: circular_emd([0.0], [np.nan]), "`b` holds 1 NaN"),
        (lambda: circular_emd([[0.0, 1.0]], [0.0]), r"`a` must be a 1-D array"),
        (
            lambda: circular_emd([0.0, 1.0], [0.0], weights_a=[1.0, -1.0]),
            "`weights_a` holds negative",
        ),
        (
            lambda: circular_emd([0.0], [0.0], weights_b=[1.0, 2.0]),
            r"`weights_b` must have shape \(1,\)",
        ),
        (lambda: circular_emd([0.0], [0.0], weights_b=[0.0]), "`weights_b` are all zero"),
        (
            lambda: circular_emd([0.0], [0.0], weights_a=[np.inf]),
            "`weights_a` holds NaN or infinite",
        ),
        (lambda: binned_kl([np.inf], [0.0]), "`p_angles` holds 1 NaN or infinite"),
        (lambda: binned_kl([0.0], ["x"]), "`q_angles` must be a 1-D array"),
        (lambda: binned_kl([0.0], [0.0], bins=0), "`bins` must be a positive integer"),
        (lambda: binned_kl([0.0], [0.0], smoothing=-1), "`smoothing` must be finite and >= 0"),
        (lambda: binned_kl([0.0], [0.0], floor=1.0), r"`floor` must be in \[0, 1\)"),
        (lambda: binned_kl([0.0], [0.0], weights_p=[-1.0]), "`weights_p` holds negative"),
        (lambda: binned_kl_to_density([0.0], 3.0), "`log_density` must be a callable"),
        (lambda: binned_kl_to_density([0.0], lambda t: np.full_like(t, np.nan)), "NaN or \\+inf"),
        (lambda: binned_kl_to_density([0.0], lambda t: t[:3]), "`log_density` returned shape"),
        (lambda: binned_kl_to_density([0.0], lambda t: -np.inf * t**0), "-inf at every"),
        (lambda: binned_kl_to_density([], lambda t: t), "`angles` is empty"),
    ],
)
def test_bad_input_raises_probkit_error_naming_the_argument(call, match):
    with pytest.raises(ProbkitError, match=match):
        call()
