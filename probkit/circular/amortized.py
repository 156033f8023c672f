"""Amortised von Mises mixtures: a network maps features to a mixture per angle (VonMisesNet style).

VonMisesNet (Swanson, Williams & Jonas, ICML 2023; research note ``vonmises.md`` §1) predicts, for
every rotatable-bond torsion, a K = 4 component von Mises mixture from a graph network: unconstrained
locations, softmax weights and concentrations ``κ = 20·sigmoid(z) + 1``, trained by the negative
log-likelihood of sampled torsions. This module is that output head and loss in pure JAX, with a
small MLP in place of the graph network and optax for training:

- :class:`ConcentrationTransform`: the map from a raw network output to ``κ``, made explicit.
  The default, ``"exp"`` (the head predicts ``log κ``), is unbounded above, because stiff torsion
  wells need it (butane's trans well has ``κ_eff ≈ 30``, gauche ``≈ 42``; note §4), and it is the
  one that gradient descent can actually drive to large ``κ`` (see its Notes).
  :data:`VONMISESNET_CONCENTRATION` reproduces VonMisesNet's ``(1, 21)`` interval.
- :func:`mixture_parameters` and :func:`mixture_log_likelihood`: from raw heads to
  ``(weights, loc, concentration)``, and straight to the log-likelihood (log-softmax + logsumexp,
  stable for any ``κ``), so a loss needs no distribution object.
- :func:`init_mlp` and :func:`apply_mlp`: a list of ``(W, b)`` layers with Glorot initialisation.
- :class:`AmortizedVonMisesMixture`: the model (``init``, ``apply``, ``log_likelihood``, ``loss``,
  ``distribution``) and ``fit``, a jit-compiled ``lax.scan`` over optax steps.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import i0e

from probkit._errors import ProbkitError
from probkit._validate import check_choice, check_positive_int, is_concrete
from probkit.special import bessel_ratio_complement

__all__ = [
    "VONMISESNET_CONCENTRATION",
    "AmortizedFit",
    "AmortizedVonMisesMixture",
    "ConcentrationTransform",
    "MixtureHeads",
    "apply_mlp",
    "init_mlp",
    "mixture_log_likelihood",
    "mixture_parameters",
]

_KINDS = ("exp", "softplus", "bounded")
_LOG_2PI = math.log(2.0 * math.pi)


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _finite_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ProbkitError(f"`{name}` must be a real number; got {value!r}.") from None
    if not math.isfinite(number):
        raise ProbkitError(f"`{name}` must be finite; got {number!r}. Pass a finite number.")
    return number


# --------------------------------------------------------------------------------------------
# Concentration parameterisation
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConcentrationTransform:
    """The map from a raw, unconstrained network output ``z`` to a concentration ``κ``.

    Attributes
    ----------
    kind : {"exp", "softplus", "bounded"}
        ``"exp"``: ``κ = minimum + exp(z)`` (the default: ``z ≈ log κ``, unbounded above;
        overflows float32 only for ``z > 88``, i.e. ``κ > 1e38``).
        ``"softplus"``: ``κ = minimum + softplus(z)`` (unbounded above, ``z ≈ κ`` for large ``κ``).
        ``"bounded"``: ``κ = minimum + (maximum - minimum)·sigmoid(z)``; VonMisesNet's choice.
    minimum : float
        Lower bound ``κ_min ≥ 0``, approached as ``z → -∞`` (never reached). ``0`` allows a
        component to become uniform on the circle.
    maximum : float, optional
        Upper bound ``κ_max > κ_min``; required by ``"bounded"`` and rejected by the others.

    Raises
    ------
    ProbkitError
        If ``kind`` is unknown, ``minimum < 0`` or is not finite, ``maximum`` is missing or
        ``maximum <= minimum`` for ``"bounded"``, or ``maximum`` is given for another kind.

    See Also
    --------
    VONMISESNET_CONCENTRATION : the ``(1, 21)`` bounded transform of VonMisesNet.

    Notes
    -----
    A bounded interval is a modelling restriction, not a numerical necessity: the mixture
    log-likelihood here is stable for any ``κ``. With ``(1, 21)`` the sharpest component has
    standard deviation ``1/√21 ≈ 0.218 rad ≈ 12.5°``, wider than butane's trans well at 300 K
    (harmonic ``κ_eff = V''/kT ≈ 30.4``, ``σ ≈ 10.4°``) and gauche wells (``κ_eff ≈ 42.2``,
    ``σ ≈ 8.8°``), and far wider than stiffer bonds; the fit then pays
    ``KL(vM(κ) ‖ vM(21))`` nats per angle (0.39 at ``κ = 100``).

    Both unbounded transforms can represent any ``κ``, but they are not equally learnable. The
    Fisher information of the log-likelihood in ``z`` is ``A'(κ)·(dκ/dz)²`` with
    ``A'(κ) ≈ 1/(2κ²)`` for large ``κ``: constant (→ 1/2) for ``"exp"``, but vanishing like
    ``1/(2κ²)`` for ``"softplus"``, whose raw output must also travel a distance ``≈ κ``. With
    optimisers that take steps of about the learning rate (Adam), a softplus head needs
    ``O(κ/lr)`` steps to reach ``κ``: on a ``κ = 100`` sample, 1000 Adam steps from lr 0.1
    (cosine decay) reach ``κ ≈ 20`` with softplus and ``κ ≈ 100`` with exp. Hence ``"exp"`` is
    the default; use ``"softplus"`` when concentrations stay moderate and linear growth is wanted,
    and ``"bounded"`` only when an upper bound is wanted as regularisation.

    Examples
    --------
    >>> transform = ConcentrationTransform("exp", minimum=0.5)
    >>> round(float(transform.forward(transform.inverse(30.0))), 4)
    30.0
    """

    kind: str = "exp"
    minimum: float = 0.0
    maximum: float | None = None

    def __post_init__(self):
        check_choice("kind", self.kind, _KINDS)
        minimum = _finite_float("minimum", self.minimum)
        if minimum < 0:
            raise ProbkitError(
                f"`minimum` (κ_min) must be >= 0; got {minimum:g}. A von Mises concentration is "
                "non-negative: pass minimum=0.0 or a positive lower bound."
            )
        object.__setattr__(self, "minimum", minimum)
        if self.kind == "bounded":
            if self.maximum is None:
                raise ProbkitError(
                    "`maximum` (κ_max) is required for kind='bounded'; pass e.g. "
                    "ConcentrationTransform('bounded', minimum=1.0, maximum=21.0), or use "
                    "kind='exp' for no upper bound."
                )
            maximum = _finite_float("maximum", self.maximum)
            if maximum <= minimum:
                raise ProbkitError(
                    f"`maximum` (κ_max) must exceed `minimum` (κ_min); got maximum={maximum:g} "
                    f"and minimum={minimum:g}. Pass maximum > minimum."
                )
            object.__setattr__(self, "maximum", maximum)
        elif self.maximum is not None:
            raise ProbkitError(
                f"`maximum` applies only to kind='bounded'; got maximum={self.maximum!r} with "
                f"kind={self.kind!r}. Drop `maximum` or pass kind='bounded'."
            )

    def forward(self, raw):
        """The concentration ``κ`` for raw outputs ``z`` (elementwise; keeps ``z``'s dtype).

        Parameters
        ----------
        raw : array_like
            Unconstrained values ``z``.

        Returns
        -------
        jax.Array
            ``κ`` in ``(minimum, maximum)`` (``maximum = ∞`` for ``"exp"`` and ``"softplus"``);
            it may round onto a bound in finite precision.
        """
        return _forward(_as_float(raw), self)

    def inverse(self, concentration):
        """The raw output ``z`` with ``forward(z) = κ``: for initialising heads at a chosen ``κ``.

        Parameters
        ----------
        concentration : array_like
            ``κ`` inside ``[minimum, maximum]``; the bounds map to ``-∞`` and ``+∞``.

        Returns
        -------
        jax.Array
            ``z``, with ``inverse(forward(z)) = z`` up to rounding.

        Raises
        ------
        ProbkitError
            If concrete values lie outside ``[minimum, maximum]`` or are not finite.
        """
        kappa = _as_float(concentration)
        if is_concrete(kappa):
            values = np.asarray(kappa)
            upper = np.inf if self.maximum is None else self.maximum
            if not np.all(np.isfinite(values)) or np.any(
                (values < self.minimum) | (values > upper)
            ):
                raise ProbkitError(
                    f"`concentration` must be finite and within [{self.minimum:g}, {upper:g}] for "
                    f"this {self.kind!r} transform; got values in "
                    f"[{np.nanmin(values):g}, {np.nanmax(values):g}]. Clip it into range first."
                )
        return _inverse(kappa, self)


# Jit-compiled with the (hashable, frozen) transform static: an eager call is one compiled
# program per shape, not one per elementwise operation; under an outer jit they are inlined.
@functools.partial(jax.jit, static_argnames="transform")
def _forward(raw, transform):
    if transform.kind == "softplus":
        return transform.minimum + jax.nn.softplus(raw)
    if transform.kind == "exp":
        return transform.minimum + jnp.exp(raw)
    return transform.minimum + (transform.maximum - transform.minimum) * jax.nn.sigmoid(raw)


@functools.partial(jax.jit, static_argnames="transform")
def _inverse(kappa, transform):
    excess = kappa - transform.minimum
    if transform.kind == "softplus":
        # softplus⁻¹(y) = log(eʸ - 1) = y + log(1 - e⁻ʸ), without overflow for large y.
        return excess + jnp.log(-jnp.expm1(-excess))
    if transform.kind == "exp":
        return jnp.log(excess)
    fraction = excess / (transform.maximum - transform.minimum)
    return jnp.log(fraction) - jnp.log1p(-fraction)


VONMISESNET_CONCENTRATION = ConcentrationTransform("bounded", minimum=1.0, maximum=21.0)
"""VonMisesNet's concentration head, ``κ = 20·sigmoid(z) + 1 ∈ (1, 21)`` (note §1).

Kept for comparisons; too tight for stiff torsions (see :class:`ConcentrationTransform`, Notes).
"""


# --------------------------------------------------------------------------------------------
# From raw heads to mixture parameters and log-likelihood
# --------------------------------------------------------------------------------------------


class MixtureHeads(NamedTuple):
    """Raw outputs of a mixture head, each of shape ``batch + (K,)``.

    Attributes
    ----------
    logits : jax.Array
        Unnormalised log-weights; the weights are ``softmax(logits)`` over the last axis.
    loc : jax.Array
        Component locations in radians, unconstrained (the density depends on them through
        ``cos``, so ``loc`` and ``loc + 2π`` are the same component).
    raw_concentration : jax.Array
        Raw concentrations ``z``; ``κ = transform.forward(z)``.
    """

    logits: jax.Array
    loc: jax.Array
    raw_concentration: jax.Array


def mixture_parameters(
    logits, loc, raw_concentration, transform: ConcentrationTransform | None = None
):
    """The mixture ``(weights, loc, concentration)`` described by raw head outputs.

    Parameters
    ----------
    logits, loc, raw_concentration : array_like
        Raw heads of a common shape ``batch + (K,)`` (see :class:`MixtureHeads`).
    transform : ConcentrationTransform, optional
        Map from ``raw_concentration`` to ``κ``; the default is ``ConcentrationTransform()``
        (exp, ``κ_min = 0``).

    Returns
    -------
    weights : jax.Array
        ``softmax(logits)`` over the last axis.
    loc : jax.Array
        ``loc`` wrapped into ``[-π, π)`` (the same components; readable values).
    concentration : jax.Array
        ``transform.forward(raw_concentration)``.
    """
    transform = _check_transform(transform)
    logits, loc, raw_concentration = _check_heads(logits, loc, raw_concentration)
    return _mixture_parameters(logits, loc, raw_concentration, transform)


# The public functions check their arguments eagerly and then call these jit-compiled cores, so
# an eager call compiles once per shape instead of dispatching a dozen small operations (inside
# an outer jit the cores are simply inlined). The transform is hashable configuration: static.
@functools.partial(jax.jit, static_argnames="transform")
def _mixture_parameters(logits, loc, raw_concentration, transform):
    weights = jax.nn.softmax(logits, axis=-1)
    wrapped = jnp.mod(loc + jnp.pi, 2.0 * jnp.pi) - jnp.pi
    return weights, wrapped, transform.forward(raw_concentration)


def mixture_log_likelihood(
    logits, loc, raw_concentration, angles, transform: ConcentrationTransform | None = None
):
    r"""Log-density of ``angles`` under the von Mises mixtures given by raw head outputs.

    Parameters
    ----------
    logits, loc, raw_concentration : array_like
        Raw heads of shape ``batch + (K,)`` (see :class:`MixtureHeads`).
    angles : array_like
        Angles in radians of shape ``batch`` (any real value; the density is 2π-periodic).
    transform : ConcentrationTransform, optional
        Map from ``raw_concentration`` to ``κ`` (default: exp with ``κ_min = 0``).

    Returns
    -------
    jax.Array
        ``log p(θ)`` of shape ``batch``, in the dtype of the inputs.

    Notes
    -----
    With ``w = softmax(logits)``, ``κ = transform.forward(z)`` and ``d_k = θ - μ_k``,

    .. math::

        \log p(θ) = \operatorname{logsumexp}_k \big[\log w_k - 2κ_k \sin^2(d_k/2)
                     - \log 2π - \log \operatorname{i0e}(κ_k)\big],

    which is ``log Σ_k w_k exp(κ_k cos d_k) / (2π I₀(κ_k))`` rewritten with
    ``κ cos d - log I₀(κ) = κ(cos d - 1) - log i0e(κ)`` and ``cos d - 1 = -2 sin²(d/2)``:
    nothing of size ``κ`` is formed and cancelled, so the result keeps its relative precision at
    any ``κ`` (checked at ``κ = 1e4`` in float32; ``log I₀`` alone, as in VonMisesNet, overflows
    float32 at ``κ ≈ 90``). This is :func:`probkit.special.log_i0` minus ``κ``, evaluated without
    the cancellation; its derivative ``A(κ) - 1`` uses the accurate
    :func:`probkit.special.bessel_ratio_complement`. Log-weights come from ``log_softmax``.
    Valid in float32 and float64 for ``κ`` from 0 to beyond 1e8.
    """
    transform = _check_transform(transform)
    logits, loc, raw_concentration = _check_heads(logits, loc, raw_concentration)
    angles = _as_float(angles)
    if angles.shape != logits.shape[:-1]:
        raise ProbkitError(
            f"`angles` must have the heads' batch shape {logits.shape[:-1]}; got {angles.shape}. "
            "The heads carry one extra trailing axis for the K components."
        )
    _check_finite("angles", angles)
    return _mixture_log_likelihood(logits, loc, raw_concentration, angles, transform)


@functools.partial(jax.jit, static_argnames="transform")
def _mixture_log_likelihood(logits, loc, raw_concentration, angles, transform):
    kappa = transform.forward(raw_concentration)
    log_weights = jax.nn.log_softmax(logits, axis=-1)
    half_sine = jnp.sin(0.5 * (angles[..., None] - loc))
    log_components = -2.0 * kappa * half_sine**2 - _LOG_2PI - _log_i0e(kappa)
    return jax.nn.logsumexp(log_weights + log_components, axis=-1)


@jax.custom_jvp
def _log_i0e(kappa):
    # log(e^{-κ} I₀(κ)) for κ >= 0: bounded (between -½log(2πκ) and 0), so never overflows.
    return jnp.log(i0e(kappa))


@_log_i0e.defjvp
def _log_i0e_jvp(primals, tangents):
    (kappa,), (dkappa,) = primals, tangents
    # d/dκ log i0e(κ) = A(κ) - 1; the complement is accurate where A rounds to 1 (κ large).
    return _log_i0e(kappa), -bessel_ratio_complement(kappa) * dkappa


# --------------------------------------------------------------------------------------------
# A small MLP: a list of (W, b) layers
# --------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
}


def init_mlp(key, sizes: Sequence[int], dtype=None) -> list[tuple[jax.Array, jax.Array]]:
    """Glorot-uniform weights and zero biases for an MLP with layer widths ``sizes``.

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    sizes : sequence of int
        ``(n_inputs, hidden_1, …, n_outputs)``; at least two positive integers.
    dtype : dtype, optional
        Floating dtype of the parameters; default JAX's default float (float32 unless x64).

    Returns
    -------
    list of (W, b)
        ``W`` of shape ``(sizes[i], sizes[i + 1])`` drawn from
        ``U(-√(6/(fan_in + fan_out)), +√(6/(fan_in + fan_out)))`` (Glorot & Bengio, 2010), ``b = 0``.
    """
    sizes = [check_positive_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
    if len(sizes) < 2:
        raise ProbkitError(
            f"`sizes` needs at least an input and an output width; got {sizes}. "
            "Pass (n_inputs, ..., n_outputs)."
        )
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    return _init_mlp(key, tuple(sizes), dtype)


@functools.partial(jax.jit, static_argnames=("sizes", "dtype"))
def _init_mlp(key, sizes, dtype):
    # One uniform draw for all layers, sliced and scaled: one random-bits computation to compile
    # instead of one per layer (compilation, not arithmetic, dominates small networks).
    fans = list(itertools.pairwise(sizes))
    uniform = jax.random.uniform(key, (sum(i * o for i, o in fans),), dtype, -1.0, 1.0)
    layers, offset = [], 0
    for fan_in, fan_out in fans:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weight = limit * uniform[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out)
        layers.append((weight, jnp.zeros((fan_out,), dtype)))
        offset += fan_in * fan_out
    return layers


def apply_mlp(params, inputs, activation: str | Callable = "tanh"):
    """Apply an MLP from :func:`init_mlp`: the activation after every layer but the last.

    Parameters
    ----------
    params : list of (W, b)
        Layers as returned by :func:`init_mlp`.
    inputs : array_like
        Shape ``(..., n_inputs)``.
    activation : str or callable
        ``"tanh"``, ``"relu"``, ``"gelu"``, ``"silu"``, ``"softplus"``, or an elementwise function.

    Returns
    -------
    jax.Array
        Shape ``(..., n_outputs)``; the last layer is linear.
    """
    function = _activation(activation)
    hidden = inputs
    for index, (weight, bias) in enumerate(params):
        hidden = hidden @ weight + bias
        if index < len(params) - 1:
            hidden = function(hidden)
    return hidden


# --------------------------------------------------------------------------------------------
# The amortised mixture model
# --------------------------------------------------------------------------------------------


class AmortizedFit(NamedTuple):
    """What :meth:`AmortizedVonMisesMixture.fit` returns.

    Attributes
    ----------
    params : list of (W, b)
        The trained network parameters.
    loss_trace : jax.Array
        Shape ``(steps,)``: the (minibatch) weighted negative log-likelihood per row at each step,
        evaluated before that step's update.
    """

    params: list
    loss_trace: jax.Array


@dataclasses.dataclass(frozen=True)
class AmortizedVonMisesMixture:
    """An MLP that maps per-row features to a K-component von Mises mixture per angle.

    The model definition only (hyper-parameters); parameters are explicit pytrees, as in flax and
    haiku, so that the model composes with ``jit``, ``vmap``, ``grad`` and any optax optimiser.

    Attributes
    ----------
    n_components : int
        ``K``, the number of mixture components (VonMisesNet uses 4).
    hidden_sizes : sequence of int
        Widths of the hidden layers; ``()`` makes the heads linear in the features (a von Mises
        mixture regression).
    activation : str or callable
        Hidden-layer activation (see :func:`apply_mlp`).
    concentration : ConcentrationTransform, optional
        Raw output to ``κ``; default ``ConcentrationTransform()`` (exp, ``κ_min = 0``).
    n_angles : int, optional
        ``None`` (default): one angle per row, heads of shape ``(n, K)``. An integer ``D``: ``D``
        angles per row (e.g. the torsions of one conformer) with heads ``(n, D, K)`` from one
        shared trunk; the angles are independent given the features, as in VonMisesNet, so a row's
        log-likelihood is the sum over its ``D`` angles.

    Raises
    ------
    ProbkitError
        If ``n_components < 1``, a hidden size or ``n_angles`` is not a positive integer, the
        activation is unknown, or ``concentration`` is not a :class:`ConcentrationTransform`.

    Notes
    -----
    The output layer is initialised with Glorot weights and biases that spread the component
    locations evenly, ``μ_k = -π + π(2k + 1)/K``, with equal weights and ``κ = forward(0)``, so
    the components start distinct. Features should be scaled to ``O(1)`` (the trunk is
    unnormalised). Training (:meth:`fit`) minimises the weighted mean negative log-likelihood, as
    VonMisesNet does (Adam, gradient clipping at norm 1.0).

    Examples
    --------
    >>> import jax, numpy as np
    >>> model = AmortizedVonMisesMixture(n_components=2, hidden_sizes=(8,))
    >>> x = np.linspace(-1, 1, 64)[:, None]
    >>> theta = np.sin(3 * x[:, 0])
    >>> result = model.fit(jax.random.key(0), x, theta, steps=20)
    >>> result.loss_trace.shape
    (20,)
    """

    n_components: int = 4
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str | Callable = "tanh"
    concentration: ConcentrationTransform = dataclasses.field(
        default_factory=ConcentrationTransform
    )
    n_angles: int | None = None

    def __post_init__(self):
        object.__setattr__(
            self, "n_components", check_positive_int("n_components", self.n_components)
        )
        hidden = tuple(
            check_positive_int(f"hidden_sizes[{i}]", size)
            for i, size in enumerate(self.hidden_sizes)
        )
        object.__setattr__(self, "hidden_sizes", hidden)
        _activation(self.activation)
        _check_transform(self.concentration, name="concentration")
        if self.n_angles is not None:
            object.__setattr__(self, "n_angles", check_positive_int("n_angles", self.n_angles))

    # -- shapes --------------------------------------------------------------------------------

    @property
    def _angles_per_row(self) -> int:
        return 1 if self.n_angles is None else self.n_angles

    @property
    def _angle_shape(self) -> tuple[int, ...]:
        return () if self.n_angles is None else (self.n_angles,)

    # -- parameters and forward pass -----------------------------------------------------------

    def init(self, key, n_features: int, dtype=None) -> list[tuple[jax.Array, jax.Array]]:
        """Initial parameters for features of width ``n_features``.

        Parameters
        ----------
        key : jax.Array
            PRNG key.
        n_features : int
            ``F``, the number of features per row.
        dtype : dtype, optional
            Parameter dtype (default: JAX's default float).

        Returns
        -------
        list of (W, b)
            The MLP layers; the last has ``3·D·K`` outputs (logits, loc, raw ``κ``).
        """
        n_features = check_positive_int("n_features", n_features)
        dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
        sizes = (n_features, *self.hidden_sizes, 3 * self._angles_per_row * self.n_components)
        return _init_params(key, sizes, self.n_components, self._angles_per_row, dtype)

    def apply(self, params, features) -> MixtureHeads:
        """Raw head outputs for ``features``.

        Parameters
        ----------
        params : list of (W, b)
            From :meth:`init` or :meth:`fit`.
        features : array_like
            Shape ``(n, F)``.

        Returns
        -------
        MixtureHeads
            ``logits``, ``loc`` and ``raw_concentration``, each ``(n, K)`` (or ``(n, D, K)``).
        """
        return _heads(self, params, self._check_features(params, features))

    def log_likelihood(self, params, features, angles):
        """Per-angle log-density ``log p(θ | features)``.

        Parameters
        ----------
        params : list of (W, b)
            Network parameters.
        features : array_like
            Shape ``(n, F)``.
        angles : array_like
            Shape ``(n,)`` (or ``(n, D)``), radians.

        Returns
        -------
        jax.Array
            The shape of ``angles``.
        """
        features = self._check_features(params, features)
        angles = self._check_angles(angles, features.shape[0], features.dtype)
        return _log_likelihood(self, params, features, angles)

    def loss(self, params, features, angles, sample_weight=None):
        """Weighted mean negative log-likelihood per row: the training objective.

        Parameters
        ----------
        params : list of (W, b)
            Network parameters.
        features, angles : array_like
            As in :meth:`log_likelihood`.
        sample_weight : array_like, optional
            Non-negative row weights of shape ``(n,)`` (e.g. Boltzmann or importance weights);
            default equal weights.

        Returns
        -------
        jax.Array
            ``-Σ_i w_i ℓ_i / Σ_i w_i`` with ``ℓ_i`` the sum of row ``i``'s angle log-densities.
        """
        features = self._check_features(params, features)
        n = features.shape[0]
        angles = self._check_angles(angles, n, features.dtype)
        if sample_weight is None:
            weights = jnp.ones((n,), features.dtype)
        else:
            weights = jnp.asarray(_check_weights(sample_weight, n), features.dtype)
        return _loss(self, params, features, angles, weights)

    def distribution(self, params, features):
        """The predicted mixtures as a ``probkit.circular.mixture.VonMisesMixture``.

        Parameters
        ----------
        params : list of (W, b)
            Network parameters.
        features : array_like
            Shape ``(n, F)``.

        Returns
        -------
        VonMisesMixture
            Batch shape ``(n,)`` (or ``(n, D)``), ``K`` components.
        """
        # Imported here: the distribution module is optional for training and lives beside us.
        from probkit.circular.mixture import VonMisesMixture

        weights, loc, concentration = mixture_parameters(
            *self.apply(params, features), self.concentration
        )
        return VonMisesMixture(weights, loc, concentration)

    # -- training --------------------------------------------------------------------------------

    def fit(
        self,
        key,
        features,
        angles,
        *,
        sample_weight=None,
        optimizer: optax.GradientTransformation | None = None,
        steps: int = 1000,
        batch_size: int | None = None,
        gradient_clip: float | None = 1.0,
        params=None,
    ) -> AmortizedFit:
        """Train by minimising the weighted negative log-likelihood with optax.

        Parameters
        ----------
        key : jax.Array
            PRNG key (initialisation and minibatches).
        features : array_like
            Shape ``(n, F)``, finite.
        angles : array_like
            Shape ``(n,)`` (or ``(n, D)``), radians, finite.
        sample_weight : array_like, optional
            Non-negative finite row weights ``(n,)`` with a positive sum.
        optimizer : optax.GradientTransformation, optional
            Default ``optax.adam(1e-3)`` (VonMisesNet used 1e-4 over many epochs); for small
            problems a larger rate with decay, e.g.
            ``optax.adam(optax.cosine_decay_schedule(0.05, steps))``, converges in far fewer steps.
        steps : int
            Number of optimiser steps.
        batch_size : int, optional
            Rows per step, drawn uniformly with replacement (an unbiased estimate of the full
            loss). ``None``, or a size ``>= n``, uses all rows every step (deterministic).
        gradient_clip : float or None
            Clip gradients to this global norm before the optimiser (VonMisesNet: 1.0);
            ``None`` disables clipping.
        params : list of (W, b), optional
            Starting parameters (to continue training); default :meth:`init`.

        Returns
        -------
        AmortizedFit
            Trained ``params`` and the ``loss_trace`` of shape ``(steps,)``.

        Raises
        ------
        ProbkitError
            On bad input (non-finite or mis-shaped data, bad weights, non-positive ``steps`` or
            ``batch_size``), or if training ends with non-finite parameters.

        Notes
        -----
        The whole loop is one jit-compiled ``lax.scan``; each call compiles once.
        """
        features = _check_data_array("features", features, ndim=2)
        n = features.shape[0]
        angles = self._check_angles(angles, n, features.dtype)
        weights = None if sample_weight is None else _check_weights(sample_weight, n)
        steps = check_positive_int("steps", steps)
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
            if batch_size >= n:
                batch_size = None
        if gradient_clip is not None:
            gradient_clip = _finite_float("gradient_clip", gradient_clip)
            if gradient_clip <= 0:
                raise ProbkitError(
                    f"`gradient_clip` must be a positive norm or None; got {gradient_clip:g}."
                )
        optimizer = optax.adam(1e-3) if optimizer is None else optimizer
        if gradient_clip is not None:
            optimizer = optax.chain(optax.clip_by_global_norm(gradient_clip), optimizer)

        init_key, train_key = jax.random.split(key)
        n_features, k = features.shape[1], self.n_components
        if params is not None:
            self._check_features(params, features)
        # Weights scaled to mean 1, so a uniform minibatch mean of w·ℓ estimates Σwℓ/Σw unbiasedly.
        weights = (
            jnp.ones((n,), features.dtype)
            if weights is None
            else jnp.asarray(weights / weights.mean(), features.dtype)
        )

        def batch_loss(params, x, y, w):
            return -jnp.mean(w * _row_log_likelihood(self, params, x, y))

        @jax.jit
        def train(params, init_key, key, features, angles, weights):
            if params is None:  # initialised inside the one compiled program
                sizes = (n_features, *self.hidden_sizes, 3 * self._angles_per_row * k)
                params = _init_params(init_key, sizes, k, self._angles_per_row, features.dtype)

            def step(carry, step_key):
                params, opt_state = carry
                if batch_size is None:
                    x, y, w = features, angles, weights
                else:
                    rows = jax.random.randint(step_key, (batch_size,), 0, n)
                    x, y, w = features[rows], angles[rows], weights[rows]
                loss, grads = jax.value_and_grad(batch_loss)(params, x, y, w)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            carry = (params, optimizer.init(params))
            # Full-batch steps need no randomness (and skip compiling a key split per step).
            keys = None if batch_size is None else jax.random.split(key, steps)
            (params, _), losses = jax.lax.scan(step, carry, keys, length=steps)
            return params, losses

        params, losses = train(params, init_key, train_key, features, angles, weights)
        leaves = jax.tree_util.tree_leaves(params)
        if not all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves):
            raise ProbkitError(
                "training diverged: the parameters became non-finite. Lower the learning rate, "
                "keep gradient_clip (e.g. 1.0) on, or scale the features to O(1)."
            )
        return AmortizedFit(params, losses)

    # -- internals --------------------------------------------------------------------------------

    def _check_features(self, params, features):
        features = _check_data_array("features", features, ndim=2)
        expected = params[0][0].shape[0]
        if features.shape[1] != expected:
            raise ProbkitError(
                f"`features` has {features.shape[1]} columns but the parameters expect "
                f"{expected}; pass features of shape (n, {expected}) or re-initialise with "
                f"init(key, n_features={features.shape[1]})."
            )
        return features.astype(params[0][0].dtype)

    def _check_angles(self, angles, n, dtype):
        expected = (n, *self._angle_shape)
        angles = _check_data_array("angles", angles, ndim=len(expected))
        if angles.shape != expected:
            layout = "(n,)" if self.n_angles is None else f"(n, {self.n_angles})"
            raise ProbkitError(
                f"`angles` must have shape {layout} = {expected} to match the {n} rows of "
                f"`features`; got {angles.shape}. Pass one row of angles per row of features."
            )
        return angles.astype(dtype)


# Jit-compiled cores of the model's methods; the (hashable, frozen) model is static.


@functools.partial(jax.jit, static_argnames=("sizes", "k", "d", "dtype"))
def _init_params(key, sizes, k, d, dtype):
    # Static on the layer sizes, not on the model, so that models differing only in their
    # concentration transform or activation share one compiled initialiser.
    layers = _init_mlp(key, sizes, dtype)
    weight, bias = layers[-1]
    # Spread the locations so that the components start apart (softmax and a shared raw κ
    # would otherwise leave them interchangeable until noise separates them).
    spread = -jnp.pi + jnp.pi * (2.0 * jnp.arange(k, dtype=dtype) + 1.0) / k
    bias = bias.reshape(3, d, k).at[1].set(jnp.broadcast_to(spread, (d, k))).reshape(-1)
    layers[-1] = (weight, bias)
    return layers


@functools.partial(jax.jit, static_argnames="model")
def _heads(model, params, features):
    outputs = apply_mlp(params, features, model.activation)
    shaped = outputs.reshape((outputs.shape[0], 3, model._angles_per_row, model.n_components))
    if model.n_angles is None:
        shaped = shaped[:, :, 0]
    return MixtureHeads(shaped[:, 0], shaped[:, 1], shaped[:, 2])


@functools.partial(jax.jit, static_argnames="model")
def _log_likelihood(model, params, features, angles):
    heads = _heads(model, params, features)
    return _mixture_log_likelihood(*heads, angles, model.concentration)


def _row_log_likelihood(model, params, features, angles):
    # A row's angles are independent given its features: its log-likelihood is their sum.
    log_density = _log_likelihood(model, params, features, angles)
    return log_density if model.n_angles is None else jnp.sum(log_density, axis=-1)


@functools.partial(jax.jit, static_argnames="model")
def _loss(model, params, features, angles, weights):
    row = _row_log_likelihood(model, params, features, angles)
    return -jnp.sum(weights * row) / jnp.sum(weights)


# --------------------------------------------------------------------------------------------
# Checks (run on concrete values, before anything is traced)
# --------------------------------------------------------------------------------------------


def _check_transform(transform, name: str = "transform") -> ConcentrationTransform:
    if transform is None:
        return ConcentrationTransform()
    if not isinstance(transform, ConcentrationTransform):
        raise ProbkitError(
            f"`{name}` must be a ConcentrationTransform (e.g. ConcentrationTransform('exp')); "
            f"got {type(transform).__name__}."
        )
    return transform


def _activation(activation) -> Callable:
    if callable(activation):
        return activation
    check_choice("activation", activation, tuple(_ACTIVATIONS))
    return _ACTIVATIONS[activation]


def _check_finite(name: str, values) -> None:
    if not is_concrete(values):
        return
    array = np.asarray(values)
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[:3].tolist()
        raise ProbkitError(
            f"`{name}` must be finite; found {int(bad.sum())} NaN or infinite value(s), first at "
            f"index {where}. Remove or impute those rows before fitting."
        )


def _check_data_array(name: str, values, ndim: int):
    array = jnp.asarray(values) if not is_concrete(values) else jnp.asarray(np.asarray(values))
    if array.ndim != ndim:
        raise ProbkitError(
            f"`{name}` must be a {ndim}-D array; got shape {array.shape}."
            + (" Reshape a single feature column with x[:, None]." if name == "features" else "")
        )
    _check_finite(name, array)
    return _as_float(array)


def _check_heads(logits, loc, raw_concentration):
    logits, loc, raw_concentration = (_as_float(h) for h in (logits, loc, raw_concentration))
    if not logits.shape == loc.shape == raw_concentration.shape or logits.ndim == 0:
        raise ProbkitError(
            "`logits`, `loc` and `raw_concentration` must share one shape batch + (K,); got "
            f"{logits.shape}, {loc.shape} and {raw_concentration.shape}."
        )
    if logits.shape[-1] < 1:
        raise ProbkitError("the heads have K = 0 components; pass at least one (K >= 1).")
    return logits, loc, raw_concentration


def _check_weights(sample_weight, n: int) -> np.ndarray:
    if not is_concrete(sample_weight):
        return sample_weight
    weights = np.asarray(sample_weight, dtype=float)
    if weights.shape != (n,):
        raise ProbkitError(
            f"`sample_weight` must have shape (n,) = ({n},), one weight per row; got "
            f"{weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ProbkitError(
            "`sample_weight` must be finite and non-negative with a positive sum; got values in "
            f"[{np.nanmin(weights):g}, {np.nanmax(weights):g}] summing to {np.nansum(weights):g}."
        )
    return weights
