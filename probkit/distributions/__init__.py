"""NumPyro-compatible distributions of general use: the conjugate normal-inverse-Wishart family.

The von Mises family lives with its capability, in :mod:`probkit.circular`.
"""

from probkit.distributions.niw import NormalInverseGamma, NormalInverseWishart, multivariate_digamma

__all__ = ["NormalInverseGamma", "NormalInverseWishart", "multivariate_digamma"]
