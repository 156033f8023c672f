"""The check registry and runner: registration rules, verdicts, Holm adjustment and reports.

The shipped checks themselves are the main job, ``probkit check``, and are not run here a second
time: ``.ci/run`` runs ``probkit check --quick`` after the suite and fails on any failed check.
"""

import json

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from probkit import ProbkitError
from probkit.theory import (
    CAPABILITIES,
    CheckContext,
    Outcome,
    get_check,
    register,
    registered_checks,
    run_check,
    run_checks,
    unregister,
)
from probkit.theory.report import format_table, write_html, write_json

SHIPPED = registered_checks()


def test_every_shipped_check_is_documented_and_registered_once():
    names = [c.qualified_name for c in SHIPPED]
    assert len(names) == len(set(names))
    for check in SHIPPED:
        assert check.capability in CAPABILITIES
        assert check.summary, check.qualified_name
        assert get_check(check.qualified_name) is check
    # Every capability ships checks.
    assert {c.capability for c in SHIPPED} == set(CAPABILITIES)


def test_population_checks_are_registered_under_their_capability():
    names = {c.name for c in registered_checks(["population"])}
    assert {
        "resampling_preserves_measure_exactly",
        "offspring_counts_are_unbiased",
        "resampling_variance_ordering",
        "collapse_is_properly_weighted",
    } <= names
    assert all(c.capability in CAPABILITIES for c in SHIPPED)


@pytest.fixture
def temporary_checks():
    names = []

    def add(kind, function, name):
        register(capability="population", kind=kind, name=name)(function)
        names.append(f"population/{name}")
        return get_check(f"population/{name}")

    yield add
    for name in names:
        unregister(name)


def test_statistical_verdicts_use_holm_adjusted_p_values(temporary_checks):
    raw = [0.0004, 0.3, 0.02]
    checks = []
    for i, p in enumerate(raw):

        def function(context, p=p):
            """A statistical check with a fixed p-value."""
            return Outcome.from_p_value(0.0, p, reference="0")

        checks.append(temporary_checks("statistical", function, f"fixed_p_{i}"))
    report = run_checks(checks, alpha=1e-3)
    expected = multipletests(raw, method="holm")[1]
    np.testing.assert_allclose([r.adjusted_p_value for r in report.results], expected)
    # Alone, 0.0004 < 1e-3 fails; Holm multiplies it by 3 to 0.0012, which passes.
    assert [r.passed for r in report.results] == list(expected >= 1e-3)


def test_a_check_that_raises_fails_with_its_error(temporary_checks):
    def explodes(context):
        """A check that crashes."""
        raise RuntimeError("boom")

    result = run_check(temporary_checks("exact", explodes, "explodes"))
    assert not result.passed
    assert "boom" in result.error


def test_an_exact_check_with_a_nan_statistic_fails():
    assert not Outcome.at_most(float("nan"), tolerance=1.0).passed
    assert Outcome.within(1.05, reference=1.0, tolerance=0.1).passed
    with pytest.raises(ProbkitError, match="p-value"):
        Outcome.from_p_value(0.0, float("nan"), reference="0")


def test_register_refuses_bad_registrations(temporary_checks):
    def documented(context):
        """Documented."""
        return Outcome.at_most(0.0, 1.0)

    with pytest.raises(ProbkitError, match="capability"):
        register(capability="nope", kind="exact")(documented)
    with pytest.raises(ProbkitError, match="kind"):
        register(capability="population", kind="fuzzy")(documented)
    with pytest.raises(ProbkitError, match="docstring"):
        register(capability="population", kind="exact", name="undocumented")(lambda c: None)
    temporary_checks("exact", documented, "documented")
    with pytest.raises(ProbkitError, match="already registered"):
        register(capability="population", kind="exact")(documented)


def test_context_picks_the_size():
    assert CheckContext(size="quick").pick(1, 2) == 1
    assert CheckContext(size="full").pick(1, 2) == 2


def test_reports_are_written_as_table_json_and_html(tmp_path):
    report = run_checks([get_check("population/resampling_variance_ordering")])
    table = format_table(report)
    assert "resampling_variance_ordering" in table
    assert "1 passed, 0 failed" in table
    path = write_json(report, tmp_path / "report.json")
    data = json.loads(path.read_text())
    assert data["passed"] is True
    assert data["results"][0]["details"]["summed_variances"]["multinomial"] > 0
    with pytest.raises(ProbkitError, match="already exists"):
        write_json(report, path)
    index = write_html(report, tmp_path / "html")
    assert "resampling_variance_ordering" in index.read_text()
    assert (tmp_path / "html" / "population-resampling_variance_ordering.png").stat().st_size > 1000
    with pytest.raises(ProbkitError, match="not empty"):
        write_html(report, tmp_path / "html")


@pytest.mark.parametrize("alpha", [0, 1, 2.0, -0.1, "0.01"])
def test_run_checks_refuses_a_family_alpha_outside_the_open_unit_interval(alpha):
    with pytest.raises(ProbkitError, match=r"alpha.*\(0, 1\)"):
        run_checks([], alpha=alpha)
