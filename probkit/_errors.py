"""The exception types that probkit raises for bad input and numerical degeneracy.

:class:`ProbkitError` is the one type for bad input. ``NotFittedError``, raised by an
estimator's methods before ``fit``, is a :class:`ProbkitError` that is also
:class:`sklearn.exceptions.NotFittedError`; it is built on first use (``from probkit._errors
import NotFittedError``), so that ``import probkit`` does not import scikit-learn.
"""

__all__ = ["NotFittedError", "ProbkitError"]  # noqa: F822 (NotFittedError: see __getattr__)


class ProbkitError(ValueError):
    """Bad input to a probkit function, or a numerical degeneracy that cannot be repaired.

    The message names the argument (or the state) at fault, says what was given and what is
    accepted, and says what to do. It subclasses :class:`ValueError` so that code which already
    catches ``ValueError`` keeps working.
    """


def __getattr__(name: str):
    # PEP 562: scikit-learn (about 0.6 s to import) loads only when an estimator asks for the
    # class; the class is then cached in this module's namespace.
    if name != "NotFittedError":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(ProbkitError, SklearnNotFittedError):
        """An estimator's method was called before ``fit``.

        Both a :class:`ProbkitError` and :class:`sklearn.exceptions.NotFittedError` (itself a
        :class:`ValueError` and an :class:`AttributeError`), so that ``except ProbkitError``,
        ``except NotFittedError`` and scikit-learn's own handling all catch it.
        """

    # Named as a module-level class: it pickles and prints as probkit._errors.NotFittedError.
    NotFittedError.__qualname__ = "NotFittedError"
    NotFittedError.__module__ = __name__
    globals()["NotFittedError"] = NotFittedError
    return NotFittedError
