"""Run registered checks in float64, control the family-wise error rate, and collect a report."""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax
from statsmodels.stats.multitest import multipletests

from probkit._errors import ProbkitError
from probkit.theory.check import Check, CheckContext, CheckResult, Outcome, Size

__all__ = ["DEFAULT_ALPHA", "Report", "run_check", "run_checks"]

DEFAULT_ALPHA = 1e-3
"""The default family-wise false-alarm rate of a run: the chance that a correct library fails
any statistical check of the run, at a seed drawn at random."""


@dataclasses.dataclass(frozen=True)
class Report:
    """The results of a run of checks.

    Attributes
    ----------
    results : tuple of CheckResult
        One per check, in run order.
    seed : int
        The seed the checks ran with.
    size : {"quick", "full"}
        The size they ran at.
    alpha : float
        The family-wise false-alarm rate over the statistical checks (Holm's procedure).
    """

    results: tuple[CheckResult, ...]
    seed: int
    size: Size
    alpha: float

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The checks that failed."""
        return tuple(result for result in self.results if not result.passed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary of the whole report."""
        from probkit import __version__

        return {
            "probkit_version": __version__,
            "jax_version": jax.__version__,
            "seed": self.seed,
            "size": self.size,
            "alpha": self.alpha,
            "passed": self.passed,
            "num_checks": len(self.results),
            "num_failed": len(self.failures),
            "results": [result.to_dict() for result in self.results],
        }


def _evaluate(check: Check, context: CheckContext) -> tuple[Outcome | None, str | None, float]:
    start = time.perf_counter()
    try:
        # Checks compare with theory to 1e-12 and more: they run in float64 whatever the
        # caller's JAX configuration, which is restored afterwards.
        with jax.enable_x64(True):
            outcome = check.function(context)
        if not isinstance(outcome, Outcome):
            raise ProbkitError(
                f"check {check.qualified_name} returned {type(outcome).__name__}, not an Outcome."
            )
        error = None
    except Exception as exc:  # a check that crashes fails, with its traceback in the report
        outcome = None
        error = "".join(traceback.format_exception_only(exc)).strip()
        error += "\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])
    return outcome, error, time.perf_counter() - start


def _result(
    check: Check,
    outcome: Outcome | None,
    error: str | None,
    seconds: float,
    adjusted_p_value: float | None,
    alpha: float,
) -> CheckResult:
    if outcome is None:
        return CheckResult(
            check.name,
            check.capability,
            check.kind,
            check.summary,
            math.nan,
            "",
            "",
            None,
            None,
            None,
            None,
            False,
            seconds,
            {},
            error=error,
        )
    statistical = outcome.p_value is not None
    passed = adjusted_p_value >= alpha if statistical else bool(outcome.passed)
    return CheckResult(
        name=check.name,
        capability=check.capability,
        kind=check.kind,
        summary=check.summary,
        statistic=outcome.statistic,
        reference=outcome.reference,
        description=outcome.description,
        tolerance=outcome.tolerance,
        p_value=outcome.p_value,
        adjusted_p_value=adjusted_p_value,
        alpha=alpha if statistical else None,
        passed=passed,
        seconds=seconds,
        details=dict(outcome.details),
        figure=outcome.figure,
        skipped=outcome.skipped,
    )


def run_checks(
    checks: Sequence[Check],
    *,
    seed: int = 0,
    size: Size = "quick",
    alpha: float = DEFAULT_ALPHA,
    progress: Callable[[int, int, CheckResult], None] | None = None,
) -> Report:
    """Run checks and decide their verdicts with the family-wise error rate controlled.

    Exact checks pass when their statistic lies within tolerance. The p-values of the
    statistical checks are adjusted together by Holm's step-down procedure
    (:func:`statsmodels.stats.multitest.multipletests`), so the chance that a correct library
    fails *any* of them is at most ``alpha``. A check that raises fails, with the error in its
    result.

    Parameters
    ----------
    checks : sequence of Check
        The checks to run, e.g. ``registered_checks()``.
    seed : int
        The seed of every check.
    size : {"quick", "full"}
        The size of every check.
    alpha : float
        The family-wise false-alarm rate, in (0, 1).
    progress : callable, optional
        Called as ``progress(index, total, provisional_result)`` after each check; a statistical
        check's provisional verdict uses its unadjusted p-value.

    Returns
    -------
    Report
    """
    if size not in ("quick", "full"):
        raise ProbkitError(f"`size` must be 'quick' or 'full'; got {size!r}.")
    if not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ProbkitError(
            f"`alpha` must be a number in (0, 1), the family-wise false-alarm rate; got {alpha!r}."
        )
    alpha = float(alpha)
    context = CheckContext(seed=int(seed), size=size)
    evaluated = []
    for index, check in enumerate(checks):
        outcome, error, seconds = _evaluate(check, context)
        evaluated.append((check, outcome, error, seconds))
        if progress is not None:
            raw = outcome.p_value if outcome is not None else None
            progress(index, len(checks), _result(check, outcome, error, seconds, raw, alpha))

    p_values = [o.p_value for _, o, _, _ in evaluated if o is not None and o.p_value is not None]
    adjusted = iter(multipletests(p_values, alpha=alpha, method="holm")[1] if p_values else [])
    results = []
    for check, outcome, error, seconds in evaluated:
        adjusted_p = None
        if outcome is not None and outcome.p_value is not None:
            adjusted_p = float(next(adjusted))
        results.append(_result(check, outcome, error, seconds, adjusted_p, alpha))
    return Report(results=tuple(results), seed=int(seed), size=size, alpha=alpha)


def run_check(
    check: Check, *, seed: int = 0, size: Size = "quick", alpha: float = DEFAULT_ALPHA
) -> CheckResult:
    """Run one check alone (its p-value is then its own adjusted p-value)."""
    return run_checks([check], seed=seed, size=size, alpha=alpha).results[0]
