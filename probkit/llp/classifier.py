"""``LLPClassifier``: instance-level binary classification from bag counts, one API.

``"auto"`` (default)
    Chooses the model from the bags, never from instance labels. The linear DLLP
    (:mod:`probkit.llp.linear`: a logistic model fitted by L-BFGS to the bags' counts, its
    ``l2`` by cross-validation over whole bags) is fitted first, on the standardised columns
    or, when the same cross-validation finds them clearly better, on the columns and their
    hinges (``basis``, :mod:`probkit.llp.basis`). When enough bags can be held
    out (twice ``min_validation_bags``), networks trained by EasyLLP and by DLLP
    (:data:`AUTO_NETWORK_METHODS`), early-stopped on half of the held-out bags, are compared
    with it on the other half, which no candidate has seen, and one replaces it only when its
    bag loss there is lower by more than :data:`AUTO_MARGIN_SE` standard errors, paired over
    the bags. With few bags the linear model is kept: a handful of
    held-out bags cannot tell a network's gain from noise (``benchmarks/llp_diagnose.py``), and
    a 128-64 network early-stopped on them lost 0.1 AUC to the linear model on Adult in bags of
    512. The choice and the losses behind it are recorded in ``selection_``. LLP-BP is not a
    candidate: it costs 20 to 30 times a network fit and was behind the linear DLLP in the
    cells of ``benchmarks/llp_bags.py``; ask for it with ``method="bp"``.

The other methods train the network of :mod:`probkit.llp.network` (or, with ``hidden=()``, the
linear model of :mod:`probkit.llp.linear`, fitted to convergence on all rows at once):

``"bp"``
    LLP-BP (Havaldar et al., ICLR 2024) with exact count factors: for each round, a kNN graph
    on the current representation (the embeddings of the starting DLLP network in the first
    round with the default ``unaries="network"``, the standardised features with
    ``unaries="none"``; then the latest network's embeddings), the
    Gibbs field of :mod:`probkit.llp.gibbs`, BP marginals as pseudo-labels (soft by default),
    and a network trained on them; the last round adds the aggregate-embedding bag loss.
``"bp-paper"``
    The same loop configured as the authors' release: cosine 5-NN, ``s_ij = exp(−‖z_i − z_j‖)``
    (bandwidth 1), ``λ_s = λ_b = 10``, the bag term expanded into cliques, 100 BP sweeps with
    damping 0.5 and no convergence test, pseudo-labels thresholded at 0.5, two rounds. It
    differs from the release in two documented ways: early stopping uses held-out *bags*
    (the release uses instance labels), and the last bag of a shuffle is kept.
``"dllp"``
    Bag cross-entropy between each bag's proportion and its members' mean prediction
    (Ardehaly & Culotta 2017).
``"easyllp"``
    Busa-Fekete et al. (NeurIPS 2023): each row gets the debiased label ``m_b (α_b − p) + p``
    (``α_b`` its bag's proportion, ``p`` the overall one), whose expectation given the row's own
    label is that label for random bags, and the instance loss.
``"soft-label"``
    Each row is trained towards its bag's proportion.

Hyper-parameters are chosen with bag-level information only: a fraction of the bags is held out
and early stopping (and ``similarity_strength="auto"``, ``n_neighbors="auto"``) follow their bag
cross-entropy. BP can run on a field sharded over several devices (``devices``).

:class:`LLPClassifier` is a scikit-learn classifier (:class:`~sklearn.base.BaseEstimator` and
:class:`~sklearn.base.ClassifierMixin`) whose ``fit`` takes bags and counts in place of labels:
see its Notes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from scipy import special
from sklearn.base import BaseEstimator, ClassifierMixin

from probkit._errors import ProbkitError
from probkit._progress import Progress
from probkit._sklearn import EstimatorMixin, check_fitted, validate_features
from probkit._validate import check_choice, check_positive_int
from probkit.inference.bp import belief_propagation, shard_mrf
from probkit.llp.bags import Bags, validate_bags
from probkit.llp.basis import HingeBasis, fit_hinge_basis
from probkit.llp.gibbs import llp_field, similarity_weights
from probkit.llp.knn import knn_graph, truncate_knn_graph
from probkit.llp.linear import (
    L2_GRID,
    LinearFit,
    PenaltyChoice,
    bag_loss,
    choose_l2,
    fit_linear,
    linear_logits,
    paired_difference,
)
from probkit.llp.network import init_network, predict_logits, train_network

__all__ = ["AUTO_NEIGHBORS_GRID", "AUTO_SIMILARITY_GRID", "BASES", "METHODS", "LLPClassifier"]

METHODS = ("auto", "bp", "bp-paper", "dllp", "easyllp", "soft-label")
BASES = ("auto", "linear", "hinge")

AUTO_NETWORK_METHODS = ("easyllp", "dllp")
"""The network candidates of ``method="auto"``, compared with the linear DLLP on held-out bags."""

AUTO_MARGIN_SE = 2.0
"""A network replaces the linear model under ``method="auto"`` only when its held-out bag loss
is below the linear model's by more than this many standard errors (paired over the bags)."""

AUTO_SIMILARITY_GRID = (0.0, 0.1, 0.3, 1.0)
"""Values of ``λ_s`` tried by ``similarity_strength="auto"`` (on held-out bags)."""

AUTO_NEIGHBORS_GRID = (5, 15)
"""Values of ``k`` tried by ``n_neighbors="auto"`` (on held-out bags, jointly with ``λ_s``)."""

_PAPER = {
    "n_neighbors": 5,
    "metric": "cosine",
    "bandwidth": 1.0,
    "similarity_strength": 10.0,
    "bag_strength": 10.0,
    "pseudo_labels": "hard",
    "rounds": 2,
    "unaries": "none",
}


class LLPClassifier(ClassifierMixin, EstimatorMixin, BaseEstimator):
    """Learn an instance classifier from bags and their counts of positives.

    Parameters
    ----------
    method : {"auto", "bp", "bp-paper", "dllp", "easyllp", "soft-label"}, default "auto"
        See the module documentation.
    hidden : tuple of int, default (128, 64)
        Hidden layer widths of the network; the last is the embedding. ``()``: the linear
        model (methods ``"dllp"``, ``"easyllp"`` and ``"soft-label"``).
    l2 : float or "auto", default "auto"
        Penalty ``(l2 / 2) ‖w‖²`` of the linear model (on standardised features); ``"auto"``
        chooses it from :data:`~probkit.llp.linear.L2_GRID` by cross-validation over whole
        bags (:func:`~probkit.llp.linear.choose_l2`).
    basis : {"auto", "linear", "hinge"}, default "auto"
        Features of the linear model: the standardised columns (``"linear"``), or those and
        their hinges ``max(0, x − t)`` at four quantiles of every column with enough distinct
        values (``"hinge"``, :mod:`probkit.llp.basis`), so that each effect can bend.
        ``"auto"`` fits both, with the same cross-validation over bags that chooses ``l2``,
        and keeps the hinges only when their cross-validated bag loss is below the straight
        lines' by more than :data:`AUTO_MARGIN_SE` standard errors, paired over every bag.
        Measured in ``benchmarks/llp_bags.py``, the hinges carry the default where networks
        beat the linear model, small bags of Bank Marketing and Adult, and the straight lines
        are kept on small tables (breast cancer, 400 rows), where the hinges can only add noise.
        A table with no column of at least
        :data:`~probkit.llp.basis.MIN_DISTINCT_VALUES` distinct values gets straight lines.
    rounds : int, default 2
        LLP-BP rounds (graph → BP → network → embeddings).
    n_neighbors : int or "auto", default 5
        k of the kNN graph. ``"auto"`` picks ``k`` from :data:`AUTO_NEIGHBORS_GRID` jointly with
        ``λ_s`` in the first round: every pair ``(k, λ_s)`` trains a network and the pair with
        the lowest held-out bag loss is kept for all rounds (the smallest ``k`` when no bags
        are held out). ``λ_s = 0`` takes the graph out of the field, so it is tried with the
        smallest ``k`` only. One kNN search with the largest ``k`` serves every candidate
        (:func:`~probkit.llp.truncate_knn_graph`), but the first round trains
        ``len(AUTO_NEIGHBORS_GRID)`` times as many networks, and BP on the larger graph is
        slower. The default stays 5 (the paper's value): in the ``bp (k auto)`` probe of
        ``benchmarks/llp_bags.py`` (Adult, Bank Marketing and Fair, bags of 32 and 128, two
        seeds) ``"auto"`` moved the test AUC by at most 0.006 either way (mean −0.001) and
        took 1.5 times the seconds on average; the held-out bag losses of the candidates
        differed by 0.0003 to 0.004, so the choice is close to a coin toss.
    metric : {"euclidean", "cosine"}, default "euclidean"
        Metric of the kNN search and of the edge weights.
    bandwidth : float or "median", default "median"
        ``h`` of ``s_ij = exp(−d_ij / h)``; ``"median"`` is the median edge distance.
    similarity_strength : float or "auto", default "auto"
        ``λ_s``; ``"auto"`` picks from :data:`AUTO_SIMILARITY_GRID` by held-out bag loss (its
        middle value when no bags are held out).
    bag_strength : float or "auto", default "auto"
        ``λ_b``; ``"auto"`` is a hard count constraint when counts are integers, 10 otherwise.
    pseudo_labels : {"soft", "hard"}, default "soft"
        Train on BP marginals, or on marginals thresholded at 0.5.
    unaries : {"network", "none"}, default "network"
        ``"network"``: start from a DLLP network and add the current network's logits to the
        field's unary terms in every round, so that BP's marginals are the posterior of the
        labels given the network, the graph and the counts (EM for label proportions with a
        similarity prior). ``"none"``: the paper's field, which sees the network only through
        the embeddings its graph is built on.
    aggregate_weight : float, default 0.1
        ``λ_agg`` of the aggregate-embedding loss in the last round of LLP-BP (0 turns it off).
    count_method : {"auto", "exact", "tree", "gaussian"}, default "auto"
        Count-factor messages (:func:`probkit.inference.bp.belief_propagation`).
    bp_iterations : int, default 100
        Maximum BP sweeps per round.
    damping : float, default 0.5
        BP damping.
    knn_backend : {"auto", "exact", "faiss"}, default "auto"
        :func:`probkit.llp.knn_graph` backend.
    validation_fraction : float, default 0.1
        Share of bags held out for early stopping and model selection.
    min_validation_bags : int, default 20
        Hold bags out only when ``validation_fraction`` gives at least this many; otherwise
        every bag trains for ``epochs`` epochs, with no early stopping, the middle of the
        ``λ_s`` grid and the smallest ``k``. A handful of held-out bags cannot rank epochs or
        settings: the range of their loss from a constant prediction to the network trained
        on instance labels is within its own noise (``benchmarks/llp_diagnose.py``), and in
        ``benchmarks/llp_bags.py``'s setting (five seeds, test AUC) dropping the 6–7 held-out
        bags of bags of 512 raised EasyLLP from 0.709 to 0.726 on Adult and from 0.589 to
        0.695 on Bank Marketing, and DLLP from 0.592 to 0.723 and from 0.416 to 0.607, while
        the 26 held-out bags of bags of 128 on Adult were worth 0.037 to EasyLLP.
    epochs, learning_rate, weight_decay, batch_rows, patience
        Network training (:func:`probkit.llp.network.train_network`).
    devices : int or sequence of jax.Device, optional
        Run BP on its field sharded over these devices (an int ``m``: the first ``m`` of
        ``jax.devices()``), padded and laid out by :func:`~probkit.inference.bp.pad_mrf` and
        :func:`~probkit.inference.bp.shard_mrf`: the edges and bags are split over the
        devices, so that fields too large for one device's memory fit. The marginals are
        those of one device up to rounding. The kNN search and the network stay on the
        default device; the other methods ignore ``devices``. None (default): one device.
    verbose : int, default 0
        1: one line per stage on standard error (the cross-validation of each basis, the
        linear model's penalty and basis, each network candidate, each LLP-BP round's graph,
        BP and training, and the choice), each with the seconds since the fit began; 2: also
        one line per penalty of the cross-validation and per training epoch. Progress for
        large data.
    random_state : int, default 0
        Seeds the held-out bags, the initial weights and the batch order.

    Attributes
    ----------
    classes_ : numpy.ndarray
        ``[0, 1]``.
    method_ : str
        The method that trained the model (``method``, or the one ``"auto"`` chose).
    model_ : {"linear", "network"}
        Which model predicts.
    coef_, intercept_ : numpy.ndarray, float
        The linear model's weights and its intercept (linear model only): the weights of the
        standardised features, followed, when ``basis_`` is ``"hinge"``, by those of the
        hinges of ``hinge_basis_``.
    l2_ : float
        The linear model's penalty (linear model only).
    basis_ : {"linear", "hinge"}
        The linear model's features (linear model only).
    hinge_basis_ : HingeBasis or None
        The hinges, when ``basis_`` is ``"hinge"``.
    basis_choice_ : dict or None
        Under ``basis="auto"``: ``chosen``, ``reason``, the cross-validated bag loss of each
        basis (``cv_loss``), and the hinges' difference from the straight lines with its
        standard error (None when there was nothing to choose: no column has hinges).
    params_ : NetworkParams
        The trained network (network only).
    selection_ : dict
        Under ``method="auto"``: ``chosen``, ``reason``, and ``candidates``, one dict per model
        tried with its size-weighted held-out bag loss, its difference from the linear
        model's and that difference's standard error, and its seconds; ``l2`` with the
        cross-validated losses behind it (``l2_grid``, ``l2_cv_loss``); and
        ``constant_cv_loss``, the loss of a model that learned nothing.
    rounds_ : list of dict
        Per LLP-BP round: ``similarity_strength``, ``n_neighbors``, BP ``iterations``,
        ``residual``, ``converged``, ``bag_count_mae`` (mean ``|Σ_{i∈b} μ_i − k_b|``),
        ``validation_loss`` (the best held-out bag loss of the round's training), and the
        marginals. The first round also holds ``candidates``: one dict per ``(n_neighbors,
        similarity_strength)`` tried, with its ``validation_loss``; the chosen pair is the
        first with the smallest loss.
    bp_rows_ : numpy.ndarray of int
        The rows of the training bags (not held out): ``rounds_[r]["marginals"][j]`` belongs
        to row ``bp_rows_[j]``. Set by the BP methods only.
    timings_ : dict
        Seconds spent in ``knn``, ``bp`` and ``train`` (summed over rounds).
    n_validation_bags_ : int
        Bags held out (0 when fewer than ``min_validation_bags`` would be).
    n_features_in_ : int
        The number of features.
    feature_names_in_ : numpy.ndarray of str
        The column names, when ``X`` was a data frame with string column names.

    Notes
    -----
    A scikit-learn classifier on the prediction side: ``predict``, ``predict_proba``,
    ``decision_function``, ``classes_`` and ``score(X, y)`` (accuracy against instance labels,
    on labelled test data) behave as scikit-learn's, so its scorers, metrics and displays take a
    fitted model, and :func:`~sklearn.base.clone`, ``get_params`` and ``set_params`` work. Its
    ``fit`` takes bags and their counts instead of instance labels ``y``, which learning from
    label proportions does not have; scikit-learn's tools that fit with ``(X, y)`` on subsets
    of rows (``cross_val_score``, ``GridSearchCV``) cannot hand it bags and counts, so select
    settings over whole bags with :func:`~probkit.llp.bag_train_test_split` or
    :class:`~probkit.llp.BagKFold`.
    ``tests/llp/test_classifier_sklearn.py`` lists the scikit-learn checks that cannot pass, with
    their reasons.
    """

    def __init__(
        self,
        method: str = "auto",
        *,
        hidden: tuple[int, ...] = (128, 64),
        l2: float | str = "auto",
        basis: str = "auto",
        rounds: int = 2,
        n_neighbors: int | str = 5,
        metric: str = "euclidean",
        bandwidth: float | str = "median",
        similarity_strength: float | str = "auto",
        bag_strength: float | str = "auto",
        pseudo_labels: str = "soft",
        unaries: str = "network",
        aggregate_weight: float = 0.1,
        count_method: str = "auto",
        bp_iterations: int = 100,
        damping: float = 0.5,
        knn_backend: str = "auto",
        validation_fraction: float = 0.1,
        min_validation_bags: int = 20,
        epochs: int = 50,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_rows: int = 1024,
        patience: int = 5,
        devices: int | Sequence[Any] | None = None,
        verbose: int = 0,
        random_state: int = 0,
    ):
        self.method = method
        self.hidden = hidden
        self.l2 = l2
        self.basis = basis
        self.rounds = rounds
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.bandwidth = bandwidth
        self.similarity_strength = similarity_strength
        self.bag_strength = bag_strength
        self.pseudo_labels = pseudo_labels
        self.unaries = unaries
        self.aggregate_weight = aggregate_weight
        self.count_method = count_method
        self.bp_iterations = bp_iterations
        self.damping = damping
        self.knn_backend = knn_backend
        self.validation_fraction = validation_fraction
        self.min_validation_bags = min_validation_bags
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_rows = batch_rows
        self.patience = patience
        self.devices = devices
        self.verbose = verbose
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Binary: the counts are of positives, and classes_ is [0, 1].
        tags.classifier_tags.multi_class = False
        return tags

    # -- settings ---------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        method = check_choice("method", self.method, METHODS)
        settings = {
            "n_neighbors": self.n_neighbors,
            "metric": self.metric,
            "bandwidth": self.bandwidth,
            "similarity_strength": self.similarity_strength,
            "bag_strength": self.bag_strength,
            "pseudo_labels": self.pseudo_labels,
            "rounds": self.rounds,
            "unaries": self.unaries,
        }
        if method == "bp-paper":
            settings |= _PAPER
        check_positive_int("rounds", settings["rounds"])
        if isinstance(settings["n_neighbors"], str):
            if settings["n_neighbors"] != "auto":
                raise ProbkitError(
                    "n_neighbors must be a positive int or 'auto', got "
                    f"{settings['n_neighbors']!r}."
                )
        else:
            check_positive_int("n_neighbors", settings["n_neighbors"])
        check_positive_int("epochs", self.epochs)
        check_positive_int("bp_iterations", self.bp_iterations)
        check_choice("pseudo_labels", settings["pseudo_labels"], ("soft", "hard"))
        check_choice("unaries", settings["unaries"], ("network", "none"))
        strength = settings["similarity_strength"]
        if strength != "auto" and not (np.isscalar(strength) and float(strength) >= 0):
            raise ProbkitError(f"similarity_strength must be ≥ 0 or 'auto', got {strength!r}.")
        if not 0.0 <= float(self.validation_fraction) < 0.5:
            raise ProbkitError(
                f"validation_fraction must be in [0, 0.5), got {self.validation_fraction}."
            )
        check_positive_int("min_validation_bags", self.min_validation_bags)
        if not (isinstance(self.verbose, int | np.integer) and self.verbose >= 0):
            raise ProbkitError(f"verbose must be an int >= 0, got {self.verbose!r}.")
        hidden = tuple(self.hidden) if isinstance(self.hidden, tuple | list) else None
        if hidden is None or not all(isinstance(h, int | np.integer) and h > 0 for h in hidden):
            raise ProbkitError(
                f"hidden must be a tuple of positive ints (() for the linear model), got "
                f"{self.hidden!r}."
            )
        if not hidden and method in ("bp", "bp-paper", "auto"):
            raise ProbkitError(
                f"method={method!r} needs a network: hidden=() (the linear model) goes with "
                "'dllp', 'easyllp' or 'soft-label'; give hidden layers, e.g. (128, 64)."
            )
        if not (
            self.l2 == "auto"
            or (_is_number(self.l2) and np.isfinite(self.l2) and float(self.l2) >= 0)
        ):
            raise ProbkitError(f"l2 must be a finite number >= 0 or 'auto', got {self.l2!r}.")
        check_choice("basis", self.basis, BASES)
        if not (
            isinstance(self.random_state, int | np.integer)
            and not isinstance(self.random_state, bool)
            and self.random_state >= 0
        ):
            raise ProbkitError(
                f"random_state must be an int >= 0 (it seeds the held-out bags, the folds and "
                f"the networks), got {self.random_state!r}."
            )
        settings["method"] = method
        settings["devices"] = _check_devices(self.devices)
        return settings

    # -- fitting ----------------------------------------------------------------------------

    def fit(self, X: Any, bags: Any, counts: Any = None, *, proportions: Any = None):
        """Fit from features, a bag id per row, and each bag's count (or proportion) of positives.

        Parameters
        ----------
        X : array_like or data frame, shape (n, d)
            Finite features.
        bags : array_like, shape (n,)
            Bag id of each row (ragged bag sizes are fine).
        counts : array_like or dict, optional
            Positives per bag, indexed like ``numpy.unique(bags)`` (or a dict id → count).
        proportions : array_like or dict, optional
            Instead of ``counts``: the fraction of positives per bag.

        Returns
        -------
        LLPClassifier
            ``self``.
        """
        settings = self._settings()
        self._progress = Progress("LLPClassifier", self.verbose)
        X = validate_features(self, X, reset=True, dtype=np.float64, finite=False)
        bad = ~np.all(np.isfinite(X), axis=1)
        if bad.any():
            named = ""
            if np.shape(bags) == (X.shape[0],):
                named = f" (bags {np.unique(np.asarray(bags)[bad])[:5].tolist()})"
            raise ProbkitError(
                f"X holds NaN or inf in rows {np.flatnonzero(bad)[:5].tolist()}{named}; impute "
                "or drop them first."
            )
        if X.shape[0] < 2:
            raise ProbkitError(
                f"X has {X.shape[0]} sample(s) (rows); LLPClassifier needs at least 2."
            )
        all_bags = validate_bags(bags, X.shape[0], counts=counts, proportions=proportions)
        self._progress.say(
            f"{X.shape[0]} rows × {X.shape[1]} features in {all_bags.num_bags} bags, "
            f"method {settings['method']!r}"
        )
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        standardised = (X - self.mean_) / self.scale_
        features = standardised.astype(np.float32)
        self.classes_ = np.array([0, 1])
        for stale in (
            "coef_",
            "intercept_",
            "l2_",
            "penalty_choice_",
            "basis_",
            "hinge_basis_",
            "basis_choice_",
            "params_",
            "selection_",
            "bp_rows_",
        ):
            self.__dict__.pop(stale, None)  # attributes of the other model from an earlier fit
        self.timings_ = {"knn": 0.0, "bp": 0.0, "train": 0.0}
        self.rounds_ = []
        self.method_ = settings["method"]
        if not self.hidden:
            # The linear model is fitted on every bag to convergence; its l2 is chosen by
            # cross-validation over all bags, so none is held out.
            self.n_validation_bags_ = 0
            self._set_linear(self._fit_linear(standardised, all_bags, settings["method"]))
            self._warn_if_nothing_learned(standardised, all_bags)
            return self

        rng = np.random.default_rng(self.random_state)
        held_out = np.zeros(all_bags.num_bags, bool)
        judging = np.zeros(all_bags.num_bags, bool)
        count = round(self.validation_fraction * all_bags.num_bags)
        if count >= self.min_validation_bags:
            permutation = rng.permutation(all_bags.num_bags)
            held_out[permutation[:count]] = True
            if settings["method"] == "auto" and count >= 2 * self.min_validation_bags:
                # Half of the held-out bags judge the candidates and the other half stops the
                # networks' training: judged on the bags that chose its best epoch, a network
                # looks better than it is (in benchmarks/llp_bags.py, Bank Marketing in bags
                # of 32, a network 2.2 standard errors ahead on them lost 0.025 AUC).
                judging[permutation[1:count:2]] = True
        self.n_validation_bags_ = int(held_out.sum())
        rows, train_bags = all_bags.subset(np.flatnonzero(~held_out))
        validation = None
        stopping = held_out & ~judging
        if stopping.any():
            val_rows, val_bags = all_bags.subset(np.flatnonzero(stopping))
            members, mask = val_bags.padded()
            validation = (val_rows[members], mask, val_bags.proportions)
        key = jax.random.key(self.random_state)
        self.model_ = "network"
        if settings["method"] == "auto":
            self._fit_auto(
                key,
                standardised,
                features,
                all_bags,
                held_out,
                judging,
                rows,
                train_bags,
                validation,
            )
        elif settings["method"] in ("bp", "bp-paper"):
            self.bp_rows_ = rows
            self.params_ = self._fit_bp(key, features, rows, train_bags, validation, settings)
        else:
            self.params_ = self._fit_baseline(
                key, features, rows, train_bags, validation, settings["method"]
            )
        self._warn_if_nothing_learned(standardised, all_bags)
        return self

    def _train(
        self, key, features, rows, bags: Bags, targets, validation, loss, aggregate, start=None
    ):
        members, mask = bags.padded()
        key_init, key_train = jax.random.split(key)
        params = start
        if params is None:
            params = init_network(key_init, features.shape[1], tuple(int(h) for h in self.hidden))
        row_targets = np.zeros(features.shape[0], np.float32)
        row_targets[rows] = targets
        start = time.perf_counter()
        params, report = train_network(
            key_train,
            params,
            features,
            rows[members],
            mask,
            row_targets,
            bags.proportions,
            loss=loss,
            validation=validation,
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_rows=self.batch_rows,
            patience=self.patience,
            aggregate_weight=aggregate,
            on_epoch=self._say_epoch if self.verbose >= 2 else None,
        )
        self.timings_["train"] += time.perf_counter() - start
        self.training_ = report
        self._progress.say(
            f"network ({loss} loss): {report.epochs} epochs, best {report.best_epoch + 1}"
            + (
                f", held-out bag loss {min(report.validation_losses):.5f}"
                if report.validation_losses
                else ""
            )
        )
        return params, report

    def _fit_baseline(self, key, features, rows, bags: Bags, validation, method):
        loss, targets = _loss_and_targets(bags, method)
        return self._train(key, features, rows, bags, targets, validation, loss, 0.0)[0]

    def _fit_linear(self, standardised, bags: Bags, method) -> _LinearModel:
        """The linear model of ``method``, with its penalty choice and its basis."""
        loss, targets = _loss_and_targets(bags, method)
        start = time.perf_counter()
        hinges = fit_hinge_basis(standardised) if self.basis != "linear" else None
        if hinges is not None and hinges.size == 0:
            hinges = None  # no column with enough distinct values to bend
        candidates = {"linear": (standardised, None)}
        if hinges is not None:
            candidates["hinge"] = (hinges.transform(standardised), hinges)
            if self.basis == "hinge":
                del candidates["linear"]
        choices = {}
        if self.l2 == "auto" or len(candidates) > 1:
            # The same folds for every basis (the seed), so their held-out losses pair up.
            grid = L2_GRID if self.l2 == "auto" else (float(self.l2),)
            for name, (features, _) in candidates.items():
                began = time.perf_counter()
                choices[name] = choose_l2(
                    features,
                    bags,
                    loss=loss,
                    targets=targets,
                    grid=grid,
                    seed=self.random_state,
                    on_penalty=self._say_penalty if self.verbose >= 2 else None,
                )
                self._progress.say(
                    f"cross-validated the {name} basis ({features.shape[1]} features, "
                    f"{len(grid)} penalties) in {time.perf_counter() - began:.1f} s"
                )
        record = None
        chosen = next(iter(candidates))
        if len(candidates) > 1:
            chosen, record = _choose_basis(choices, bags)
        features, basis = candidates[chosen]
        choice = choices.get(chosen) if self.l2 == "auto" else None
        l2 = choice.l2 if choice is not None else float(self.l2)
        fit = fit_linear(features, bags, loss=loss, targets=targets, l2=l2)
        self.timings_["train"] += time.perf_counter() - start
        how = "given" if choice is None else "chosen by cross-validation over bags"
        self._progress.say(
            f"linear {method} ({chosen} basis, {features.shape[1]} features): l2 = {l2:g} "
            f"({how}), {fit.iterations} L-BFGS iterations"
            + ("" if record is None else f"; {record['reason']}")
        )
        return _LinearModel(fit, choice, basis, record, features)

    def _say_penalty(self, l2: float, loss: float) -> None:
        self._progress.say(f"  l2 = {l2:g}: cross-validated bag loss {loss:.5f}")

    def _say_epoch(self, epoch: int, training: float, held_out: float | None) -> None:
        line = f"  epoch {epoch}: training loss {training:.5f}"
        self._progress.say(line + ("" if held_out is None else f", held-out {held_out:.5f}"))

    def _set_linear(self, model: _LinearModel) -> None:
        self.model_ = "linear"
        self.coef_ = model.fit.coef
        self.intercept_ = model.fit.intercept
        self.l2_ = model.fit.l2
        self.penalty_choice_ = model.choice
        self.basis_ = "linear" if model.basis is None else "hinge"
        self.hinge_basis_ = model.basis
        self.basis_choice_ = model.record

    def _fit_auto(
        self,
        key,
        standardised,
        features,
        bags: Bags,
        held_out,
        judging,
        rows,
        train_bags,
        validation,
    ):
        """``method="auto"``: the linear DLLP, replaced by a network only on clear evidence."""
        start = time.perf_counter()
        model = self._fit_linear(standardised, bags, "dllp")
        linear, choice = model.fit, model.choice
        seconds = time.perf_counter() - start
        selection = {
            "chosen": "linear dllp",
            "candidates": [],
            "l2": linear.l2,
            "basis": "linear" if model.basis is None else "hinge",
            "basis_choice": model.record,
        }
        if choice is not None:
            selection |= {
                "l2_grid": choice.grid,
                "l2_cv_loss": choice.cv_loss.tolist(),
                "constant_cv_loss": float(np.average(choice.constant_bag_loss, weights=bags.sizes)),
            }
        if not judging.any():
            selection["reason"] = (
                f"{bags.num_bags} bags: holding out {self.validation_fraction:.0%} of them "
                f"gives fewer than 2 × min_validation_bags = {2 * self.min_validation_bags} "
                "(half to stop a network's training, half to judge it), too few to tell a "
                "network's gain from noise; the linear model is kept"
            )
            selection["candidates"].append(
                {"model": "linear dllp", "held_out_loss": None, "seconds": seconds}
            )
        else:
            # Every candidate is judged on the same held-out bags, which none of them has seen,
            # by the same yardstick, the bag loss of its predicted probabilities, whatever loss
            # it was trained with.
            judged_rows, judged = bags.subset(np.flatnonzero(judging))
            on_train = fit_linear(
                model.features, bags, l2=linear.l2, start=linear, held_out=held_out
            )
            reference = bag_loss(
                special.expit(linear_logits(on_train, model.features[judged_rows])), judged
            )
            base = float(np.average(reference, weights=judged.sizes))
            selection["candidates"].append(
                {"model": "linear dllp", "held_out_loss": base, "seconds": seconds}
            )
            best = None
            for method in AUTO_NETWORK_METHODS:
                key, key_method = jax.random.split(key)
                start = time.perf_counter()
                params = self._fit_baseline(
                    key_method, features, rows, train_bags, validation, method
                )
                logits = predict_logits(params, features[judged_rows])[0]
                loss = bag_loss(special.expit(logits.astype(np.float64)), judged)
                difference, se = paired_difference(loss, reference, judged.sizes)
                selection["candidates"].append(
                    {
                        "model": f"network {method}",
                        "held_out_loss": base + difference,
                        "difference": difference,
                        "difference_se": se,
                        "seconds": time.perf_counter() - start,
                    }
                )
                if difference + AUTO_MARGIN_SE * se < 0 and (best is None or difference < best[0]):
                    best = (difference, method, params)
            held = judged.num_bags
            selection["stopping_bags"] = int((held_out & ~judging).sum())
            selection["judging_bags"] = held
            if best is None:
                selection["reason"] = (
                    f"no network's held-out bag loss was below the linear model's by more than "
                    f"{AUTO_MARGIN_SE:g} standard errors over {held} held-out bags that no "
                    "candidate was trained or stopped on"
                )
            else:
                difference, method, params = best
                selection["chosen"] = f"network {method}"
                selection["reason"] = (
                    f"the {method} network's held-out bag loss was below the linear model's by "
                    f"{-difference:.4g} over {held} held-out bags, more than "
                    f"{AUTO_MARGIN_SE:g} standard errors"
                )
                self.method_ = method
                self.params_ = params
        self.selection_ = selection
        self._progress.say(f"chose {selection['chosen']}: {selection['reason']}")
        if selection["chosen"] == "linear dllp":
            self.method_ = "dllp"
            self._set_linear(model)

    def _warn_if_nothing_learned(self, standardised, bags: Bags) -> None:
        # A held-out bag loss cannot say that nothing was learned: random bags have nearly
        # equal proportions, and a model that ranks rows well predicts their counts hardly
        # better than a constant (breast cancer in 13 bags of 32: test AUC 0.98, held-out bag
        # loss within 3e-4 of the constant's). Warn in the cases that are certain.
        if np.ptp(bags.proportions) == 0:
            warnings.warn(
                f"LLPClassifier: every bag has the same proportion of positives "
                f"({bags.proportions[0]:.3g}), which says nothing about which rows are "
                "positive; the model's ranking of rows is arbitrary. Bags whose proportions "
                "differ are needed.",
                stacklevel=3,
            )
        elif np.ptp(self._logits(standardised)) < 1e-6:
            warnings.warn(
                "LLPClassifier: the fitted model gives every training row the same score: it "
                "learned nothing from these bags (predictions at chance).",
                stacklevel=3,
            )

    def _logits(self, standardised: np.ndarray) -> np.ndarray:
        """The logit of rows already standardised as in training."""
        if self.model_ == "linear":
            return _with_basis(standardised, self.hinge_basis_) @ self.coef_ + self.intercept_
        return predict_logits(self.params_, standardised.astype(np.float32))[0]

    def _graphs(self, representation, settings, neighbour_grid):
        """The kNN graph and its edge weights for each ``k`` of ``neighbour_grid``."""
        start = time.perf_counter()
        # One search with the largest k; the smaller graphs are its truncations, so a grid
        # over k costs one search, not one per value.
        largest = knn_graph(
            representation,
            max(neighbour_grid),
            metric=settings["metric"],
            backend=self.knn_backend,
        )
        graphs = {}
        for k in neighbour_grid:
            graph = largest if k == max(neighbour_grid) else truncate_knn_graph(largest, k)
            if settings["method"] == "bp-paper":  # cosine neighbours, Euclidean weights
                distances = np.linalg.norm(
                    representation[graph.edges[:, 0]] - representation[graph.edges[:, 1]],
                    axis=1,
                )
            else:
                distances = graph.distances
            graphs[k] = (graph, similarity_weights(distances, settings["bandwidth"]))
        self.timings_["knn"] += time.perf_counter() - start
        self._progress.say(
            f"kNN graph: {len(representation)} rows, k = {max(neighbour_grid)} "
            f"({time.perf_counter() - start:.1f} s)"
        )
        return graphs

    def _pseudo_labels(self, graph, weights, bags: Bags, settings, strength, prior=None):
        bag_strength = settings["bag_strength"]
        if bag_strength == "auto":
            bag_strength = np.inf if bags.integer_counts else 10.0
        start = time.perf_counter()
        field = llp_field(
            graph,
            weights,
            bags,
            similarity_strength=float(strength),
            bag_strength=float(bag_strength),
            clique=settings["method"] == "bp-paper",
            prior_log_odds=prior,
        )
        if settings["devices"] is not None:
            # Neutral padding and the mesh layout: the same marginals up to rounding.
            field = shard_mrf(field, settings["devices"])
        result = belief_propagation(
            field,
            method=self.count_method,
            damping=self.damping,
            max_iterations=self.bp_iterations,
            tolerance=0.0 if settings["method"] == "bp-paper" else None,
        )
        marginals = np.asarray(result.marginals, dtype=np.float64)
        self.timings_["bp"] += time.perf_counter() - start
        if not np.all(np.isfinite(marginals)):
            raise ProbkitError(
                "belief propagation returned non-finite marginals; lower similarity_strength or "
                "use count_method='exact'."
            )
        info = {
            "similarity_strength": float(strength),
            "iterations": int(result.iterations),
            "residual": float(result.residual),
            "converged": bool(result.converged),
            "bag_count_mae": float(
                np.mean(np.abs(np.bincount(bags.bag_of, marginals) - bags.counts))
            ),
            "marginals": marginals,
        }
        self._progress.say(
            f"belief propagation (λ_s = {float(strength):g}): {info['iterations']} sweeps, "
            f"{'converged' if info['converged'] else 'not converged'}"
        )
        targets = marginals if settings["pseudo_labels"] == "soft" else (marginals >= 0.5) * 1.0
        return targets, info

    def _fit_bp(self, key, features, rows, bags: Bags, validation, settings):
        representation = features[rows]
        strengths = settings["similarity_strength"]
        strengths = AUTO_SIMILARITY_GRID if strengths == "auto" else (strengths,)
        neighbour_grid = settings["n_neighbors"]
        if neighbour_grid == "auto":
            # k must stay below the number of rows (tiny data sets keep the grid's smallest).
            neighbour_grid = tuple(k for k in AUTO_NEIGHBORS_GRID if k < len(rows)) or (
                AUTO_NEIGHBORS_GRID[0],
            )
        else:
            neighbour_grid = (int(neighbour_grid),)
        if validation is None:
            # No bags held out: nothing to select on, take the λ grid's middle value and the
            # smallest k.
            strengths = strengths[len(strengths) // 2 :][:1]
            neighbour_grid = neighbour_grid[:1]
        params, prior = None, None
        if settings["unaries"] == "network":
            # Start from the DLLP network: its logits become the instance evidence of the field.
            key, key_start = jax.random.split(key)
            params = self._train(
                key_start,
                features,
                rows,
                bags,
                bags.proportions[bags.bag_of],
                validation,
                "bag",
                0.0,
            )[0]
            prior, representation = predict_logits(params, features[rows])
        for round_index in range(settings["rounds"]):
            last = round_index == settings["rounds"] - 1
            loss = "aggregate" if last and self.aggregate_weight > 0 else "instance"
            best, candidates = None, []
            graphs = self._graphs(representation, settings, neighbour_grid)
            for k in neighbour_grid:
                graph, weights = graphs[k]
                for strength in strengths:
                    if float(strength) == 0.0 and k != neighbour_grid[0]:
                        # λ_s = 0 takes the graph out of the field: one k is enough.
                        continue
                    targets, info = self._pseudo_labels(
                        graph, weights, bags, settings, strength, prior
                    )
                    key, key_round = jax.random.split(key)
                    # EM continues from the current network; the paper's loop trains a fresh
                    # one.
                    candidate, report = self._train(
                        key_round,
                        features,
                        rows,
                        bags,
                        targets,
                        validation,
                        loss,
                        float(self.aggregate_weight),
                        start=params if settings["unaries"] == "network" else None,
                    )
                    # Held-out *bag* loss only: instance labels never reach the selection.
                    score = min(report.validation_losses) if report.validation_losses else 0.0
                    info["n_neighbors"] = int(k)
                    info["validation_loss"] = float(score)
                    candidates.append(
                        {
                            "n_neighbors": int(k),
                            "similarity_strength": float(strength),
                            "validation_loss": float(score),
                        }
                    )
                    if best is None or score < best[0]:
                        best = (score, candidate, info)
            _, params, info = best
            if round_index == 0:
                info["candidates"] = candidates
            # Selected once, in the first round, and kept for the later rounds.
            strengths = (info["similarity_strength"],)
            neighbour_grid = (info["n_neighbors"],)
            self.rounds_.append(info)
            if not last:
                logits, representation = predict_logits(params, features[rows])
                prior = logits if settings["unaries"] == "network" else None
        return params

    # -- prediction -------------------------------------------------------------------------

    def _features(self, X: Any) -> np.ndarray:
        """``X`` checked against the fit and standardised as in training."""
        check_fitted(self, "model_", "fit(X, bags, counts)")
        X = validate_features(self, X, reset=False, dtype=np.float64)
        return (X - self.mean_) / self.scale_

    def decision_function(self, X: Any) -> np.ndarray:
        """The model's logit for each row."""
        return self._logits(self._features(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, 2): columns ``P(y = 0)``, ``P(y = 1)``."""
        # expit and log-odds of either sign: 1/(1 + exp(-z)) overflows (with a warning) for
        # logits below about -710, which a long fit can reach; P(y = 0) = expit(-z) keeps its
        # relative precision where P(y = 1) is near 1.
        logits = self.decision_function(X).astype(np.float64)
        return np.stack([special.expit(-logits), special.expit(logits)], axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """Labels 0/1 (probability of 1 at least 0.5)."""
        return (self.decision_function(X) >= 0).astype(int)

    def embed(self, X: Any) -> np.ndarray:
        """The embedding (last hidden layer) of each row; the linear model's is its input."""
        features = self._features(X)
        if self.model_ == "linear":
            return _with_basis(features, self.hinge_basis_)
        return predict_logits(self.params_, features)[1]


class _LinearModel(NamedTuple):
    """A fitted linear model with how it was chosen (see ``LLPClassifier._fit_linear``)."""

    fit: LinearFit
    choice: PenaltyChoice | None  # None when ``l2`` was given
    basis: HingeBasis | None  # None for the straight lines
    record: dict | None  # the basis choice; None when there was none to make
    features: np.ndarray  # the rows in the model's features


def _with_basis(standardised: np.ndarray, basis: HingeBasis | None) -> np.ndarray:
    """Standardised rows in a linear model's features: the columns, then any hinges."""
    return standardised if basis is None else basis.transform(standardised)


def _choose_basis(choices: dict, bags: Bags) -> tuple[str, dict]:
    """``"hinge"`` when its cross-validated bag loss beats the straight lines' clearly.

    Both were cross-validated on the same folds, so each bag's held-out loss under one basis
    pairs with its loss under the other; the hinges must be ahead by more than
    :data:`AUTO_MARGIN_SE` standard errors of the paired difference, the margin a network
    needs too. The straight lines are the simpler model and win ties: on small tables the
    hinges' extra columns only add noise (breast cancer, 400 rows: the hinges' bag loss was
    behind in most splits).
    """
    linear, hinge = choices["linear"], choices["hinge"]
    difference, se = paired_difference(
        hinge.held_out_bag_loss, linear.held_out_bag_loss, bags.sizes
    )
    chosen = "hinge" if difference + AUTO_MARGIN_SE * se < 0 else "linear"
    cv_loss = {
        name: float(np.average(c.held_out_bag_loss, weights=bags.sizes))
        for name, c in choices.items()
    }
    if chosen == "hinge":
        reason = (
            f"the hinges' cross-validated bag loss was below the straight lines' by "
            f"{-difference:.4g}, more than {AUTO_MARGIN_SE:g} standard errors ({se:.2g})"
        )
    else:
        reason = (
            f"the hinges' cross-validated bag loss was not below the straight lines' by more "
            f"than {AUTO_MARGIN_SE:g} standard errors (difference {difference:.4g}, "
            f"standard error {se:.2g})"
        )
    record = {
        "chosen": chosen,
        "reason": reason,
        "cv_loss": cv_loss,
        "difference": difference,
        "difference_se": se,
    }
    return chosen, record


def _loss_and_targets(bags: Bags, method: str) -> tuple[str, np.ndarray]:
    """The loss of ``method`` and its per-row targets (read by the instance loss only)."""
    proportion = bags.proportions[bags.bag_of]
    if method == "dllp":
        return "bag", proportion
    if method == "easyllp":
        overall = bags.counts.sum() / bags.sizes.sum()
        return "instance", bags.sizes[bags.bag_of] * (proportion - overall) + overall
    return "instance", proportion


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_devices(devices: Any) -> list | None:
    """``devices`` as a list of jax devices (None stays None), or a ProbkitError."""
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        if not 1 <= int(devices) <= len(available):
            raise ProbkitError(
                f"devices must be between 1 and the {len(available)} devices of this process, "
                f"got {devices}; pass a list of jax.Device or None for one device."
            )
        return list(available[: int(devices)])
    listed = list(devices) if isinstance(devices, list | tuple) else None
    if not listed or not all(isinstance(device, jax.Device) for device in listed):
        raise ProbkitError(
            f"devices must be None, a positive int or a non-empty list of jax.Device, got "
            f"{devices!r}."
        )
    return listed
