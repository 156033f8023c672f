"""The one exception type that probkit raises for bad input and numerical degeneracy."""

__all__ = ["ProbkitError"]


class ProbkitError(ValueError):
    """Bad input to a probkit function, or a numerical degeneracy that cannot be repaired.

    The message names the argument (or the state) at fault, says what was given and what is
    accepted, and says what to do. It subclasses :class:`ValueError` so that code which already
    catches ``ValueError`` keeps working.
    """
