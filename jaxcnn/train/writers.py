"""Metric logging: `WORKDIR/metrics.jsonl` as the record of a run, plus TensorBoard for watching it.

metrics.jsonl holds one JSON object per line, each with at least `kind` ("train", "eval", ...) and `step`. Each
line is written in one `write` call and fsynced, so a killed run loses at most a torn last line, which readers drop
with a warning. Non-finite floats are written as `null`, to keep every line standard JSON.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jaxcnn.errors import DataError, WorkdirError
from jaxcnn.train.workdir import atomic_write_text, to_json

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_NAME = "tensorboard"


class MetricsWarning(UserWarning):
    """A metrics file had a torn last line (from a killed run), which was dropped."""


def _python(value: Any) -> Any:
    """numpy/jax scalars -> Python numbers, arrays -> nested lists, containers recursively."""
    if hasattr(value, "__array__") and not isinstance(value, (list, tuple, dict)):
        value = value.item() if getattr(value, "ndim", None) == 0 else value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_python(v) for v in value]
    return value


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def record_line(record: Mapping[str, Any]) -> str:
    """One metrics.jsonl line (newline included): numpy/jax values as Python ones, non-finite floats as null."""
    return to_json(_finite_or_none(_python(dict(record)))) + "\n"


def _parse_lines(path: pathlib.Path, text: str) -> Iterator[dict]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):
                warnings.warn(f"{path}:{lineno}: dropped a torn last line (the run was killed while writing it)",
                              MetricsWarning, stacklevel=3)
                return
            raise DataError(f"not valid JSON ({e.msg}, column {e.colno})", path, line=lineno) from e
        except (RecursionError, ValueError) as e:  # nested too deeply; an integer of more than 4300 digits
            raise DataError(f"unusable JSON ({e.__class__.__name__})", path, line=lineno) from e
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, found {type(record).__name__}", path, line=lineno)
        yield record


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Reads a metrics.jsonl file.

    A torn last line (from a run killed mid-write) is dropped with a `MetricsWarning`; blank lines are skipped.

    Raises:
        DataError: the file is missing or unreadable, or a line other than the last is not a JSON object
            (`path:line: ...`).
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError("no such metrics file", path) from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read ({e})", path) from e
    return list(_parse_lines(path, text))


class MetricWriter:
    """Appends metric records to `WORKDIR/metrics.jsonl` and mirrors their scalars to TensorBoard.

    Each record is a dict with `kind`, `step` and usually `epoch`, plus metrics. Scalars go to TensorBoard
    (tensorboardX, in `WORKDIR/tensorboard`) as `f"{kind}/{key}"` at `step`; lists, confusion matrices and strings
    go only to metrics.jsonl. On resume, call `truncate` before writing, so the file has no duplicated epochs.

    Attributes:
        path: the metrics.jsonl file.
        tensorboard_dir: the TensorBoard log folder, or None when TensorBoard is off.
    """

    def __init__(self, workdir: str | os.PathLike, *, tensorboard: bool = True):
        workdir = pathlib.Path(workdir)
        self.path = workdir / METRICS_NAME
        self.tensorboard_dir = workdir / TENSORBOARD_NAME if tensorboard else None
        self._purge_step: int | None = None
        self._tb = None
        self._file = None
        if self.path.exists() and not self._ends_with_newline():
            # Appending after a torn line would glue the next record onto it and corrupt a middle line.
            self._rewrite(lambda record: True)
        self._open()

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise WorkdirError(f"{self.path}: cannot open for writing ({e.strerror})") from e

    def _summary_writer(self):
        if self._tb is None:
            # Imported here: tensorboardX pulls in protobuf, which a run without TensorBoard need not load.
            SummaryWriter = _import_summary_writer()

            # purge_step makes TensorBoard hide the events that a killed run wrote past the resume point. Event
            # files are named by the second they open in; the suffix keeps a quick resume from overwriting one.
            self._tb = SummaryWriter(str(self.tensorboard_dir), purge_step=self._purge_step, flush_secs=10,
                                     filename_suffix=f".{os.getpid()}.{time.time_ns()}")
        return self._tb

    def write(self, record: Mapping[str, Any]) -> None:
        """Appends one record (durably: flushed and fsynced) and logs its scalars to TensorBoard.

        Args:
            record: `{"kind": str, "step": int, "epoch": int, <metric>: value, ...}`. Values may be Python, numpy
                or jax numbers or arrays.

        Raises:
            ValueError: `kind` or `step` is missing.
            WorkdirError: the file cannot be written (disk full).
        """
        if "kind" not in record or "step" not in record:
            raise ValueError(f"a metric record needs 'kind' and 'step'; got keys {sorted(record)}")
        if self._file is None:
            raise ValueError(f"{self.path}: MetricWriter is closed")
        line = record_line(record)
        try:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise WorkdirError(f"{self.path}: cannot write ({e.strerror})") from e
        if self.tensorboard_dir is not None:
            self._write_scalars(_python(dict(record)))

    def _write_scalars(self, record: Mapping[str, Any]) -> None:
        kind, step = record["kind"], int(record["step"])
        # A record of one member of several goes under that member's own tags.
        prefix = f"member-{record['member']}/" if "member" in record else ""
        tb = self._summary_writer()
        for key, value in record.items():
            if key in ("kind", "step", "epoch", "member"):
                continue
            scalar = _scalar(value)
            if scalar is not None:
                tb.add_scalar(f"{prefix}{kind}/{key}", scalar, global_step=step)

    def truncate(self, keep: Callable[[dict], bool]) -> None:
        """Rewrites metrics.jsonl atomically, keeping only the records for which `keep(record)` is true.

        Call it on resume with e.g. `lambda r: r["epoch"] <= restored_epoch`, so the records that a killed run
        wrote after its last checkpoint are not duplicated. A torn last line is dropped with a `MetricsWarning`.
        TensorBoard events past the last kept step are hidden too (tensorboardX `purge_step`).

        Raises:
            DataError: a middle line of the file is corrupt.
            WorkdirError: the file cannot be rewritten.
        """
        if self._file is not None:
            self._file.close()
            self._file = None
        self._rewrite(keep)
        self._open()

    def _rewrite(self, keep: Callable[[dict], bool]) -> None:
        if not self.path.exists():
            return
        kept = [record for record in read_metrics(self.path) if keep(record)]
        atomic_write_text(self.path, "".join(to_json(record) + "\n" for record in kept))
        steps = [int(r["step"]) for r in kept if isinstance(r.get("step"), (int, float))]
        self._purge_step = max(steps, default=-1) + 1
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def close(self) -> None:
        """Closes the file and flushes TensorBoard; further writes raise."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _import_summary_writer():
    """tensorboardX's SummaryWriter, imported with PyTorch hidden: tensorboardX imports torch whenever it is
    installed (about 1 s and 200 MB of resident memory, measured), only to accept torch tensors, which jaxcnn never
    passes. An already imported torch is left alone."""
    import sys

    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter

