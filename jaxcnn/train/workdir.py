"""The workdir: one run per folder, guarded by a lock, with its config pinned in `config.json`.

A workdir holds `config.json`, `metrics.jsonl`, `tensorboard/` and `checkpoints/`. Two processes training into the
same workdir would overwrite each other's checkpoints, and resuming with a different config would silently mix two
runs, so `WorkdirLock` and `check_config` refuse both with a one-line `WorkdirError`.

Everything here is plain Python (no jax import), so a CLI can check the workdir before paying for jax start-up.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import socket
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from jaxcnn.errors import WorkdirError

LOCK_NAME = ".lock"
CONFIG_NAME = "config.json"
_MAX_LISTED_KEYS = 3


def _ensure_dir(path: pathlib.Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise WorkdirError(f"{path}: exists and is not a folder") from e
    except OSError as e:
        raise WorkdirError(f"{path}: cannot create folder ({e.strerror})") from e


def _fsync_dir(path: pathlib.Path) -> None:
    # The rename itself lives in the directory entry; without this a power cut can undo it.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` so that readers see either the old file or the whole new one, never a part.

    Raises:
        WorkdirError: the folder cannot be created or the file cannot be written (disk full, permissions).
    """
    path = pathlib.Path(path)
    _ensure_dir(path.parent)
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False) as f:
            tmp = pathlib.Path(f.name)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise WorkdirError(f"{path}: cannot write ({e.strerror or e})") from e
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy/jax scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r}")


def to_json(obj: Any, *, indent: int | None = None) -> str:
    """`json.dumps` that also takes paths, sets and numpy/jax arrays (as lists)."""
    return json.dumps(obj, indent=indent, default=_jsonable, ensure_ascii=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON, atomically (see `atomic_write_bytes`)."""
    atomic_write_text(path, to_json(obj, indent=2) + "\n")


class WorkdirLock:
    """An exclusive, non-blocking lock on a workdir, held for the life of a training run.

    Uses `fcntl.flock` on `WORKDIR/.lock`. The kernel drops the lock when its holder exits, however it exits
    (SIGKILL and OOM kills included), so a lock file left behind never blocks a resume. The file records the
    holder's pid, host and start time only to make the refusal message useful. `flock` is advisory and may not
    work across machines on some network file systems.

    Usage::

        with WorkdirLock(workdir):
            ...  # train

    Attributes:
        workdir: the folder being locked (created if missing).
        path: the lock file, `workdir/.lock`.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Takes the lock at once or raises.

        Raises:
            WorkdirError: another process (or another `WorkdirLock` in this one) holds it, or the workdir cannot
                be created.
        """
        if self._fd is not None:
            return
        _ensure_dir(self.workdir)
        try:
            # No O_TRUNC: the file may hold the current owner's details, which the refusal message reads.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WorkdirError(f"{self.path}: cannot open lock file ({e.strerror})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirError(f"{self.workdir} is in use by {self._holder()}; wait for it to finish or use "
                               f"another --workdir") from None
        except OSError as e:
            os.close(fd)
            raise WorkdirError(f"{self.path}: cannot lock ({e.strerror})") from e
        self._fd = fd
        self._write_owner()

    def _write_owner(self) -> None:
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        data = (json.dumps(owner) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def _holder(self) -> str:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {owner['pid']} on {owner['host']} (started {owner['started']})"
        except (OSError, ValueError, KeyError, TypeError):
            # The holder may be between taking the lock and writing its details.
            return "another process"

    def release(self) -> None:
        """Drops the lock; a no-op when not held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        # The file stays: deleting a flock'ed file lets a third process lock a fresh inode while a second one still
        # holds the old, unlinked one.
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _normalize(obj: Any) -> Any:
    # A JSON round trip makes tuples lists and paths strings, so a config compares equal to its own config.json.
    return json.loads(to_json(obj))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _ignored(key: str, ignore: set[str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:i]) in ignore for i in range(1, len(parts) + 1))


def _show(flat: Mapping[str, Any], key: str) -> str:
    return f"{key}={json.dumps(flat[key], ensure_ascii=False)}" if key in flat else f"{key} unset"


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys (`model.filter_sizes`) whose values differ between two nested config dicts, in `new`'s order
    and then `old`'s, skipping `ignore` (a listed key also covers everything under it)."""
    ignore = set(ignore)
    flat_old, flat_new = _flatten(_normalize(old)), _flatten(_normalize(new))
    keys = list(flat_new) + [k for k in flat_old if k not in flat_new]
    missing = object()
    return [k for k in keys
            if not _ignored(k, ignore) and flat_old.get(k, missing) != flat_new.get(k, missing)]


def refuse_other(where: str, old: Mapping[str, Any], new: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> None:
    """A WorkdirError naming up to three keys whose values differ between `old` (what `where` holds) and `new`
    (this command's), unless they agree but for `ignore`."""
    diff = differing_keys(old, new, ignore=ignore)
    if diff:
        flat_old, flat_new = _flatten(_normalize(old)), _flatten(_normalize(new))
        shown = diff[:_MAX_LISTED_KEYS]
        more = f" and {len(diff) - len(shown)} more" if len(diff) > len(shown) else ""
        raise WorkdirError(
            f"{where} holds a run with {', '.join(_show(flat_old, k) for k in shown)}{more} "
            f"(this command: {', '.join(_show(flat_new, k) for k in shown)}); use another --workdir")


def check_config(workdir: str | os.PathLike, config_dict: Mapping[str, Any], *, ignore: Iterable[str] = (),
                 name: str = CONFIG_NAME, write: bool = True) -> None:
    """Pins a run's config (or another description, in the file `name`) to its workdir.

    If `workdir/config.json` is absent it is written. If present, it must equal `config_dict` except for the keys
    in `ignore` (e.g. `epochs`, so that a run can be extended); it is then rewritten with `config_dict`, so that it
    shows the latest command's values of the ignored keys.

    Args:
        workdir: the run's folder.
        config_dict: the config as nested dicts of JSON-able values (tuples, paths and numpy scalars are fine).
        ignore: dotted keys that may change between invocations.
        write: False only checks (a run checks its checkpoints too before it pins anything).

    Raises:
        WorkdirError: the stored config differs; the message names up to three differing keys with both values,
            e.g. `runs/a holds a run with dataset="mr" (this command: dataset="trec"); use another --workdir`.
            Also raised when config.json is unreadable.
    """
    path = pathlib.Path(workdir) / name
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise WorkdirError(f"{path}: cannot read ({e})") from e
        except json.JSONDecodeError as e:
            raise WorkdirError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix or delete it, or use another "
                               f"--workdir") from e
        except (RecursionError, ValueError) as e:  # nested too deeply; an integer of more than 4300 digits
            raise WorkdirError(f"{path}: unusable JSON ({e.__class__.__name__}); fix or delete it, or use another "
                               f"--workdir") from e
        if not isinstance(old, dict):
            raise WorkdirError(f"{path}: expected a JSON object, found {type(old).__name__}")
        refuse_other(str(workdir), old, config_dict, ignore=ignore)
    if write:
        atomic_write_json(path, config_dict)
