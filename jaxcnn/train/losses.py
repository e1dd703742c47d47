"""Per-example losses. Each returns <float32>[batch]; the step weights them by the batch mask and divides once.

Targets: integer class ids <int32>[batch] for the classification losses, <float32>[batch, classes] multi-hot
for `multilabel_sigmoid_ce`, <float32>[batch] or [batch, outputs] for the regression losses.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxcnn.errors import ConfigError


def softmax_ce(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Softmax cross-entropy against class ids, with optional label smoothing."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def sigmoid_ce(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Binary cross-entropy: one logit per example (<float32>[batch, 1] or [batch]) and 0/1 labels; with two or
    more logits it is one-vs-rest against the one-hot class id."""
    if logits.ndim == 2 and logits.shape[-1] > 1:
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    else:
        logits = logits.reshape(labels.shape)
        targets = labels.astype(logits.dtype)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    loss = optax.sigmoid_binary_cross_entropy(logits, targets)
    return loss.sum(-1) if loss.ndim == 2 else loss


def multilabel_sigmoid_ce(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Independent binary cross-entropy per label against multi-hot targets <float32>[batch, labels]."""
    targets = targets.astype(logits.dtype)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    return optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)


def mse(predictions: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Squared error, summed over output dimensions."""
    err = jnp.square(predictions.reshape(targets.shape) - targets.astype(predictions.dtype))
    return err.reshape(err.shape[0], -1).sum(-1)


def huber(predictions: jax.Array, targets: jax.Array, label_smoothing: float = 0.0, delta: float = 1.0) -> jax.Array:
    """Huber / smooth-L1 loss (delta 1), summed over output dimensions."""
    err = optax.huber_loss(predictions.reshape(targets.shape), targets.astype(predictions.dtype), delta=delta)
    return err.reshape(err.shape[0], -1).sum(-1)


LOSSES: dict[str, Callable[..., jax.Array]] = {
    "softmax_ce": softmax_ce,
    "sigmoid_ce": sigmoid_ce,
    "multilabel_sigmoid_ce": multilabel_sigmoid_ce,
    "mse": mse,
    "huber": huber,
}


def get_loss(name: str) -> Callable[..., jax.Array]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"--loss: unknown loss {name!r} (choices: {', '.join(LOSSES)})") from None
