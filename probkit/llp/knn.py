"""k-nearest-neighbour graphs: exact by blocked matrix products in JAX, or approximate by FAISS.

The exact backend computes distances from one block of query rows to all rows as a GEMM and
keeps the ``k`` smallest with ``lax.top_k``; the block size keeps the distance block near 32 M
entries, so memory stays flat in ``n`` and time is ``O(n² d)``. Above ``1e5`` rows that is
hours on a CPU, and ``"auto"`` switches to an HNSW index from FAISS (``faiss-cpu``, a well-kept
library that does exactly this; install the ``llp`` extra), whose recall is reported by the
benchmark rather than assumed.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_positive_int

__all__ = ["KNNGraph", "knn_graph", "truncate_knn_graph"]

APPROXIMATE_ABOVE = 100_000
"""``backend="auto"`` uses the exact GEMM backend below this many rows, FAISS above."""

HNSW_LINKS = 12
HNSW_BUILD_BREADTH = 24
HNSW_SEARCH_BREADTH = 24
"""FAISS HNSW settings (links per node ``M``, ``efConstruction``, ``efSearch``). Building the
index is most of the cost: with ``M = 32, efConstruction = 80`` the 5-NN graph of 1e6 × 16
Gaussian rows took 336 s on 2 CPU cores (recall near 1); these cheaper settings trade recall
for time: 48 s at 1e6 rows with recall 0.75 and a mean neighbour distance 1.9 % above the
exact one's (``benchmarks/results/llp_scale.md``), and BP's marginals on that graph are as good
(AUC 0.820 against 0.822). LLP-BP's graph is a similarity prior, and a neighbour missed is
replaced by one almost as near."""

_BLOCK_ENTRIES = 1 << 25


class KNNGraph(NamedTuple):
    """An undirected kNN graph: each edge once (``i < j``) with its distance.

    Attributes
    ----------
    edges : numpy.ndarray of int, shape (E, 2)
    distances : numpy.ndarray of float, shape (E,)
        In the metric of the search (Euclidean, or cosine distance ``1 − cos``).
    neighbours : numpy.ndarray of int, shape (n, k)
        The directed neighbour lists the graph was made from.
    """

    edges: np.ndarray
    distances: np.ndarray
    neighbours: np.ndarray


@functools.partial(jax.jit, static_argnames=("block", "k", "metric"))
def _block_neighbours(padded, offset, points, norms, block: int, k: int, metric: str):
    queries = jax.lax.dynamic_slice_in_dim(padded, offset, block)
    products = queries @ points.T
    if metric == "cosine":
        distances = 1.0 - products  # rows are unit vectors
    else:
        query_norms = jnp.sum(queries**2, axis=1, keepdims=True)
        distances = jnp.maximum(query_norms + norms[None, :] - 2.0 * products, 0.0)
    rows = offset + jnp.arange(queries.shape[0])
    distances = distances.at[jnp.arange(queries.shape[0]), rows].set(jnp.inf)  # not oneself
    negative, index = jax.lax.top_k(-distances, k)
    found = -negative
    return index, jnp.sqrt(found) if metric == "euclidean" else found


def _exact_neighbours(points: np.ndarray, k: int, metric: str):
    n = points.shape[0]
    # An accelerator takes larger distance blocks: fewer, bigger products keep it busy.
    entries = _BLOCK_ENTRIES if jax.default_backend() == "cpu" else 8 * _BLOCK_ENTRIES
    block = int(max(1, min(n, entries // n)))
    data = jnp.asarray(points, jnp.float32)
    norms = jnp.sum(data**2, axis=1)
    padded = np.zeros((-(-n // block) * block, points.shape[1]), np.float32)
    padded[:n] = points
    queries = jnp.asarray(padded)
    index, distance = [], []
    # The blocks stay on the device until the end: no host round trip per block, so that
    # dispatch runs ahead of the accelerator.
    for start in range(0, n, block):
        i, d = _block_neighbours(queries, start, data, norms, block, k, metric)
        index.append(i)
        distance.append(d)
    return np.asarray(jnp.concatenate(index))[:n], np.asarray(jnp.concatenate(distance))[:n]


def _faiss_neighbours(points: np.ndarray, k: int, metric: str):
    import faiss  # an optional dependency (the llp extra)

    data = np.ascontiguousarray(points, dtype=np.float32)
    index = faiss.IndexHNSWFlat(
        data.shape[1],
        HNSW_LINKS,
        faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2,
    )
    index.hnsw.efConstruction = HNSW_BUILD_BREADTH
    index.hnsw.efSearch = max(HNSW_SEARCH_BREADTH, 2 * k)
    index.add(data)
    found, neighbours = index.search(data, k + 1)
    # Drop each row itself (or, for duplicated rows, the extra column).
    own = neighbours == np.arange(len(data))[:, None]
    keep = ~own
    keep[~own.any(axis=1), -1] = False
    neighbours = neighbours[keep].reshape(len(data), k)
    found = found[keep].reshape(len(data), k)
    distance = 1.0 - found if metric == "cosine" else np.sqrt(np.maximum(found, 0.0))
    return neighbours, distance


def knn_graph(
    points: Any,
    k: int = 5,
    *,
    metric: str = "euclidean",
    backend: str = "auto",
) -> KNNGraph:
    """The symmetrised k-nearest-neighbour graph of the rows of ``points``.

    Parameters
    ----------
    points : array_like, shape (n, d)
        Finite coordinates.
    k : int, default 5
        Neighbours per row (self excluded).
    metric : {"euclidean", "cosine"}
        ``"cosine"`` as in the LLP-BP release (rows are normalised; zero rows are refused).
    backend : {"auto", "exact", "faiss"}
        ``"exact"``: blocked GEMM in JAX. ``"faiss"``: HNSW (approximate; needs ``faiss-cpu``).
        ``"auto"``: exact below 1e5 rows, FAISS above when installed. FAISS builds its index
        with several threads, so its (approximate) neighbours may vary from run to run.

    Returns
    -------
    KNNGraph
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 2:
        raise ProbkitError(f"points must have shape (n, d) with n ≥ 2, got {points.shape}.")
    if not np.all(np.isfinite(points)):
        raise ProbkitError("points hold NaN or inf; clean or impute them first.")
    k = check_positive_int("k", k)
    n = points.shape[0]
    if k >= n:
        raise ProbkitError(f"k must be below the number of rows ({n}), got {k}.")
    metric = check_choice("metric", metric, ("euclidean", "cosine"))
    backend = check_choice("backend", backend, ("auto", "exact", "faiss"))
    if metric == "cosine":
        norms = np.linalg.norm(points, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ProbkitError("the cosine metric needs non-zero rows; use metric='euclidean'.")
        points = points / norms
    has_faiss = importlib.util.find_spec("faiss") is not None
    if backend == "faiss" and not has_faiss:
        raise ProbkitError("backend='faiss' needs faiss-cpu: pip install 'probkit[llp]'.")
    if backend == "auto":
        backend = "faiss" if n > APPROXIMATE_ABOVE and has_faiss else "exact"
        if n > APPROXIMATE_ABOVE and not has_faiss:
            warnings.warn(
                f"exact kNN on {n} rows is O(n²): install faiss-cpu (the llp extra) for an "
                "approximate index.",
                stacklevel=2,
            )
    if backend == "exact":
        neighbours, distance = _exact_neighbours(points, k, metric)
    else:
        neighbours, distance = _faiss_neighbours(points, k, metric)
    edges, first = _symmetrised_edges(neighbours)
    return KNNGraph(
        edges=edges, distances=distance.ravel()[first].astype(np.float64), neighbours=neighbours
    )


def _symmetrised_edges(neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Each undirected edge once (i < j), and the index of its first directed occurrence.
    n, k = neighbours.shape
    rows = np.repeat(np.arange(n), k)
    pairs = np.sort(np.stack([rows, neighbours.ravel()], axis=1), axis=1)
    return np.unique(pairs, axis=0, return_index=True)


def truncate_knn_graph(graph: KNNGraph, k: int) -> KNNGraph:
    """The ``k``-nearest-neighbour graph contained in a graph with more neighbours per row.

    Both backends list each row's neighbours nearest first, so the first ``k`` columns of
    ``graph.neighbours`` are the ``k`` nearest, and every edge of the smaller graph is an edge of
    ``graph``: its distance is looked up rather than recomputed. This gives the graphs of several
    ``k`` from one search (up to the order of exact ties, which the search breaks arbitrarily).

    Parameters
    ----------
    graph : KNNGraph
        From :func:`knn_graph` with ``K ≥ k`` neighbours per row.
    k : int
        Neighbours per row to keep.

    Returns
    -------
    KNNGraph
        Equal to ``knn_graph(points, k)`` on the same points, metric and backend.
    """
    k = check_positive_int("k", k)
    if k > graph.neighbours.shape[1]:
        raise ProbkitError(
            f"k must be at most the graph's {graph.neighbours.shape[1]} neighbours per row, "
            f"got {k}; build the graph with knn_graph(points, {k})."
        )
    neighbours = graph.neighbours[:, :k]
    edges, _ = _symmetrised_edges(neighbours)
    # Undirected edges are sorted rows (i < j) in both graphs: match them by the key i·n + j.
    n = graph.neighbours.shape[0]
    position = np.searchsorted(
        graph.edges[:, 0] * n + graph.edges[:, 1], edges[:, 0] * n + edges[:, 1]
    )
    return KNNGraph(edges=edges, distances=graph.distances[position], neighbours=neighbours)
