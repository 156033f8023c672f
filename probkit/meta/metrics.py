"""Uncertainty metrics: calibration of classifiers, coverage of intervals, hand-over to ArviZ.

``classification_calibration`` reports the negative log-likelihood and the Brier score (from
scikit-learn) with the expected and maximum calibration errors (ECE/MCE, Guo et al., ICML 2017)
and the reliability table behind them; ``reliability_diagram`` draws that table.
``interval_coverage`` counts how often central predictive intervals computed from draws contain
the targets, with the binomial standard error of each rate. ``predictive_to_arviz`` wraps draws
and targets as ``arviz.InferenceData`` (posterior predictive and observed data), so ArviZ's
PPC plots and LOO-PIT apply.

scikit-learn has NLL and Brier but no ECE/MCE, and ArviZ has no calibration of classifiers;
the binned errors are written here (a few lines of NumPy). Everything runs on host arrays: these
are evaluation summaries, not parts of a compiled model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from probkit._errors import ProbkitError

__all__ = [
    "CalibrationReport",
    "CoverageReport",
    "classification_calibration",
    "interval_coverage",
    "predictive_to_arviz",
    "reliability_diagram",
]


class CalibrationReport(NamedTuple):
    """Calibration of predicted class probabilities.

    Attributes
    ----------
    nll : float
        Mean negative log-likelihood of the labels (natural log).
    brier : float
        Mean over rows of ``Σ_c (p_c - 1[y = c])²`` (between 0 and 2).
    accuracy : float
        Share of rows whose most probable class is the label.
    ece : float
        Expected calibration error: ``Σ_b (n_b / n) |accuracy_b - confidence_b|`` over
        equal-width bins of the confidence (the largest probability of each row).
    mce : float
        Maximum calibration error: the largest ``|accuracy_b - confidence_b|`` over non-empty
        bins.
    bin_edges : numpy.ndarray
        Edges of the confidence bins, shape ``(n_bins + 1,)``.
    bin_counts : numpy.ndarray
        Rows per bin.
    bin_confidence, bin_accuracy : numpy.ndarray
        Mean confidence and accuracy per bin (NaN in empty bins).
    """

    nll: float
    brier: float
    accuracy: float
    ece: float
    mce: float
    bin_edges: np.ndarray
    bin_counts: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray


class CoverageReport(NamedTuple):
    """Empirical coverage of central predictive intervals.

    Attributes
    ----------
    levels : numpy.ndarray
        Nominal coverage of each interval.
    coverage : numpy.ndarray
        Share of targets inside each interval.
    standard_error : numpy.ndarray
        Binomial standard error of each share, ``√(c(1 - c)/n)`` at the nominal ``c``.
    mean_width : numpy.ndarray
        Mean interval width at each level.
    """

    levels: np.ndarray
    coverage: np.ndarray
    standard_error: np.ndarray
    mean_width: np.ndarray


def _as_probabilities(probabilities: Any) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:  # binary: the probability of class 1
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ProbkitError(
            "`probabilities` must have shape (n, n_classes) with n_classes >= 2, or (n,) for "
            f"the probability of class 1 of a binary problem; got shape {np.shape(probabilities)}."
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ProbkitError("`probabilities` must be finite and non-negative.")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
        raise ProbkitError(
            "each row of `probabilities` must sum to 1 (to 1e-6); normalise them, e.g. "
            "`p / p.sum(axis=1, keepdims=True)`."
        )
    # Rows of a float32 softmax sum to 1 within ~1e-7, which scikit-learn's log_loss warns
    # about in float64: the rounding is removed here, after the check above.
    return p / p.sum(axis=1, keepdims=True)


def classification_calibration(
    probabilities: Any, labels: Any, *, n_bins: int = 15
) -> CalibrationReport:
    """NLL, Brier score, accuracy, ECE, MCE and the reliability table of a classifier.

    Parameters
    ----------
    probabilities : array-like, shape (n, n_classes) or (n,)
        Predicted class probabilities (rows sum to 1), or for a binary problem the probability
        of class 1.
    labels : array-like of int, shape (n,)
        Classes ``0 … n_classes - 1``.
    n_bins : int
        Equal-width confidence bins on [0, 1] (15, as Guo et al.).

    Returns
    -------
    CalibrationReport

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.meta.metrics import classification_calibration
    >>> report = classification_calibration([0.8, 0.8, 0.8, 0.8, 0.8], [1, 1, 1, 0, 0])
    >>> round(report.ece, 6), round(report.accuracy, 6)
    (0.2, 0.6)
    """
    from sklearn.metrics import brier_score_loss, log_loss

    p = _as_probabilities(probabilities)
    y = np.asarray(labels)
    n, n_classes = p.shape
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ProbkitError(f"`labels` must be {n} integer classes; got {y.dtype} {y.shape}.")
    if y.min() < 0 or y.max() >= n_classes:
        raise ProbkitError(
            f"`labels` must lie in 0 … {n_classes - 1} (one per probability column)."
        )
    if int(n_bins) != n_bins or n_bins < 1:
        raise ProbkitError(f"`n_bins` must be a positive integer; got {n_bins!r}.")
    classes = np.arange(n_classes)
    nll = log_loss(y, p, labels=classes)
    brier = brier_score_loss(y, p, labels=classes, scale_by_half=False)

    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (e_{b-1}, e_b], the first one closed: a confidence of exactly 1 is in the last.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_confidence = np.bincount(which, confidence, n_bins) / counts
        bin_accuracy = np.bincount(which, correct, n_bins) / counts
    gaps = np.abs(bin_accuracy - bin_confidence)
    filled = counts > 0
    return CalibrationReport(
        nll=float(nll),
        brier=float(brier),
        accuracy=float(correct.mean()),
        ece=float(np.sum(counts[filled] * gaps[filled]) / n),
        mce=float(gaps[filled].max()),
        bin_edges=edges,
        bin_counts=counts,
        bin_confidence=bin_confidence,
        bin_accuracy=bin_accuracy,
    )


def reliability_diagram(report: CalibrationReport, ax: Any = None, **bar_kwargs: Any) -> Any:
    """Draw the reliability table: accuracy per confidence bin against the diagonal.

    Parameters
    ----------
    report : CalibrationReport
        From `classification_calibration`.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    **bar_kwargs
        Passed to ``ax.bar``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    edges = report.bin_edges
    width = np.diff(edges)
    accuracy = np.nan_to_num(report.bin_accuracy)
    ax.bar(edges[:-1], accuracy, width=width, align="edge", edgecolor="black", **bar_kwargs)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    ax.set_title(f"ECE {report.ece:.3f}, MCE {report.mce:.3f}")
    ax.legend(loc="upper left")
    return ax


def interval_coverage(
    draws: Any, targets: Any, levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95)
) -> CoverageReport:
    """How often central intervals of predictive draws contain the targets.

    Parameters
    ----------
    draws : array-like, shape (n_draws, n)
        Draws of the predictive distribution of each target.
    targets : array-like, shape (n,)
        The observed values.
    levels : sequence of float
        Nominal coverages in (0, 1); the interval at level ``c`` runs between the draws'
        ``(1 - c)/2`` and ``(1 + c)/2`` quantiles.

    Returns
    -------
    CoverageReport
        A calibrated predictive covers each level up to its ``standard_error`` (binomial, for
        independent targets).
    """
    samples = np.asarray(draws, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if samples.ndim != 2 or y.ndim != 1 or samples.shape[1] != y.shape[0] or y.size == 0:
        raise ProbkitError(
            "`draws` must have shape (n_draws, n) and `targets` shape (n,); got "
            f"{samples.shape} and {y.shape}."
        )
    if samples.shape[0] < 2:
        raise ProbkitError("`draws` needs at least 2 draws per target to form intervals.")
    if not (np.all(np.isfinite(samples)) and np.all(np.isfinite(y))):
        raise ProbkitError("`draws` and `targets` must be finite.")
    nominal = np.asarray(levels, dtype=np.float64)
    if nominal.ndim != 1 or nominal.size == 0 or np.any((nominal <= 0) | (nominal >= 1)):
        raise ProbkitError(f"`levels` must be coverages strictly between 0 and 1; got {levels!r}.")
    lower = np.quantile(samples, (1 - nominal) / 2, axis=0)  # (levels, n)
    upper = np.quantile(samples, (1 + nominal) / 2, axis=0)
    inside = (lower <= y) & (y <= upper)
    return CoverageReport(
        levels=nominal,
        coverage=inside.mean(axis=1),
        standard_error=np.sqrt(nominal * (1 - nominal) / y.size),
        mean_width=(upper - lower).mean(axis=1),
    )


def predictive_to_arviz(draws: Any, targets: Any, *, name: str = "y") -> Any:
    """Predictive draws and their targets as ``arviz.InferenceData``.

    Parameters
    ----------
    draws : array-like, shape (n_draws, ...) or (n_chains, n_draws, ...)
        Posterior predictive draws (one chain unless a chain axis is given).
    targets : array-like
        The observed values, shaped as one draw.
    name : str
        The variable's name in both groups.

    Returns
    -------
    arviz.InferenceData
        With ``posterior_predictive`` and ``observed_data`` groups (e.g. for
        ``arviz.plot_ppc`` and ``arviz.plot_loo_pit``).
    """
    import arviz as az

    samples = np.asarray(draws)
    observed = np.asarray(targets)
    if observed.ndim and samples.shape[samples.ndim - observed.ndim :] != observed.shape:
        raise ProbkitError(
            f"each draw must have the shape of `targets` {observed.shape}; got draws of shape "
            f"{samples.shape}."
        )
    if samples.ndim == observed.ndim + 1:
        samples = samples[None]  # one chain
    if samples.ndim != observed.ndim + 2:
        raise ProbkitError(
            "`draws` must have shape (n_draws, *targets.shape) or (n_chains, n_draws, "
            f"*targets.shape); got {samples.shape} for targets {observed.shape}."
        )
    return az.from_dict(posterior_predictive={name: samples}, observed_data={name: observed})
