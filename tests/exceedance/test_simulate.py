"""Monte Carlo excursion statistics against Rice, exact identities and the research note's values.

Every statistical test uses a fixed seed and a tolerance of 4 standard errors (a false-alarm
rate of about 6e-5 per comparison for a normal statistic; the block standard errors below have
at least 31 degrees of freedom, for which |t| > 4 has probability below 4e-4), plus, where
stated, a bound on the grid's discretisation bias. The reference values come from the research
note on the Slepian IIA (``slepian_iia.md`` §3 and §5): an independent NumPy float64
circulant-embedding simulation.

All simulations in this file but the subprocess share one compiled configuration (n_steps,
batch_size, bins and the number of persistence times fix it; the covariance, dt, level and
n_paths are arguments of the compiled step), so the file compiles the batch step once.
"""

import math
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from probkit._errors import ProbkitError
from probkit.exceedance.covariance import cauchy, damped_cosine, gaussian, sech_diffusion
from probkit.exceedance.rice import crossing_intensity, mean_excursion_length
from probkit.exceedance.simulate import (
    ExcursionSimulation,
    circulant_embedding,
    fit_exponential_tail,
    simulate_excursions,
)

Z = 4.0
N_STEPS = 4096
BATCH = 32  # 2048 paths -> 64 batches -> 64 blocks: the block standard errors have 63 dof
BINS = np.arange(0.0, 410.01, 0.5)  # covers W = 409.6 (dt = 0.1) and W = 204.8 (dt = 0.05)
TIMES = [0.0, 1.0, 10.0, 20.0]
CONFIG = {"n_steps": N_STEPS, "batch_size": BATCH, "bins": BINS, "persistence_times": TIMES}

# d = 2 diffusion, from the research note: S_T(t) (≈800k excursions) and persistence.
SF_REFERENCE = {1.0: 0.9433, 2.0: 0.8178, 5.0: 0.4736, 10.0: 0.1859, 20.0: 0.02861}
SF_REFERENCE_EXCURSIONS = 800_000
PERSISTENCE_REFERENCE = {10.0: (0.0791, 0.0003), 20.0: (0.01212, 0.00011)}


def _run(covariance, seed, n_paths, dt, **overrides):
    with jax.enable_x64(True):
        return simulate_excursions(
            covariance, jax.random.key(seed), n_paths=n_paths, dt=dt, **{**CONFIG, **overrides}
        )


@pytest.fixture(scope="module")
def d2():
    """sech_diffusion(2): λ₂ = 1/4, dt·√λ₂ = 0.05, 2048 paths of W = 409.6 (~130k excursions)."""
    return _run(sech_diffusion(2.0), 20240611, 2048, 0.1)


@pytest.fixture(scope="module")
def gauss():
    """gaussian(1): λ₂ = 1, dt·√λ₂ = 0.05, 1024 paths of W = 204.8 (~33k excursions)."""
    return _run(gaussian(1.0), 7, 1024, 0.05)


@pytest.fixture(params=["d2", "gauss"])
def case(request):
    cov = sech_diffusion(2.0) if request.param == "d2" else gaussian(1.0)
    return cov, request.getfixturevalue(request.param)


# --- Rice and exact identities -------------------------------------------------------------------


def test_crossing_intensity_matches_rice(case, x64):
    cov, sim = case
    rice = float(crossing_intensity(cov, 0.0, "both"))  # √λ₂/π: 0.15915 (d2), 0.31831 (gauss)
    # Pairs of crossings inside one step are missed: at dt·√λ₂ = 0.05 the note measured a
    # relative bias of 0.01-0.2 %; allow 0.3 %.
    tolerance = Z * sim.crossing_intensity_se + 0.003 * rice
    assert abs(sim.crossing_intensity - rice) < tolerance, (sim.crossing_intensity, rice)
    assert sim.crossing_intensity_se < 0.01 * rice  # the test has power
    up, down = sim.crossings
    assert abs(up - down) <= sim.n_paths  # crossings alternate along each path


def test_mean_excursion_length_is_pi_over_sqrt_lam2(case, x64):
    cov, sim = case
    exact = math.pi / math.sqrt(float(cov.lam2))  # 6.2832 (d2), 3.1416 (gauss)
    # Excursions shorter than about a step are missed (0.1 % high in the note): allow 0.5 %.
    tolerance = Z * sim.mean_length_se + 0.005 * exact
    assert abs(sim.mean_length - exact) < tolerance, (sim.mean_length, exact)


def test_edge_correction_removes_the_window_bias(d2):
    # The raw mean of complete excursions is biased low by about Var(T)/W (29/409.6 = 0.07);
    # the Horvitz-Thompson weights W/(W - ℓ) remove it (checked by the test above).
    raw_mean = d2.blocks.moments[:, 4].sum() / d2.n_excursions
    assert raw_mean < d2.mean_length - 0.03
    assert np.all(d2.weighted_counts >= d2.counts)


def test_histogram_counts_add_up(d2):
    assert d2.counts.sum() + d2.n_below + d2.n_above == d2.n_excursions
    assert d2.n_excursions == d2.blocks.counts.sum()
    assert d2.n_above == 0  # the bins cover the window
    assert d2.n_excursions <= d2.crossings[1]  # one per down-crossing that has an up before it
    assert d2.n_excursions >= d2.crossings[1] - d2.n_paths
    assert d2.n_paths == 2048
    assert d2.blocks.n_paths.sum() == 2048
    assert d2.total_time == pytest.approx(2048 * 409.6)
    assert d2.n_batches == 64
    assert d2.blocks.counts.shape[0] == 64


def test_persistence_at_zero_is_one_half(case):
    _, sim = case
    assert sim.persistence_times[0] == 0.0
    assert abs(sim.persistence[0] - 0.5) < Z * sim.persistence_se[0]
    assert np.all(np.diff(sim.persistence) < 0)  # P(X > 0 on [0, t]) decreases in t


def test_crossings_and_mean_length_above_a_nonzero_level(x64):
    # Level u = 1: Rice gives √λ₂ e^{-1/2}/π = 0.09653 crossings per unit time and a mean
    # excursion length P(X > 1)/μ⁺(1) = 3.2871 (same compiled step: the level is an argument).
    cov = sech_diffusion(2.0)
    sim = _run(cov, 5, 512, 0.1, level=1.0)
    rice = float(crossing_intensity(cov, 1.0, "both"))
    assert abs(sim.crossing_intensity - rice) < Z * sim.crossing_intensity_se + 0.003 * rice
    exact = float(mean_excursion_length(cov, 1.0))
    assert abs(sim.mean_length - exact) < Z * sim.mean_length_se + 0.005 * exact
    assert abs(sim.persistence[0] - 0.158655) < Z * sim.persistence_se[0]  # P(X > 1)


# --- the research note's d = 2 values --------------------------------------------------------------


def test_survival_function_matches_reference(d2):
    times = np.array(list(SF_REFERENCE))
    reference = np.array(list(SF_REFERENCE.values()))
    reference_se = np.sqrt(reference * (1 - reference) / SF_REFERENCE_EXCURSIONS)
    value, se = d2.sf(times, standard_error="blocks")
    # Linear interpolation of the crossing times shortens short, parabola-like excursions by
    # O(dt²): S(1) comes out about 0.001 low over several seeds at dt·√λ₂ = 0.05. Allow 0.002.
    tolerance = Z * np.sqrt(se**2 + reference_se**2) + 0.002
    assert np.all(np.abs(value - reference) < tolerance), (value, reference, tolerance)
    assert d2.sf(0.0)[0] == 1.0
    grid = np.linspace(0, 100, 201)
    assert np.all(np.diff(d2.sf(grid)[0]) <= 0)


def test_persistence_matches_reference(d2):
    for t, (reference, reference_se) in PERSISTENCE_REFERENCE.items():
        (j,) = np.flatnonzero(np.isclose(d2.persistence_times, t))
        tolerance = Z * math.hypot(d2.persistence_se[j], reference_se)
        assert abs(d2.persistence[j] - reference) < tolerance, (t, d2.persistence[j], reference)


def test_density_is_normalised(d2):
    density = d2.pdf()
    widths = np.diff(density.bin_edges)
    assert np.all(density.density >= 0)
    inside = np.sum(density.density * widths)
    outside = d2.blocks.weighted_counts[:, [0, -1]].sum() / d2.blocks.moments[:, 0].sum()
    assert inside + outside == pytest.approx(1.0, abs=1e-12)


def test_fit_theta_brackets_three_sixteenths(d2, x64):
    # Exact θ = 3/16 (Poplavskyi & Schehr 2018). The window 15-50 still feels the prefactor's
    # subleading terms (the note's fits at 0.8M excursions gave 0.1891-0.1896): allow 0.005.
    fit = d2.fit_theta((15.0, 50.0), n_bootstrap=200, key=jax.random.key(1))
    assert fit.resample == "blocks"
    assert fit.window == (15.0, 50.0)
    assert fit.lower < fit.theta < fit.upper
    assert abs(fit.theta - 3 / 16) < Z * fit.standard_error + 0.005, fit
    assert 0.001 < fit.standard_error < 0.01


# --- reproducibility --------------------------------------------------------------------------------


def test_same_key_same_statistics_and_prefix_consistency(d2, x64):
    cov = sech_diffusion(2.0)
    a = _run(cov, 20240611, 64, 0.1)
    b = _run(cov, 20240611, 64, 0.1)
    for field in ("counts", "persistence_counts", "crossings"):
        np.testing.assert_array_equal(getattr(a.blocks, field), getattr(b.blocks, field))
    np.testing.assert_array_equal(a.blocks.moments, b.blocks.moments)
    # Paths are keyed by their index: the first 64 paths of the 2048-path run are these.
    np.testing.assert_array_equal(a.blocks.counts, d2.blocks.counts[:2])
    np.testing.assert_array_equal(a.blocks.crossings, d2.blocks.crossings[:2])
    np.testing.assert_allclose(a.blocks.moments, d2.blocks.moments[:2], rtol=1e-12)
    other = _run(cov, 1, 64, 0.1)
    assert not np.array_equal(other.blocks.counts, a.blocks.counts)
    # A raw uint32 key (jax.random.PRNGKey) is the same key.
    with jax.enable_x64(True):
        raw = simulate_excursions(cov, jax.random.PRNGKey(20240611), n_paths=64, dt=0.1, **CONFIG)
    np.testing.assert_array_equal(raw.blocks.counts, a.blocks.counts)
    # An odd number of paths masks the unused imaginary part of the last pair.
    odd = _run(cov, 20240611, 63, 0.1)
    assert odd.n_paths == 63
    assert odd.total_time == pytest.approx(63 * 409.6)
    assert odd.crossings[0] <= a.crossings[0]


SHARDING_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from probkit.exceedance.covariance import sech_diffusion
    from probkit.exceedance.simulate import simulate_excursions

    assert len(jax.devices()) == 4
    kwargs = dict(n_paths=100, n_steps=1024, dt=0.1, persistence_times=[0.0, 5.0],
                  bins=np.arange(0.0, 103.0, 0.5))
    cov, key = sech_diffusion(2.0), jax.random.key(11)
    one = simulate_excursions(cov, key, batch_size=32, devices=jax.devices()[:1], **kwargs)
    four = simulate_excursions(cov, key, batch_size=32, **kwargs)
    other_batch = simulate_excursions(cov, key, batch_size=24, **kwargs)
    assert (one.n_devices, four.n_devices, other_batch.batch_size) == (1, 4, 24)
    for sim in (four, other_batch):
        assert sim.crossings == one.crossings
        np.testing.assert_array_equal(sim.counts, one.counts)
        np.testing.assert_array_equal(sim.blocks.persistence_counts.sum(0),
                                      one.blocks.persistence_counts.sum(0))
        # Float sums (float32 here: x64 is off) change only by their summation order.
        np.testing.assert_allclose(sim.weighted_counts, one.weighted_counts, rtol=1e-5)
        np.testing.assert_allclose(sim.mean_length, one.mean_length, rtol=1e-5)
    np.testing.assert_array_equal(four.blocks.counts, one.blocks.counts)  # same batches
    print("ok")
""")


def test_the_default_batch_leaves_enough_batches_for_standard_errors(monkeypatch):
    # On an accelerator the default batch (2^25 points) held a whole quick simulation, one
    # batch, and every standard error came out NaN. Emulate that batch on the CPU.
    from probkit.exceedance import simulate

    monkeypatch.setitem(simulate._SAMPLES_PER_BATCH, "cpu", 2**25)
    sim = _run(sech_diffusion(2.0), 3, 512, 0.1, batch_size=None)
    assert (sim.batch_size, sim.n_batches) == (BATCH, 16)  # the file's compiled shape
    assert np.isfinite(sim.crossing_intensity_se)
    assert sim.crossing_intensity_se > 0
    with pytest.warns(UserWarning, match="one batch"):
        single = _run(sech_diffusion(2.0), 3, BATCH, 0.1)
    assert np.isnan(single.crossing_intensity_se)


def test_one_and_four_devices_and_batch_sizes_give_the_same_statistics():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], capture_output=True,
                            text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


# --- the tail fit on known exponential data --------------------------------------------------------


def _truncated_exponential_se(theta, span, n):
    # Fisher information of one draw of Exp(θ) truncated to [0, span).
    information = (
        1 / theta**2 - span**2 * math.exp(-theta * span) / (1 - math.exp(-theta * span)) ** 2
    )
    return 1 / math.sqrt(n * information)


@pytest.mark.parametrize("blocks", [False, True])
def test_fit_exponential_tail_recovers_a_known_rate(blocks):
    theta, t0, t1 = 0.2, 5.0, 30.0
    rng = np.random.default_rng(3)
    lengths = rng.exponential(1 / theta, size=40_000)
    edges = np.arange(0.0, 100.5, 0.5)
    counts = np.histogram(lengths, edges)[0]
    block_counts = None
    if blocks:
        block_counts = np.stack([np.histogram(part, edges)[0] for part in np.split(lengths, 50)])
    fit = fit_exponential_tail(edges, counts, (t0, t1), block_counts=block_counts,
                               n_bootstrap=300, key=jax.random.key(0), confidence=0.9999)  # fmt: skip
    assert fit.resample == ("blocks" if blocks else "multinomial")
    n_in = np.sum((lengths >= t0) & (lengths < t1))
    assert fit.n_in_window == n_in
    expected_se = _truncated_exponential_se(theta, t1 - t0, n_in)  # ≈ 0.0014
    assert abs(fit.theta - theta) < Z * expected_se
    assert fit.lower < theta < fit.upper  # a 99.99 % interval
    # 300 replicates estimate the standard error to about 4 %; binning adds a little.
    assert fit.standard_error == pytest.approx(expected_se, rel=0.2)
    point = fit_exponential_tail(edges, counts, (t0, t1), n_bootstrap=0)
    assert point.theta == fit.theta
    assert math.isnan(point.lower)


def test_fit_exponential_tail_rejects_bad_windows():
    edges = np.arange(0.0, 10.5, 0.5)
    counts = np.ones(20)
    with pytest.raises(ProbkitError, match="window"):
        fit_exponential_tail(edges, counts, (2.0, 2.2))
    with pytest.raises(ProbkitError, match="window"):
        fit_exponential_tail(edges, counts, (5.0, 1.0))
    with pytest.raises(ProbkitError, match="key"):
        fit_exponential_tail(edges, counts, (1.0, 5.0), n_bootstrap=10)
    with pytest.raises(ProbkitError, match="counts"):
        fit_exponential_tail(edges, counts[:-1], (1.0, 5.0))


# --- circulant embedding and bad input ----------------------------------------------------------------


def test_circulant_embedding_enlarges_when_needed():
    # The Cauchy correlation decays slowly: the first embedding (2m = 128) has negative
    # eigenvalues and is doubled until it has none beyond rounding.
    eigenvalues, ratio = circulant_embedding(cauchy(), 64, 0.1)
    assert eigenvalues.size > 128
    assert np.all(eigenvalues >= 0)
    assert -1e-8 <= ratio <= 0
    # The embedding reproduces r on the grid: its inverse FFT is the circulant's first row.
    with jax.enable_x64(True):
        lags = 0.1 * np.arange(65)
        r = np.asarray(cauchy()(lags))
    np.testing.assert_allclose(np.fft.ifft(eigenvalues).real[:65], r, atol=1e-7)


def test_a_covariance_that_cannot_be_embedded_is_refused():
    # cos(2t) with a Gaussian envelope of scale 100 has not decayed within 32 paths of 5.12:
    # every embedding up to that size has negative eigenvalues.
    with pytest.raises(ProbkitError, match="circulant embedding"):
        simulate_excursions(
            damped_cosine(2.0, 100.0), jax.random.key(0), n_paths=2, n_steps=128, dt=0.04
        )


GOOD = {"n_paths": 4, "n_steps": 1024, "dt": 0.1}


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n_paths": 0}, "n_paths"),
        ({"n_paths": 2.5}, "n_paths"),
        ({"n_steps": -3}, "n_steps"),
        ({"dt": 0.0}, "dt"),
        ({"dt": float("nan")}, "dt"),
        ({"level": float("inf")}, "level"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_steps": 100}, "n_steps"),  # W = 10 < 2 · 6.28
        ({"bins": [0.0, 1.0, 1.0]}, "bins"),
        ({"bins": 0}, "bins"),
        ({"persistence_times": [200.0]}, "persistence_times"),
        ({"persistence_times": [-1.0]}, "persistence_times"),
        ({"dtype": np.float16}, "dtype"),
        ({"dtype": np.float64}, "jax_enable_x64"),
        ({"devices": []}, "devices"),
        ({"batch_size": 2**30}, "batch_size"),
    ],
)
def test_bad_input_is_refused_before_tracing(overrides, match):
    with pytest.raises(ProbkitError, match=match):
        simulate_excursions(sech_diffusion(2.0), jax.random.key(0), **{**GOOD, **overrides})


def test_bad_covariance_and_key_are_refused():
    with pytest.raises(ProbkitError, match="covariance"):
        simulate_excursions(lambda t: t, jax.random.key(0), **GOOD)
    with pytest.raises(ProbkitError, match="key"):
        simulate_excursions(sech_diffusion(2.0), 0, **GOOD)


def test_coarse_grid_warns():
    # dt·√λ₂ = 0.5: crossings are missed. (n_steps is too small as well, so nothing runs.)
    with pytest.warns(UserWarning, match="dt"), pytest.raises(ProbkitError, match="n_steps"):
        simulate_excursions(sech_diffusion(2.0), jax.random.key(0), n_paths=2, n_steps=10, dt=1.0)


def test_result_is_a_pytree(d2):
    leaves = jax.tree_util.tree_leaves(d2)
    assert any(np.shape(leaf) == d2.counts.shape for leaf in leaves)
    assert isinstance(jax.tree_util.tree_map(lambda x: x, d2), ExcursionSimulation)
