import numpy as np
import pytest

from probkit.theory.calibration import holm_combined_p_value, mean_z_test


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
