"""Classification metrics as sums and counts.

On the device a batch contributes a confusion matrix (a sum of masked one-hot outer products) and a loss sum;
host code adds these up and derives accuracy, macro-F1 and per-class precision/recall once at the end, so the
figures are exact at any batch size and device count, and padded examples (mask 0) never count.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def batch_counts(logits: jax.Array, labels: jax.Array, mask: jax.Array, loss: jax.Array) -> dict[str, jax.Array]:
    """Sums for one batch.

    Args:
      logits: <float32>[batch, classes]. labels: <int32>[batch]. mask: <bool|float>[batch], 1 for real examples.
      loss: <float32>[batch], per-example loss.
    Returns:
      {"loss_sum": <float32>[], "count": <float32>[], "confusion": <float32>[classes, classes]} where
      confusion[i, j] counts examples of true class i predicted as j.
    """
    num_classes = logits.shape[-1]
    w = mask.astype(jnp.float32)
    pred = jnp.argmax(logits, -1)
    onehot_true = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * w[:, None]
    onehot_pred = jax.nn.one_hot(pred, num_classes, dtype=jnp.float32)
    return {
        "loss_sum": jnp.sum(loss * w),
        "count": jnp.sum(w),
        "confusion": onehot_true.T @ onehot_pred,
    }


def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return jax.tree.map(lambda x, y: x + y, a, b)


MAX_CLASSES_IN_FULL = 50  # above this, records carry the most confused classes, not every class


def most_confused(cm: np.ndarray, k: int = MAX_CLASSES_IN_FULL) -> np.ndarray:
    """The ids (in class order) of the `k` classes most involved in errors: the largest off-diagonal row plus
    column sums, ties to the class with more examples, then the lower id."""
    off = cm - np.diag(np.diag(cm))
    involvement = off.sum(0) + off.sum(1)
    order = np.lexsort((np.arange(len(cm)), -cm.sum(1), -involvement))
    return np.sort(order[:k])


def summarize(counts: dict[str, Any], label_names: list[str] | None = None) -> dict[str, Any]:
    """Host-side: turns summed counts into loss, accuracy, macro-F1, per-class precision/recall and the matrix.

    With more than `MAX_CLASSES_IN_FULL` classes, metrics.jsonl, summary.json and the checkpoints' meta would grow
    with the square of the class count (1000 classes: megabytes a line), so the per-class entries and the matrix
    are those of the `MAX_CLASSES_IN_FULL` most confused classes (`most_confused`), under "classes_shown"."""
    cm = np.asarray(counts["confusion"], dtype=np.float64)
    n = float(np.asarray(counts["count"]))
    tp = np.diag(cm)
    predicted = cm.sum(0)
    actual = cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = actual > 0
    names = list(label_names or [str(i) for i in range(cm.shape[0])])
    out = {
        "loss": float(np.asarray(counts["loss_sum"])) / max(n, 1.0),
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "examples": int(round(n)),
    }
    shown = np.arange(len(cm))
    if len(cm) > MAX_CLASSES_IN_FULL:
        shown = most_confused(cm)
        out["classes_shown"] = [names[i] for i in shown]
    out["precision"] = {names[i]: float(precision[i]) for i in shown}
    out["recall"] = {names[i]: float(recall[i]) for i in shown}
    out["confusion"] = cm[np.ix_(shown, shown)].astype(np.int64).tolist()
    return out
