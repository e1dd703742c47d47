"""Checkpoints: Orbax v0 `CheckpointManager` with named items, latest + best retention and corrupt-step fallback.

Each step folder `DIRECTORY/<step>/` holds two named items: `state` (a pytree of arrays: params, optimizer state,
step, epoch, rng key data, data-order state) and `meta` (small JSON: config, vocabulary, label names). Orbax also
writes `metrics` there, which drives best-checkpoint retention.

Three Orbax traps shape this module (see notes/stack.md §4):
- With `best_fn`, Orbax's `max_to_keep` keeps the N *best* and deletes the newest, i.e. the resume point. So the
  preservation policy is `AnyPreservationPolicy([LatestN, BestN])`.
- A corrupt or empty step folder is still listed and becomes `latest_step()`. Restores therefore go newest-first
  and fall back to older steps; a corrupt step that an older one replaced is renamed `<step>.corrupt` (Orbax ignores
  such names), so that the resumed run can save that step number again.
- Async saves fail in a background thread. The failure surfaces at the next `save`, `wait` or `close`, where it
  becomes a one-line `WorkdirError`; Orbax writes into a temporary folder and renames it only on success, so the
  previous checkpoint stays intact.

Orbax also logs (through absl) its own multi-line reports of these failures, and warnings while a corrupt step is
tried; a manager drops those echoes of what it reports itself in one line (`_OrbaxEchoes`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import pathlib
import re
import shutil
import sys
import time
import types
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcnn.errors import ConfigError, WorkdirError
from jaxcnn.train.workdir import to_json

STATE_ITEM = "state"
META_ITEM = "meta"
CORRUPT_SUFFIX = ".corrupt"
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax writes step N into `N.orbax-checkpoint-tmp...` and renames it when done
_MAX_REASON_CHARS = 200


def _orbax_coroutines_pending() -> bool:
    # type(), not isinstance(): the latter reads `__class__`, which some objects (torch's deprecated aliases) warn on.
    return any(type(o) is types.CoroutineType and "orbax" in o.cr_code.co_filename for o in gc.get_objects())


def _finalize_abandoned_io(timeout_s: float = 1.0) -> None:
    """Collects what a failed restore or save left behind, quietly and now.

    When one TensorStore read or write fails, Orbax abandons the others; those still in flight keep their
    coroutines alive until TensorStore finishes them. Closing such a coroutine raises an `Exception` (Orbax wraps
    even `GeneratorExit`), and a finished write calls back into an event loop Orbax has closed; Python prints both
    as unraisable exceptions ("Exception ignored in <coroutine ...>", "RuntimeError: Event loop is closed")
    whenever they happen, possibly in the middle of unrelated code. So wait (briefly: local I/O takes
    milliseconds) for them to finish and collect them here, with those reports silenced. Only failures pay. (A
    longer wait made it worse: callbacks that land during it print "Event loop is closed" tracebacks; the ones
    that would land after it are cut off by `jaxcnn.cli.exit_with`.)
    """
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    deadline = time.monotonic() + timeout_s
    try:
        with _asyncio_quiet():
            gc.collect()
            while _orbax_coroutines_pending() and time.monotonic() < deadline:
                time.sleep(0.02)
                gc.collect()
    finally:
        sys.unraisablehook = hook


@contextlib.contextmanager
def _asyncio_quiet():
    """The futures of reads Orbax abandoned hold their failures; freed, asyncio logs each one ("Future exception
    was never retrieved"), which the manager reports itself in one line. Its logger is quiet meanwhile only."""
    log = logging.getLogger("asyncio")
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


class _OrbaxEchoes(logging.Filter):
    """Drops Orbax's absl log records that repeat what the manager reports itself: tracebacks (every Orbax
    failure reaches the caller as an exception, which the manager turns into a one-line WorkdirError or, for a
    skipped step, a CheckpointWarning), and, while `quiet`, its warnings about the step folders being opened."""

    def __init__(self):
        super().__init__()
        self.quiet_depth = 0

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace(os.sep, "/")
        if "/orbax/" not in path:
            return True
        if record.exc_info:  # a traceback of a failure this module raises as a WorkdirError
            return False
        return not (self.quiet_depth and record.levelno <= logging.WARNING)

    @contextlib.contextmanager
    def quiet(self):
        self.quiet_depth += 1
        try:
            yield
        finally:
            self.quiet_depth -= 1


class CheckpointWarning(UserWarning):
    """A checkpoint step could not be read and was skipped in favour of an older (or next-best) one."""


def _reason(error: BaseException) -> str:
    """A short, one-line cause for an Orbax/TensorStore/OS error (their messages run to kilobytes).

    Orbax wraps TensorStore's errors ("Encountered error while reading array index ... See full TensorStore
    details: <bound method ...>"), so the innermost cause is the one that says what is wrong (e.g. "OUT_OF_RANGE:
    Error reading "params/head/kernel" in OCDBT database: Requested byte range [0, 4719) is not valid for value
    of size 2496" for a truncated file).
    """
    chain = [error]
    while len(chain) < 8 and (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(nxt)
    for e in chain:
        code = re.search(r"os_error_code='?(\d+)", str(e))
        if code:
            return os.strerror(int(code.group(1)))
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    innermost = chain[-1]
    text = re.sub(r' at local file "[^"]*"', "", str(innermost)).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > _MAX_REASON_CHARS:
        first = first[:_MAX_REASON_CHARS] + "..."
    return f"{type(innermost).__name__}: {first}" if first else type(innermost).__name__


def _as_target(leaf: Any) -> Any:
    """A restore-target leaf: arrays become `ShapeDtypeStruct`s that keep their sharding."""
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        # Without a sharding Orbax would fall back to the saved topology, which may not exist here.
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                    sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    if isinstance(leaf, np.generic):  # Orbax rejects numpy scalars as targets, but takes 0-d arrays.
        return np.asarray(leaf)
    return leaf


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """`{"params/head/kernel": shape}` for every leaf (Python numbers have shape ()). Keys are the same whether a
    node is a dict, a namedtuple (Orbax's metadata turns those into dicts) or a sequence."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
        shapes[name] = tuple(np.shape(leaf))
    return shapes


def _finite_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # lists, strings: not usable for ranking
        if math.isfinite(number):
            out[str(key)] = number
    return out


class CheckpointManager:
    """Saves and restores training checkpoints in `directory` (normally WORKDIR/checkpoints).

    Keeps the newest `keep_latest` steps (the resume point) and the `keep_best` steps with the best `best_metric`
    (what `predict` uses); a step may be both. Steps saved without that metric are kept only while among the
    newest. Ties in the metric go to the later step (Kim's selection rule).

    Hold the workdir lock while saving: opening the manager deletes temporary folders left by interrupted saves.

    Attributes:
        directory: absolute path of the checkpoint folder.
        best_metric: the key of `save(..., metrics=...)` that ranks steps, or None for no best tracking.
        best_mode: "max" or "min".
        read_only: whether this manager only reads (never creates, saves, deletes or renames).
    """

    def __init__(self, directory: str | os.PathLike, *, best_metric: str | None = "dev_accuracy",
                 best_mode: str = "max", keep_latest: int = 1, keep_best: int = 1, async_save: bool = True,
                 read_only: bool = False):
        if best_mode not in ("max", "min"):
            raise ConfigError(f"CheckpointManager: best_mode: expected 'max' or 'min', got {best_mode!r}")
        if keep_latest < 1:
            raise ConfigError(f"CheckpointManager: keep_latest: must be at least 1 to allow resuming, got {keep_latest}")
        if best_metric is not None and keep_best < 1:
            raise ConfigError(f"CheckpointManager: keep_best: must be at least 1 when tracking {best_metric}, got {keep_best}")
        self.directory = pathlib.Path(directory).absolute()
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise WorkdirError(f"{self.directory}: no checkpoint folder (is --workdir right?)")
        self._pending_step: int | None = None
        self._closed = False
        self._echoes = _OrbaxEchoes()
        logging.getLogger("absl").addFilter(self._echoes)
        # Declaring the handlers lets `item_metadata` read saved shapes before any array is read.
        with self._echoes.quiet():
            self._manager = ocp.CheckpointManager(
                self.directory, options=self._options(keep_latest, keep_best, async_save),
                item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(), META_ITEM: ocp.JsonCheckpointHandler()})

    def _options(self, keep_latest: int, keep_best: int, async_save: bool) -> ocp.CheckpointManagerOptions:
        policies = ocp.checkpoint_managers
        preserve = [policies.LatestN(n=keep_latest)]
        best_fn = None
        if self.best_metric is not None:
            worst = -math.inf if self.best_mode == "max" else math.inf
            key = self.best_metric

            def best_fn(metrics: Mapping[str, float]) -> float:
                return float(metrics.get(key, worst))

            preserve.append(policies.BestN(get_metric_fn=best_fn, reverse=self.best_mode == "min", n=keep_best,
                                           keep_checkpoints_without_metrics=False))
        return ocp.CheckpointManagerOptions(
            best_fn=best_fn, best_mode=self.best_mode,
            preservation_policy=policies.AnyPreservationPolicy(preserve),
            enable_async_checkpointing=async_save, read_only=self.read_only, create=not self.read_only,
            cleanup_tmp_directories=not self.read_only)

    # -- steps -------------------------------------------------------------------------------------------------

    @property
    def latest_step(self) -> int | None:
        """The newest saved step (possibly still being written; `wait()` first to be sure it is complete)."""
        return self._manager.latest_step()

    @property
    def best_step(self) -> int | None:
        """The step with the best `best_metric`; None without best tracking or before any step has the metric."""
        if self.best_metric is None:
            return None
        return self._manager.best_step()

    def all_steps(self) -> list[int]:
        """All saved steps, oldest first."""
        return sorted(self._manager.all_steps())

    def _steps_best_first(self) -> list[int]:
        ranked = []
        for step in self.all_steps():
            try:
                metrics = self._manager.metrics(step)
            except Exception:  # a garbled metrics file: the step cannot be ranked, so it is not a best candidate
                metrics = None
            if metrics and self.best_metric in metrics:
                value = float(metrics[self.best_metric])
                ranked.append((value if self.best_mode == "min" else -value, -step))
        return [-neg_step for _, neg_step in sorted(ranked)]

    # -- saving ------------------------------------------------------------------------------------------------

    def save(self, step: int, state: Any, meta: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> None:
        """Starts saving `state` and `meta` as `step`; returns once the arrays are copied off the devices.

        Args:
            step: the step number (a new one; Orbax refuses to overwrite a step).
            state: a pytree of jax/numpy arrays and Python numbers.
            meta: JSON-able dict (numpy scalars, tuples and paths are converted).
            metrics: scalars for ranking; a step without a finite `best_metric` is never "best" and does not
                disturb best tracking. Non-scalar values are ignored.

        Raises:
            WorkdirError: this save, or the previous async one, failed (e.g. disk full); the last complete
                checkpoint is kept.
        """
        if self.read_only:
            raise WorkdirError(f"{self.directory}: opened read-only, cannot save step {step}")
        self.wait()
        meta = json.loads(to_json(dict(meta)))  # fail here, not in the background thread, on a non-JSON value
        tracked = None
        if metrics is not None and self.best_metric is not None:
            tracked = _finite_scalars(metrics)
            if self.best_metric not in tracked:
                tracked = None
        args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state), META_ITEM: ocp.args.JsonSave(meta)})
        try:
            with self._echoes.quiet():
                self._manager.save(step, args=args, metrics=tracked)
        except (OSError, ValueError) as e:
            raise self._save_error(step, e) from e
        self._pending_step = step

    def _save_error(self, step: int | None, error: BaseException) -> WorkdirError:
        _finalize_abandoned_io()
        if step is not None and jax.process_index() == 0:
            # The half-written step would hold on to disk space, which is what a full disk needs back.
            for tmp in self.directory.glob(f"{step}{TMP_SUFFIX}*"):
                shutil.rmtree(tmp, ignore_errors=True)
        self._manager.reload()
        kept = self._manager.latest_step()
        kept_text = f"step {kept} is the last complete checkpoint" if kept is not None else "no complete checkpoint"
        what = self.directory / str(step) if step is not None else f"into {self.directory}"
        return WorkdirError(f"saving checkpoint {what} failed: {_reason(error)}; {kept_text}")

    def wait(self) -> None:
        """Blocks until the pending async save is on disk.

        Raises:
            WorkdirError: that save failed (one line: the step folder and the cause, e.g. "No space left on
                device"); the previous checkpoint is intact.
        """
        step, self._pending_step = self._pending_step, None
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # the background thread re-raises whatever TensorStore/the OS raised
            raise self._save_error(step, e) from e

    # -- restoring ---------------------------------------------------------------------------------------------

    def _restore_items(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        target = jax.tree.map(_as_target, abstract_state)
        self._check_shapes(step, target)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            **{STATE_ITEM: ocp.args.StandardRestore(target), META_ITEM: ocp.args.JsonRestore()}))
        return restored[STATE_ITEM], dict(restored[META_ITEM])

    def _check_shapes(self, step: int, target: Any) -> None:
        """Compares saved and wanted shapes from metadata alone.

        A mismatch means another model, not a corrupt step, so it is raised at once rather than falling back;
        finding it before reading also avoids Orbax abandoning reads in flight (see `_finalize_abandoned_io`).

        Raises:
            WorkdirError: the shapes differ. Unreadable metadata propagates as Orbax raises it.
        """
        saved = self._manager.item_metadata(step)[STATE_ITEM]
        if saved is None:
            raise KeyError(f'Item "{STATE_ITEM}" was not found in the checkpoint')
        saved_shapes = _shapes(saved)
        wanted_shapes = _shapes(target)
        mismatch = next((f"{name} is {saved_shapes.get(name, 'absent')} there, {shape} here"
                         for name, shape in wanted_shapes.items() if saved_shapes.get(name) != shape), None)
        mismatch = mismatch or next((f"{name} is {shape} there, absent here" for name, shape in saved_shapes.items()
                                     if name not in wanted_shapes), None)
        if mismatch:
            raise WorkdirError(f"checkpoint {self.directory / str(step)} does not match this model: {mismatch}; "
                               f"is --workdir right?")

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restores one step onto the layout of `abstract_state`.

        Args:
            step: a saved step.
            abstract_state: a pytree with the saved structure whose leaves are `jax.ShapeDtypeStruct`s (with a
                `sharding`, e.g. a replicated `NamedSharding` over the current mesh; without one, leaves land on
                the first local device) or concrete arrays (their sharding is reused). Any device topology works.

        Returns:
            `(state, meta)`.

        Raises:
            WorkdirError: no such step, or it cannot be read or does not match `abstract_state`.
        """
        self.wait()
        if step not in self.all_steps():
            raise WorkdirError(f"{self.directory}: no checkpoint for step {step} (saved steps: {self.all_steps()})")
        restored = self._attempt(step, abstract_state)
        if isinstance(restored, str):
            _finalize_abandoned_io()
            raise WorkdirError(f"{self.directory / str(step)}: cannot restore ({restored})")
        return restored

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """Restores the newest readable step, falling back to older ones past corrupt step folders.

        Each skipped step gives one `CheckpointWarning` naming its folder and the cause, and (unless read-only)
        is renamed `<step>.corrupt` so the resumed run can reuse the step number.

        Returns:
            `(step, state, meta)`, or None when the folder holds no checkpoint.

        Raises:
            WorkdirError: checkpoints exist but none can be restored (starting afresh silently would hide that),
                or the newest readable one has other shapes than `abstract_state` (another model's workdir).
        """
        self.wait()
        return self._restore_first(self.all_steps()[::-1], abstract_state)

    def restore_best(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """Restores the best step by `best_metric`, falling back to the next best past corrupt ones (as
        `restore_latest` does). Returns None without best tracking or when no step has the metric."""
        self.wait()
        if self.best_metric is None:
            return None
        return self._restore_first(self._steps_best_first(), abstract_state)

    def _attempt(self, step: int, abstract_state: Any) -> tuple[Any, dict] | str:
        """The restored `(state, meta)`, or why the step cannot be read (a shape mismatch raises instead)."""
        with _asyncio_quiet():  # also while a failure unwinds and frees what it held
            try:
                with self._echoes.quiet():
                    return self._restore_items(step, abstract_state)
            except WorkdirError:
                raise
            except Exception as e:  # corrupt files raise ValueError, KeyError, JSONDecodeError or a bare Exception
                return _reason(e)

    def _restore_first(self, steps: list[int], abstract_state: Any) -> tuple[int, Any, dict] | None:
        failures: list[tuple[int, str]] = []
        for step in steps:
            restored = self._attempt(step, abstract_state)
            if isinstance(restored, str):
                failures.append((step, restored))
                _finalize_abandoned_io()
                continue
            for bad_step, reason in failures:
                self._skip(bad_step, reason, step)
            if failures and not self.read_only:
                self._manager.reload()
            return (step, *restored)
        if failures:
            listed = "; ".join(f"step {s}: {reason}" for s, reason in failures[:3])
            raise WorkdirError(f"no checkpoint in {self.directory} can be restored ({listed}); move the folder "
                               f"aside to start afresh")
        return None

    def _skip(self, step: int, reason: str, used: int) -> None:
        folder = self.directory / str(step)
        moved = ""
        if not self.read_only and jax.process_index() == 0:
            target = self._free_corrupt_name(step)
            try:
                folder.rename(target)
                moved = f"; moved to {target.name}"
            except OSError as e:
                moved = f"; could not move it aside ({e.strerror})"
        warnings.warn(f"skipped checkpoint {folder} ({reason}); using step {used}{moved}",
                      CheckpointWarning, stacklevel=4)

    def _free_corrupt_name(self, step: int) -> pathlib.Path:
        target = self.directory / f"{step}{CORRUPT_SUFFIX}"
        n = 1
        while target.exists():
            target = self.directory / f"{step}{CORRUPT_SUFFIX}{n}"
            n += 1
        return target

    def read_meta(self, step: int | None = None) -> dict:
        """The `meta` item alone (no state template needed, e.g. to rebuild the vocabulary for `predict`).

        Args:
            step: a saved step, or None for the newest step whose meta is readable (skipped ones warn).

        Raises:
            WorkdirError: no checkpoint, or the step's meta cannot be read.
        """
        self.wait()
        steps = self.all_steps()
        if not steps:
            raise WorkdirError(f"{self.directory}: no checkpoint (has training saved one yet?)")
        if step is not None and step not in steps:
            raise WorkdirError(f"{self.directory}: no checkpoint for step {step} (saved steps: {steps})")
        candidates = [step] if step is not None else steps[::-1]
        errors = []
        for candidate in candidates:
            try:
                with self._echoes.quiet():
                    restored = self._manager.restore(candidate, args=ocp.args.Composite(
                        **{META_ITEM: ocp.args.JsonRestore()}))
            except Exception as e:  # see `restore`
                errors.append((candidate, e))
                continue
            for bad_step, error in errors:
                warnings.warn(f"skipped checkpoint {self.directory / str(bad_step)} ({_reason(error)}); using "
                              f"step {candidate}", CheckpointWarning, stacklevel=2)
            return dict(restored[META_ITEM])
        listed = "; ".join(f"step {s}: {_reason(e)}" for s, e in errors[:3])
        which = f"step {step}" if step is not None else "any checkpoint"
        raise WorkdirError(f"{self.directory}: cannot read the meta of {which} ({listed})")

    # -- lifetime ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Waits for the pending save (raising `WorkdirError` if it failed) and releases Orbax's threads."""
        if self._closed:
            return
        try:
            self.wait()
        finally:
            self._closed = True
            self._manager.close()
            logging.getLogger("absl").removeFilter(self._echoes)

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except WorkdirError as e:  # don't let a save failure hide the exception already on its way out
            warnings.warn(str(e), CheckpointWarning, stacklevel=2)
