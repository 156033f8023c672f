"""kNN graphs against brute force."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from probkit import ProbkitError
from probkit.llp import knn_graph, truncate_knn_graph


def _brute(points, k, metric):
    distances = cdist(points, points, "euclidean" if metric == "euclidean" else "cosine")
    np.fill_diagonal(distances, np.inf)
    return np.sort(np.argsort(distances, axis=1)[:, :k], axis=1), distances


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_backend_matches_brute_force(metric):
    points = np.random.default_rng(0).normal(size=(300, 6))
    graph = knn_graph(points, 4, metric=metric, backend="exact")
    expected, distances = _brute(points, 4, metric)
    np.testing.assert_array_equal(np.sort(graph.neighbours, axis=1), expected)
    assert np.all(graph.edges[:, 0] < graph.edges[:, 1])
    assert len(np.unique(graph.edges, axis=0)) == len(graph.edges)
    np.testing.assert_allclose(
        graph.distances, distances[graph.edges[:, 0], graph.edges[:, 1]], rtol=1e-4, atol=1e-5
    )


def test_faiss_backend_finds_nearly_all_neighbours():
    pytest.importorskip("faiss")
    points = np.random.default_rng(1).normal(size=(2000, 8))
    graph = knn_graph(points, 5, backend="faiss")
    expected, _ = _brute(points, 5, "euclidean")
    recall = np.mean(
        [len(np.intersect1d(a, b)) / 5 for a, b in zip(graph.neighbours, expected, strict=True)]
    )
    assert recall > 0.95


@pytest.mark.parametrize(
    ("points", "kwargs", "match"),
    [
        (np.zeros(5), {}, "shape"),
        (np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 2.0]]), {}, "NaN"),
        (np.ones((3, 2)), {"k": 3}, "below the number of rows"),
        (np.vstack([np.zeros(2), np.ones((3, 2))]), {"k": 1, "metric": "cosine"}, "non-zero"),
        (np.ones((3, 2)), {"k": 1, "backend": "annoy"}, "backend"),
    ],
)
def test_bad_points_are_refused(points, kwargs, match):
    with pytest.raises(ProbkitError, match=match):
        knn_graph(points, **kwargs)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_truncating_a_larger_graph_gives_the_smaller_graph(metric):
    points = np.random.default_rng(3).normal(size=(250, 5))
    large = knn_graph(points, 12, metric=metric, backend="exact")
    for k in (1, 4, 12):
        small = truncate_knn_graph(large, k)
        direct = knn_graph(points, k, metric=metric, backend="exact")
        np.testing.assert_array_equal(small.neighbours, direct.neighbours)
        np.testing.assert_array_equal(small.edges, direct.edges)
        np.testing.assert_allclose(small.distances, direct.distances, rtol=1e-6, atol=1e-6)
    with pytest.raises(ProbkitError, match="k must be at most"):
        truncate_knn_graph(large, 13)
    with pytest.raises(ProbkitError, match="k"):
        truncate_knn_graph(large, 0)
