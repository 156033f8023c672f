"""Statistical tests with stated false-alarm rates, for checks whose reference is an expectation.

Every test returns a p-value under the null hypothesis that the code agrees with theory; the
runner (:mod:`probkit.theory.runner`) decides verdicts at a family-wise false-alarm rate.

Besides the generic tests (:func:`mean_z_test`, :func:`holm_combined_p_value`,
:func:`rank_uniformity_p_value`), two tests take an MCMC kernel as a black box and ask whether it
leaves its target invariant (research note ``qbs_smc_mhg.md`` §4):

- :func:`geweke_test` (recipe R4, Geweke 2004): a kernel for ``p(θ | y)`` inside a Gibbs sweep over
  ``(θ, y)`` must keep the joint ``p(θ) p(y | θ)``; compared with i.i.d. joint draws by the means
  of test functions, with a batch-means standard error for the autocorrelated chain;
- :func:`gandy_scott_test` (recipe R6, Gandy & Scott 2020): one kernel step from an exact draw of
  the target must give an exact draw, and a reversible kernel must make ``(x, x')``
  exchangeable. No burn-in, no autocorrelation: exact unit tests at any sample size.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax import lax
from scipy import stats
from statsmodels.stats.multitest import multipletests

from probkit._errors import ProbkitError
from probkit._validate import check_non_negative_int, check_positive_int

__all__ = [
    "BatchMeans",
    "GandyScottResult",
    "GewekeResult",
    "batch_means_standard_error",
    "gandy_scott_test",
    "geweke_test",
    "holm_combined_p_value",
    "mean_z_test",
    "rank_uniformity_p_value",
]


def mean_z_test(samples: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided z-tests that each column of ``samples`` has mean ``expected``.

    The standard error is the sample standard deviation over ``sqrt(R)``: the Monte Carlo error
    of the mean of ``R`` independent replicates. The normal approximation needs ``R`` in the
    hundreds or more. A column with no spread tests equality exactly: p-value 1 when its
    constant value equals ``expected``, else 0.

    Parameters
    ----------
    samples : numpy.ndarray, shape (R, k)
        ``R`` independent replicates of ``k`` statistics.
    expected : numpy.ndarray, shape (k,)
        Their expectations under the null hypothesis.

    Returns
    -------
    z : numpy.ndarray, shape (k,)
        ``(mean - expected) / standard error`` (0 for columns without spread that match, ±inf
        for those that do not).
    p_values : numpy.ndarray, shape (k,)
    """
    samples = np.asarray(samples, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    replicates = samples.shape[0]
    mean = samples.mean(axis=0)
    standard_error = samples.std(axis=0, ddof=1) / np.sqrt(replicates)
    difference = mean - expected
    # Spread-free columns: equality up to rounding of the mean of identical values.
    constant = standard_error <= 1e-12 * np.maximum(1.0, np.abs(expected))
    matches = np.abs(difference) <= 1e-9 * np.maximum(1.0, np.abs(expected))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(
            constant,
            np.where(matches, 0.0, np.sign(difference) * np.inf),
            difference / standard_error,
        )
    p_values = 2 * stats.norm.sf(np.abs(z))
    return z, p_values


def holm_combined_p_value(p_values: np.ndarray) -> float:
    """One p-value for a family of tests: the smallest Holm-adjusted p-value.

    Rejecting the family when it is below ``alpha`` controls the family-wise error rate at
    ``alpha`` (:func:`statsmodels.stats.multitest.multipletests`, ``method="holm"``).
    """
    p_values = np.asarray(p_values, dtype=np.float64).ravel()
    adjusted = multipletests(p_values, method="holm")[1]
    return float(adjusted.min())


def rank_uniformity_p_value(ranks: np.ndarray, num_draws: int) -> tuple[float, np.ndarray]:
    """SBC (Talts et al. 2018): are ranks in ``{0, ..., L}`` uniform? One p-value for all columns.

    Pearson's χ² test of the ``L + 1`` rank counts of each column (``scipy.stats.chisquare``),
    combined over the columns by Holm's procedure. Keep ``R / (L + 1)`` at 5 or more.

    Parameters
    ----------
    ranks : numpy.ndarray, shape (R,) or (R, k)
        For each simulation, the number of the ``L`` posterior draws below the true value.
    num_draws : int
        ``L``.

    Returns
    -------
    p_value : float
    counts : numpy.ndarray, shape (L + 1, k)
        The rank histogram of each column.
    """
    ranks = np.asarray(ranks, dtype=int).reshape(len(ranks), -1)
    counts = np.stack([np.bincount(column, minlength=num_draws + 1) for column in ranks.T], axis=1)
    p_values = [stats.chisquare(counts[:, j]).pvalue for j in range(counts.shape[1])]
    return holm_combined_p_value(np.asarray(p_values)), counts


# ---------------------------------------------------------------------------------------------
# Batch means: the standard error of the mean of an autocorrelated chain
# ---------------------------------------------------------------------------------------------

# Fewer batches than this leave the standard error with a relative spread above ~25 % (it is a
# χ with B − 1 degrees of freedom) and too few batch means to diagnose batches that are too short.
_MIN_BATCHES = 10


class BatchMeans(NamedTuple):
    """The batch-means estimate of the Monte Carlo standard error of a chain's mean.

    Attributes
    ----------
    mean : numpy.ndarray, shape (k,)
        The mean of the samples that were used (the leading ``n mod B`` samples are dropped).
    standard_error : numpy.ndarray, shape (k,)
        ``sd(batch means) / sqrt(B)``: the estimated standard deviation of ``mean``.
    degrees_of_freedom : int
        ``B − 1``. With batches much longer than the autocorrelation time the batch means are
        nearly independent normals, so ``(mean − μ) / standard_error`` is Student-t with these
        degrees of freedom.
    batch_size : int
        ``b = n // B``, the length of each batch.
    lag_one_autocorrelation : numpy.ndarray, shape (k,)
        The lag-1 autocorrelation of the batch means (0 for a column without spread). Values
        well above ``2 / sqrt(B)`` say the batches are too short and the standard error too
        small: run a longer chain or use fewer batches.
    """

    mean: np.ndarray
    standard_error: np.ndarray
    degrees_of_freedom: int
    batch_size: int
    lag_one_autocorrelation: np.ndarray


def batch_means_standard_error(samples: Any, *, num_batches: int = 32) -> BatchMeans:
    r"""Standard error of the mean of a stationary, autocorrelated chain by non-overlapping batch means.

    The chain is cut into ``B = num_batches`` consecutive batches of ``b = n // B`` samples (the
    first ``n mod B`` samples are dropped, as extra burn-in); the batch means are treated as
    ``B`` independent replicates of the mean of ``b`` samples.

    Parameters
    ----------
    samples : array_like, shape (n,) or (n, k)
        ``n`` successive states of a chain, one column per statistic.
    num_batches : int, default 32
        ``B``, at least 10. A fixed number of batches (rather than ``b = sqrt(n)``) keeps the
        Student-t reference of :attr:`BatchMeans.degrees_of_freedom` valid when the chain is
        strongly autocorrelated; Schmeiser (1982) recommends 10 to 30.

    Returns
    -------
    BatchMeans
        Mean, standard error, degrees of freedom, batch size and the lag-1 autocorrelation of the
        batch means (a diagnostic of batches that are too short).

    Raises
    ------
    ProbkitError
        If ``samples`` is not 1-D or 2-D, holds NaN or inf, ``num_batches`` is not an integer of
        at least 10, or there are fewer samples than batches.

    Notes
    -----
    With ``m_j`` the batch means and ``m̄`` their mean,

    .. math:: \widehat{\mathrm{se}}^2 = \frac{1}{B (B - 1)} \sum_{j=1}^{B} (m_j - \bar m)^2 .

    For fixed ``B`` and ``b → ∞`` the batch means of a chain that satisfies a functional CLT are
    asymptotically i.i.d. normal, whatever the autocorrelation (Glynn & Whitt 1991), so the
    estimate is valid for strongly autocorrelated chains once ``b`` is much larger than the
    integrated autocorrelation time ``τ``. Its downward bias is about ``2 Σ_h h ρ_h / (b τ)``;
    for an AR(1) chain with coefficient φ that is ``2 φ / ((1 − φ²) b)`` (≈ 0.5 τ / b), so
    ``b ≥ 20 τ`` keeps it under 3 %. Computed in float64 whatever the input dtype.

    References
    ----------
    Schmeiser, B. (1982). Batch size effects in the analysis of simulation output. *Operations
    Research* 30(3), 556–568.

    Glynn, P. W. & Whitt, W. (1991). Estimating the asymptotic variance with batch means.
    *Operations Research Letters* 10(8), 431–435.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.theory.calibration import batch_means_standard_error
    >>> rng = np.random.default_rng(0)
    >>> result = batch_means_standard_error(rng.normal(size=(3200, 2)), num_batches=32)
    >>> result.batch_size, result.degrees_of_freedom
    (100, 31)
    """
    num_batches = _check_num_batches(num_batches)
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim not in (1, 2):
        raise ProbkitError(
            f"`samples` must have shape (n,) or (n, k); got shape {samples.shape}. Put the "
            "chain's iterations on the first axis and one statistic per column."
        )
    samples = samples.reshape(samples.shape[0], -1)
    num_samples = samples.shape[0]
    if num_samples < num_batches:
        raise ProbkitError(
            f"`samples` has {num_samples} rows but `num_batches` is {num_batches}; each batch "
            "needs at least one sample. Run a longer chain or use fewer batches."
        )
    if not np.all(np.isfinite(samples)):
        raise ProbkitError(
            "`samples` holds NaN or inf; the standard error of a mean needs finite samples. "
            "Find where the chain or the statistic first became non-finite."
        )
    batch_size = num_samples // num_batches
    used = samples[num_samples - num_batches * batch_size :]
    batch_means = used.reshape(num_batches, batch_size, -1).mean(axis=1)
    mean = batch_means.mean(axis=0)
    standard_error = batch_means.std(axis=0, ddof=1) / np.sqrt(num_batches)
    centred = batch_means - mean
    sum_of_squares = np.sum(centred**2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        autocorrelation = np.where(
            sum_of_squares > 0,
            np.sum(centred[1:] * centred[:-1], axis=0) / sum_of_squares,
            0.0,
        )
    return BatchMeans(
        mean=mean,
        standard_error=standard_error,
        degrees_of_freedom=num_batches - 1,
        batch_size=batch_size,
        lag_one_autocorrelation=autocorrelation,
    )


# ---------------------------------------------------------------------------------------------
# Geweke (2004): getting it right
# ---------------------------------------------------------------------------------------------


class GewekeResult(NamedTuple):
    """The outcome of :func:`geweke_test`; every array has one entry per test function.

    Attributes
    ----------
    z : numpy.ndarray, shape (k,)
        ``(marginal_mean − successive_mean) / sqrt(marginal_standard_error² +
        successive_standard_error²)``; ±inf where both standard errors are 0 and the means differ.
    p_values : numpy.ndarray, shape (k,)
        Two-sided p-values of ``z`` against Student's t with ``degrees_of_freedom``.
    p_value : float
        The Holm-combined p-value of the family (:func:`holm_combined_p_value`): reject "the
        kernel is right" when it is below the false-alarm rate you chose.
    marginal_mean : numpy.ndarray, shape (k,)
        Mean of ``g`` over the i.i.d. draws of the marginal-conditional simulator.
    marginal_standard_error : numpy.ndarray, shape (k,)
        Its standard error, ``sd / sqrt(num_marginal)``.
    successive_mean : numpy.ndarray, shape (k,)
        Mean of ``g`` along the successive-conditional chain.
    successive_standard_error : numpy.ndarray, shape (k,)
        Its batch-means standard error (:func:`batch_means_standard_error`).
    degrees_of_freedom : numpy.ndarray, shape (k,)
        Welch–Satterthwaite degrees of freedom of ``z`` (between ``num_batches − 1`` and
        ``num_marginal + num_batches − 2``).
    batch_autocorrelation : numpy.ndarray, shape (k,)
        Lag-1 autocorrelation of the successive chain's batch means; well above
        ``2 / sqrt(num_batches)`` means the batches are too short for the chain's mixing and
        the p-values too small: raise ``num_successive``.
    """

    z: np.ndarray
    p_values: np.ndarray
    p_value: float
    marginal_mean: np.ndarray
    marginal_standard_error: np.ndarray
    successive_mean: np.ndarray
    successive_standard_error: np.ndarray
    degrees_of_freedom: np.ndarray
    batch_autocorrelation: np.ndarray


def geweke_test(
    key: jax.Array,
    *,
    sample_prior: Callable[[jax.Array], Any],
    sample_data: Callable[[jax.Array, Any], Any],
    transition: Callable[[jax.Array, Any, Any], Any],
    test_functions: Callable[[Any, Any], jax.Array],
    num_marginal: int,
    num_successive: int,
    burn_in: int = 0,
    num_batches: int = 32,
) -> GewekeResult:
    r"""Geweke's (2004) "getting it right" test that a kernel leaves the posterior invariant.

    Two simulators of the joint distribution ``p(θ, y) = p(θ) p(y | θ)`` are compared through
    the means of test functions ``g(θ, y)``:

    - *marginal-conditional*: ``θ ~ p(θ)``, ``y ~ p(y | θ)``, ``num_marginal`` i.i.d. draws;
    - *successive-conditional*: from one such draw, alternate ``θ ← K(θ; y)`` (the kernel under
      test) and ``y ~ p(y | θ)`` for ``burn_in + num_successive`` sweeps, recording
      ``g(θ, y)`` on the pair the kernel has just acted on.

    **Null hypothesis**: ``K(·; y)`` leaves ``p(θ | y)`` invariant for (almost) every ``y``.
    Then the successive chain keeps ``p(θ, y)`` from its exact start, and both simulators
    estimate the same ``E[g]``. The p-values have their stated false-alarm rate under the null
    asymptotically (large ``num_marginal``, batches much longer than the chain's
    autocorrelation time); the Holm-combined ``p_value`` then has it for the whole family.

    Parameters
    ----------
    key : jax.Array
        A PRNG key (``jax.random.key(0)`` or a legacy ``jax.random.PRNGKey(0)``).
    sample_prior : callable ``(key) -> θ``
        One exact draw from the prior; ``θ`` is a pytree of arrays.
    sample_data : callable ``(key, θ) -> y``
        One exact draw of the data given ``θ``; ``y`` is a pytree of arrays.
    transition : callable ``(key, θ, y) -> θ``
        The kernel under test: must leave ``p(θ | y)`` invariant. It may make several kernel
        steps (a thinned kernel is still invariant) and must return ``θ`` with the structure,
        shapes and dtypes it was given.
    test_functions : callable ``(θ, y) -> g``
        ``g`` has shape ``(k,)``. Geweke's choice: every ``θ_j``, ``θ_j²`` and ``θ_j y_i``.
        Moments that involve ``y`` are what catch a kernel targeting the wrong posterior.
    num_marginal : int
        ``M``, the number of i.i.d. draws (at least 2; ``10⁴``–``10⁵`` in practice).
    num_successive : int
        ``n``, the number of recorded sweeps of the successive-conditional chain (at least
        ``num_batches``; ``10⁵`` in practice).
    burn_in : int, default 0
        Sweeps made before recording. Not needed for validity (the chain starts at an exact
        draw of its stationary law under the null); a burn-in lets the bias of a wrong kernel
        grow to its stationary size before the recording starts.
    num_batches : int, default 32
        ``B``, the number of batches for the successive chain's standard error (at least 10).

    Returns
    -------
    GewekeResult
        ``z``, per-function ``p_values``, the Holm-combined ``p_value``, both means and standard
        errors, the degrees of freedom and the batch-means autocorrelation diagnostic.

    Raises
    ------
    ProbkitError
        Before anything is compiled, if ``key`` is not a PRNG key, a simulator is not callable,
        ``transition`` changes the structure, shape or dtype of ``θ``, ``test_functions`` does not
        return one 1-D vector, a size is not a positive integer (``burn_in``: non-negative),
        ``num_batches < 10`` or
        ``num_successive < num_batches``; after the simulation, if a test function is NaN or inf.

    Notes
    -----
    With ``ḡ₁, ḡ₂`` the two means (research note §4, recipe R4),

    .. math:: z = \frac{\bar g_1 - \bar g_2}{\sqrt{\mathrm{se}_1^2 + \mathrm{se}_2^2}},

    ``se₁ = sd / sqrt(M)`` and ``se₂`` from batch means. Batch means with a fixed number of
    batches stay valid however strongly the chain is autocorrelated once the batches are long
    (:func:`batch_means_standard_error`), and give ``se₂`` a known number of degrees of freedom,
    ``B − 1``; ``z`` is referred to Student's t with Welch–Satterthwaite degrees of freedom
    rather than the normal: when the chain's error dominates, the normal reference with 32
    batches would make a nominal 10⁻³ test reject 2.5 times too often. Spectral (arviz ``mcse``) estimates have no such reference
    distribution and, at the chain lengths of a unit test, under-cover when the chain mixes
    slowly.

    The test function is recorded on ``(θ⁽ᵐ⁾, y⁽ᵐ⁻¹⁾)``, after the kernel step and before ``y``
    is redrawn. Under the null both that pair and ``(θ⁽ᵐ⁾, y⁽ᵐ⁾)`` have law ``p(θ, y)``, but
    the second carries information only about the marginal of ``θ`` (``y`` is drawn afresh from
    ``p(y | θ)``), so a kernel that targets ``p(θ | y₁, …, y₄)`` instead of
    ``p(θ | y₁, …, y₅)`` would pass a test recorded there.

    Both simulators are compiled (``jax.jit``, ``lax.scan``); calling again with the same
    callables and sizes reuses the compilation. Works in float32 and float64; the statistics
    are computed in float64.

    References
    ----------
    Geweke, J. (2004). Getting it right: joint distribution tests of posterior simulators.
    *Journal of the American Statistical Association* 99(467), 799–804.

    Examples
    --------
    A Gibbs draw from the exact posterior of ``θ ~ N(0, 1)``, ``y_i ~ N(θ, 1)``:

    >>> import jax, jax.numpy as jnp
    >>> from probkit.theory.calibration import geweke_test
    >>> def gibbs(key, theta, y):
    ...     precision = 1.0 + y.size
    ...     return jnp.sum(y) / precision + jax.random.normal(key) / jnp.sqrt(precision)
    >>> result = geweke_test(
    ...     jax.random.key(0),
    ...     sample_prior=lambda key: jax.random.normal(key),
    ...     sample_data=lambda key, theta: theta + jax.random.normal(key, (3,)),
    ...     transition=gibbs,
    ...     test_functions=lambda theta, y: jnp.array([theta, theta**2, theta * y[0]]),
    ...     num_marginal=2_000,
    ...     num_successive=2_000,
    ... )
    >>> bool(result.p_value > 1e-3)
    True
    """
    key = _check_key(key)
    sample_prior = _static_callable("sample_prior", sample_prior)
    sample_data = _static_callable("sample_data", sample_data)
    transition = _static_callable("transition", transition)
    test_functions = _static_callable("test_functions", test_functions)
    num_marginal = check_positive_int("num_marginal", num_marginal)
    if num_marginal < 2:
        raise ProbkitError(
            f"`num_marginal` must be at least 2 (a standard error needs two draws); got "
            f"{num_marginal}. Use thousands: num_marginal=10_000."
        )
    num_successive = check_positive_int("num_successive", num_successive)
    burn_in = check_non_negative_int("burn_in", burn_in)
    num_batches = _check_num_batches(num_batches)
    if num_successive < num_batches:
        raise ProbkitError(
            f"`num_successive` ({num_successive}) must be at least `num_batches` "
            f"({num_batches}); batches should span many autocorrelation times, so use "
            "num_successive in the tens of thousands."
        )

    # Abstract evaluation only (no compilation): shapes and structures are checked here so that
    # a mistake is reported by name rather than as an error from inside `lax.scan`.
    theta = jax.eval_shape(sample_prior, key)
    data = jax.eval_shape(sample_data, key, theta)
    _check_same_structure("transition", jax.eval_shape(transition, key, theta, data), theta)
    _check_statistics(jax.eval_shape(test_functions, theta, data))

    key_marginal, key_successive = jax.random.split(key)
    marginal = np.asarray(
        _marginal_conditional(
            key_marginal,
            sample_prior=sample_prior,
            sample_data=sample_data,
            test_functions=test_functions,
            num_draws=num_marginal,
        ),
        dtype=np.float64,
    )
    successive = np.asarray(
        _successive_conditional(
            key_successive,
            sample_prior=sample_prior,
            sample_data=sample_data,
            transition=transition,
            test_functions=test_functions,
            burn_in=burn_in,
            num_sweeps=num_successive,
        ),
        dtype=np.float64,
    )
    _check_finite_statistics(
        marginal, "the marginal-conditional draws; check sample_prior and sample_data"
    )
    _check_finite_statistics(
        successive, "the successive-conditional chain; the kernel (`transition`) diverged"
    )

    marginal_mean = marginal.mean(axis=0)
    marginal_standard_error = marginal.std(axis=0, ddof=1) / np.sqrt(num_marginal)
    batches = batch_means_standard_error(successive, num_batches=num_batches)
    z, degrees_of_freedom = _welch_statistic(
        marginal_mean,
        marginal_standard_error,
        num_marginal - 1,
        batches.mean,
        batches.standard_error,
        batches.degrees_of_freedom,
    )
    p_values = 2 * stats.t.sf(np.abs(z), degrees_of_freedom)
    return GewekeResult(
        z=z,
        p_values=p_values,
        p_value=holm_combined_p_value(p_values),
        marginal_mean=marginal_mean,
        marginal_standard_error=marginal_standard_error,
        successive_mean=batches.mean,
        successive_standard_error=batches.standard_error,
        degrees_of_freedom=degrees_of_freedom,
        batch_autocorrelation=batches.lag_one_autocorrelation,
    )


# Draws are vectorised this many at a time (see `_map_over_keys`).
_MAP_CHUNK = 4096


@functools.partial(
    jax.jit, static_argnames=("sample_prior", "sample_data", "test_functions", "num_draws")
)
def _marginal_conditional(key, *, sample_prior, sample_data, test_functions, num_draws):
    def one_draw(key):
        theta, data = _joint_draw(key, sample_prior, sample_data)
        return test_functions(theta, data)

    return _map_over_keys(one_draw, key, num_draws)


@functools.partial(
    jax.jit,
    static_argnames=(
        "sample_prior",
        "sample_data",
        "transition",
        "test_functions",
        "burn_in",
        "num_sweeps",
    ),
)
def _successive_conditional(
    key, *, sample_prior, sample_data, transition, test_functions, burn_in, num_sweeps
):
    key_start, key_chain = jax.random.split(key)
    theta, data = _joint_draw(key_start, sample_prior, sample_data)

    def sweep(carry):
        key, theta, data = carry
        key, key_kernel, key_data = jax.random.split(key, 3)
        theta = transition(key_kernel, theta, data)
        # Recorded before y is redrawn: see the Notes of `geweke_test`.
        statistics = test_functions(theta, data)
        data = sample_data(key_data, theta)
        return (key, theta, data), statistics

    carry = (key_chain, theta, data)
    if burn_in:
        carry = lax.fori_loop(0, burn_in, lambda _, carry: sweep(carry)[0], carry)
    _, statistics = lax.scan(lambda carry, _: sweep(carry), carry, length=num_sweeps)
    return statistics


def _joint_draw(key, sample_prior, sample_data):
    key_prior, key_data = jax.random.split(key)
    theta = sample_prior(key_prior)
    return theta, sample_data(key_data, theta)


def _welch_statistic(mean1, se1, dof1, mean2, se2, dof2):
    """The two-sample statistic for means with independent standard errors, and its t dof."""
    difference = mean1 - mean2
    standard_error = np.sqrt(se1**2 + se2**2)
    scale = np.maximum(1.0, np.maximum(np.abs(mean1), np.abs(mean2)))
    # Spread-free statistics (an indicator that is always 1) test equality exactly, as in
    # `mean_z_test`.
    constant = standard_error <= 1e-12 * scale
    matches = np.abs(difference) <= 1e-9 * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(
            constant,
            np.where(matches, 0.0, np.sign(difference) * np.inf),
            difference / standard_error,
        )
        # Welch–Satterthwaite: the variance se1² + se2² is matched by a scaled χ² whose degrees
        # of freedom are dof = (se1² + se2²)² / (se1⁴ / dof1 + se2⁴ / dof2).
        degrees_of_freedom = np.where(
            constant,
            np.inf,
            standard_error**4 / (se1**4 / dof1 + se2**4 / dof2),
        )
    return z, degrees_of_freedom


# ---------------------------------------------------------------------------------------------
# Gandy & Scott (2020): exact one-step unit tests
# ---------------------------------------------------------------------------------------------


class GandyScottResult(NamedTuple):
    """The outcome of :func:`gandy_scott_test`.

    Attributes
    ----------
    distribution_p_values : numpy.ndarray, shape (k,)
        Kolmogorov–Smirnov p-values that ``g_a(x')`` has the law of ``g_a`` under the target:
        two-sample against fresh exact draws, or one-sample against ``target_cdfs[a]``.
    mean_z : numpy.ndarray, shape (k,)
        Paired z-statistics of ``g_a(x') − g_a(x)``, whose mean is 0 under the null.
    mean_p_values : numpy.ndarray, shape (k,)
        Their two-sided normal p-values.
    reversibility_pairs : numpy.ndarray, shape (m, 2), int
        The pairs ``(a, b)``, ``a < b``, of test functions in the reversibility test (empty when
        ``reversibility=False``).
    reversibility_z : numpy.ndarray, shape (m,)
        z-statistics of the antisymmetrised cross moments (see :func:`gandy_scott_test`).
    reversibility_p_values : numpy.ndarray, shape (m,)
        Their two-sided normal p-values.
    p_value : float
        The Holm-combined p-value of all the tests above (:func:`holm_combined_p_value`).
    """

    distribution_p_values: np.ndarray
    mean_z: np.ndarray
    mean_p_values: np.ndarray
    reversibility_pairs: np.ndarray
    reversibility_z: np.ndarray
    reversibility_p_values: np.ndarray
    p_value: float


def gandy_scott_test(
    key: jax.Array,
    *,
    sample_target: Callable[[jax.Array], Any],
    transition: Callable[[jax.Array, Any], Any],
    test_functions: Callable[[Any], jax.Array],
    num_draws: int,
    reversibility: bool = True,
    target_cdfs: Sequence[Callable[[np.ndarray], np.ndarray] | None] | None = None,
) -> GandyScottResult:
    """Gandy & Scott's (2020) exact unit tests of an MCMC kernel: one step from an exact draw.

    Draw ``x ~ π`` exactly, take one kernel step ``x' ~ K(x, ·)`` and, independently, a fresh
    exact draw ``x̃ ~ π``; ``num_draws`` independent copies. Three families of tests of the
    statistics ``g(·)``, of shape ``(k,)``:

    (a) *distribution*: ``g_a(x')`` has the law of ``g_a(x̃)`` (two-sample Kolmogorov–Smirnov,
        :func:`scipy.stats.ks_2samp`), or the cdf ``target_cdfs[a]`` when one is given
        (one-sample, :func:`scipy.stats.kstest`);
    (b) *invariance of means*: ``E[g_a(x') − g_a(x)] = 0`` (paired z-test; more powerful than
        (a) for kernels that move little, because ``g(x')`` and ``g(x)`` are correlated);
    (c) *reversibility* (when ``reversibility=True``): ``(x, x')`` and ``(x', x)`` have the
        same law, tested by ``E[ĝ_a(x) ĝ_b(x') − ĝ_a(x') ĝ_b(x)] = 0`` for every ``a < b``
        (paired z-tests), with ``ĝ`` centred by the fresh draws' means.

    **Null hypothesis**: ``K`` leaves ``π`` invariant (tests (a), (b)) and, with
    ``reversibility=True``, is reversible with respect to ``π`` (test (c)). Since the chain
    starts at an exact draw there is no burn-in and no autocorrelation: the copies are i.i.d.,
    so the tests have their stated false-alarm rate at any ``num_draws`` — exactly for the
    Kolmogorov–Smirnov tests of continuous statistics (conservatively for discrete ones), and
    asymptotically for the z-tests. The Holm-combined ``p_value`` has it for the whole family.

    Parameters
    ----------
    key : jax.Array
        A PRNG key (``jax.random.key(0)`` or a legacy ``jax.random.PRNGKey(0)``).
    sample_target : callable ``(key) -> x``
        One exact draw from the target ``π``; ``x`` is a pytree of arrays. Any target with an
        exact sampler will do: a prior, a conjugate posterior, or the joint ``p(θ, y)`` with a
        kernel that updates ``θ`` only (then ``g`` may involve ``y``, as in :func:`geweke_test`).
    transition : callable ``(key, x) -> x'``
        The kernel under test. It may make several steps; it must return ``x`` with the
        structure, shapes and dtypes it was given.
    test_functions : callable ``(x) -> g``
        ``g`` has shape ``(k,)``; at least 2 statistics when ``reversibility=True`` (e.g. ``x``
        and ``x²``: the reversibility test pairs different statistics).
    num_draws : int
        The number of independent copies (at least 2; thousands in practice). The z-tests need
        it in the hundreds or more.
    reversibility : bool, default True
        Test reversibility too. Set False for kernels that are only invariant, such as a
        systematic-scan Gibbs sweep or a non-reversible (lifted) kernel: they fail (c) by design.
    target_cdfs : sequence of callables or None, optional
        Length ``k``; entry ``a`` is the cdf of ``g_a(x)`` under ``π`` (vectorised over a NumPy
        array), or None to compare with the fresh draws instead.

    Returns
    -------
    GandyScottResult
        The p-values of the three families and their Holm-combined ``p_value``.

    Raises
    ------
    ProbkitError
        Before anything is compiled, if ``key`` is not a PRNG key, ``sample_target``,
        ``transition`` or ``test_functions`` is not callable, ``transition`` changes the
        structure, shape or dtype of ``x``, ``test_functions`` does not return one 1-D vector (of
        at least 2 statistics when ``reversibility=True``), ``num_draws < 2``, or
        ``target_cdfs`` has the wrong length or a non-callable entry; after the simulation, if a
        test function is NaN or inf.

    Notes
    -----
    Why (c) tests reversibility: ``K`` is reversible with respect to ``π`` exactly when
    ``π(dx) K(x, dx')`` is symmetric, that is ``(x, x') =ᵈ (x', x)`` for ``x ~ π``. Then
    ``h(x, x') = ĝ_a(x) ĝ_b(x') − ĝ_a(x') ĝ_b(x)``, which changes sign when the pair is swapped,
    is symmetric about 0: its mean is 0 and its odd moments vanish, so the z-test's normal
    approximation is accurate already at moderate ``num_draws``. Centring by the fresh draws'
    means ``m`` keeps this (``m`` is independent of the pairs, and the identity holds for any
    constants) and removes the terms ``m_a (g_b(x') − g_b(x))`` that would only add variance.
    A statistic paired with itself gives ``h ≡ 0``, hence the need for ``k ≥ 2``.

    Each test here sees one step only, so a kernel whose bias is small per step needs either
    many copies or a ``transition`` that makes several steps (still an exact test).

    Works in float32 and float64; the statistics are computed in float64.

    References
    ----------
    Gandy, A. & Scott, J. (2020). Unit testing for MCMC and other Monte Carlo methods.
    arXiv:2001.06465 (R package ``mcunit``).

    Examples
    --------
    A random-walk Metropolis step for ``π = N(0, 1)``:

    >>> import jax, jax.numpy as jnp
    >>> from probkit.theory.calibration import gandy_scott_test
    >>> def metropolis(key, x):
    ...     key_move, key_accept = jax.random.split(key)
    ...     proposal = x + jax.random.normal(key_move)
    ...     log_ratio = 0.5 * (x**2 - proposal**2)
    ...     accept = jnp.log(jax.random.uniform(key_accept)) < log_ratio
    ...     return jnp.where(accept, proposal, x)
    >>> result = gandy_scott_test(
    ...     jax.random.key(0),
    ...     sample_target=lambda key: jax.random.normal(key),
    ...     transition=metropolis,
    ...     test_functions=lambda x: jnp.array([x, x**2]),
    ...     num_draws=2_000,
    ... )
    >>> bool(result.p_value > 1e-3)
    True
    """
    key = _check_key(key)
    sample_target = _static_callable("sample_target", sample_target)
    transition = _static_callable("transition", transition)
    test_functions = _static_callable("test_functions", test_functions)
    num_draws = check_positive_int("num_draws", num_draws)
    if num_draws < 2:
        raise ProbkitError(
            f"`num_draws` must be at least 2 (a standard error needs two copies); got "
            f"{num_draws}. Use thousands: num_draws=10_000."
        )
    if not isinstance(reversibility, bool | np.bool_):
        raise ProbkitError(f"`reversibility` must be True or False; got {reversibility!r}.")

    position = jax.eval_shape(sample_target, key)
    _check_same_structure("transition", jax.eval_shape(transition, key, position), position)
    num_statistics = _check_statistics(jax.eval_shape(test_functions, position))
    if reversibility and num_statistics < 2:
        raise ProbkitError(
            f"`test_functions` returns {num_statistics} statistic, but the reversibility test "
            "compares pairs of different statistics; return at least two (e.g. x and x**2), "
            "or pass reversibility=False to test invariance only."
        )
    if target_cdfs is not None:
        target_cdfs = list(target_cdfs)
        if len(target_cdfs) != num_statistics:
            raise ProbkitError(
                f"`target_cdfs` has {len(target_cdfs)} entries but `test_functions` returns "
                f"{num_statistics} statistics; give one cdf (or None) per statistic."
            )
        for index, cdf in enumerate(target_cdfs):
            if cdf is not None and not callable(cdf):
                raise ProbkitError(
                    f"`target_cdfs[{index}]` must be a callable cdf or None; got "
                    f"{type(cdf).__name__}."
                )

    start, moved, fresh = (
        np.asarray(statistics, dtype=np.float64)
        for statistics in _one_step_from_exact_draws(
            key,
            sample_target=sample_target,
            transition=transition,
            test_functions=test_functions,
            num_draws=num_draws,
        )
    )
    _check_finite_statistics(start, "the exact draws; check sample_target")
    _check_finite_statistics(fresh, "the exact draws; check sample_target")
    _check_finite_statistics(moved, "the kernel's output x' (`transition`)")

    distribution_p_values = np.empty(num_statistics)
    for a in range(num_statistics):
        cdf = None if target_cdfs is None else target_cdfs[a]
        if cdf is None:
            distribution_p_values[a] = stats.ks_2samp(moved[:, a], fresh[:, a]).pvalue
        else:
            distribution_p_values[a] = stats.kstest(moved[:, a], cdf).pvalue

    # (b) The copies are i.i.d., so the paired differences are too: a plain z-test of mean 0.
    mean_z, mean_p_values = mean_z_test(moved - start, np.zeros(num_statistics))

    if reversibility:
        pairs = np.array(list(itertools.combinations(range(num_statistics), 2)), dtype=int)
        centre = fresh.mean(axis=0)
        start_c, moved_c = start - centre, moved - centre
        first, second = pairs[:, 0], pairs[:, 1]
        antisymmetric = (
            start_c[:, first] * moved_c[:, second] - moved_c[:, first] * start_c[:, second]
        )
        reversibility_z, reversibility_p_values = mean_z_test(antisymmetric, np.zeros(len(pairs)))
    else:
        pairs = np.zeros((0, 2), dtype=int)
        reversibility_z = reversibility_p_values = np.zeros(0)

    all_p_values = np.concatenate([distribution_p_values, mean_p_values, reversibility_p_values])
    return GandyScottResult(
        distribution_p_values=distribution_p_values,
        mean_z=mean_z,
        mean_p_values=mean_p_values,
        reversibility_pairs=pairs,
        reversibility_z=reversibility_z,
        reversibility_p_values=reversibility_p_values,
        p_value=holm_combined_p_value(all_p_values),
    )


@functools.partial(
    jax.jit, static_argnames=("sample_target", "transition", "test_functions", "num_draws")
)
def _one_step_from_exact_draws(key, *, sample_target, transition, test_functions, num_draws):
    def one_copy(key):
        key_start, key_kernel, key_fresh = jax.random.split(key, 3)
        start = sample_target(key_start)
        moved = transition(key_kernel, start)
        fresh = sample_target(key_fresh)
        return test_functions(start), test_functions(moved), test_functions(fresh)

    return _map_over_keys(one_copy, key, num_draws)


def _map_over_keys(function, key, num_draws):
    """``function`` applied to ``num_draws`` independent keys; outputs stacked on axis 0.

    Vectorised in chunks of ``_MAP_CHUNK`` so that memory stays bounded when the draws are
    large. The last chunk is padded (the extra draws are discarded) instead of leaving
    ``lax.map`` a remainder, which would compile a second copy of ``function`` and double the
    compile time.
    """
    if num_draws <= _MAP_CHUNK:
        return jax.vmap(function)(jax.random.split(key, num_draws))
    num_chunks = -(-num_draws // _MAP_CHUNK)
    keys = jax.random.split(key, num_chunks * _MAP_CHUNK)
    keys = keys.reshape((num_chunks, _MAP_CHUNK, *keys.shape[1:]))
    chunks = lax.map(jax.vmap(function), keys)
    return jax.tree_util.tree_map(
        lambda leaf: leaf.reshape((-1, *leaf.shape[2:]))[:num_draws], chunks
    )


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the kernel tests
# ---------------------------------------------------------------------------------------------


def _check_key(key):
    """Return ``key`` if it is one PRNG key (typed, or a legacy raw uint32 key), else raise."""
    if isinstance(key, jax.Array | np.ndarray):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape == ():
                return key
        elif key.dtype == np.uint32 and key.ndim == 1:
            return key
    shape = getattr(key, "shape", None)
    raise ProbkitError(
        f"`key` must be one JAX PRNG key; got {type(key).__name__}"
        + (f" of shape {shape}" if shape is not None else "")
        + ". Pass jax.random.key(0) (or split a key and pass one of the pieces)."
    )


def _static_callable(name, function):
    """Return ``function`` in a form ``jax.jit`` accepts as a static argument (hashable).

    The simulators take the user's functions as static arguments so that a second call with the
    same functions reuses the compilation; an unhashable callable (say, a dataclass instance
    with ``__call__``) is wrapped so that it is hashed by identity instead.
    """
    if not callable(function):
        raise ProbkitError(
            f"`{name}` must be a function; got {type(function).__name__}. See the docstring "
            "for the signature it needs."
        )
    try:
        hash(function)
    except TypeError:
        return functools.partial(function)
    return function


def _check_num_batches(num_batches):
    num_batches = check_positive_int("num_batches", num_batches)
    if num_batches < _MIN_BATCHES:
        raise ProbkitError(
            f"`num_batches` must be at least {_MIN_BATCHES}; got {num_batches}. Fewer batches "
            "leave the standard error too noisy to test anything; the default is 32."
        )
    return num_batches


def _check_same_structure(name, returned, given):
    """Raise unless the abstract pytree ``returned`` matches ``given`` leaf by leaf."""
    returned_tree = jax.tree_util.tree_structure(returned)
    given_tree = jax.tree_util.tree_structure(given)
    if returned_tree != given_tree:
        raise ProbkitError(
            f"`{name}` must return a position with the structure it was given; it was given "
            f"{given_tree} and returned {returned_tree}."
        )
    for returned_leaf, given_leaf in zip(
        jax.tree_util.tree_leaves(returned), jax.tree_util.tree_leaves(given), strict=True
    ):
        if returned_leaf.shape != given_leaf.shape or returned_leaf.dtype != given_leaf.dtype:
            raise ProbkitError(
                f"`{name}` must return arrays with the shapes and dtypes it was given; a leaf "
                f"of shape {given_leaf.shape} and dtype {given_leaf.dtype} came back with "
                f"shape {returned_leaf.shape} and dtype {returned_leaf.dtype}."
            )


def _check_statistics(statistics):
    """Return ``k`` if the abstract output of ``test_functions`` is one array of shape (k,)."""
    if not isinstance(statistics, jax.ShapeDtypeStruct):
        raise ProbkitError(
            "`test_functions` must return one array of shape (k,); it returned a "
            f"{type(statistics).__name__}. Stack the statistics: jnp.stack([g1, g2, ...])."
        )
    if statistics.ndim != 1 or statistics.shape[0] < 1:
        raise ProbkitError(
            f"`test_functions` must return a 1-D array of k ≥ 1 statistics; it returned shape "
            f"{statistics.shape}. Flatten or stack them: jnp.ravel(g) or jnp.stack([...])."
        )
    if not (
        jax.dtypes.issubdtype(statistics.dtype, np.floating)
        or jax.dtypes.issubdtype(statistics.dtype, np.integer)
        or statistics.dtype == np.bool_
    ):
        raise ProbkitError(
            f"`test_functions` must return real numbers; it returned dtype {statistics.dtype}."
        )
    return statistics.shape[0]


def _check_finite_statistics(statistics, where):
    bad = ~np.isfinite(statistics)
    if bad.any():
        rows, columns = np.nonzero(bad)
        raise ProbkitError(
            f"`test_functions` gave NaN or inf in {rows.size} place(s) (first: draw {rows[0]}, "
            f"statistic {columns[0]}) on {where}. A p-value needs finite statistics."
        )
