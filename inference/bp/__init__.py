"""Loopy belief propagation on binary Markov random fields with count (cardinality) factors.

Build a field with :func:`binary_mrf` (unary log-odds, pairwise couplings and
:class:`CountFactors` over disjoint bags) and run :func:`belief_propagation`. Count factors send
exact messages without a ``2^m`` table (:mod:`probkit.inference.bp.count`); the clique
expansion of Havaldar et al. (ICLR 2024) is :func:`clique_expansion`. :func:`shard_mrf` lays a
field out over several devices (edges and bags sharded) for the same :func:`belief_propagation`.
"""

from probkit.inference.bp.count import COUNT_METHODS, count_messages, poisson_binomial_pmf
from probkit.inference.bp.loopy import BPResult, belief_propagation, bethe_log_partition
from probkit.inference.bp.model import (
    BinaryMRF,
    CountBlock,
    CountFactors,
    binary_mrf,
    clique_expansion,
)
from probkit.inference.bp.sharding import pad_mrf, shard_mrf

__all__ = [
    "COUNT_METHODS",
    "BPResult",
    "BinaryMRF",
    "CountBlock",
    "CountFactors",
    "belief_propagation",
    "bethe_log_partition",
    "binary_mrf",
    "clique_expansion",
    "count_messages",
    "pad_mrf",
    "poisson_binomial_pmf",
    "shard_mrf",
]
