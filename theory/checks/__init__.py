"""The checks that ship with probkit, one module per capability; importing this registers them."""

from probkit.theory.checks import circular, cluster, exceedance, llp, meta, mhg, population, smc

__all__ = ["circular", "cluster", "exceedance", "llp", "meta", "mhg", "population", "smc"]
