"""How you know it is right: checks against theory, exact oracles and statistical tests.

Importing :mod:`probkit.theory` registers every check that ships with probkit; run them with
:func:`run_checks` (or ``probkit check`` on the command line).
"""

from probkit.theory import checks as _checks  # registers the shipped checks
from probkit.theory.check import (
    CAPABILITIES,
    Check,
    CheckContext,
    CheckResult,
    Outcome,
    get_check,
    register,
    registered_checks,
    unregister,
)
from probkit.theory.runner import DEFAULT_ALPHA, Report, run_check, run_checks

__all__ = [
    "CAPABILITIES",
    "DEFAULT_ALPHA",
    "Check",
    "CheckContext",
    "CheckResult",
    "Outcome",
    "Report",
    "get_check",
    "register",
    "registered_checks",
    "run_check",
    "run_checks",
    "unregister",
]

del _checks
