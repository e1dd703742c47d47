"""Training-curve and confusion-matrix PNGs, and the per-epoch series they are drawn from."""

import math

import matplotlib.image
import numpy as np
import pytest

from jaxcnn.errors import DataError
from jaxcnn.train.plots import best_dev_epoch, epoch_series, plot_confusion_matrix, plot_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RECORDS = [
    {"kind": "train", "step": 5, "epoch": 1, "loss": 0.9},  # a per-step record, superseded by the summary below
    {"kind": "train", "step": 10, "epoch": 1, "loss": 0.7, "accuracy": 0.6},
    {"kind": "eval", "split": "dev", "step": 10, "epoch": 1, "loss": 0.6, "accuracy": 0.70},
    {"kind": "train", "step": 20, "epoch": 2, "loss": 0.5, "accuracy": 0.8},
    {"kind": "eval", "split": "dev", "step": 20, "epoch": 2, "loss": 0.5, "accuracy": 0.75},
    {"kind": "train", "step": 30, "epoch": 3, "loss": 0.3, "accuracy": 0.9},
    {"kind": "eval", "step": 30, "epoch": 3, "loss": None, "accuracy": 0.75, "confusion": [[1, 0], [0, 1]]},
    {"kind": "summary", "step": 30, "epoch": 3, "test_accuracy": 0.74},
    {"kind": "summary", "step": 30, "best_epoch": 3},  # no epoch: not a point
]


def _assert_png(path, min_width: int) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert width >= min_width and height > 100


def test_epoch_series_reads_all_record_shapes():
    series = epoch_series(RECORDS)
    assert series[("train", "loss")] == {1: 0.7, 2: 0.5, 3: 0.3}
    assert series[("dev", "accuracy")] == {1: 0.70, 2: 0.75, 3: 0.75}
    assert math.isnan(series[("dev", "loss")][3])
    assert series[("test", "accuracy")] == {3: 0.74}
    assert set(series) == {("train", "loss"), ("train", "accuracy"), ("dev", "loss"), ("dev", "accuracy"),
                           ("test", "accuracy")}


def test_best_dev_epoch_ties_go_to_the_later_epoch():
    assert best_dev_epoch(RECORDS) == 3
    assert best_dev_epoch([{"kind": "train", "epoch": 1, "accuracy": 0.9}]) is None


def test_plot_training_curves_writes_a_png(tmp_path):
    path = tmp_path / "plots" / "curves.png"
    plot_training_curves(RECORDS, path)
    _assert_png(path, min_width=1000)
    with pytest.raises(DataError, match="no per-epoch loss or accuracy"):
        plot_training_curves([{"kind": "train", "step": 1}], tmp_path / "empty.png")


@pytest.mark.parametrize("normalize", [True, False])
def test_plot_confusion_matrix_writes_a_png(tmp_path, normalize):
    cm = np.array([[50, 3, 0], [4, 40, 6], [0, 0, 0]])  # an empty row must not divide by zero
    path = tmp_path / "cm.png"
    plot_confusion_matrix(cm, ["ABBR", "DESC", "ENTY"], path, normalize=normalize)
    _assert_png(path, min_width=400)


def test_plot_confusion_matrix_checks_the_labels(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(2, 2\) does not match 3 label names"):
        plot_confusion_matrix(np.eye(2), ["a", "b", "c"], tmp_path / "cm.png")
