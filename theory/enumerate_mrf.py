"""Brute-force oracles for binary Markov random fields and count factors (float64 NumPy).

Every configuration of ``y ∈ {0, 1}^n`` is enumerated (``n ≤ 22``), so marginals, ``log Z``
and count-factor messages are exact up to rounding: the reference against which
:mod:`probkit.inference.bp` is checked.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from probkit._errors import ProbkitError
from probkit.inference.bp import BinaryMRF

__all__ = [
    "MRFEnumeration",
    "enumerate_binary_mrf",
    "enumerated_count_message",
    "leave_one_out_count_message",
]

MAX_ENUMERATED_VARIABLES = 22


class MRFEnumeration(NamedTuple):
    """Exact marginals ``P(y_i = 1)``, ``log Z`` and the expected count of each bag."""

    marginals: np.ndarray
    log_partition: float
    bag_expected_counts: np.ndarray


def _configurations(n: int) -> np.ndarray:
    return ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)


def enumerate_binary_mrf(mrf: BinaryMRF) -> MRFEnumeration:
    """Enumerate all ``2^n`` labelings of ``mrf`` (unary, pairwise and count factors)."""
    n = mrf.num_variables
    if n > MAX_ENUMERATED_VARIABLES:
        raise ProbkitError(
            f"enumeration is limited to {MAX_ENUMERATED_VARIABLES} variables, got {n}."
        )
    y = _configurations(n)
    log_p = y @ np.asarray(mrf.unary, np.float64)
    edges = np.asarray(mrf.edges)
    if edges.size:
        log_p += (y[:, edges[:, 0]] * y[:, edges[:, 1]]) @ np.asarray(mrf.coupling, np.float64)
    sums = []
    if mrf.count_factors is not None:
        for block in mrf.count_factors.blocks:
            table = np.asarray(block.log_potential, np.float64)
            for row, (members, mask) in enumerate(
                zip(np.asarray(block.members), np.asarray(block.mask), strict=True)
            ):
                s = y[:, members[mask]].sum(axis=1).astype(int)
                log_p += table[row, s]
                sums.append((int(np.asarray(block.bag_index)[row]), s))
    log_z = float(logsumexp(log_p))
    weights = np.exp(log_p - log_z)
    expected = np.zeros(len(sums))
    for bag, s in sums:
        expected[bag] = weights @ s
    return MRFEnumeration(marginals=weights @ y, log_partition=log_z, bag_expected_counts=expected)


def enumerated_count_message(eta: np.ndarray, log_potential: np.ndarray, i: int) -> float:
    """``ν_{b→i}`` of a count factor by summing over all labelings of the other members."""
    others = np.delete(np.asarray(eta, np.float64), i)
    if others.size > MAX_ENUMERATED_VARIABLES:
        raise ProbkitError(f"enumeration is limited to {MAX_ENUMERATED_VARIABLES} other members.")
    y = _configurations(others.size)
    log_w = y @ others
    s = y.sum(axis=1).astype(int)
    table = np.asarray(log_potential, np.float64)
    return float(logsumexp(log_w + table[s + 1]) - logsumexp(log_w + table[s]))


def leave_one_out_count_message(eta: np.ndarray, log_potential: np.ndarray, i: int) -> float:
    """``ν_{b→i}`` from the law of the other members' sum, convolved member by member in log space.

    An independent ``O(m²)`` computation for bags too large to enumerate (no deconvolution, no
    tilting, no FFT).
    """
    others = np.delete(np.asarray(eta, np.float64), i)
    log_law = np.array([0.0])
    for e in others:
        log_p, log_q = -np.logaddexp(0.0, -e), -np.logaddexp(0.0, e)
        log_law = np.logaddexp(
            np.concatenate([log_law + log_q, [-np.inf]]),
            np.concatenate([[-np.inf], log_law + log_p]),
        )
    table = np.asarray(log_potential, np.float64)
    s = np.arange(others.size + 1)
    return float(logsumexp(log_law + table[s + 1]) - logsumexp(log_law + table[s]))
