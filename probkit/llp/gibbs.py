r"""The Gibbs distribution of LLP-BP over instance labels, as a binary MRF with count factors.

Havaldar et al. (ICLR 2024) couple similar instances and tie each bag to its count:

.. math::

    \\log p(y) = -λ_s \\sum_{(i, j) \\in G} s_{ij} (y_i - y_j)^2
                 - λ_b \\sum_b \\Big(\\sum_{i \\in b} y_i - k_b\\Big)^2 + \\text{const},

with ``G`` a kNN graph and ``s_ij = exp(−d_ij / h)``. On ``{0, 1}`` the similarity term is the
unary field ``h_i = −λ_s Σ_j s_ij`` and the coupling ``J_ij = 2 λ_s s_ij``; the bag term is a count
factor (hard when ``λ_b = ∞``), or, as in the authors' release, its clique expansion.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from probkit.inference.bp import BinaryMRF, CountFactors, binary_mrf, clique_expansion
from probkit.llp.bags import Bags
from probkit.llp.knn import KNNGraph

__all__ = ["llp_field", "similarity_weights"]


def similarity_weights(distances: np.ndarray, bandwidth: float | str = "median") -> np.ndarray:
    """``s = exp(−d / h)``; ``h = "median"`` takes the median edge distance (scale-free)."""
    if bandwidth == "median":
        positive = distances[distances > 0]
        bandwidth = float(np.median(positive)) if positive.size else 1.0
    return np.exp(-distances / float(bandwidth))


def llp_field(
    graph: KNNGraph,
    weights: np.ndarray,
    bags: Bags,
    *,
    similarity_strength: float,
    bag_strength: float,
    clique: bool = False,
    prior_log_odds: np.ndarray | None = None,
    dtype=jnp.float32,
) -> BinaryMRF:
    """The LLP Gibbs field on the rows of ``bags`` (graph node ``i`` is row ``i``).

    Parameters
    ----------
    graph : KNNGraph
        Edges over the same rows as ``bags.bag_of``.
    weights : numpy.ndarray, shape (E,)
        ``s_ij`` per edge.
    bags : Bags
        Bag of each row and counts.
    similarity_strength, bag_strength : float
        ``λ_s ≥ 0`` and ``λ_b`` (``inf``: the count is a hard constraint).
    clique : bool
        Expand each bag into unary fields and a clique of pairwise factors (the release's
        model; needs a finite ``bag_strength``).
    prior_log_odds : numpy.ndarray, shape (n,), optional
        Instance evidence added to the unary fields, e.g. a classifier's logits: with it the
        field is the posterior of the labels given the classifier and the bag counts (the
        E-step of EM for label proportions), and BP with exact count factors computes it
        exactly when ``λ_s = 0``.
    dtype : dtype
        Floating dtype of the field.
    """
    n = bags.bag_of.shape[0]
    unary = -similarity_strength * np.bincount(
        graph.edges.ravel(), np.repeat(weights, 2), minlength=n
    )
    if prior_log_odds is not None:
        unary = unary + np.asarray(prior_log_odds, dtype=np.float64)
    factors = CountFactors.from_bags(bags.bag_of, bags.counts, strength=bag_strength, dtype=dtype)
    field = binary_mrf(
        jnp.asarray(unary, dtype), graph.edges, 2.0 * similarity_strength * weights, factors
    )
    return clique_expansion(field) if clique else field
