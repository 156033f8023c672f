r"""Binary Markov random fields with pairwise and count (cardinality) factors, in log-odds form.

A field over ``y ∈ {0, 1}^n`` has the unnormalised log density

.. math::

    \\log \\tilde p(y) = \\sum_i h_i y_i + \\sum_{(i, j) \\in E} J_{ij} y_i y_j
        + \\sum_b \\log \\phi_b\\Big(\\sum_{i \\in b} y_i\\Big),

with unary fields ``h``, pairwise couplings ``J`` on an undirected edge list, and count factors
``φ_b`` that see only the number of positives in a bag ``b``. The count factors built by
:meth:`CountFactors.from_bags` are the quadratic (soft) ``log φ_b(S) = −λ_b (S − k_b)²`` and its
hard limit ``φ_b(S) = 1[S = k_b]`` (``λ_b = inf``); any other table ``log φ_b(S)`` can be given.

The layout is built once with NumPy (validated before anything is traced): pairwise messages
live on directed edges in a segment-sum layout, and bags are padded into a few blocks of
power-of-two width so that ragged bag sizes cost little padding. Bags must be disjoint: each
variable is in at most one count factor, which keeps every cavity a sum of finite terms even
when a hard constraint sends an infinite message.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError

__all__ = ["BinaryMRF", "CountBlock", "CountFactors", "binary_mrf", "clique_expansion"]

_MIN_BLOCK_WIDTH = 8
"""Narrowest padded bag width: smaller bags share one block (padding them costs little)."""


class CountBlock(NamedTuple):
    """Bags of one padded width ``w``: ``B`` count factors stored as dense arrays.

    Attributes
    ----------
    members : Array, shape (B, w), int32
        The variables of each bag; padding slots hold 0 and are masked out.
    mask : Array, shape (B, w), bool
        True on the slots that hold a member.
    log_potential : Array, shape (B, w + 1)
        ``log φ_b(S)`` for ``S = 0..w`` (``-inf`` where the factor forbids the count; entries
        above the bag's size are never used).
    counts : Array, shape (B,)
        The bag's target count ``k_b`` (the centre of a quadratic potential).
    strength : Array, shape (B,)
        ``λ_b`` of a quadratic potential (``inf`` for a hard constraint, ``nan`` when the table
        was given directly and has no quadratic form).
    bag_index : Array, shape (B,), int32
        The bag's position in the order the bags were given (for reporting per bag).
    """

    members: jax.Array
    mask: jax.Array
    log_potential: jax.Array
    counts: jax.Array
    strength: jax.Array
    bag_index: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CountFactors:
    """Disjoint count factors, grouped by padded width (see :meth:`from_bags`).

    Attributes
    ----------
    blocks : tuple of CountBlock
        One block per power-of-two width (at least 8) that some bag needs.
    num_bags : int
        The number of bags (static).
    """

    blocks: tuple[CountBlock, ...]
    num_bags: int = dataclasses.field(metadata={"static": True})

    @property
    def quadratic(self) -> bool:
        """True when every factor is quadratic or hard (the Gaussian messages need this)."""
        return all(bool(np.all(~np.isnan(np.asarray(b.strength)))) for b in self.blocks)

    @classmethod
    def from_bags(
        cls,
        bag_of: Any,
        counts: Any,
        *,
        strength: float | Any = np.inf,
        log_potential: Any = None,
        dtype: Any = None,
    ) -> CountFactors:
        """Count factors from a bag id per variable.

        Parameters
        ----------
        bag_of : array_like of int, shape (n,)
            The bag of each variable, ``0..num_bags-1``, or ``-1`` for a variable in no bag.
        counts : array_like, shape (num_bags,)
            ``k_b``, the number of positives of each bag (need not be an integer for a soft
            potential; a hard constraint needs an integer in ``[0, size_b]``).
        strength : float or array_like of shape (num_bags,), default inf
            ``λ_b ≥ 0`` of ``log φ_b(S) = −λ_b (S − k_b)²``; ``inf`` gives the hard constraint
            ``S = k_b``.
        log_potential : sequence of array_like, optional
            Instead of ``strength``: one table ``log φ_b(S)``, ``S = 0..size_b``, per bag
            (``-inf`` allowed where a count is forbidden; at least one entry finite).
        dtype : dtype, optional
            Floating dtype of the tables (default: JAX's default float).

        Returns
        -------
        CountFactors
        """
        bag_of = np.asarray(bag_of)
        if bag_of.ndim != 1 or not np.issubdtype(bag_of.dtype, np.integer):
            raise ProbkitError(
                f"bag_of must be a 1-D integer array (a bag id per variable), got dtype "
                f"{bag_of.dtype} and shape {bag_of.shape}."
            )
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1:
            raise ProbkitError(f"counts must be 1-D (one count per bag), got shape {counts.shape}.")
        num_bags = counts.shape[0]
        if bag_of.size and (bag_of.min() < -1 or bag_of.max() >= num_bags):
            bad = np.unique(bag_of[(bag_of < -1) | (bag_of >= num_bags)])[:5]
            raise ProbkitError(
                f"bag_of holds ids {bad.tolist()} outside 0..{num_bags - 1} (counts has "
                f"{num_bags} entries) or -1 (no bag); give one count per bag id."
            )
        sizes = np.bincount(bag_of[bag_of >= 0], minlength=num_bags)
        if np.any(sizes == 0):
            raise ProbkitError(
                f"bags {np.flatnonzero(sizes == 0)[:5].tolist()} have no members; every bag id "
                "below len(counts) needs at least one variable."
            )
        if not np.all(np.isfinite(counts)):
            raise ProbkitError(
                f"counts of bags {np.flatnonzero(~np.isfinite(counts))[:5].tolist()} are not "
                "finite."
            )
        dtype = jnp.dtype(dtype or jnp.zeros(0).dtype)
        width_of = np.maximum(
            _MIN_BLOCK_WIDTH, 2 ** np.ceil(np.log2(np.maximum(sizes, 1))).astype(int)
        )
        if log_potential is None:
            strength = np.broadcast_to(np.asarray(strength, dtype=np.float64), (num_bags,))
            if np.any(np.isnan(strength)) or np.any(strength < 0):
                raise ProbkitError(
                    "strength must be ≥ 0 (inf for a hard count constraint), got "
                    f"{np.unique(strength[np.isnan(strength) | (strength < 0)])[:5].tolist()}."
                )
            hard = np.isinf(strength)
            bad = hard & ((counts < 0) | (counts > sizes) | (counts != np.round(counts)))
            if np.any(bad):
                raise ProbkitError(
                    f"a hard count constraint needs an integer count in [0, bag size]; bags "
                    f"{np.flatnonzero(bad)[:5].tolist()} have counts "
                    f"{counts[bad][:5].tolist()} and sizes {sizes[bad][:5].tolist()}."
                )
            tables = None
        else:
            if len(log_potential) != num_bags:
                raise ProbkitError(
                    f"log_potential must hold one table per bag ({num_bags}), got "
                    f"{len(log_potential)}."
                )
            tables = [np.asarray(t, dtype=np.float64) for t in log_potential]
            for b, table in enumerate(tables):
                if table.shape != (sizes[b] + 1,):
                    raise ProbkitError(
                        f"log_potential[{b}] must have shape ({sizes[b] + 1},) (counts 0..size "
                        f"of bag {b}), got {table.shape}."
                    )
                if np.any(np.isnan(table) | (table == np.inf)) or not np.any(np.isfinite(table)):
                    raise ProbkitError(
                        f"log_potential[{b}] must be finite or -inf, with at least one finite "
                        "entry."
                    )
            strength = np.full(num_bags, np.nan)

        order = np.argsort(bag_of, kind="stable")
        order = order[bag_of[order] >= 0]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        blocks = []
        for width in np.unique(width_of):
            bags = np.flatnonzero(width_of == width)
            slot = np.arange(width)
            mask = slot[None, :] < sizes[bags, None]
            index = np.where(mask, starts[bags, None] + slot[None, :], 0)
            members = np.where(mask, order[np.minimum(index, max(len(order) - 1, 0))], 0)
            s = np.arange(width + 1, dtype=np.float64)
            if tables is None:
                lam, k = strength[bags, None], counts[bags, None]
                with np.errstate(invalid="ignore"):
                    table = np.where(
                        np.isinf(lam), np.where(s == k, 0.0, -np.inf), -lam * (s - k) ** 2
                    )
            else:
                table = np.full((len(bags), width + 1), -np.inf)
                for row, b in enumerate(bags):
                    table[row, : sizes[b] + 1] = tables[b]
            table = np.where(s[None, :] <= sizes[bags, None], table, -np.inf)
            blocks.append(
                CountBlock(
                    members=jnp.asarray(members, dtype=jnp.int32),
                    mask=jnp.asarray(mask),
                    log_potential=jnp.asarray(table, dtype=dtype),
                    counts=jnp.asarray(counts[bags], dtype=dtype),
                    strength=jnp.asarray(strength[bags], dtype=dtype),
                    bag_index=jnp.asarray(bags, dtype=jnp.int32),
                )
            )
        return cls(blocks=tuple(blocks), num_bags=int(num_bags))


class _DirectedEdges(NamedTuple):
    """Both directions of every undirected edge: message ``d`` goes ``source[d] → target[d]``."""

    source: jax.Array
    target: jax.Array
    reverse: jax.Array
    coupling: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BinaryMRF:
    """A binary pairwise Markov random field with disjoint count factors (see the module doc).

    Build it with :func:`binary_mrf`, which validates the input.

    Attributes
    ----------
    unary : Array, shape (n,)
        ``h_i``, the log-odds of ``y_i = 1`` from the variable's own factor.
    edges : Array, shape (E, 2), int32
        Undirected pairwise edges (no self-loops, no duplicates).
    coupling : Array, shape (E,)
        ``J_ij`` of each edge: ``log ψ(y_i, y_j) = J_ij y_i y_j``.
    directed : _DirectedEdges
        The message layout (both directions of every edge).
    count_factors : CountFactors or None
        The bags.
    """

    unary: jax.Array
    edges: jax.Array
    coupling: jax.Array
    directed: _DirectedEdges
    count_factors: CountFactors | None

    @property
    def num_variables(self) -> int:
        """The number of binary variables ``n``."""
        return int(self.unary.shape[0])


def binary_mrf(
    unary: Any,
    edges: Any = None,
    coupling: Any = None,
    count_factors: CountFactors | None = None,
) -> BinaryMRF:
    """Validate and lay out a binary MRF in log-odds form.

    Parameters
    ----------
    unary : array_like, shape (n,)
        Unary log-odds ``h_i`` (finite).
    edges : array_like of int, shape (E, 2), optional
        Undirected pairs ``(i, j)``, ``i ≠ j``, each pair at most once.
    coupling : array_like, shape (E,), optional
        Finite ``J_ij`` per edge (positive couplings favour equal labels on ``{0, 1}``).
    count_factors : CountFactors, optional
        Disjoint bags (:meth:`CountFactors.from_bags`).

    Returns
    -------
    BinaryMRF

    Raises
    ------
    ProbkitError
        On non-finite fields or couplings, out-of-range or duplicate edges, self-loops, or bags
        that refer to variables beyond ``n``.
    """
    unary_np = np.asarray(unary)
    if unary_np.ndim != 1 or unary_np.size == 0:
        raise ProbkitError(f"unary must be a non-empty 1-D array, got shape {unary_np.shape}.")
    if not np.all(np.isfinite(unary_np)):
        raise ProbkitError(
            f"unary holds non-finite values at {np.flatnonzero(~np.isfinite(unary_np))[:5]}; "
            "a deterministic variable is a count factor or a large finite field."
        )
    n = unary_np.shape[0]
    dtype = jnp.asarray(unary).dtype
    edges_np = np.zeros((0, 2), np.int64) if edges is None else np.asarray(edges)
    if edges_np.size == 0:
        edges_np = np.zeros((0, 2), np.int64)
    coupling_np = np.zeros(0) if coupling is None else np.asarray(coupling, dtype=np.float64)
    if (
        edges_np.ndim != 2
        or edges_np.shape[1] != 2
        or not np.issubdtype(edges_np.dtype, np.integer)
    ):
        raise ProbkitError(f"edges must be an integer array of shape (E, 2), got {edges_np.shape}.")
    if coupling_np.shape != (edges_np.shape[0],):
        raise ProbkitError(
            f"coupling must have one entry per edge, shape ({edges_np.shape[0]},), got "
            f"{coupling_np.shape}."
        )
    if not np.all(np.isfinite(coupling_np)):
        raise ProbkitError("coupling must be finite (an infinite coupling is a hard constraint).")
    if edges_np.size:
        if edges_np.min() < 0 or edges_np.max() >= n:
            raise ProbkitError(f"edges refer to variables outside 0..{n - 1}.")
        if np.any(edges_np[:, 0] == edges_np[:, 1]):
            raise ProbkitError("edges hold self-loops (i, i); a self-coupling is a unary field.")
        key = np.sort(edges_np, axis=1)
        if len(np.unique(key, axis=0)) != len(key):
            raise ProbkitError(
                "edges hold the same pair twice; merge duplicates by adding their couplings."
            )
    if count_factors is not None:
        member_count = np.zeros(n, np.int64)
        for block in count_factors.blocks:
            members = np.asarray(block.members)[np.asarray(block.mask)]
            if members.size and members.max() >= n:
                raise ProbkitError(f"count_factors refer to variables beyond n = {n}.")
            np.add.at(member_count, members, 1)
        if np.any(member_count > 1):
            raise ProbkitError("count_factors must be disjoint: a variable is in two bags.")
    return BinaryMRF(
        unary=jnp.asarray(unary),
        edges=jnp.asarray(edges_np, dtype=jnp.int32),
        coupling=jnp.asarray(coupling_np, dtype=dtype),
        directed=_directed_edges(edges_np, coupling_np, dtype),
        count_factors=count_factors,
    )


def _directed_edges(edges: np.ndarray, coupling: np.ndarray, dtype) -> _DirectedEdges:
    """The message layout: directed edge ``e`` carries ``i → j`` and ``e + E`` carries ``j → i``."""
    num_edges = edges.shape[0]
    return _DirectedEdges(
        source=jnp.asarray(np.concatenate([edges[:, 0], edges[:, 1]]), dtype=jnp.int32),
        target=jnp.asarray(np.concatenate([edges[:, 1], edges[:, 0]]), dtype=jnp.int32),
        reverse=jnp.asarray(
            np.concatenate([np.arange(num_edges) + num_edges, np.arange(num_edges)]), jnp.int32
        ),
        coupling=jnp.asarray(np.concatenate([coupling, coupling]), dtype=dtype),
    )


def clique_expansion(mrf: BinaryMRF) -> BinaryMRF:
    """Replace each quadratic count factor by unary fields and a clique of pairwise factors.

    ``−λ (Σ y_i − k)² = Σ_i λ (2k − 1) y_i − 2λ Σ_{i<j} y_i y_j − λ k²`` on ``{0, 1}``: the
    model of Havaldar et al. (ICLR 2024) as their release builds it, kept for faithfulness.
    The two fields define the same distribution; loopy BP on the clique is a different (and, at
    strong ``λ``, much worse) approximation than BP with the exact count factor.

    Parameters
    ----------
    mrf : BinaryMRF
        A field whose count factors are all quadratic with finite strength.

    Returns
    -------
    BinaryMRF
        The same distribution with no count factors (``m (m − 1) / 2`` edges per bag of size
        ``m``; pairs already joined by an edge get their couplings added).
    """
    factors = mrf.count_factors
    if factors is None:
        return mrf
    unary = np.array(mrf.unary, dtype=np.float64)
    pairs: dict[tuple[int, int], float] = {}
    for (i, j), c in zip(np.asarray(mrf.edges), np.asarray(mrf.coupling), strict=True):
        pairs[(min(i, j), max(i, j))] = float(c)
    new_edges: list[np.ndarray] = []
    new_coupling: list[np.ndarray] = []
    for block in factors.blocks:
        strength = np.asarray(block.strength, dtype=np.float64)
        if np.any(~np.isfinite(strength)):
            raise ProbkitError(
                "clique_expansion needs quadratic count factors of finite strength; a hard "
                "constraint (strength inf) or a free table has no pairwise expansion."
            )
        counts = np.asarray(block.counts, dtype=np.float64)
        for members, mask, lam, k in zip(
            np.asarray(block.members), np.asarray(block.mask), strength, counts, strict=True
        ):
            bag = np.sort(members[mask])
            unary[bag] += lam * (2.0 * k - 1.0)
            i, j = np.triu_indices(len(bag), 1)
            new_edges.append(np.stack([bag[i], bag[j]], axis=1))
            new_coupling.append(np.full(len(i), -2.0 * lam))
    if pairs:
        existing = np.array(list(pairs.keys()))
        existing_coupling = np.array(list(pairs.values()))
        new_edges.insert(0, existing)
        new_coupling.insert(0, existing_coupling)
    edges = np.concatenate(new_edges)
    coupling = np.concatenate(new_coupling)
    # Sum couplings of pairs that appear twice (a kNN edge inside a bag).
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    summed = np.zeros(len(unique))
    np.add.at(summed, inverse.ravel(), coupling)
    return binary_mrf(jnp.asarray(unary, dtype=mrf.unary.dtype), unique, summed)
