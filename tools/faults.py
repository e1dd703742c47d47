"""Fault injection and the kill/resume check: proof that a run killed at any moment loses nothing.

Two halves, used together by `scripts/kill_resume.py` and `tests/reliability/`:

- In the process under test: `python -m tools.faults train ...` (from the repository root) is `jaxcnn train ...`
  with one fault armed by the environment variable `JAXCNN_FAULT` (the plain `jaxcnn` command never reads it),
  through the engine's public hooks (`FaultCallback`, a `jaxcnn.train.trainer.Callback`):

      step:N        SIGKILL right after dispatching the training block that starts at optimizer step >= N
      eval:E:SPLIT  SIGKILL inside the evaluation of SPLIT (dev or test) in epoch E, its computation in flight
      save:E        SIGKILL while the asynchronous checkpoint save of epoch E is being written (its temporary
                    folder exists, the step folder does not)
      metrics:E     SIGKILL halfway through writing the first metrics.jsonl line of epoch E (a torn line)
      nan:N         no kill: the parameters become NaN before the block that starts at step >= N, so the run must
                    stop with a TrainingError naming that step

- In the driver: `kill_resume` trains a reference run without interruption, then the same run again, killed by
  each `Kill` of a plan (a fault above, or an external SIGKILL after a random delay) and re-run with the same
  command every time, and finally `compare_runs` checks that parameters, optimizer state, metrics.jsonl and
  summary.json equal the reference's (CPU: bit for bit) and that no epoch is missing or duplicated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from jaxcnn.train.trainer import Callback

REPO = pathlib.Path(__file__).resolve().parents[1]
FAULT_ENV = "JAXCNN_FAULT"
FAULT_KINDS = ("step", "eval", "save", "metrics", "nan")
# Fields that measure time, not results: they differ between any two runs.
TIMING_KEYS = frozenset({"seconds", "examples_per_second", "wall_seconds", "train_seconds",
                         "train_examples_per_second"})
_RESUMED = re.compile(r"resumed from \S+ at epoch (\d+)")


# ----------------------------------------------------------------------------------------------------------------
# Faults, inside the process under test


@dataclasses.dataclass(frozen=True)
class Fault:
    """One armed fault (see the module docstring).

    Attributes:
      kind: "step", "eval", "save", "metrics" or "nan".
      at: the optimizer step (step, nan) or epoch (eval, save, metrics) it fires at.
      split: for "eval": the split whose evaluation is killed.
    """

    kind: str
    at: int
    split: str = "dev"

    def __str__(self) -> str:
        return f"{self.kind}:{self.at}" + (f":{self.split}" if self.kind == "eval" else "")


def parse_fault(text: str) -> Fault:
    """`"save:3"` -> Fault("save", 3); `"eval:2:test"` -> Fault("eval", 2, "test").

    Raises:
        ConfigError: an unknown kind or a malformed spec (the message names JAXCNN_FAULT).
    """
    from jaxcnn.errors import ConfigError

    parts = text.strip().split(":")
    ok = (len(parts) == 2 or (len(parts) == 3 and parts[0] == "eval")) and parts[0] in FAULT_KINDS
    if not ok or not parts[1].isdigit() or (len(parts) == 3 and parts[2] not in ("dev", "test")):
        raise ConfigError(f"{FAULT_ENV}: expected KIND:N with KIND one of {', '.join(FAULT_KINDS)} (eval:E:dev|test),"
                          f" got {text!r}")
    return Fault(parts[0], int(parts[1]), *parts[2:])


def _die(what: str) -> None:
    sys.stderr.write(f"jaxcnn fault: SIGKILL {what}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class FaultCallback(Callback):
    """Arms one `Fault` in a training run through the engine's hooks; it fires once per process."""

    def __init__(self, fault: Fault):
        self.fault = fault
        self.armed = True
        self._kill_after_dispatch: int | None = None

    def on_block_start(self, run) -> None:
        import jax
        import jax.numpy as jnp

        if self.fault.kind not in ("step", "nan") or not self.armed:
            return
        program = run.program
        step = int(jax.device_get(program.state.step)[0])  # read before the block: it donates the state
        if step < self.fault.at:
            return
        self.armed = False
        if self.fault.kind == "nan":
            program.state = program.state.replace(params=jax.tree.map(lambda p: p * jnp.nan, program.state.params))
        else:
            self._kill_after_dispatch = step

    def on_block_dispatched(self, run) -> None:
        if self._kill_after_dispatch is not None:
            _die(f"after dispatching the block of steps from {self._kill_after_dispatch}")

    def on_evaluate_dispatched(self, run, split: str, epoch: int) -> None:
        if self.fault.kind == "eval" and split == self.fault.split and epoch == self.fault.at:
            _die(f"inside the {split} evaluation of epoch {epoch}")

    def on_metrics(self, run, record: dict[str, Any]) -> None:
        from jaxcnn.train.writers import METRICS_NAME, record_line

        if self.fault.kind == "metrics" and record.get("epoch") == self.fault.at:
            line = record_line(record)
            with open(run.workdir / METRICS_NAME, "a", encoding="utf-8") as f:
                f.write(line[: len(line) // 2])
                f.flush()
                os.fsync(f.fileno())
            _die(f"halfway through the metrics line of epoch {self.fault.at}")

    def on_checkpoint_started(self, run, epoch: int) -> None:
        from jaxcnn.train.checkpoint import TMP_SUFFIX
        from jaxcnn.train.trainer import CHECKPOINTS

        if self.fault.kind == "save" and epoch == self.fault.at:
            directory = run.workdir / CHECKPOINTS
            tmp = [p.name for p in directory.iterdir() if p.name.startswith(f"{epoch}{TMP_SUFFIX}")]
            _die(f"during the save of step {epoch} ({'writing ' + tmp[0] if tmp else 'already finished'})")


def main(argv: Sequence[str] | None = None) -> int:
    """`jaxcnn` with the fault named by $JAXCNN_FAULT armed (none when unset)."""
    from jaxcnn import cli

    spec = os.environ.get(FAULT_ENV)
    return cli.main(argv, callbacks=[FaultCallback(parse_fault(spec))] if spec else [])


# ----------------------------------------------------------------------------------------------------------------
# Synthetic data


_POSITIVE = ("good", "great", "fine", "superb", "lovely", "moving", "clever")
_NEGATIVE = ("bad", "awful", "poor", "dull", "boring", "weak", "tedious")
_FILLER = ("the", "movie", "was", "a", "plot", "and", "acting", "really", "quite", "film", "story", "it", "cast",
           "scene", "ending", "music", "very", "so", "this", "one")


def write_synthetic_splits(folder: str | os.PathLike, n_train: int = 160, n_dev: int = 40, n_test: int = 40,
                           seed: int = 0) -> dict[str, str]:
    """Writes train/dev/test files in Kim's format (`<label> <sentence>`, two classes, a cue word per sentence).

    Returns:
      {"train_file": path, "dev_file": path, "test_file": path}.
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    out = {}
    for name, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        lines = []
        for _ in range(n):
            label = rng.randrange(2)
            words = [rng.choice(_FILLER) for _ in range(rng.randrange(2, 12))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(_POSITIVE if label else _NEGATIVE))
            lines.append(f"{label} {' '.join(words)}\n")
        path = folder / f"{name}.txt"
        path.write_text("".join(lines), encoding="utf-8")
        out[f"{name}_file"] = str(path)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Running and killing `jaxcnn train`


@dataclasses.dataclass(frozen=True)
class Kill:
    """One kill of a plan: an armed fault (e.g. "save:3"), or (fault None) an external SIGKILL sent once this
    process has logged epoch `after_epoch` in metrics.jsonl (0: at start), after `fraction` of one epoch's duration
    (measured on the reference run)."""

    fault: str | None = None
    after_epoch: int = 0
    fraction: float = 0.0

    def __str__(self) -> str:
        if self.fault:
            return self.fault
        return f"external, {self.fraction:.2f} epoch after epoch {self.after_epoch} was logged"


@dataclasses.dataclass
class KillRecord:
    """What one kill did.

    Attributes:
      kill: the Kill, as text.
      killed: whether the process died by SIGKILL (False: it finished or failed first).
      logged_epoch: the newest epoch in metrics.jsonl when the process died.
      checkpoint_epoch: the newest complete checkpoint then (None: none yet).
      temporary_folders: Orbax temporary folders left behind (non-empty: killed inside a save).
      resumed_epoch: the epoch the next run resumed from (0: from scratch).
      seconds_lost: seconds between that checkpoint's commit (or this run's start) and the kill.
      epochs_redone: completed epochs whose work the next run had to repeat.
      note: the fault's own line ("jaxcnn fault: SIGKILL ..."), when it fired.
    """

    kill: str
    killed: bool
    logged_epoch: int
    checkpoint_epoch: int | None
    temporary_folders: list[str]
    resumed_epoch: int | None = None
    seconds_lost: float = 0.0
    epochs_redone: int = 0
    note: str = ""


@dataclasses.dataclass
class KillResumeReport:
    """The outcome of `kill_resume`.

    Attributes:
      records: one per kill, in order.
      problems: every difference from the reference and every kill that lost more than it may; empty: none.
      reference_seconds, killed_run_seconds: wall time of the two runs (the killed one over all its processes).
      checkpoint_every: epochs between checkpoints in the runs.
    """

    records: list[KillRecord]
    problems: list[str]
    reference_seconds: float
    killed_run_seconds: float
    checkpoint_every: int

    @property
    def kills_survived(self) -> int:
        return sum(r.killed for r in self.records) if not self.problems else 0

    def table(self) -> str:
        """A Markdown table of the kills."""
        rows = ["| # | kill | logged epoch | newest checkpoint | resumed at | epochs redone | seconds lost |"
                " left behind |", "|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(self.records, 1):
            left = ", ".join(r.temporary_folders) or "-"
            rows.append(f"| {i} | {r.kill} | {r.logged_epoch} | {r.checkpoint_epoch} | {r.resumed_epoch} | "
                        f"{r.epochs_redone} | {r.seconds_lost:.2f} | {left} |")
        return "\n".join(rows)


def train_args(workdir: str | os.PathLike, files: Mapping[str, str], epochs: int,
               extra: Sequence[str] = ()) -> list[str]:
    """`train --workdir W --train-file ... --epochs N` plus a small, fast model (override with `extra`)."""
    return ["train", "--workdir", str(workdir), "--train-file", files["train_file"], "--dev-file",
            files["dev_file"], "--test-file", files["test_file"], "--epochs", str(epochs), "--embed-dim", "16",
            "--maps", "8", "--windows", "2", "3", "--batch-size", "16", "--eval-batch-size", "64",
            "--steps-per-dispatch", "2", "--devices", "1", "--no-progress", "--no-plots", "--no-tensorboard",
            *extra]


def subprocess_env(cache_dir: str | os.PathLike | None = None, **extra: str) -> dict[str, str]:
    """This process's environment, plus a persistent JAX compilation cache shared by the runs of one check
    (it halves their start-up) and `extra`."""
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    # `python -m tools.faults` runs from any folder.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if cache_dir is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.update(extra)
    return env


def jaxcnn_command(args: Sequence[str], *, faults: bool = False, max_file_bytes: int | None = None) -> list[str]:
    """The `jaxcnn` command line as a Python subprocess (`python -m tools.faults` when faults may be armed; the
    environment of `subprocess_env` finds it).

    `max_file_bytes` runs it under RLIMIT_FSIZE: writing a file past that size fails with EFBIG (Python ignores
    SIGXFSZ), as a write to a full disk fails with ENOSPC.
    """
    cmd = [sys.executable, "-m", "tools.faults" if faults else "jaxcnn.cli", *args]
    if max_file_bytes is None:
        return cmd
    # Set in a small parent that then execs the command: a preexec_fn would run Python code in a forked child of
    # a multithreaded process.
    limit = ("import os, resource, sys; hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]; "
             f"resource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_bytes}, hard)); "
             "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", limit, *cmd]


def _logged_epoch(metrics: pathlib.Path, since: float = 0.0) -> int:
    """The newest epoch in metrics.jsonl (0 if none, or if the file was last written before `since`)."""
    try:
        if metrics.stat().st_mtime < since:
            return 0
        text = metrics.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    found = re.findall(r'"epoch": (\d+)', text)
    return max(map(int, found), default=0)


def _checkpoints(directory: pathlib.Path) -> tuple[int | None, float | None, list[str]]:
    """(newest committed step, its commit time, temporary folders) of a checkpoint folder."""
    from jaxcnn.train.checkpoint import TMP_SUFFIX

    if not directory.is_dir():
        return None, None, []
    steps, tmp = [], []
    for p in directory.iterdir():
        if TMP_SUFFIX in p.name:
            tmp.append(p.name)
        elif p.name.isdigit() and (p / "commit_success.txt").exists():
            steps.append(int(p.name))
    if not steps:
        return None, None, sorted(tmp)
    newest = max(steps)
    return newest, (directory / str(newest) / "commit_success.txt").stat().st_mtime, sorted(tmp)


def _run_until_killed(cmd: list[str], env: dict[str, str], workdir: pathlib.Path, kill: Kill, timeout: float,
                      log: pathlib.Path, epoch_seconds: float) -> tuple[int, float, str]:
    """Starts `cmd`, kills it as `kill` says, and returns (return code, time of death, its stderr)."""
    if kill.fault is not None:
        env = dict(env, **{FAULT_ENV: kill.fault})
    started = time.time()
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        fire_at = None
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{' '.join(cmd)} ran past {timeout} s under {kill}")
            # Only what this process logged counts: the file may still hold a killed run's later epochs.
            if kill.fault is None and fire_at is None and \
                    _logged_epoch(workdir / "metrics.jsonl", started) >= kill.after_epoch:
                fire_at = time.monotonic() + kill.fraction * epoch_seconds
            if fire_at is not None and time.monotonic() >= fire_at:
                proc.send_signal(signal.SIGKILL)
                fire_at = math.inf
            time.sleep(0.002)
    return proc.returncode, time.time(), log.read_text(encoding="utf-8")


def kill_resume(root: str | os.PathLike, kills: Sequence[Kill], *, epochs: int, extra: Sequence[str] = (),
                files: Mapping[str, str] | None = None, reference: str | os.PathLike | None = None,
                timeout: float = 600.0, compile_cache: bool | str | os.PathLike = True) -> KillResumeReport:
    """Trains a reference run, then the same run killed by each of `kills` in turn, each time re-running the same
    command, and finally to the end; compares the two.

    Args:
      root: an empty folder for data, the two workdirs and the compilation cache.
      kills: the plan, in order. Each kill should land after the previous one's epoch: a kill whose run finishes
        first is recorded as not killed and ends the plan.
      epochs: epochs of the run.
      extra: more `jaxcnn train` flags (e.g. `--checkpoint-every 2`); the same for both runs.
      files: train/dev/test files; None writes `write_synthetic_splits(root / "data")`.
      reference: a finished uninterrupted run of the same command to compare with; None trains one in `root`.
      timeout: seconds allowed per process.
      compile_cache: share a persistent JAX compilation cache between the runs (faster; results are the same): True
        keeps it in `root`, a path puts it there (to share it with other checks), False turns it off.

    Returns:
      A KillResumeReport; its `problems` lists every difference found (none: the kills cost nothing).
    """
    root = pathlib.Path(root)
    files = files if files is not None else write_synthetic_splits(root / "data")
    cache = root / "jax-cache" if compile_cache is True else (compile_cache or None)
    env = subprocess_env(cache)
    killed, logs = root / "killed", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    if reference is None:
        reference = root / "reference"
        _run_to_end(jaxcnn_command(train_args(reference, files, epochs, extra)), env, timeout, logs / "reference.log")
    reference = pathlib.Path(reference)
    reference_seconds = time.monotonic() - start
    epoch_seconds = _epoch_seconds(reference)
    every = _checkpoint_every(extra)
    cmd = jaxcnn_command(train_args(killed, files, epochs, extra), faults=True)
    records: list[KillRecord] = []
    problems: list[str] = []
    start = time.monotonic()
    for i, kill in enumerate(kills, 1):
        started = time.time()
        code, died, stderr = _run_until_killed(cmd, env, killed, kill, timeout, logs / f"kill-{i}.log",
                                               epoch_seconds)
        _note_resume(records, stderr)
        step, committed, tmp = _checkpoints(killed / "checkpoints")
        note = next((line for line in stderr.splitlines() if line.startswith("jaxcnn fault:")), "")
        records.append(KillRecord(str(kill), code == -signal.SIGKILL, _logged_epoch(killed / "metrics.jsonl"), step,
                                  tmp, seconds_lost=died - max(committed or 0.0, started), note=note))
        if code != -signal.SIGKILL:
            problems.append(f"kill {i} ({kill}) did not land: the run exited with {code} first (log: "
                            f"{logs / f'kill-{i}.log'})")
            break
    stderr = _run_to_end(cmd, env, timeout, logs / "final.log")
    _note_resume(records, stderr)
    killed_seconds = time.monotonic() - start
    problems += compare_runs(reference, killed) + _check_losses(records, every)
    return KillResumeReport(records, problems, reference_seconds, killed_seconds, every)


def _epoch_seconds(workdir: pathlib.Path) -> float:
    """About one epoch's wall time in a finished run: the median training time of an epoch (the first one
    compiles, so it is left out) doubled for evaluation and saving."""
    from jaxcnn.train.writers import read_metrics

    seconds = sorted(r["seconds"] for r in read_metrics(workdir / "metrics.jsonl")
                     if r.get("kind") == "train" and r.get("epoch", 1) > 1)
    return 2.0 * seconds[len(seconds) // 2] if seconds else 1.0


def _checkpoint_every(extra: Sequence[str]) -> int:
    extra = list(extra)
    return int(extra[extra.index("--checkpoint-every") + 1]) if "--checkpoint-every" in extra else 1


def _note_resume(records: list[KillRecord], stderr: str) -> None:
    """Fills in the previous kill's resume point from the log of the run that followed it."""
    if not records:
        return
    m = _RESUMED.search(stderr)
    last = records[-1]
    last.resumed_epoch = int(m.group(1)) if m else 0
    last.epochs_redone = max(last.logged_epoch - last.resumed_epoch, 0)


def _check_losses(records: Sequence[KillRecord], every: int) -> list[str]:
    """Each kill must resume from the newest complete checkpoint and redo at most one checkpoint interval of
    logged epochs, or two when it cut an asynchronous save short: a save runs while training goes on, and the
    trainer waits for it only at the next save, so a save slower than the epochs it overlaps (tiny test runs)
    leaves up to `every` more epochs unprotected. In time: one interval plus one save."""
    problems = []
    for i, r in enumerate(records, 1):
        if not r.killed:
            continue
        if r.resumed_epoch != (r.checkpoint_epoch or 0):
            problems.append(f"kill {i} ({r.kill}): the next run resumed at epoch {r.resumed_epoch}, but epoch "
                            f"{r.checkpoint_epoch} was the newest complete checkpoint")
        cut_short = any(int(name.split(".")[0]) > (r.checkpoint_epoch or 0) for name in r.temporary_folders)
        allowed = every * (2 if cut_short else 1)
        if r.epochs_redone > allowed:
            problems.append(f"kill {i} ({r.kill}): {r.epochs_redone} logged epochs were redone, more than {allowed} "
                            f"(checkpoint every {every} epochs{', a save cut short' if cut_short else ''})")
    return problems


def _run_to_end(cmd: list[str], env: dict[str, str], timeout: float, log: pathlib.Path) -> str:
    with open(log, "w", encoding="utf-8") as err:
        code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout).returncode
    text = log.read_text(encoding="utf-8")
    if code != 0:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(cmd)} exited with {code} (log: {log}):\n{tail}")
    return text


# ----------------------------------------------------------------------------------------------------------------
# Comparing two workdirs


def compare_runs(reference: str | os.PathLike, other: str | os.PathLike) -> list[str]:
    """Differences between two finished runs of the same config (none when `other` equals `reference`).

    Compared: the latest checkpoint's parameters, optimizer state and step (bit for bit), metrics.jsonl (the same
    records in the same order, timings aside; each epoch's train/dev/test records exactly once), summary.json
    (timings aside).
    """
    reference, other = pathlib.Path(reference), pathlib.Path(other)
    problems = _compare_states(reference, other)
    problems += _compare_metrics(reference / "metrics.jsonl", other / "metrics.jsonl")
    summaries = [json.loads((w / "summary.json").read_text(encoding="utf-8")) for w in (reference, other)]
    problems += [f"summary.json: {key} differs: {summaries[0].get(key)!r} vs {summaries[1].get(key)!r}"
                 for key in sorted(set(summaries[0]) | set(summaries[1]))
                 if key not in TIMING_KEYS and summaries[0].get(key) != summaries[1].get(key)]
    return problems


def _compare_states(reference: pathlib.Path, other: pathlib.Path) -> list[str]:
    import jax
    import numpy as np

    from jaxcnn.predict import load_program

    states = [load_program(w, checkpoint="latest").state for w in (reference, other)]
    problems = []
    for part in ("step", "params", "opt_state"):
        a, b = (jax.device_get(getattr(s, part)) for s in states)
        leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
        if [p for p, _ in leaves_a] != [p for p, _ in leaves_b]:
            problems.append(f"{part}: the trees differ")
            continue
        for (path, x), (_, y) in zip(leaves_a, leaves_b):
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                diff = float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                problems.append(f"{part}{jax.tree_util.keystr(path)} differs (max abs difference {diff:.3g})")
    return problems


def _compare_metrics(reference: pathlib.Path, other: pathlib.Path) -> list[str]:
    from jaxcnn.train.writers import read_metrics

    a, b = read_metrics(reference), read_metrics(other)
    problems = [f"{other}: {issue}" for issue in epoch_issues(b)]
    keys_a = [(r.get("kind"), r.get("epoch")) for r in a]
    keys_b = [(r.get("kind"), r.get("epoch")) for r in b]
    if keys_a != keys_b:
        problems.append(f"metrics.jsonl records differ: {keys_a} vs {keys_b}")
        return problems
    for ra, rb in zip(a, b):
        for key in sorted(set(ra) | set(rb)):
            if key not in TIMING_KEYS and ra.get(key) != rb.get(key):
                problems.append(f"metrics.jsonl {ra['kind']} epoch {ra['epoch']}: {key} differs: "
                                f"{ra.get(key)!r} vs {rb.get(key)!r}")
    return problems


def epoch_issues(records: Sequence[Mapping[str, Any]], kinds: Sequence[str] = ("train", "dev", "test")) -> list[str]:
    """Missing or duplicated (kind, epoch) records: each of `kinds` must appear once for every epoch 1..last."""
    seen: dict[tuple[str, int], int] = {}
    for r in records:
        seen[(r.get("kind"), r.get("epoch"))] = seen.get((r.get("kind"), r.get("epoch")), 0) + 1
    last = max((e for _, e in seen if isinstance(e, int)), default=0)
    issues = [f"{kind} epoch {epoch} logged {seen[(kind, epoch)]} times"
              for kind, epoch in sorted(seen, key=str) if seen[(kind, epoch)] > 1]
    issues += [f"{kind} epoch {epoch} missing" for epoch in range(1, last + 1) for kind in kinds
               if (kind, epoch) not in seen]
    return issues


def random_plan(n: int, epochs: int, seed: int, *, steps_per_epoch: int, steps_per_dispatch: int = 2,
                checkpoint_every: int = 1) -> list[Kill]:
    """`n` kills, each in a later epoch than the one before: one during a checkpoint save, one inside an
    evaluation, one between steps, one tearing a metrics line, the rest external SIGKILLs at random moments.

    Args:
      n: kills (1 or more; the first four kinds come first).
      epochs: epochs of the run; kills land in epochs 1..epochs-1, so `n` must be below `epochs`.
      seed: seeds the plan.
      steps_per_epoch, steps_per_dispatch: to pick block boundaries for the between-steps kill.
      checkpoint_every: the save kill lands in an epoch that saves.
    """
    saving = list(range(checkpoint_every, epochs, checkpoint_every))
    if not 1 <= n < epochs or not saving:
        raise ValueError(f"{n} kills need more than {n} epochs and an epoch that saves before the last; got "
                         f"{epochs} epochs, a checkpoint every {checkpoint_every}")
    rng = random.Random(seed)
    save_at = rng.choice(saving)
    others = sorted(rng.sample([e for e in range(1, epochs) if e != save_at], n - 1))
    kinds = (["eval", "step", "metrics"] + ["external"] * n)[: n - 1]
    rng.shuffle(kinds)
    plan = []
    for epoch, kind in sorted([(save_at, "save"), *zip(others, kinds)]):
        if kind == "save":
            plan.append(Kill(f"save:{epoch}"))
        elif kind == "eval":
            plan.append(Kill(f"eval:{epoch}:{rng.choice(['dev', 'test'])}"))
        elif kind == "metrics":
            plan.append(Kill(f"metrics:{epoch}"))
        elif kind == "step":
            # A block boundary inside epoch `epoch`, after its first block: mid-epoch, between steps.
            blocks = math.ceil(steps_per_epoch / steps_per_dispatch)
            block = rng.randrange(1, blocks) if blocks > 1 else 0
            plan.append(Kill(f"step:{(epoch - 1) * steps_per_epoch + block * steps_per_dispatch}"))
        else:
            plan.append(Kill(None, after_epoch=epoch - 1, fraction=rng.random()))
    return plan


if __name__ == "__main__":
    from jaxcnn.cli import exit_with

    exit_with(main())
