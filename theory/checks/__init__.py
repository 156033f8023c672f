"""The checks that ship with probkit, one module per capability; importing this registers them."""

from probkit.theory.checks import mhg, population, smc

__all__ = ["mhg", "population", "smc"]
