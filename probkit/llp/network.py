"""The instance network shared by every LLP learner, and its losses on bags.

A multilayer perceptron ``x → logit`` (ReLU hidden layers; the last hidden layer is the
embedding that LLP-BP's next round builds its graph on) in plain JAX, trained with optax. Data
are laid out by bags, ``members`` of shape ``(B, w)`` with a mask, so that a mini-batch is a set
of whole bags and bag-level losses see every member of their bags. The losses:

``"instance"``
    Binary cross-entropy against per-row targets ``t_i`` (pseudo-labels, soft labels, or
    EasyLLP's debiased labels, which may leave ``[0, 1]``), ``t ℓ(f, 1) + (1 − t) ℓ(f, 0)``.
``"bag"``
    DLLP (Ardehaly & Culotta 2017): cross-entropy between the bag's proportion and the mean of
    its members' predicted probabilities.
``"aggregate"``
    LLP-BP's final model (Havaldar et al. 2024): the instance loss plus ``λ_agg`` times the
    cross-entropy between the bag's proportion and a bag head applied to the mean embedding.

Why by hand: the network is four dense layers, and writing it in JAX keeps probkit's
dependencies to JAX and optax (no flax or equinox) while giving the bag-structured batches
these losses need.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["NetworkParams", "TrainingReport", "init_network", "predict_logits", "train_network"]

_PREDICT_BLOCK = 4096
_BAG_HEAD_WIDTH = 64


class NetworkParams(NamedTuple):
    """Weights of the instance network and of the (optional) bag head.

    Attributes
    ----------
    layers : tuple of (W, b)
        Dense layers, the last one mapping to one logit.
    bag_head : tuple of (W, b)
        Two dense layers from a mean embedding to a bag logit (used by the aggregate loss).
    """

    layers: tuple[tuple[jax.Array, jax.Array], ...]
    bag_head: tuple[tuple[jax.Array, jax.Array], ...]


def _dense(key, fan_in, fan_out):
    # He initialisation for ReLU layers.
    weight = jax.random.normal(key, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
    return weight.astype(jnp.float32), jnp.zeros(fan_out, jnp.float32)


def init_network(key: jax.Array, num_features: int, hidden: tuple[int, ...]) -> NetworkParams:
    """Initialise the network ``num_features → hidden… → 1`` and a bag head on the embedding."""
    sizes = (num_features, *hidden, 1)
    keys = jax.random.split(key, len(sizes) + 1)
    layers = tuple(_dense(keys[i], sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1))
    embedding = hidden[-1] if hidden else num_features
    head = (
        _dense(keys[-2], embedding, _BAG_HEAD_WIDTH),
        _dense(keys[-1], _BAG_HEAD_WIDTH, 1),
    )
    return NetworkParams(layers=layers, bag_head=head)


def forward(params: NetworkParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The logit and the embedding (last hidden layer) of each row of ``x``."""
    h = x
    for weight, bias in params.layers[:-1]:
        h = jax.nn.relu(h @ weight + bias)
    weight, bias = params.layers[-1]
    return (h @ weight + bias)[..., 0], h


def _bag_logit(head, embedding):
    (w1, b1), (w2, b2) = head
    return (jax.nn.relu(embedding @ w1 + b1) @ w2 + b2)[..., 0]


def _cross_entropy(logit, target):
    # t ℓ(z, 1) + (1 − t) ℓ(z, 0), linear in t (EasyLLP's targets may leave [0, 1]).
    return -(target * jax.nn.log_sigmoid(logit) + (1.0 - target) * jax.nn.log_sigmoid(-logit))


def _proportion_cross_entropy(probability, proportion):
    eps = 1e-6
    probability = jnp.clip(probability, eps, 1.0 - eps)
    return -(proportion * jnp.log(probability) + (1.0 - proportion) * jnp.log1p(-probability))


def batch_loss(params, x, mask, targets, proportions, loss: str, aggregate_weight: float):
    """Mean loss of a batch of whole bags: ``x`` (b, w, d), ``mask``/``targets`` (b, w)."""
    logit, embedding = forward(params, x)
    weight = mask.astype(logit.dtype)
    members = jnp.maximum(jnp.sum(weight, axis=1), 1.0)
    if loss == "bag":
        mean_probability = jnp.sum(jax.nn.sigmoid(logit) * weight, axis=1) / members
        bag_weight = (jnp.sum(weight, axis=1) > 0).astype(logit.dtype)
        return jnp.sum(_proportion_cross_entropy(mean_probability, proportions) * bag_weight) / (
            jnp.maximum(jnp.sum(bag_weight), 1.0)
        )
    instance = jnp.sum(_cross_entropy(logit, targets) * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    if loss == "instance":
        return instance
    mean_embedding = jnp.sum(embedding * weight[..., None], axis=1) / members[:, None]
    bag_probability = jax.nn.sigmoid(_bag_logit(params.bag_head, mean_embedding))
    bag_weight = (jnp.sum(weight, axis=1) > 0).astype(logit.dtype)
    bag_term = jnp.sum(_proportion_cross_entropy(bag_probability, proportions) * bag_weight) / (
        jnp.maximum(jnp.sum(bag_weight), 1.0)
    )
    return instance + aggregate_weight * bag_term


@dataclasses.dataclass(frozen=True)
class TrainingReport:
    """What training did: epochs run, the best epoch and the validation losses per epoch."""

    epochs: int
    best_epoch: int
    validation_losses: tuple[float, ...]


@functools.lru_cache(maxsize=32)
def _epoch_function(learning_rate: float, weight_decay: float, loss: str, aggregate_weight: float):
    # Cached on the settings, so that refitting reuses the compiled epoch.
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

    def epoch(params, state, x, members, mask, targets, proportions, batches):
        def step(carry, bag_batch):
            params, state = carry
            rows = members[bag_batch]
            value, grads = jax.value_and_grad(batch_loss)(
                params,
                x[rows],
                mask[bag_batch],
                targets[rows],
                proportions[bag_batch],
                loss,
                aggregate_weight,
            )
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, state), values = jax.lax.scan(step, (params, state), batches)
        return params, state, jnp.mean(values)

    return optimizer, jax.jit(epoch)


@jax.jit
def _bag_validation_loss(params, x, members, mask, proportions):
    # Held-out bags: cross-entropy of each bag's proportion against its mean prediction.
    logit, _ = forward(params, x[members])
    weight = mask.astype(logit.dtype)
    mean_probability = jnp.sum(jax.nn.sigmoid(logit) * weight, axis=1) / jnp.sum(weight, axis=1)
    return jnp.mean(_proportion_cross_entropy(mean_probability, proportions))


def train_network(
    key: jax.Array,
    params: NetworkParams,
    x: np.ndarray,
    members: np.ndarray,
    mask: np.ndarray,
    targets: np.ndarray,
    proportions: np.ndarray,
    *,
    loss: str,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    epochs: int = 50,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_rows: int = 1024,
    patience: int = 5,
    aggregate_weight: float = 0.1,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
) -> tuple[NetworkParams, TrainingReport]:
    """Train with AdamW on mini-batches of whole bags, keeping the best epoch on held-out bags.

    Parameters
    ----------
    key : jax.Array
        Shuffles the bags each epoch.
    params : NetworkParams
        Starting weights.
    x : numpy.ndarray, shape (n, d)
        Features of the training rows.
    members, mask : numpy.ndarray, shape (B, w)
        The padded rows of each training bag.
    targets : numpy.ndarray, shape (n,)
        Per-row targets of the instance loss (ignored by ``loss="bag"``).
    proportions : numpy.ndarray, shape (B,)
        ``k_b / m_b`` of the training bags.
    loss : {"instance", "bag", "aggregate"}
        See the module documentation.
    validation : (members, mask, proportions), optional
        Held-out bags (rows index ``x``); early stopping follows their bag cross-entropy, which
        needs no instance label. Without it, training runs all epochs.
    epochs, learning_rate, weight_decay, batch_rows, patience, aggregate_weight
        The optimiser's settings; ``batch_rows`` is the approximate number of rows per batch.
    on_epoch : callable, optional
        Called after every epoch with its number (from 1), its mean training loss and the
        held-out bag loss (None without validation): progress for long fits.

    Returns
    -------
    params : NetworkParams
        The weights of the best epoch (the last one without validation).
    report : TrainingReport
    """
    optimizer, epoch_fn = _epoch_function(
        float(learning_rate), float(weight_decay), loss, float(aggregate_weight)
    )
    num_bags, width = members.shape
    bags_per_batch = int(max(1, min(num_bags, batch_rows // width)))
    num_batches = -(-num_bags // bags_per_batch)
    x_device = jnp.asarray(x, jnp.float32)
    arrays = (
        jnp.asarray(members),
        jnp.asarray(mask),
        jnp.asarray(targets, jnp.float32),
        jnp.asarray(proportions, jnp.float32),
    )
    state = optimizer.init(params)
    best, best_loss, best_epoch, losses = params, np.inf, 0, []
    for epoch in range(epochs):
        key, shuffle_key = jax.random.split(key)
        order = np.asarray(jax.random.permutation(shuffle_key, num_bags))
        order = np.resize(order, num_batches * bags_per_batch)  # wrap to whole batches
        batches = jnp.asarray(order.reshape(num_batches, bags_per_batch))
        params, state, training_loss = epoch_fn(params, state, x_device, *arrays, batches)
        if validation is None:
            best, best_epoch = params, epoch
            if on_epoch is not None:
                on_epoch(epoch + 1, float(training_loss), None)
            continue
        value = float(
            _bag_validation_loss(
                params,
                x_device,
                jnp.asarray(validation[0]),
                jnp.asarray(validation[1]),
                jnp.asarray(validation[2], jnp.float32),
            )
        )
        losses.append(value)
        if on_epoch is not None:
            on_epoch(epoch + 1, float(training_loss), value)
        if value < best_loss - 1e-5:
            best, best_loss, best_epoch = params, value, epoch
        elif epoch - best_epoch >= patience:
            break
    return best, TrainingReport(
        epochs=epoch + 1, best_epoch=best_epoch, validation_losses=tuple(losses)
    )


@jax.jit
def _predict_block(params, x):
    return forward(params, x)


def predict_logits(params: NetworkParams, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of all rows, in fixed-size blocks (one compilation)."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    block = min(_PREDICT_BLOCK, max(n, 1))
    padded = np.zeros((-(-n // block) * block, x.shape[1]), np.float32)
    padded[:n] = x
    logits, embeddings = [], []
    for start in range(0, len(padded), block):
        logit, embedding = _predict_block(params, jnp.asarray(padded[start : start + block]))
        logits.append(np.asarray(logit))
        embeddings.append(np.asarray(embedding))
    return np.concatenate(logits)[:n], np.concatenate(embeddings)[:n]
