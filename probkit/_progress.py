"""Stage lines on standard error for long fits (``verbose=1`` of probkit's estimators).

One line per stage, each with the seconds since the fit began, so that a fit on a million rows
says where it is and how long each stage took. A line, not a bar: the stages of these fits
(a cross-validation, a graph, belief propagation, a network's epochs) have no common unit to
fill a bar with, and lines survive logs and notebooks alike.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Print ``"<name> <seconds> s  <message>"`` lines when ``verbose`` is positive.

    Parameters
    ----------
    name : str
        The estimator's name, first on every line.
    verbose : int
        0: silent.
    """

    def __init__(self, name: str, verbose: int):
        self.name, self.verbose = name, int(verbose)
        self.started = time.perf_counter()

    def say(self, message: str) -> None:
        """Print one stage line (nothing when silent)."""
        if self.verbose:
            seconds = time.perf_counter() - self.started
            print(f"{self.name} {seconds:7.1f} s  {message}", file=sys.stderr, flush=True)
