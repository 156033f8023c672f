"""PPP clustering: repeatable divisive k-means validated by Gaussian mixtures, with no preset k.

:class:`PPP` is the estimator (scikit-learn conventions); :func:`centroid_index` and
:func:`adjusted_rand_index` measure a partition against a reference; :func:`dip_test` is
Hartigan's unimodality test that PPP's default split rule rests on; :func:`load_clustbench`
reads data sets in the clustering-benchmarks layout (such as Fränti's SIPU sets).
"""

from probkit.cluster._dip import dip_pvalue, dip_statistic, dip_test
from probkit.cluster.data import BenchmarkSet, load_clustbench
from probkit.cluster.metrics import adjusted_rand_index, centroid_index, centroids_of
from probkit.cluster.ppp import PPP, SplitDecision

__all__ = [
    "PPP",
    "BenchmarkSet",
    "SplitDecision",
    "adjusted_rand_index",
    "centroid_index",
    "centroids_of",
    "dip_pvalue",
    "dip_statistic",
    "dip_test",
    "load_clustbench",
]
