"""MetricWriter: jsonl records, TensorBoard scalars, truncate on resume, torn and corrupt lines."""

import json
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from jaxcnn.errors import DataError
from jaxcnn.train.writers import MetricsWarning, MetricWriter, read_metrics


def _epoch(kind: str, epoch: int, **metrics) -> dict:
    return {"kind": kind, "step": 10 * epoch, "epoch": epoch, **metrics}


def _events(path) -> list[event_pb2.Event]:
    """Reads a tfevents file with the TFRecord framing: u64 length, u32 crc, payload, u32 crc."""
    data = path.read_bytes()
    events, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        events.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
        offset += 12 + length + 4
    return events


def _tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    scalars = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in _events(path):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_records_go_to_jsonl_and_scalars_to_tensorboard(tmp_path):
    with MetricWriter(tmp_path) as writer:
        writer.write(_epoch("train", 1, loss=np.float32(0.5), accuracy=jnp.asarray(0.75), lr=1.0))
        writer.write(_epoch("eval", 1, split="dev", accuracy=0.7, loss=float("nan"),
                            confusion=np.array([[3, 1], [2, 4]]), correct=True))
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records == [
        {"kind": "train", "step": 10, "epoch": 1, "loss": 0.5, "accuracy": 0.75, "lr": 1.0},
        {"kind": "eval", "step": 10, "epoch": 1, "split": "dev", "accuracy": 0.7, "loss": None,
         "confusion": [[3, 1], [2, 4]], "correct": True},
    ]
    assert all(json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())
    scalars = _tensorboard_scalars(tmp_path / "tensorboard")
    assert set(scalars) == {"train/loss", "train/accuracy", "train/lr", "eval/accuracy", "eval/loss"}
    assert scalars["train/accuracy"] == [(10, 0.75)]
    assert np.isnan(scalars["eval/loss"][0][1])  # TensorBoard shows the NaN that jsonl stores as null


def test_truncate_on_resume_leaves_each_epoch_once(tmp_path):
    with MetricWriter(tmp_path) as writer:
        for epoch in range(1, 5):
            writer.write(_epoch("train", epoch, loss=1.0 / epoch))
    with MetricWriter(tmp_path) as resumed:  # the checkpoint was from epoch 2; epochs 3-4 are rerun
        resumed.truncate(lambda r: r["epoch"] <= 2)
        for epoch in (3, 4):
            resumed.write(_epoch("train", epoch, loss=0.0))
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert [r["loss"] for r in records] == [1.0, 0.5, 0.0, 0.0]
    # TensorBoard: the resumed writer's file starts with a purge at step 21, hiding the killed run's 30 and 40.
    files = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns)
    assert len(files) == 2
    starts = [e.step for e in _events(files[1]) if e.session_log.status == event_pb2.SessionLog.START]
    assert starts == [21]


def test_torn_last_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        writer.write(_epoch("train", 1, loss=0.5))
        writer.write(_epoch("train", 2, loss=0.4))
    with open(path, "a") as f:
        f.write('{"kind": "train", "step": 30, "ep')  # killed mid-write
    with pytest.warns(MetricsWarning, match=r"metrics.jsonl:3: dropped a torn last line"):
        assert [r["epoch"] for r in read_metrics(path)] == [1, 2]
    with pytest.warns(MetricsWarning):
        writer = MetricWriter(tmp_path, tensorboard=False)  # repairs before appending
    with writer:
        writer.write(_epoch("train", 3, loss=0.3))
    assert [r["epoch"] for r in read_metrics(path)] == [1, 2, 3]
    assert not (tmp_path / "tensorboard").exists()


def test_corrupt_middle_line_is_a_data_error_naming_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1}\n{"kind": tr\n{"kind": "train", "step": 2}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: not valid JSON"):
        read_metrics(path)
    path.write_text('{"kind": "train", "step": 1}\n[1, 2]\n{"kind": "train", "step": 2}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: expected a JSON object, found list$"):
        MetricWriter(tmp_path, tensorboard=False).truncate(lambda r: True)
    with pytest.raises(DataError, match=f"^{tmp_path}/missing.jsonl: no such metrics file$"):
        read_metrics(tmp_path / "missing.jsonl")


def test_a_record_needs_kind_and_step(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False) as writer, pytest.raises(ValueError, match="'kind' and 'step'"):
        writer.write({"epoch": 1, "loss": 0.1})
