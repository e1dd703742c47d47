"""Plots of a finished (or running) training: learning curves from metrics.jsonl and a confusion matrix.

matplotlib is imported inside the functions and drives an Agg canvas directly (no pyplot), so importing this
module is free, nothing needs a display, and no global pyplot state leaks between calls.

Learning curves read per-epoch records in any of these shapes (several can be mixed):
- `{"kind": "train", "epoch": 3, "loss": ..., "accuracy": ...}` (kind "dev"/"valid"/"test" likewise);
- `{"kind": "eval", "split": "dev", "epoch": 3, "loss": ..., "accuracy": ...}` (an "eval" without split is dev);
- `{"kind": ..., "epoch": 3, "train_loss": ..., "dev_accuracy": ..., "test_accuracy": ...}`.
When several records give the same series the same epoch, the last one wins (an epoch summary written after
per-step records overrides them).
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxcnn.errors import DataError
from jaxcnn.train.workdir import atomic_write_bytes

_SPLITS = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "val": "dev", "test": "test"}
_METRICS = ("loss", "accuracy")
_PREFIXED = re.compile(rf"({'|'.join(_SPLITS)})_({'|'.join(_METRICS)})")
_COLORS = {"train": "tab:blue", "dev": "tab:orange", "test": "tab:green"}

Series = dict[tuple[str, str], dict[float, float]]


def _number(value: Any) -> float | None:
    if value is None:
        return math.nan  # NaN is written as null in metrics.jsonl; keep the gap visible
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _record_split(record: Mapping[str, Any]) -> str | None:
    split = record.get("split")
    if split is None:
        split = "dev" if record.get("kind") == "eval" else record.get("kind")
    return _SPLITS.get(str(split))


def epoch_series(records: Iterable[Mapping[str, Any]]) -> Series:
    """Per-epoch curves from metric records: `{(split, metric): {epoch: value}}`, split in train/dev/test and
    metric in loss/accuracy. Records without a numeric `epoch` are ignored (e.g. a final summary)."""
    series: Series = {}
    for record in records:
        epoch = _number(record.get("epoch"))
        if epoch is None or math.isnan(epoch):
            continue
        split = _record_split(record)
        for key, value in record.items():
            match = _PREFIXED.fullmatch(key)
            if match:
                name = (_SPLITS[match.group(1)], match.group(2))
            elif key in _METRICS and split is not None:
                name = (split, key)
            else:
                continue
            number = _number(value)
            if number is not None:
                series.setdefault(name, {})[epoch] = number
    return series


def best_dev_epoch(records: Iterable[Mapping[str, Any]]) -> float | None:
    """The epoch with the highest dev accuracy, ties going to the later epoch (Kim's rule); None without dev."""
    dev = {e: v for e, v in epoch_series(records).get(("dev", "accuracy"), {}).items() if not math.isnan(v)}
    if not dev:
        return None
    return max(dev, key=lambda epoch: (dev[epoch], epoch))


def _save_png(fig, path: str | os.PathLike) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def plot_training_curves(records: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Writes a PNG with two panels, loss and accuracy against epoch, for train/dev/test where present, and a
    dashed vertical line at the best dev-accuracy epoch.

    Args:
        records: metric records, e.g. `read_metrics(WORKDIR/"metrics.jsonl")` (shapes in the module docstring).
        path: the PNG to write (atomically; parent folders are created).

    Raises:
        DataError: no record has a per-epoch loss or accuracy.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = epoch_series(records)
    if not series:
        raise DataError("no per-epoch loss or accuracy in the metric records; nothing to plot")
    best = best_dev_epoch(records)
    epochs = sorted({e for points in series.values() for e in points})
    fig = Figure(figsize=(11, 4.2))
    for ax, metric in zip(fig.subplots(1, 2), _METRICS):
        for split in ("train", "dev", "test"):
            points = series.get((split, metric))
            if points:
                epochs = sorted(points)
                ax.plot(epochs, [points[e] for e in epochs], marker="o", markersize=3, label=split,
                        color=_COLORS[split])
        if best is not None:
            ax.axvline(best, color="gray", linestyle="--", linewidth=1, label=f"best dev (epoch {best:g})")
        if len(epochs) <= 20 and all(float(e).is_integer() for e in epochs):
            ax.set_xticks(epochs)  # every epoch, and only epochs (a locator puts 0.8, 1.0, 1.2 around one point)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    _save_png(fig, path)


def plot_confusion_matrix(cm: np.ndarray, label_names: Sequence[str], path: str | os.PathLike, *,
                          normalize: bool = True, title: str = "confusion matrix", total_classes: int | None = None
                          ) -> None:
    """Writes a PNG of a confusion matrix (rows: true label, columns: predicted), each cell annotated with its
    count and, when `normalize`, its share of the row (the per-class recall), which then sets the colour.

    The image stays readable and its size bounded whatever the number of classes: above
    `metrics.MAX_CLASSES_IN_FULL` classes it shows the most confused of them (`metrics.most_confused`), and cells
    lose their text above 30.

    Args:
        cm: `<int or float>[num_classes, num_classes]` counts.
        label_names: one name per class, in index order.
        path: the PNG to write (atomically).
        title: what the matrix is (e.g. the split and the epoch); the classes left out are added to it.
        total_classes: the classes of the model when `cm` already holds only some of them.

    Raises:
        ValueError: `cm` is not square or does not match `label_names`.
    """
    from matplotlib.figure import Figure

    from jaxcnn.train.metrics import MAX_CLASSES_IN_FULL, most_confused

    cm = np.asarray(cm)
    n = len(label_names)
    if cm.ndim != 2 or cm.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {n} label names")
    if n > MAX_CLASSES_IN_FULL:
        keep = most_confused(cm)
        cm, label_names, total_classes = cm[np.ix_(keep, keep)], [label_names[i] for i in keep], n
        n = len(keep)
    if total_classes is not None and total_classes > n:
        title += f" ({n} most confused of {total_classes} classes)"
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    shown = shares if normalize else cm
    size = min(max(4.0, 0.7 * n + 2.5), 16.0)  # 50 classes fit 16 inches; more would make a poster
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(float(cm.max()), 1.0))
    fig.colorbar(image, ax=ax, label="share of true class" if normalize else "count")
    threshold = (1.0 if normalize else max(float(cm.max()), 1.0)) / 2
    fontsize = max(5, 10 - n // 5)
    for i in range(n if n <= 30 else 0):
        for j in range(n):
            value = float(cm[i, j])
            count = f"{value:.0f}" if value.is_integer() else f"{value:.3g}"
            text = f"{count}\n{shares[i, j]:.0%}" if normalize else count
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if shown[i, j] > threshold else "black")
    ax.set_xticks(range(n), labels=list(label_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (", row-normalized" if normalize else ""))
    fig.tight_layout()
    _save_png(fig, path)
