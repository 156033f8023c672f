"""Checks against theory: what a check is, what it returns, and the registry that holds them.

A check is a function of a :class:`CheckContext` (seed and size) that returns an
:class:`Outcome`: a statistic compared with a reference, either within a tolerance (an *exact*
check, whose verdict is deterministic) or through a p-value (a *statistical* check, with a
stated false-alarm rate). The runner (:mod:`probkit.theory.runner`) times each check, controls
the family-wise error rate over the statistical ones and turns outcomes into
:class:`CheckResult` records. The same registered check serves ``probkit check``, the test
suite (one test per check) and the docs.

Register a check with the :func:`register` decorator::

    @register(capability="population", kind="exact")
    def systematic_resampling_preserves_measure(context: CheckContext) -> Outcome:
        error = ...
        return Outcome.at_most(error, tolerance=1e-12, description="max |μ' - μ| / Z")
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from probkit._errors import ProbkitError

__all__ = [
    "CAPABILITIES",
    "Check",
    "CheckContext",
    "CheckResult",
    "Outcome",
    "get_check",
    "register",
    "registered_checks",
    "unregister",
]

CAPABILITIES: tuple[str, ...] = (
    "population",
    "smc",
    "mhg",
    "exceedance",
    "circular",
    "cluster",
    "llp",
    "meta",
)
"""The capability names, one per module of probkit; checks are registered under one of them."""

Kind = Literal["exact", "statistical"]
Size = Literal["quick", "full"]

Figure = Callable[[Any], None]
"""Draws a check's figure on a matplotlib ``Axes`` it is given."""


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What a check is run with.

    Attributes
    ----------
    seed : int
        The seed every random draw of the check derives from; a fixed seed gives a fixed verdict.
    size : {"quick", "full"}
        ``"quick"`` for a run of seconds (CI, the test suite), ``"full"`` for more replicates
        and therefore more power.
    """

    seed: int = 0
    size: Size = "quick"

    def pick(self, quick: Any, full: Any) -> Any:
        """Return ``quick`` or ``full`` according to :attr:`size`."""
        return quick if self.size == "quick" else full


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a check found: a statistic, the reference it is compared with, and the comparison.

    Build one with :meth:`at_most`, :meth:`within` or :meth:`from_p_value` rather than directly.

    Attributes
    ----------
    statistic : float
        The number the check computed (an error, a z-score, a variance...).
    reference : float or str
        What theory says the statistic should be, as a number or a short formula.
    description : str
        What the statistic is, in a few words (shown in reports).
    tolerance : float or None
        For exact checks: the largest allowed ``|statistic - reference|``.
    p_value : float or None
        For statistical checks: the p-value of the null hypothesis that theory holds.
    passed : bool or None
        The verdict of an exact check; ``None`` for statistical checks, whose verdict the runner
        decides after adjusting the p-values of the whole run.
    details : Mapping[str, Any]
        JSON-serialisable extra numbers (per-method errors, sample sizes...).
    figure : callable or None
        Draws a figure of the check on a matplotlib ``Axes`` (for ``probkit check --html``).
    skipped : str or None
        Why the check could not run here (e.g. its data set is not on this machine); a skipped
        check does not fail the run, and reports show it as skipped. Build one with
        :meth:`skip`.
    """

    statistic: float
    reference: float | str
    description: str = ""
    tolerance: float | None = None
    p_value: float | None = None
    passed: bool | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    figure: Figure | None = None
    skipped: str | None = None

    @classmethod
    def skip(cls, reason: str) -> Outcome:
        """A check that could not run here, with the reason (shown in reports)."""
        return cls(math.nan, "", description=reason, passed=True, skipped=reason)

    @classmethod
    def at_most(cls, statistic: float, tolerance: float, **kwargs: Any) -> Outcome:
        """An exact check that passes when ``statistic <= tolerance`` (reference 0).

        A NaN statistic fails.
        """
        statistic = float(statistic)
        passed = bool(statistic <= tolerance)  # NaN compares False: it fails
        return cls(statistic, 0.0, tolerance=tolerance, passed=passed, **kwargs)

    @classmethod
    def within(cls, statistic: float, reference: float, tolerance: float, **kwargs: Any) -> Outcome:
        """An exact check that passes when ``|statistic - reference| <= tolerance``."""
        statistic = float(statistic)
        passed = bool(abs(statistic - reference) <= tolerance)
        return cls(statistic, reference, tolerance=tolerance, passed=passed, **kwargs)

    @classmethod
    def from_p_value(
        cls, statistic: float, p_value: float, reference: float | str, **kwargs: Any
    ) -> Outcome:
        """A statistical check: the runner rejects it when its adjusted p-value is below alpha."""
        p_value = float(p_value)
        if not 0.0 <= p_value <= 1.0:  # also catches NaN
            raise ProbkitError(f"a check returned p-value {p_value}; p-values lie in [0, 1].")
        return cls(float(statistic), reference, p_value=p_value, **kwargs)


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check against theory.

    Attributes
    ----------
    name : str
        Unique within its capability; reads as a claim (``systematic_resampling_preserves_measure``).
    capability : str
        One of :data:`CAPABILITIES`.
    kind : {"exact", "statistical"}
        Exact checks compare within a tolerance; statistical checks give a p-value.
    function : callable
        ``function(context) -> Outcome``.
    summary : str
        The claim the check tests, in one line (the first line of the function's docstring).
    """

    name: str
    capability: str
    kind: Kind
    function: Callable[[CheckContext], Outcome]
    summary: str

    @property
    def qualified_name(self) -> str:
        """``capability/name``, unique over the registry."""
        return f"{self.capability}/{self.name}"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """A check's result after a run.

    Attributes
    ----------
    name, capability, kind, summary : str
        As on the :class:`Check`.
    statistic : float
        The statistic the check computed (NaN when the check raised).
    reference : float or str
        The theoretical value the statistic is compared with.
    description : str
        What the statistic is.
    tolerance : float or None
        Exact checks: the allowed deviation.
    p_value, adjusted_p_value : float or None
        Statistical checks: the raw p-value and its family-wise (Holm) adjustment over the run.
    alpha : float or None
        Statistical checks: the family-wise false-alarm rate of the run.
    passed : bool
        The verdict.
    seconds : float
        Wall time of the check, compilation included.
    details : dict
        Extra numbers from the check.
    error : str or None
        The exception a check raised, if any (such a check fails).
    figure : callable or None
        Draws the check's figure on a matplotlib ``Axes``.
    skipped : str or None
        Why the check did not run (it then does not fail the run; ``passed`` is True).
    """

    name: str
    capability: str
    kind: Kind
    summary: str
    statistic: float
    reference: float | str
    description: str
    tolerance: float | None
    p_value: float | None
    adjusted_p_value: float | None
    alpha: float | None
    passed: bool
    seconds: float
    details: Mapping[str, Any]
    error: str | None = None
    figure: Figure | None = dataclasses.field(default=None, repr=False, compare=False)
    skipped: str | None = None

    @property
    def qualified_name(self) -> str:
        """``capability/name``."""
        return f"{self.capability}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary of the result (the figure is left out)."""
        record = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "figure"
        }
        record["details"] = _jsonable(dict(self.details))
        for key in ("statistic", "tolerance", "p_value", "adjusted_p_value", "alpha"):
            record[key] = _jsonable(record[key])
        return record


def _jsonable(value: Any) -> Any:
    """NumPy/JAX scalars and arrays as Python numbers and lists; non-finite floats as strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


_REGISTRY: dict[str, Check] = {}


def register(
    *, capability: str, kind: Kind, name: str | None = None
) -> Callable[[Callable[[CheckContext], Outcome]], Callable[[CheckContext], Outcome]]:
    """Register a check function under ``capability``.

    Parameters
    ----------
    capability : str
        One of :data:`CAPABILITIES`.
    kind : {"exact", "statistical"}
        Whether the check compares within a tolerance or gives a p-value.
    name : str, optional
        The check's name; defaults to the function's name.

    Returns
    -------
    callable
        A decorator that registers the function and returns it unchanged.

    Raises
    ------
    ProbkitError
        On an unknown capability or kind, a function without a docstring, or a name already taken.
    """
    if capability not in CAPABILITIES:
        raise ProbkitError(
            f"`capability` must be one of {', '.join(CAPABILITIES)}; got {capability!r}."
        )
    if kind not in ("exact", "statistical"):
        raise ProbkitError(f"`kind` must be 'exact' or 'statistical'; got {kind!r}.")

    def decorator(function: Callable[[CheckContext], Outcome]):
        check_name = name or function.__name__
        doc = (function.__doc__ or "").strip()
        if not doc:
            raise ProbkitError(
                f"check {check_name!r} has no docstring; its first line states the claim it tests."
            )
        check = Check(check_name, capability, kind, function, doc.splitlines()[0])
        if check.qualified_name in _REGISTRY:
            raise ProbkitError(
                f"a check named {check.qualified_name!r} is already registered; pick another name."
            )
        _REGISTRY[check.qualified_name] = check
        return function

    return decorator


def unregister(qualified_name: str) -> None:
    """Remove a check from the registry (for checks registered by tests or scripts)."""
    _REGISTRY.pop(qualified_name, None)


def registered_checks(capabilities: tuple[str, ...] | list[str] | None = None) -> list[Check]:
    """The registered checks, in registration order, optionally only those of ``capabilities``.

    Importing :mod:`probkit.theory` registers every check that ships with probkit.

    Raises
    ------
    ProbkitError
        If a requested capability is unknown.
    """
    if capabilities is not None:
        unknown = sorted(set(capabilities) - set(CAPABILITIES))
        if unknown:
            raise ProbkitError(
                f"unknown capability {', '.join(unknown)}; choose from {', '.join(CAPABILITIES)}."
            )
    return [c for c in _REGISTRY.values() if capabilities is None or c.capability in capabilities]


def get_check(qualified_name: str) -> Check:
    """The registered check called ``capability/name``."""
    try:
        return _REGISTRY[qualified_name]
    except KeyError:
        raise ProbkitError(
            f"no check named {qualified_name!r} is registered; `probkit check --list` lists them."
        ) from None
