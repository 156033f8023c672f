"""Learning from label proportions: instance classifiers trained on bag counts.

:class:`LLPClassifier` fits a binary classifier when only each bag's number of positives is
known: by default a logistic model fitted to the counts (:mod:`probkit.llp.linear`), on the
columns or on the columns and their hinges (:mod:`probkit.llp.basis`), replaced by a network
only when held-out bags show a clear gain; or by LLP-BP (Havaldar et al., ICLR
2024: a Gibbs field over the instance labels solved by belief propagation with exact count
factors, :mod:`probkit.inference.bp`) or the baselines DLLP, EasyLLP and bag-proportion soft
labels, with a network or the linear model. Bags are built and split
with :func:`random_bags`, :func:`feature_bags`, :func:`bag_train_test_split` and
:class:`BagKFold`; :mod:`probkit.llp.datasets` loads offline benchmark data.
"""

from probkit.llp.bags import (
    BagKFold,
    Bags,
    bag_counts,
    bag_train_test_split,
    feature_bags,
    random_bags,
    validate_bags,
)
from probkit.llp.classifier import METHODS, LLPClassifier
from probkit.llp.gibbs import llp_field, similarity_weights
from probkit.llp.knn import KNNGraph, knn_graph, truncate_knn_graph

__all__ = [
    "METHODS",
    "BagKFold",
    "Bags",
    "KNNGraph",
    "LLPClassifier",
    "bag_counts",
    "bag_train_test_split",
    "feature_bags",
    "knn_graph",
    "llp_field",
    "random_bags",
    "similarity_weights",
    "truncate_knn_graph",
    "validate_bags",
]
