"""Probabilistic Partitive Partitioning: divisive k-means validated by Gaussian mixtures.

PPP (Sultan, arXiv:2003.04372) splits the data recursively with 2-means and keeps a split only
when a Gaussian mixture validates it, so that the number of clusters is found rather than
given. This implementation makes the method repeatable and scale-free by construction:

* **Seedless splits.** A cluster is cut by the hyperplane through its mean orthogonal to its
  first principal axis (children at ``μ ± √(2λ/π) v``, the half-means of a Gaussian, as in
  G-means), then refined by 2-means. No random numbers are drawn anywhere: the same data give
  bitwise-identical labels, and row permutations or other device counts change the sums only
  by rounding (the labels were identical in every test).
* **Three-way splits.** 2-means cuts three clusters in a row through the middle one (that is
  its optimum), and neither child, a cluster with part of its neighbour, is then bimodal
  enough to be split again: the middle cluster would be lost. So when a validated cut passes
  over a hill of the density along the 2-means axis (a kernel estimate) rather than through a
  valley, the cluster gets three children instead, cut at the two valleys that bound the
  hill; the children are then tested like any other.
* **Validation.** Each 2-means side is modelled by a full-covariance Gaussian, which makes a
  two-component mixture of the cluster (refined by EM under the ``"bic"`` rule). Three rules
  are offered:

  - ``"dip"`` (default): the cluster is projected on four directions (the 2-means axis and the
    discriminant ``Σ⁻¹(m₁ − m₀)`` of the two sides' Gaussians, both taken in the plane of the
    two principal axes, and the two principal axes themselves) and Hartigan's dip test
    rejects unimodality on at least one of them at level ``alpha`` (Bonferroni over the
    directions), with an effect-size floor ``min_dip``. The dip is calibrated against the
    uniform law, the least favourable unimodal one, so along a direction fixed in advance a
    single cluster of any unimodal shape is rejected with probability at most ``alpha``
    whatever its size (the fitted directions, kept in the principal plane, add nothing
    measurable): non-Gaussian clusters do not shatter as n grows (they do under G-means'
    normality test and under BIC).
  - ``"gaussian"``: the dip test above, or the share of the cluster's scatter left within the
    two 2-means sides compared with that of Gaussian clusters of the same size and covariance,
    split the same way (SigClust, Liu et al., JASA 2008;
    :mod:`probkit.cluster._gaussian_reference`), at levels ``alpha / 10`` and ``9 alpha / 10``. The second test
    uses every dimension at once, where the dip sees one direction, so it finds the groups of
    small tables that the dip cannot (Wine's three cultivars from 178 rows, WDBC's two
    diagnoses); the dip finds groups spread evenly around a flat blob, which a 2-means split of
    the whole cannot. It holds its level on Gaussian clusters, but splits flat-topped clusters
    (a uniform box in few dimensions) as n grows. Merges use the same pair of tests.
  - ``"agreement"``: the paper's rule, from the author's code: each 2-means side is modelled by
    its own Gaussian, and ``s₀, s₁`` are the fractions of each side whose posterior under the
    two-component mixture of these Gaussians (weights ∝ sizes) picks their own side; split when
    both are ≥ 0.95, or when ``s₀s₁/(s₀ + s₁) ≥ 0.4`` (a harmonic mean ≥ 0.8).
  - ``"bic"``: ``ΔBIC = 2(ℓ₂ − ℓ₁) − q log n > 0`` between two fitted components and one,
    with an effect-size floor: the overlap of the two sides' Gaussians (mean smaller
    posterior) at most ``max_overlap``.

* **Refinement.** After each level of the tree every row is reassigned to its nearest centre
  (Lloyd's algorithm over all clusters), so a cut made high in the tree through a true cluster
  is repaired below; a cluster that failed its test is retested only when refinement has
  changed its size by more than ``reopen_tol``, so each cluster is tested about once.
* **Merging.** Finally, mutually nearest clusters whose union is not significantly multimodal
  along the line joining their centres (dip p-value ≥ ``alpha``) are merged, repairing the
  over-splits that a tree can make when a cut passes near a cluster.
* **The mixture.** A K-component full-covariance mixture, initialised from the final
  partition, gives :meth:`PPP.predict_proba`; rows whose k-means cluster is also their
  mixture's MAP component with posterior ≥ ``core_threshold`` form the separable core.

* **Units.** By default each column is centred and divided by its standard deviation, so the
  labels do not depend on any column's unit or offset; ``scale="whiten"`` also makes them
  invariant to rotations and mixing of the columns, and ``scale="none"`` keeps the columns'
  relative units (one global scale) for data already in one meaningful unit. Constant
  columns, columns that repeat another in other units and exact linear combinations of other
  columns are dropped with a warning naming them (:mod:`probkit.cluster._columns`).

* **Large tables.** Above ``tree_rows`` rows (65536 by default) the tree is grown on a
  subsample of that many rows chosen by a hash of their values, the same for any row order
  and units; Lloyd's algorithm on every row then refines the centres and labels all rows.

All statistics are sums over row
blocks (:mod:`probkit.cluster._engine`), one pass per Lloyd, 2-means or EM iteration for all
clusters of a level together, sharded over ``devices``.

Multiplicity: each test has false-split rate ``alpha`` on a cluster that is one unimodal
group, and each final cluster is tested about once, so the expected number of false splits is
at most about ``alpha · K``; for a family-wise rate ε over up to K clusters, use
``alpha = ε / K``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from probkit._errors import ProbkitError
from probkit._progress import Progress
from probkit._sklearn import EstimatorMixin, check_fitted, validate_features
from probkit._validate import check_choice, check_positive_int
from probkit.cluster._columns import SCALINGS, fit_column_map
from probkit.cluster._dip import dip_pvalue, dip_statistic
from probkit.cluster._engine import (
    MixtureParameters,
    RowEngine,
    device_dtype,
    regularise_covariances,
)
from probkit.cluster._gaussian_reference import gaussian_reference_pvalue
from probkit.cluster._row_sample import hashed_subsample

__all__ = ["PPP", "SMALLEST_TREE_ROWS", "SplitDecision"]

Validation = Literal["dip", "gaussian", "agreement", "bic"]
_MAX_CAPACITY = 1 << 16
"""Largest ``max_clusters``: beyond it the per-cluster statistics alone (``K × d × d``) outgrow
a machine's memory at ordinary widths, and a fit would be killed rather than refused."""
_SPLIT_EM_ITERATIONS = 20
"""EM iterations of each cluster's two-component mixture under the ``"bic"`` rule (ΔBIC settles
long before the likelihood has converged; each iteration is a pass over the data with O(d²) work
per row). The other rules use the starting mixture, the two sides' Gaussians, whose one E-step
gives the agreement, the overlap and a lower bound of the two-component likelihood."""
SMALLEST_TREE_ROWS = 1000
"""Smallest ``tree_rows``: fewer rows leave the tests without power for any but the largest
clusters."""
_DIRECTION_NAMES = ("2-means axis", "sides discriminant", "principal axis 1", "principal axis 2")
_N_DIRECTIONS = len(_DIRECTION_NAMES)


@dataclasses.dataclass(frozen=True)
class SplitDecision:
    """One decision of the PPP tree, with the numbers it was based on.

    Attributes
    ----------
    node : int
        The node decided on (node 0 is the whole data set; merges create new nodes).
    parent : int or None
        The node it was split from (None for the root and for merged nodes).
    level : int
        The tree level (refinement round) at which the decision was made.
    size : int
        Rows in the node at the time of the decision.
    action : str
        ``"split"``, ``"leaf"`` (the test did not support a split), ``"too small"`` (a child
        would have fewer than ``min_cluster_size`` rows), ``"capacity"`` (``max_clusters``
        reached) or ``"merge"``.
    p_value : float
        The dip test's p-value (Bonferroni-adjusted over directions), NaN where not computed.
        Directions are tested in the order of ``_DIRECTION_NAMES`` and, under ``"dip"`` and
        ``"gaussian"``, only until one settles the split: for a split this is then the first
        decisive direction, not necessarily the smallest p-value.
    dip : float
        Hartigan's dip on the direction with the smallest p-value (the effect size).
    direction : str
        That direction's name (for merges, the line joining the two centres).
    agreement : tuple of float
        Fraction of each 2-means side whose mixture MAP component agrees (the paper's score).
    delta_bic : float
        ``2(ℓ₂ − ℓ₁) − q log n``: BIC support for two components over one (ℓ₂ from EM under the
        ``"bic"`` rule, else from the two sides' Gaussians, a lower bound).
    overlap : float
        Mean smaller posterior under the two sides' Gaussians (0: fully separated).
    cluster_index : float
        The 2-means cluster index ``(W₀ + W₁) / T``: the share of the node's scatter left
        within the two sides (for a merge, within the two clusters merged).
    reference_index : float
        The mean cluster index of Gaussian clusters of the node's size and covariance
        (``"gaussian"`` rule only; NaN otherwise).
    gaussian_p_value : float
        P(a Gaussian cluster's index ≤ ``cluster_index``) (``"gaussian"`` rule only).
    children : tuple of int
        The nodes created: two for a split, three where the 2-means cut passed over a hill of
        the density (see the module documentation), one for a merge.
    merged : tuple of int
        For a merge, the two nodes merged.
    """

    node: int
    parent: int | None
    level: int
    size: int
    action: str
    p_value: float = math.nan
    dip: float = math.nan
    direction: str = ""
    agreement: tuple[float, float] = (math.nan, math.nan)
    delta_bic: float = math.nan
    overlap: float = math.nan
    cluster_index: float = math.nan
    reference_index: float = math.nan
    gaussian_p_value: float = math.nan
    children: tuple[int, ...] = ()
    merged: tuple[int, ...] = ()


class PPP(ClusterMixin, EstimatorMixin, BaseEstimator):
    """Probabilistic Partitive Partitioning: clustering with the number of clusters found.

    Parameters
    ----------
    validate : {"dip", "gaussian", "agreement", "bic"}
        The split rule (see the module documentation). ``"dip"`` is the default: it finds every
        cluster of the Gaussian-cluster Fränti sets in every run, and it does not shatter single
        clusters of any unimodal shape as n grows (``"agreement"`` does; ``"bic"`` stops at the
        root of most sets). See ``benchmarks/cluster_sipu.py``. On tables of a few hundred
        rows it has little power: on seven of the eight UCI tables of
        ``benchmarks/cluster_uci.py`` it finds one cluster, and it then warns when the rows are
        not one Gaussian cluster either. ``"gaussian"`` tests against Gaussian clusters with
        every dimension at once and finds the groups of those tables (see the benchmark), at
        the price of splitting flat-topped clusters.
    alpha : float
        Level of each split test (and of the merge test), in (0, 1).
    min_dip : float
        Effect-size floor for ``"dip"``: a split also needs a dip at least this large, so that
        huge clusters are not split for departures from unimodality too small to matter.
    agreement : (float, float)
        The paper's thresholds for ``"agreement"``: both sides at least the first, or the
        harmonic mean of the two at least the second.
    max_overlap : float
        Effect-size floor for ``"bic"``: the largest mean smaller responsibility of a split.
    min_cluster_size : int, optional
        The smallest child a split may create (default ``max(20, 2(d + 1))``).
    max_clusters : int
        Capacity: the largest number of clusters (the static size of the compiled passes), at
        most 65536: the passes hold ``max_clusters × d × d`` statistics.
    merge : bool
        Run the final merge pass.
    scale : {"standard", "robust", "whiten", "none"}
        How the columns are put in common units before clustering (recorded on the fitted
        model and applied by :meth:`predict`). ``"standard"`` (default): each column centred
        and divided by its standard deviation, so labels do not depend on the columns' units
        or offsets. It is the default because it gave the best partitions on the eight UCI
        tables of ``benchmarks/cluster_uci.py`` (mean ARI of k-means told k: 0.38, against
        0.31 with ``"robust"``, whose interquartile ranges blow up columns that are mostly
        one value). ``"robust"``: median and interquartile range. ``"whiten"``: zero mean and
        identity covariance, so labels are also invariant to rotations and mixing of the
        columns. ``"none"``: one global scale, for columns already in one meaningful unit
        (labels then invariant to rotations but not to a change of one column's unit).
    core_threshold : float
        Smallest mixture posterior of a row in the separable core.
    reopen_tol : float
        Relative change of a cluster's size after which a cluster that failed its test is
        tested again.
    tree_rows : int or None
        Grow the tree on at most this many rows (default 65536 = 2¹⁶), chosen by a hash of
        each row's scaled values, so that the choice is the same for any row order and units
        (:mod:`probkit.cluster._row_sample`); the centres are then refined by Lloyd's algorithm
        on every row, which also gives every row its label, and the mixture is fitted on the
        tree's rows. Tables of at most ``tree_rows`` rows (every UCI table, every Fränti set
        but the 100000-row Birch sets) are fitted whole. The tests' power grows with the rows
        of the clusters they test, but tens of thousands of rows already give all the power
        that the effect-size floor ``min_dip`` lets count, while every pass over a large table
        costs time: on ``benchmarks/cluster_throughput.py``'s 1e6 rows the default took 2.3
        times as long as ``KMeans`` told k, 2¹⁷ rows 3.0 times and ``None`` 11 times, all with
        the same clusters. What a subsample loses are clusters that keep fewer than about
        ``2 × min_cluster_size`` of its rows (at d = 16, clusters under about 0.1 % of the
        table): on 30 clusters whose sizes span 1 : 2000 in the same benchmark, the default
        found 21, 2¹⁷ rows 22 and ``None`` 23. ``None`` grows the tree on every row.
    max_iter : int
        Largest number of iterations of each Lloyd, 2-means or EM run.
    tol : float
        EM stops when the log-likelihood per row changes by less than ``tol`` (nats).
    verbose : int
        When positive, print one line per stage of the fit to standard error (the tree's
        levels with their clusters, tests and splits, the merges and the final mixture, each
        with the seconds since the fit began): progress on large data.
    devices : sequence of jax.Device, optional
        Devices to shard the rows over (default: the first local device). They may span hosts
        joined by ``jax.distributed``: every process then calls ``fit`` with the same ``X``, the
        passes run on all devices, and every process gets all the labels.

    Attributes
    ----------
    labels_ : numpy.ndarray
        Cluster of every training row, shape ``(n,)``, numbered in the order clusters were
        created in the tree.
    n_clusters_ : int
        The number of clusters found.
    cluster_centers_ : numpy.ndarray
        Cluster means in the data's units, shape ``(n_clusters_, n_features_in_)``.
    weights_, means_, covariances_ : numpy.ndarray
        The validated Gaussian mixture (one component per cluster), in the data's units.
    core_mask_ : numpy.ndarray
        Boolean per training row: in the separable core (k-means and the mixture agree).
    tree_ : tuple of SplitDecision
        Every decision in the order it was made.
    n_features_in_ : int
        Number of columns of the training data.
    dropped_columns_ : numpy.ndarray
        Indices of the columns that were dropped (with a warning): constant ones, duplicates
        of another column in other units, and exact linear combinations of other columns.
    dropped_reasons_ : dict
        Why each dropped column was dropped, by index.
    feature_names_in_ : numpy.ndarray
        Column names, when ``X`` was a table with string column names (a pandas DataFrame).
    n_levels_ : int
        Levels of the tree (rounds of splitting).
    tree_rows_ : int
        The rows the tree was grown on (all of them unless the table has more than
        ``tree_rows``); the sizes in :attr:`tree_` count these rows.
    node_of_cluster_ : numpy.ndarray
        The tree node of each cluster (so that ``tree_`` can be read cluster by cluster).
    n_iter_ : int
        The most iterations that any one Lloyd, 2-means or EM run of the fit took; equal to
        ``max_iter`` when a run stopped at the cap rather than at convergence.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.cluster import PPP
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(c, 1.0, (300, 2)) for c in ([0, 0], [8, 0], [0, 8])])
    >>> model = PPP().fit(X)
    >>> model.n_clusters_
    3
    """

    def __init__(
        self,
        validate: Validation = "dip",
        *,
        alpha: float = 0.02,
        min_dip: float = 0.01,
        agreement: tuple[float, float] = (0.95, 0.80),
        max_overlap: float = 0.05,
        min_cluster_size: int | None = None,
        max_clusters: int = 128,
        merge: bool = True,
        scale: str = "standard",
        core_threshold: float = 0.8,
        reopen_tol: float = 0.05,
        max_iter: int = 300,
        tol: float = 1e-4,
        tree_rows: int | None = 1 << 16,
        devices=None,
        verbose: int = 0,
    ):
        self.validate = validate
        self.alpha = alpha
        self.min_dip = min_dip
        self.agreement = agreement
        self.max_overlap = max_overlap
        self.min_cluster_size = min_cluster_size
        self.max_clusters = max_clusters
        self.merge = merge
        self.scale = scale
        self.core_threshold = core_threshold
        self.reopen_tol = reopen_tol
        self.max_iter = max_iter
        self.tol = tol
        self.tree_rows = tree_rows
        self.devices = devices
        self.verbose = verbose

    def __sklearn_clone__(self) -> PPP:
        # clone() deep-copies parameters, and JAX devices cannot be copied: share them instead.
        return type(self)(**self.get_params())

    # ------------------------------------------------------------------------------------
    def fit(self, X, y=None) -> PPP:
        """Build the tree on ``X`` (shape ``(n, d)``) and fit the validated mixture.

        ``y`` is ignored (present for scikit-learn's API). Returns ``self``.
        """
        self._check_parameters()
        progress = Progress("PPP", self.verbose)
        data = self._prepare(X)
        d = data.shape[1]
        min_size = self.min_cluster_size or max(20, 2 * (d + 1))
        capacity = check_positive_int("max_clusters", self.max_clusters)
        # Under whitening, axes that rotate with the data: the root's split and the subsample.
        root_axes = _fourth_moment_axes(data) if self.scale == "whiten" else None
        sampled = self.tree_rows is not None and data.shape[0] > self.tree_rows
        if sampled:
            # The tree is grown on a subsample chosen by the rows' own values (the same for any
            # row order or units); the full data only refine the centres and get their labels.
            tree_data = data[hashed_subsample(data, self.tree_rows, root_axes)]
            progress.say(f"tree grown on {tree_data.shape[0]} of {data.shape[0]} rows")
        else:
            tree_data = data
        self.tree_rows_ = tree_data.shape[0]
        engine = RowEngine(tree_data, capacity, self.devices)
        state = _TreeState(capacity, d)
        counts = engine.assign(state.centers, state.active)[0]
        level = 0
        while True:
            level += 1
            open_slots = state.open_slots(counts, 2 * min_size, self.reopen_tol)
            if not open_slots.any():
                break
            before = len(state.records)
            accepted = self._split_level(
                engine, state, counts, open_slots, level, min_size, root_axes
            )
            decided = state.records[before:]
            progress.say(
                f"level {level}: {int(state.active.sum())} clusters after testing "
                f"{len(decided)}, {sum(r.action == 'split' for r in decided)} split"
            )
            if not accepted:
                break
            state.centers, counts, _, _ = engine.lloyd(state.centers, state.active, self.max_iter)
        self.n_levels_ = level - 1
        if self.merge:
            counts = self._merge(engine, state, counts, level)
            progress.say(f"merging: {int(state.active.sum())} clusters")
        labelled = engine
        if sampled:
            labelled = RowEngine(data, capacity, self.devices)
            state.centers, _, _, _ = labelled.lloyd(state.centers, state.active, self.max_iter)
            progress.say("centres refined on all rows")
            # The sample's rows to the refined centres, for the mixture fitted on them.
            counts = engine.assign(state.centers, state.active)[0]
        self._finish(engine, labelled, state, counts)
        progress.say(f"mixture and labels: {self.n_clusters_} clusters")
        self.n_iter_ = max(engine.longest_run, labelled.longest_run)
        if self.n_clusters_ == 1 and self.validate != "gaussian":
            self._warn_if_not_one_gaussian()
        return self

    def _warn_if_not_one_gaussian(self) -> None:
        # One cluster is the answer that can hide a test without power: on tables of a few
        # hundred rows the dip test, valid for any unimodal shape, finds nothing where Gaussian
        # mixtures find clear groups (benchmarks/cluster_uci.py). Say so when the rows are not
        # one Gaussian cluster either.
        root = self.tree_[0] if self.tree_ else None
        if root is None or not math.isfinite(root.cluster_index):
            return
        variances = np.linalg.eigvalsh(self._columns.working_covariance)
        p_value, reference = gaussian_reference_pvalue(root.cluster_index, root.size, variances)
        if p_value < self.alpha:
            warnings.warn(
                f"PPP found one cluster: the {self.validate!r} test finds no significant split, "
                f"but the rows are not one Gaussian cluster either (2-means index "
                f"{root.cluster_index:.3f} against {reference:.3f} for Gaussian clusters of the "
                f"same covariance, p = {p_value:.2g}). If the groups you expect are roughly "
                "Gaussian, PPP(validate='gaussian') tests for them with more power.",
                stacklevel=3,
            )

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit and return :attr:`labels_`."""
        return self.fit(X).labels_

    def predict(self, X) -> np.ndarray:
        """The nearest cluster centre of each row of ``X``: the k-means partition."""
        data = self._transform(X)
        centers = self._centers_standard
        distance = (
            np.sum(data**2, axis=1)[:, None] - 2 * data @ centers.T + np.sum(centers**2, axis=1)
        )
        return np.argmin(distance, axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probabilities of the validated mixture's components, shape ``(n, K)``."""
        data = self._transform(X)
        log_p = _mixture_log_components(data, self._mixture_standard)
        log_p -= log_p.max(axis=1, keepdims=True)
        probability = np.exp(log_p)
        return probability / probability.sum(axis=1, keepdims=True)

    def score_samples(self, X) -> np.ndarray:
        """Log density of the validated mixture at each row, in the data's units.

        The density is over the columns that were kept (see :attr:`dropped_columns_`: the
        dropped ones are affine functions of the kept ones and carry no density of their own).
        """
        data = self._transform(X)
        log_p = _mixture_log_components(data, self._mixture_standard)
        top = log_p.max(axis=1, keepdims=True)
        log_density = (top + np.log(np.exp(log_p - top).sum(axis=1, keepdims=True)))[:, 0]
        return log_density + self._columns.log_jacobian

    def summary(self) -> str:
        """A table of the tree's decisions, one line each."""
        self._check_fitted()
        lines = [
            f"PPP: {self.n_clusters_} clusters from {self._n_rows} rows × {self.n_features_in_} "
            f"columns ({len(self._columns.kept)} used, scale {self.scale!r}), {self.n_levels_} "
            f"levels grown on {self.tree_rows_} rows, rule {self.validate!r}",
            f"{'node':>5} {'level':>5} {'size':>9}  {'action':<10} {'p-value':>9} {'dip':>7} "
            f"{'agree':>11} {'ΔBIC':>10} {'overlap':>8} {'index':>6} {'ref.':>6} {'gauss p':>9}"
            "  direction",
        ]
        for r in self.tree_:
            agree = (
                "" if math.isnan(r.agreement[0]) else f"{r.agreement[0]:.2f}/{r.agreement[1]:.2f}"
            )
            lines.append(
                f"{r.node:>5} {r.level:>5} {r.size:>9}  {r.action:<10} {r.p_value:>9.2e} "
                f"{r.dip:>7.4f} {agree:>11} {r.delta_bic:>10.1f} {r.overlap:>8.4f} "
                f"{_blank_nan(r.cluster_index, '6.3f')} {_blank_nan(r.reference_index, '6.3f')} "
                f"{_blank_nan(r.gaussian_p_value, '9.2e')}  {r.direction}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------------------------
    def _check_parameters(self) -> None:
        check_choice("validate", self.validate, ("dip", "gaussian", "agreement", "bic"))
        check_choice("scale", self.scale, SCALINGS)
        for name in ("alpha", "core_threshold"):
            value = getattr(self, name)
            if not (_is_real(value) and 0 < value < 1):
                raise ProbkitError(f"`{name}` must be a number in (0, 1); got {value!r}.")
        for name in ("min_dip", "max_overlap", "reopen_tol"):
            value = getattr(self, name)
            if not (_is_real(value) and value >= 0 and math.isfinite(value)):
                raise ProbkitError(f"`{name}` must be a finite number >= 0; got {value!r}.")
        agreement = tuple(np.ravel(self.agreement)) if np.ndim(self.agreement) else ()
        if len(agreement) != 2 or not all(_is_real(a) and 0 < a <= 1 for a in agreement):
            raise ProbkitError(
                f"`agreement` must be two fractions in (0, 1] (both sides, harmonic mean); "
                f"got {self.agreement!r}."
            )
        if self.min_cluster_size is not None:
            check_positive_int("min_cluster_size", self.min_cluster_size)
        check_positive_int("max_iter", self.max_iter)
        if check_positive_int("max_clusters", self.max_clusters) > _MAX_CAPACITY:
            raise ProbkitError(
                f"`max_clusters` must be at most {_MAX_CAPACITY}; got {self.max_clusters}. It is "
                "the static width of every compiled pass (max_clusters × d × d statistics), "
                "not a number to be found: set it a little above the clusters you expect."
            )
        if not (isinstance(self.verbose, numbers.Integral) and self.verbose >= 0):
            raise ProbkitError(f"`verbose` must be an integer >= 0; got {self.verbose!r}.")
        if not (_is_real(self.tol) and 0 < self.tol < math.inf):
            raise ProbkitError(f"`tol` must be a finite positive number; got {self.tol!r}.")
        if self.tree_rows is not None and not (
            isinstance(self.tree_rows, numbers.Integral)
            and not isinstance(self.tree_rows, bool)
            and self.tree_rows >= SMALLEST_TREE_ROWS
        ):
            raise ProbkitError(
                f"`tree_rows` must be None (grow the tree on every row) or an integer >= "
                f"{SMALLEST_TREE_ROWS}; got {self.tree_rows!r}."
            )

    def _prepare(self, X) -> np.ndarray:
        # float32 input stays float32 here (the column statistics are taken in float64 chunk
        # by chunk): a float64 copy of a 1e7-row table costs seconds of fresh memory.
        data = validate_features(self, X, reset=True)
        names = getattr(self, "feature_names_in_", None)
        n = data.shape[0]
        if n < 2:
            raise ProbkitError(
                f"`X` has {n} sample (row); PPP needs at least two rows, and d + 2 to fit a "
                "covariance per cluster."
            )
        columns = fit_column_map(data, self.scale, names)
        p = columns.kept.size
        if p == 0:
            raise ProbkitError(
                "`X` has no column that varies: every column is constant, so there is nothing "
                "to cluster."
            )
        if n < p + 2:
            raise ProbkitError(
                f"`X` has {n} rows for {p} independent varying columns; PPP needs at least "
                f"d + 2 = {p + 2} rows (a covariance per cluster)."
            )
        # Every check has passed: only now replace what an earlier fit left.
        self._columns = columns
        self.dropped_columns_ = np.array([j for j, _ in columns.dropped], dtype=np.int64)
        self.dropped_reasons_ = dict(columns.dropped)
        if columns.dropped:
            label = (lambda j: repr(names[j])) if names is not None else str
            listed = "; ".join(f"{label(j)}: {why}" for j, why in columns.dropped)
            warnings.warn(f"PPP dropped column(s) of `X`: {listed}.", stacklevel=3)
        self._n_rows = n
        return columns.to_working(data, device_dtype())

    def _transform(self, X) -> np.ndarray:
        self._check_fitted()
        data = validate_features(self, X, reset=False).astype(np.float64, copy=False)
        departures = self._columns.departures(data)
        if np.any(departures > 1e-6):
            warnings.warn(
                f"PPP: column(s) {self.dropped_columns_.tolist()} were dropped in training as "
                "affine functions of the other columns; in `X` they no longer are, and their "
                "values are ignored.",
                stacklevel=3,
            )
        return self._columns.to_working(data)

    def _check_fitted(self) -> None:
        check_fitted(self, "labels_", "fit(X)")

    # one level of the tree --------------------------------------------------------------
    def _split_level(
        self, engine, state, counts, open_slots, level, min_size, root_axes=None
    ) -> bool:
        d = engine.d
        safe_counts = np.maximum(counts, 1)
        covariance = engine.scatter(state.centers) / safe_counts[:, None, None]
        values, vectors = np.linalg.eigh(covariance)
        axes = _orient(vectors[..., ::-1])  # (K, d, d): columns by decreasing variance
        if level == 1 and root_axes is not None:
            # Whitened data have the identity as covariance: every axis is principal, and the
            # eigensolver's pick would depend on the coordinates. The fourth-moment axes are
            # defined by the data alone (see `_fourth_moment_axes`).
            axes[0] = root_axes
        first = axes[:, :, 0]
        step = np.sqrt(2 * np.maximum(values[:, -1], 0) / np.pi)[:, None]
        children = np.stack([state.centers - step * first, state.centers + step * first], 1)
        children, child_counts, child_scatter, _ = engine.two_means(
            children, open_slots, self.max_iter
        )

        too_small = open_slots & (child_counts.min(axis=1) < min_size)
        testable = open_slots & ~too_small
        init = _mixture_init(children, child_counts, child_scatter, testable, d)
        em_iterations = _SPLIT_EM_ITERATIONS if self.validate == "bic" else 1
        _, loglik2, agree, overlap, _ = engine.em_two(init, testable, em_iterations, self.tol)

        directions = np.zeros((state.capacity, _N_DIRECTIONS, d))
        directions[:, 0] = children[:, 1] - children[:, 0]
        pooled = np.einsum("kj,kjab->kab", init.weights, init.covariances)
        pooled[~testable] = np.eye(d)
        gap = (init.means[:, 1] - init.means[:, 0])[..., None]
        directions[:, 1] = np.linalg.solve(pooled, gap)[..., 0]
        directions[:, 2] = first
        if d > 1:
            directions[:, 3] = axes[:, :, 1]
        # The two fitted directions are taken inside the plane of the two principal axes: a
        # direction fitted to separate the rows it then tests would make a single cluster look
        # bimodal once d is large (the dip's null assumes a direction chosen in advance); in a
        # plane the selection costs nothing measurable (false-split rate 0 at d = 2 and d = 50).
        plane = axes[:, :, : min(d, 2)]
        directions[:, :2] = np.einsum("kdp,kep,kje->kjd", plane, plane, directions[:, :2])
        norms = np.linalg.norm(directions, axis=-1, keepdims=True)
        directions = np.where(norms > 0, directions / np.where(norms > 0, norms, 1), 0.0)
        n_directions = 1 if d == 1 else _N_DIRECTIONS
        projections = engine.project(state.centers, directions)
        groups = _group_rows(engine.host_labels(), state.capacity)
        tested = np.flatnonzero(testable)
        dips = _dip_tests(projections[:, :n_directions], groups, tested, self._dip_decides())

        accepted = False
        for slot in np.flatnonzero(open_slots):
            size = int(counts[slot])
            node = int(state.node[slot])
            if too_small[slot]:
                state.close(slot, size)
                state.record(SplitDecision(node, state.parent.get(node), level, size, "too small"))
                continue
            pvalues, dip_values = dips[slot]
            best = self._best_direction(pvalues, dip_values, n_directions)
            p_value = min(1.0, n_directions * float(pvalues[best]))
            side = np.maximum(child_counts[slot], 1)
            score = tuple(float(a) for a in agree[slot] / side)
            log_one = _gaussian_loglik(covariance[slot], size)
            q = 1 + d + d * (d + 1) / 2
            delta_bic = 2 * (float(loglik2[slot]) - log_one) - q * math.log(size)
            mean_overlap = float(overlap[slot]) / size
            index = float(np.trace(child_scatter[slot, 0]) + np.trace(child_scatter[slot, 1])) / (
                size * float(np.trace(covariance[slot]))
            )
            gaussian_p, reference = math.nan, math.nan
            if self.validate == "gaussian":
                gaussian_p, reference = gaussian_reference_pvalue(index, size, values[slot])
            split = self._accept(
                p_value, float(dip_values[best]), score, delta_bic, mean_overlap, gaussian_p
            )
            action = "split" if split else "leaf"
            seeds, sizes = children[slot], child_counts[slot]
            if split:
                # Projections on the 2-means axis (direction 0) are measured from the centre.
                along = (children[slot] - state.centers[slot]) @ directions[slot, 0]
                rows = groups[0][groups[1][slot] : groups[1][slot + 1]]
                three = _three_way_offsets(projections[rows, 0], along.mean(), min_size)
                if three is not None and state.free_slots() >= 2:
                    offsets, sizes = three
                    seeds = state.centers[slot] + offsets[:, None] * directions[slot, 0]
            # Children in decreasing size: an order that no rotation or sign flip of the data
            # changes (the principal axis's sign is arbitrary), so the tree's nodes and the
            # clusters' numbers are the same for rotated, whitened data. Equal sizes keep the
            # order along the axis.
            seeds = seeds[np.argsort(-np.asarray(sizes), kind="stable")]
            if split and state.free_slots() < len(seeds) - 1:
                action = "capacity"
                warnings.warn(
                    f"PPP reached max_clusters={state.capacity}; raise it to let the tree "
                    "grow further.",
                    stacklevel=3,
                )
            kids = state.split(slot, seeds) if action == "split" else ()
            if action != "split":
                state.close(slot, size)
            accepted |= action == "split"
            state.record(
                SplitDecision(
                    node,
                    state.parent.get(node),
                    level,
                    size,
                    action,
                    p_value,
                    float(dip_values[best]),
                    _DIRECTION_NAMES[best],
                    score,
                    delta_bic,
                    mean_overlap,
                    index,
                    reference,
                    gaussian_p,
                    kids,
                )
            )
        return accepted

    def _dip_decides(self):
        """The dip results that settle a split by themselves under this rule (None: none do).

        Under ``"dip"`` and ``"gaussian"`` one direction whose dip passes its share of the level
        and the effect-size floor makes the split, whatever the other directions show.
        """
        share = {"dip": 1.0, "gaussian": _DIP_SHARE}.get(self.validate)
        if share is None:
            return None
        level, floor = share * self.alpha, self.min_dip
        return lambda p_value, dip: p_value < level and dip >= floor

    def _best_direction(self, pvalues, dips, n_directions) -> int:
        # Smallest p-value, ties (p-values that underflow to 0 at large n) broken by the larger
        # dip; under "dip", a direction that passes both the test and the floor comes first.
        order = np.lexsort((-dips, pvalues))
        if self.validate == "dip":
            passing = (n_directions * pvalues[order] < self.alpha) & (dips[order] >= self.min_dip)
            if passing.any():
                return int(order[np.argmax(passing)])
        return int(order[0])

    def _accept(self, p_value, dip, score, delta_bic, overlap, gaussian_p) -> bool:
        if self.validate == "dip":
            return p_value < self.alpha and dip >= self.min_dip
        if self.validate == "gaussian":
            return _either_test(p_value, dip, gaussian_p, self.alpha, self.min_dip)
        if self.validate == "agreement":
            both, harmonic = self.agreement
            if min(score) >= both:
                return True
            total = score[0] + score[1]
            return total > 0 and score[0] * score[1] / total >= harmonic / 2
        return delta_bic > 0 and overlap <= self.max_overlap

    # merging ----------------------------------------------------------------------------
    def _merge(self, engine, state, counts, level) -> np.ndarray:
        while True:
            pairs = _mutual_nearest_pairs(state.centers, state.active)
            if not pairs:
                return counts
            origins = state.centers.copy()
            directions = np.zeros((state.capacity, _N_DIRECTIONS, engine.d))
            for i, j in pairs:
                line = state.centers[j] - state.centers[i]
                line /= np.linalg.norm(line)
                origins[i] = origins[j] = 0.5 * (state.centers[i] + state.centers[j])
                directions[i, 0] = directions[j, 0] = line
            projections = engine.project(origins, directions)[:, 0]
            labels = engine.host_labels()
            scatter = engine.scatter(state.centers) if self.validate == "gaussian" else None
            merged = False
            for i, j in pairs:
                union = projections[(labels == i) | (labels == j)]
                dip = _thinned_dip(np.sort(union))
                p_value = dip_pvalue(dip, union.size)
                index = reference = gaussian_p = math.nan
                if scatter is not None:
                    index, reference, gaussian_p = _union_test(
                        counts[i],
                        counts[j],
                        state.centers[i],
                        state.centers[j],
                        scatter[i],
                        scatter[j],
                    )
                    if _either_test(p_value, dip, gaussian_p, self.alpha, self.min_dip):
                        continue  # not one Gaussian cluster: keep apart
                elif p_value < self.alpha and dip >= self.min_dip:
                    continue  # significantly multimodal, by a margin that matters: keep apart
                merged = True
                nodes = (int(state.node[i]), int(state.node[j]))
                new = state.merge(i, j, counts)
                state.record(
                    SplitDecision(
                        new,
                        None,
                        level,
                        int(counts[i] + counts[j]),
                        "merge",
                        p_value,
                        dip,
                        "line between centres",
                        cluster_index=index,
                        reference_index=reference,
                        gaussian_p_value=gaussian_p,
                        children=(new,),
                        merged=nodes,
                    )
                )
            if not merged:
                return counts
            state.centers, counts, _, _ = engine.lloyd(state.centers, state.active, self.max_iter)

    # the validated mixture and the fitted attributes -------------------------------------
    def _finish(self, engine, labelled, state, counts) -> None:
        # The mixture is fitted on the tree's rows (``engine``, whose labels and ``counts`` are
        # those of the final centres); the labels and the core are those of every row
        # (``labelled``: the same engine unless the tree was grown on a subsample).
        slots = np.flatnonzero(state.active)
        slots = slots[np.argsort(state.node[slots], kind="stable")]  # creation order
        k = slots.size
        covariance = engine.scatter(state.centers) / np.maximum(counts, 1)[:, None, None]
        eye = np.eye(engine.d)
        init = MixtureParameters(
            state.centers,
            np.where(state.active[:, None, None], regularise_covariances(covariance), eye),
            counts / engine.n,
        )
        mixture, _, _ = engine.em_mixture(init, state.active, self.max_iter, self.tol)
        component, probability = labelled.map_assignments(mixture, state.active)
        kmeans = labelled.host_labels()

        order = np.full(state.capacity, -1)
        order[slots] = np.arange(k)
        self.labels_ = order[kmeans]
        self.n_clusters_ = int(k)
        self.core_mask_ = (component == kmeans) & (probability >= self.core_threshold)
        self._centers_standard = state.centers[slots]
        self._mixture_standard = MixtureParameters(
            mixture.means[slots], mixture.covariances[slots], mixture.weights[slots]
        )
        self.cluster_centers_ = self._columns.to_data(state.centers[slots])
        self.means_ = self._columns.to_data(mixture.means[slots])
        self.covariances_ = self._columns.covariances_to_data(mixture.covariances[slots])
        self.weights_ = mixture.weights[slots] / mixture.weights[slots].sum()
        self.tree_ = tuple(state.records)
        self.node_of_cluster_ = state.node[slots].copy()


class _TreeState:
    """Host-side state of the tree: the centre slots, their nodes, and the decisions."""

    def __init__(self, capacity: int, d: int):
        self.capacity = capacity
        self.centers = np.zeros((capacity, d))
        self.active = np.zeros(capacity, dtype=bool)
        self.active[0] = True
        self.node = np.full(capacity, -1)
        self.node[0] = 0
        self.next_node = 1
        self.parent: dict[int, int] = {}
        self.closed_size: dict[int, int] = {}  # slot -> size when its test failed
        self.records: list[SplitDecision] = []

    def open_slots(self, counts, smallest, reopen_tol) -> np.ndarray:
        open_ = self.active & (counts >= smallest)
        for slot, size in list(self.closed_size.items()):
            if abs(counts[slot] - size) <= reopen_tol * size:
                open_[slot] = False
            else:
                del self.closed_size[slot]
        return open_

    def free_slots(self) -> int:
        return int(np.count_nonzero(~self.active))

    def close(self, slot: int, size: int) -> None:
        self.closed_size[slot] = size

    def record(self, decision: SplitDecision) -> None:
        self.records.append(decision)

    def _new_node(self, parent: int | None) -> int:
        node = self.next_node
        self.next_node += 1
        if parent is not None:
            self.parent[node] = parent
        return node

    def split(self, slot: int, children: np.ndarray) -> tuple[int, ...]:
        parent = int(self.node[slot])
        slots = [slot, *np.flatnonzero(~self.active)[: len(children) - 1].tolist()]
        kids = tuple(self._new_node(parent) for _ in slots)
        self.centers[slots] = children
        self.node[slots] = kids
        self.active[slots] = True
        self.closed_size.pop(slot, None)
        return kids

    def merge(self, i: int, j: int, counts: np.ndarray) -> int:
        total = counts[i] + counts[j]
        self.centers[i] = (counts[i] * self.centers[i] + counts[j] * self.centers[j]) / total
        self.active[j] = False
        self.node[j] = -1
        self.node[i] = new = self._new_node(None)
        self.closed_size.pop(i, None)
        self.closed_size.pop(j, None)
        return new


# helpers ----------------------------------------------------------------------------------
_MAX_DIP_POINTS = 4096
_DENSITY_GRID = 512
"""Cells of the density estimate of a three-way cut (1/512 of the cluster's range: far finer
than the kernel's width at any size PPP splits)."""
_VALLEY_DEPTH = 0.02
"""Smallest depth of a valley, as a fraction of the density's highest value. Lenient on purpose:
the trigger only acts on a split already validated, and a needless third child is tested and
merged back like any other cluster. Fränti's sets give the same clusters for any value in
[0.01, 0.025]; the valley that separates A3's three clusters in a row is 4.9 %."""


def _thinned_dip(values: np.ndarray) -> float:
    # A large sample's dip from m = 4096 of its quantiles: their ecdf is within 1/m of the
    # sample's in sup-norm and the dip is 1-Lipschitz in that norm, so dip(quantiles) − 1/m is a
    # lower bound of the sample's dip, which keeps the test conservative at every n; the p-value
    # uses the true n. The pointer loops of the dip run in Python, about 0.5 µs per point, hence
    # m: the 1/m = 2.4e-4 given away is a fortieth of the effect-size floor `min_dip` (0.01)
    # that a split needs anyway once clusters have more than m rows, so decisions near that
    # floor are all it can change (16384 quantiles took 1.5 of a 4.4 s fit at 1e6 rows).
    if values.size <= _MAX_DIP_POINTS:
        return dip_statistic(values, is_sorted=True)
    index = ((np.arange(_MAX_DIP_POINTS) + 0.5) * values.size / _MAX_DIP_POINTS).astype(int)
    return max(dip_statistic(values[index], is_sorted=True) - 1.0 / _MAX_DIP_POINTS, 0.0)


def _group_rows(labels: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    # The rows of cluster k are order[bounds[k]:bounds[k + 1]]: one stable integer sort for all
    # clusters, then each cluster's projections are sorted on their own, cheaper than a lexsort
    # by (cluster, value) per direction over all rows (0.9 s against 5 s per fit at 1e6 rows).
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=capacity))])
    return order, bounds


def _three_way_offsets(values: np.ndarray, boundary: float, min_size: int):
    """Starting positions and sizes of three children when a 2-means cut passes through a mode.

    2-means cuts three clusters in a row through the middle one (that is its optimum), and then
    neither child, a cluster with part of its neighbour, is bimodal enough to be split again:
    the middle cluster is lost. So when the cut ``boundary`` (a position on the line of
    ``values``) lies on a hill of the density, nearer its top than either valley that bounds
    it, the cluster is cut at the two valleys instead, and the three segments' means and sizes are
    returned. Returns None otherwise.

    The density is a Gaussian kernel estimate binned on a grid (Silverman's bandwidth): it
    costs O(n) however many rows the cluster has (``scipy.stats.gaussian_kde`` evaluates every
    row at every grid point). A valley
    counts when its depth, the lower of the highest densities on its two sides minus its own,
    is at least ``_VALLEY_DEPTH`` of the density's highest value (a ripple in a tail, far below
    the peak, does not count), and each segment keeps ``min_size`` rows.
    """
    n = values.size
    quartiles = np.percentile(values, [25, 75])
    spread = min(values.std(), (quartiles[1] - quartiles[0]) / 1.349)
    low, high = values.min(), values.max()
    if n < 3 * min_size or not spread > 0 or not high > low:
        return None
    bandwidth = 0.9 * spread * n**-0.2
    counts, edges = np.histogram(values, bins=_DENSITY_GRID, range=(low, high))
    width = edges[1] - edges[0]
    reach = int(np.ceil(4 * bandwidth / width))
    kernel = np.exp(-0.5 * (np.arange(-reach, reach + 1) * width / bandwidth) ** 2)
    density = np.convolve(counts, kernel, mode="full")[reach : reach + _DENSITY_GRID]
    left_peak = np.maximum.accumulate(density)
    right_peak = np.maximum.accumulate(density[::-1])[::-1]
    depth = np.minimum(left_peak, right_peak) - density
    inside = np.zeros(_DENSITY_GRID, bool)
    inside[1:-1] = (density[1:-1] < density[:-2]) & (density[1:-1] <= density[2:])
    below = np.cumsum(counts)  # rows up to and including each grid cell
    valley = (
        inside
        & (depth >= _VALLEY_DEPTH * density.max())
        & (below >= min_size)
        & (n - below >= min_size)
    )
    centres = 0.5 * (edges[:-1] + edges[1:])
    cell = int(np.clip(np.searchsorted(edges, boundary) - 1, 0, _DENSITY_GRID - 1))
    before = np.flatnonzero(valley[:cell])
    after = cell + 1 + np.flatnonzero(valley[cell + 1 :])
    if before.size == 0 or after.size == 0:
        return None
    left, right = before[-1], after[0]
    top = density[left : right + 1].max()
    if not density[cell] - max(density[left], density[right]) > 0.5 * (
        top - max(density[left], density[right])
    ):
        return None  # the cut is nearer a valley than the top of the hill: a sound 2-way cut
    cuts = (centres[left], centres[right])
    segments = (values < cuts[0], (values >= cuts[0]) & (values < cuts[1]), values >= cuts[1])
    if min(int(s.sum()) for s in segments) < min_size:
        return None
    return (
        np.array([values[s].mean() for s in segments]),
        np.array([int(s.sum()) for s in segments]),
    )


def _dip_tests(projections: np.ndarray, groups, slots: np.ndarray, decisive=None):
    """Dip and p-value of each tested cluster on each direction (columns of ``projections``).

    ``decisive(p_value, dip)`` (Bonferroni-adjusted p-value), when given, says that one
    direction settles the split: the remaining directions are then left untested (p-value 1,
    dip 0), which the decision does not need; the dip is a Python loop over the points, the
    largest cost of a tree on large data.
    """
    m = projections.shape[1]
    results = {int(slot): (np.ones(m), np.zeros(m)) for slot in slots}
    if not results:
        return results
    order, bounds = groups
    for slot, (pvalues, dips) in results.items():
        rows = order[bounds[slot] : bounds[slot + 1]]
        for j in range(m):
            dips[j] = _thinned_dip(np.sort(projections[rows, j]))
            pvalues[j] = dip_pvalue(dips[j], rows.size)
            if decisive is not None and decisive(m * pvalues[j], dips[j]):
                break
    return results
    order, bounds = groups
    for slot, (pvalues, dips) in results.items():
        ordered = np.sort(projections[order[bounds[slot] : bounds[slot + 1]]], axis=0)
        for j in range(m):
            dips[j] = _thinned_dip(ordered[:, j])
            pvalues[j] = dip_pvalue(dips[j], ordered.shape[0])
    return results


_DIP_SHARE = 0.1
"""The share of the ``"gaussian"`` rule's level spent on the dip test (the rest goes to the
Gaussian reference). The dip's part is there for groups spread evenly around a flat blob, which
a 2-means split of the whole cannot see (Fränti's R15: the Gaussian reference's p-value 0.98,
the dip's 2e-8); such evidence is overwhelming, so a tenth of the level loses nothing there,
while the Gaussian reference keeps the power that small tables need."""


def _either_test(dip_p, dip, gaussian_p, alpha, min_dip) -> bool:
    """The ``"gaussian"`` rule: the dip test or the Gaussian reference, Bonferroni-shared."""
    dip_level = _DIP_SHARE * alpha
    return (dip_p < dip_level and dip >= min_dip) or gaussian_p < alpha - dip_level


def _blank_nan(value: float, spec: str) -> str:
    width = int(spec.split(".")[0])
    return " " * width if math.isnan(value) else format(value, spec)


def _union_test(n_i, n_j, center_i, center_j, scatter_i, scatter_j):
    """The ``"gaussian"`` rule's test of two clusters as one: their partition's cluster index.

    Returns the index ``(W_i + W_j) / T`` of the union split into the two clusters, the
    Gaussian reference's mean index, and the p-value.
    """
    n = n_i + n_j
    gap = center_j - center_i
    within = scatter_i + scatter_j
    total = within + (n_i * n_j / n) * np.outer(gap, gap)
    index = float(np.trace(within) / np.trace(total))
    p_value, reference = gaussian_reference_pvalue(index, int(n), np.linalg.eigvalsh(total / n))
    return index, reference, p_value


def _fourth_moment_axes(data: np.ndarray) -> np.ndarray:
    """Axes of whitened data, by increasing fourth moment ``E[‖z‖² (vᵀz)²]``.

    For whitened rows ``z`` the covariance carries no direction, but the fourth-moment matrix
    ``E[‖z‖² z zᵀ]`` does (Cardoso's FOBI; Tyler et al.'s invariant coordinates): a rotation
    of the rows rotates its eigenvectors with them, so the root's split, and the whole tree,
    is the same for rotated or linearly mixed columns. Its smallest eigenvalue comes first: a
    direction of low kurtosis is where two groups of rows separate (Peña & Prieto 2001).
    """
    d = data.shape[1]
    moment = np.zeros((d, d))
    for start in range(0, data.shape[0], 1 << 16):  # float64 chunks: no copy of the table
        rows = np.asarray(data[start : start + (1 << 16)], dtype=np.float64)
        moment += (rows * np.sum(rows**2, axis=1, keepdims=True)).T @ rows
    moment /= data.shape[0]
    _, vectors = np.linalg.eigh(0.5 * (moment + moment.T))
    return _orient(vectors)


def _orient(vectors: np.ndarray) -> np.ndarray:
    # Eigenvectors have no sign; fix it (largest-magnitude entry positive) so that the tree does
    # not depend on the eigensolver's choice.
    index = np.argmax(np.abs(vectors), axis=-2)
    sign = np.sign(np.take_along_axis(vectors, index[..., None, :], axis=-2))
    return vectors * np.where(sign == 0, 1.0, sign)


def _mixture_init(children, child_counts, child_scatter, testable, d) -> MixtureParameters:
    counts = np.maximum(child_counts, 1)
    covariances = regularise_covariances(child_scatter / counts[..., None, None])
    covariances = np.where(testable[:, None, None, None], covariances, np.eye(d))
    weights = np.where(testable[:, None], counts / counts.sum(axis=1, keepdims=True), 0.5)
    return MixtureParameters(children, covariances, weights)


def _gaussian_loglik(covariance: np.ndarray, n: int) -> float:
    d = covariance.shape[0]
    _, log_det = np.linalg.slogdet(regularise_covariances(covariance))
    return -0.5 * n * (d * math.log(2 * math.pi) + log_det + d)


def _mutual_nearest_pairs(centers: np.ndarray, active: np.ndarray) -> list[tuple[int, int]]:
    slots = np.flatnonzero(active)
    if slots.size < 2:
        return []
    points = centers[slots]
    distance = np.sum((points[:, None] - points[None]) ** 2, axis=-1)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argmin(distance, axis=1)
    return [
        (int(slots[a]), int(slots[b])) for a, b in enumerate(nearest) if a < b and nearest[b] == a
    ]


def _mixture_log_components(data: np.ndarray, mixture: MixtureParameters) -> np.ndarray:
    d = data.shape[1]
    chol = np.linalg.cholesky(mixture.covariances)
    out = np.empty((data.shape[0], mixture.weights.size))
    for k in range(mixture.weights.size):
        z = np.linalg.solve(chol[k], (data - mixture.means[k]).T)
        log_det = 2 * np.sum(np.log(np.diag(chol[k])))
        out[:, k] = np.log(mixture.weights[k]) - 0.5 * (
            np.sum(z * z, axis=0) + log_det + d * math.log(2 * math.pi)
        )
    return out


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
