"""The training engine: a `Program` of K members in a workdir, resumable, with Kim's model selection.

`train_and_evaluate(cfg, workdir)` is `jaxcnn train`: a program of one member. `train_members` runs K members
(`jaxcnn cv`, `search`, `ensemble`, `reproduce`). Both are `Run(...).run()`, the one training loop.

Workdir layout:
    config.json           the run's config, loadable by `--config` (another config on the same workdir is refused)
    program.json          the task and the members (seed, fold, searched values, sizes), pinned the same way
    checkpoints/          Orbax: the newest epochs (stacked state, each member's best variables, JSON meta)
    metrics.jsonl         one line per epoch, split (and member, when there are several)
    tensorboard/          event files
    summary.json          the result: each member's test accuracy at its best dev epoch, timings; one member's
                          fields also at the top level
    curves.png, confusion.png   (one member)

Restore order: the newest readable checkpoint in WORKDIR/checkpoints (a corrupt one is skipped with a warning),
else a fresh start from the seeds. Data order and dropout depend only on (seed, epoch, step, example), so a
resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxcnn import tasks as tasks_lib
from jaxcnn.configs import Config
from jaxcnn.errors import DataError, TrainingError
from jaxcnn.layers import bf16_ffi
from jaxcnn.tasks.api import Examples, Task, TaskData
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train.checkpoint import CheckpointManager
from jaxcnn.train.parallel import to_host
from jaxcnn.train.program import BlockObserver, Member, Program
from jaxcnn.train.workdir import WorkdirLock, atomic_write_json, check_config, refuse_other
from jaxcnn.train.writers import MetricWriter

log = logging.getLogger("jaxcnn")

# Fields that do not change the numbers a run produces, so they may differ when resuming a workdir.
RESULT_NEUTRAL = ("train.epochs", "train.patience", "train.progress", "train.tensorboard", "train.plots",
                  "train.steps_per_dispatch", "train.devices", "train.eval_batch_size", "data.data_dir",
                  "train.checkpoint_every")
PROGRAM_NAME = "program.json"
CHECKPOINTS = "checkpoints"
_MAX_CLASS_NAMES = 10  # the data log line lists this many class names at most


class Callback:
    """Hooks into a `Run` (pass them as `callbacks=`): user logging, early stopping of your own, fault injection.
    Every method receives the `Run` and does nothing unless overridden; `run.program` is the `Program`."""

    def on_block_start(self, run: Run) -> None:
        """Before a block of training steps is dispatched (`run.program.state` may be replaced here)."""

    def on_block_dispatched(self, run: Run) -> None:
        """Right after a block of training steps is dispatched, while it computes."""

    def on_evaluate_dispatched(self, run: Run, split: str, epoch: int) -> None:
        """While the evaluation of `split` in `epoch` computes."""

    def on_metrics(self, run: Run, record: dict[str, Any]) -> None:
        """Before `record` is appended to metrics.jsonl."""

    def on_checkpoint_started(self, run: Run, epoch: int) -> None:
        """After the asynchronous save of `epoch`'s checkpoint started, while it is written."""

    def on_epoch_end(self, run: Run, epoch: int) -> None:
        """After `epoch` is evaluated, logged and (when due) saved; `run.progress` holds the selection."""


@dataclasses.dataclass
class MemberProgress:
    """One member's model selection, carried across resumes."""

    best_epoch: int = 0
    best_dev: float = -1.0
    best_dev_metrics: dict | None = None
    best_test_metrics: dict | None = None
    stopped_early: bool = False
    failed: str | None = None

    @property
    def active(self) -> bool:
        return not (self.stopped_early or self.failed)


@dataclasses.dataclass
class Progress:
    """Model selection and timing carried across resumes (saved in the checkpoint's meta)."""

    epoch: int = 0
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    examples_trained: int = 0
    members: list[MemberProgress] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**{**d, "members": [MemberProgress(**m) for m in d["members"]]})


class Run:
    """A `Program` in a workdir: the training loop, per-member Kim selection and early stopping, checkpoints,
    metrics and the summary (see the module docstring).

    Attributes:
      cfg, task, data, members, workdir. program: the `Program`. progress: the `Progress`.
    """

    def __init__(self, cfg: Config, task: Task, data: TaskData, members: Sequence[Member],
                 workdir: str | pathlib.Path, *, callbacks: Sequence[Callback] = (), mesh=None,
                 chunk: int | None | str = "auto"):
        self.cfg, self.task, self.data = cfg, task, data
        self.workdir = pathlib.Path(workdir)
        self.program = Program(cfg, task, data, members, mesh=mesh, chunk=chunk)
        self.members = self.program.members
        self.callbacks = list(callbacks)
        self.progress = Progress(members=[MemberProgress() for _ in self.members])

    @property
    def single(self) -> bool:
        return len(self.members) == 1

    def program_description(self) -> dict[str, Any]:
        return {"task": self.task.name, "members": [m.describe() for m in self.members]}

    def meta(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), "task": self.task.name, **self.data.meta(),
                **self.program_description(), "progress": dataclasses.asdict(self.progress)}

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Trains (or resumes) to the end; writes and returns the summary."""
        with WorkdirLock(self.workdir):
            return self.run_locked()

    def run_locked(self) -> dict[str, Any]:
        """`run` for a caller that already holds the workdir's `WorkdirLock` (taken before preparing the data, so
        that a second run on the workdir is refused at once)."""
        pins = [(self.cfg.to_dict(), {"ignore": RESULT_NEUTRAL}), (self.program_description(), {"name": PROGRAM_NAME})]
        for description, how in pins:
            check_config(self.workdir, description, write=False, **how)
        t = self.cfg.train
        started = time.perf_counter()
        self._log_start()
        with CheckpointManager(self.workdir / CHECKPOINTS, best_metric=None) as ckpt, \
                MetricWriter(self.workdir, tensorboard=t.tensorboard) as writer:
            # The checkpoints say which run they are, whatever config.json says (it may have been deleted): pinned
            # only once they agree, so a refused command changes nothing.
            self._restore(ckpt)
            for description, how in pins:
                check_config(self.workdir, description, **how)
            # Also after a fresh start: a run killed before its first checkpoint was complete logged epochs that
            # no checkpoint holds.
            done = self.progress.epoch
            if jax.process_index() == 0:
                writer.truncate(lambda r: r.get("epoch", 0) <= done)
            wall_before = self.progress.wall_seconds
            bar = _Bar(self) if t.progress else None
            try:
                while self.progress.epoch < t.epochs and any(m.active for m in self.progress.members):
                    epoch = self.progress.epoch + 1
                    self._epoch(epoch, writer, bar, ckpt)
                    self.progress.epoch = epoch
                    self.progress.wall_seconds = wall_before + time.perf_counter() - started
                    last = epoch == t.epochs or not any(m.active for m in self.progress.members)
                    if last or epoch % t.checkpoint_every == 0:
                        ckpt.save(epoch, self.program.saveable(epoch), self.meta())
                        for cb in self.callbacks:
                            cb.on_checkpoint_started(self, epoch)
                    for cb in self.callbacks:
                        cb.on_epoch_end(self, epoch)
            finally:
                if bar is not None:
                    bar.close()
            ckpt.wait()
        summary = self.summary()
        if jax.process_index() == 0:
            atomic_write_json(self.workdir / "summary.json", summary)
            if t.plots and self.single:
                write_plots(self.workdir, summary, self.data.label_names)
        return summary

    def _restore(self, ckpt: CheckpointManager) -> bool:
        restored = ckpt.restore_latest(self.program.saveable(0))
        if restored is None:
            return False
        step, saved, meta = restored
        where = f"{ckpt.directory} (its checkpoints)"
        refuse_other(where, meta.get("config", {}), self.cfg.to_dict(), ignore=RESULT_NEUTRAL)
        refuse_other(where, {"task": meta.get("task"), "members": meta.get("members")}, self.program_description())
        self.program.restore(saved)
        self.progress = Progress.from_dict(meta["progress"])
        log.info("resumed from %s at epoch %d", ckpt.directory / str(step), self.progress.epoch)
        return True

    def _epoch(self, epoch: int, writer: MetricWriter, bar: _Bar | None, ckpt: CheckpointManager) -> None:
        active = [m.active for m in self.progress.members]
        start = time.perf_counter()
        sums, bad = self.program.train_epoch(epoch, active, _Observer(self, bar, epoch, start))
        seconds = time.perf_counter() - start
        for k, b in enumerate(bad):
            if b >= 0:
                self.progress.members[k].failed = f"non-finite loss or gradient at step {int(b)} (epoch {epoch})"
        if all(m.failed for m in self.progress.members):
            raise TrainingError(self._failure(epoch, bad, ckpt))
        dev, test = self._evaluate("dev", epoch), self._evaluate("test", epoch)
        improved = []
        step = to_host(self.program.state.step)
        examples = 0
        train_metrics = []
        for k, (p, was_active) in enumerate(zip(self.progress.members, active)):
            if not was_active:
                improved.append(False)
                continue
            train_m = metrics_lib.summarize(jax.tree.map(lambda x: x[k], sums), self.data.label_names)
            train_m["seconds"] = seconds
            train_m["examples_per_second"] = train_m["examples"] / max(seconds, 1e-9)
            train_m["grad_norm"] = float(sums["grad_norm_sum"][k]) / max(self.program.steps_per_epoch, 1)
            train_metrics.append(train_m)
            examples += train_m["examples"]
            if bad[k] >= 0:
                log.warning("member %s: %s; it stops, the others go on", self.members[k].name, p.failed)
            better = dev[k]["accuracy"] >= p.best_dev  # ties go to the later epoch, as in Kim's code
            if better:
                p.best_dev, p.best_epoch = dev[k]["accuracy"], epoch
                p.best_dev_metrics, p.best_test_metrics = dev[k], test[k]
            improved.append(better)
            patience = self.cfg.train.patience
            if patience is not None and epoch - p.best_epoch >= patience:
                p.stopped_early = True
            for kind, m in (("train", train_m), ("dev", dev[k]), ("test", test[k])):
                record = {"kind": kind, "epoch": epoch, "step": int(step[k]), **({} if self.single else
                                                                                   {"member": k}), **m}
                for cb in self.callbacks:
                    cb.on_metrics(self, record)
                if jax.process_index() == 0:  # one writer in a multi-host job
                    writer.write(record)
        self.program.select(improved)
        self.progress.train_seconds += seconds
        self.progress.examples_trained += examples
        if self.single:
            tm = train_metrics[0]
            log.info("epoch %d: train loss %.4f acc %.4f | dev acc %.4f | test acc %.4f | %.0f ex/s", epoch,
                     tm["loss"], tm["accuracy"], dev[0]["accuracy"], test[0]["accuracy"], tm["examples_per_second"])
        else:
            accs = [d["accuracy"] for d, a in zip(dev, active) if a]
            tests = [d["accuracy"] for d, a in zip(test, active) if a]
            log.info("epoch %d: %d members | dev acc mean %.4f | test acc mean %.4f | %.0f ex/s", epoch,
                     sum(active), float(np.mean(accs)), float(np.mean(tests)), examples / max(seconds, 1e-9))

    def _failure(self, epoch: int, bad: np.ndarray, ckpt: CheckpointManager) -> str:
        kept = ckpt.latest_step
        where = (f"the last good checkpoint (epoch {kept}) is kept in {ckpt.directory}" if kept is not None
                 else "no checkpoint had been saved yet")
        if self.single:
            return f"non-finite loss or gradient at step {int(bad[0])} (epoch {epoch}); training stopped, {where}"
        return (f"every member hit a non-finite loss or gradient by epoch {epoch}; training stopped, {where}; "
                f"see {self.workdir / 'metrics.jsonl'}")

    def _evaluate(self, split: str, epoch: int) -> list[dict[str, Any]]:
        def dispatched():
            for cb in self.callbacks:
                cb.on_evaluate_dispatched(self, split, epoch)

        return self.program.evaluate(split, dispatched=dispatched if self.callbacks else None)

    def _log_start(self) -> None:
        m = self.members[0]
        names = self.data.label_names
        classes = (str(names) if len(names) <= _MAX_CLASS_NAMES
                   else f"{len(names)} ({', '.join(names[:_MAX_CLASS_NAMES])}, ...)")
        sizes = ", ".join(f"{s} {len(r)}" for s, r in m.rows().items())
        what = "data" if self.single else f"{len(self.members)} members as one program | data (member 0)"
        log.info("%s: %s | classes %s", what, self.data.describe(m.rows()).replace(" | ", f" | {sizes} | ", 1),
                 classes)
        mesh = self.program.mesh
        log.info("devices: %d x %s, mesh %s | batch %d (padded to %d)", mesh.devices.size,
                 mesh.devices.flat[0].platform, dict(mesh.shape), self.cfg.train.batch_size, self.program.batch)
        if self.cfg.model.precision == "bfloat16":
            log.info("precision: %s", bf16_ffi.route().describe())

    # -- results --------------------------------------------------------------------------------------------
    def member_summaries(self) -> list[dict[str, Any]]:
        out = []
        for m, p in zip(self.members, self.progress.members):
            dev, test = p.best_dev_metrics or {}, p.best_test_metrics or {}
            out.append({**m.describe(), "epochs": self.progress.epoch, "best_epoch": p.best_epoch,
                        "stopped_early": p.stopped_early, "failed": p.failed,
                        "dev_accuracy": dev.get("accuracy"), "test_accuracy": test.get("accuracy"),
                        "test_macro_f1": test.get("macro_f1"), "test_loss": test.get("loss"),
                        "test_confusion": test.get("confusion"),
                        **({"test_classes_shown": test["classes_shown"]} if "classes_shown" in test else {})})
        return out

    def summary(self) -> dict[str, Any]:
        cfg, p = self.cfg, self.progress
        out = {"dataset": cfg.data.dataset if cfg.data.train_file is None else cfg.data.train_file,
               "task": self.task.name, "variant": cfg.model.variant, "label_names": self.data.label_names,
               **self.data.summary(), "epochs": p.epoch, "wall_seconds": p.wall_seconds,
               "train_seconds": p.train_seconds,
               "train_examples_per_second": p.examples_trained / p.train_seconds if p.train_seconds else None,
               "devices": int(self.program.mesh.devices.size), "platform": jax.devices()[0].platform}
        members = self.member_summaries()
        if self.single:
            out.update({k: v for k, v in members[0].items() if k not in ("name", "hparams", "weighted")})
        out["members"] = members
        return out


class _Observer(BlockObserver):
    """Forwards `Program.train_epoch`'s blocks to the progress bar and the callbacks."""

    def __init__(self, run: Run, bar: _Bar | None, epoch: int, start: float):
        self.run, self.bar, self.epoch, self.start = run, bar, epoch, start

    def block_start(self, program: Program) -> None:
        for cb in self.run.callbacks:
            cb.on_block_start(self.run)

    def block_dispatched(self, program: Program) -> None:
        for cb in self.run.callbacks:
            cb.on_block_dispatched(self.run)

    def block_done(self, program: Program, totals: dict[str, np.ndarray], steps: int) -> None:
        if self.bar is not None:
            self.bar.update(self.epoch, totals, steps, time.perf_counter() - self.start)


class _Bar:
    """A tqdm bar over every step of the run (each member's steps counted once per block)."""

    def __init__(self, run: Run):
        from tqdm.auto import tqdm

        per_epoch = run.program.steps_per_epoch
        self._bar = tqdm(total=per_epoch * run.cfg.train.epochs, initial=per_epoch * run.progress.epoch,
                         unit="step", dynamic_ncols=True, leave=False,
                         disable=None)  # None: no bar where stderr is not a terminal (a log file gets the epoch lines)

    def update(self, epoch: int, totals: dict[str, np.ndarray], steps: int, seconds: float) -> None:
        seen = float(np.sum(totals["count"]))
        self._bar.update(steps)
        self._bar.set_postfix(epoch=epoch, loss=f"{float(np.sum(totals['loss_sum'])) / max(seen, 1):.4f}",
                              acc=f"{np.trace(totals['confusion'], axis1=-2, axis2=-1).sum() / max(seen, 1):.4f}",
                              ex_s=f"{seen / max(seconds, 1e-9):.0f}")

    def close(self) -> None:
        self._bar.close()


def write_plots(workdir: pathlib.Path, summary: dict[str, Any], label_names: list[str]) -> None:
    from jaxcnn.train.plots import plot_confusion_matrix, plot_training_curves
    from jaxcnn.train.writers import read_metrics

    plot_training_curves(read_metrics(workdir / "metrics.jsonl"), workdir / "curves.png")
    if summary.get("test_confusion") is not None:
        names = summary.get("test_classes_shown") or label_names
        plot_confusion_matrix(np.asarray(summary["test_confusion"]), names, workdir / "confusion.png",
                              title=f"test set at epoch {summary['best_epoch']} (best dev)",
                              total_classes=len(label_names))


# ----------------------------------------------------------------------------------------------------------------
# Ways in


def member_for(cfg: Config, examples: Examples, *, seed: int | None = None, fold: int | None = None,
               name: str | None = None, **kwargs: Any) -> Member:
    """The member that trains on the config's split of `examples` (fold `fold`, default the config's), with
    `seed` (default the config's) for its init, data order and dropout; the split itself is seeded by the
    config's seed, so members of other seeds share their fold's sentences."""
    cv = examples.protocol == "cv"
    fold = cfg.data.fold if fold is None else fold
    seed = cfg.train.seed if seed is None else seed
    rows = examples.rows(cfg, fold=fold)
    default = (f"fold {fold} seed {seed}" if cv else f"seed {seed}")
    return Member(name or default, seed, rows["train"], rows["dev"], rows["test"], fold=fold if cv else None,
                  **kwargs)


def check_classes(examples: Examples, members: Sequence[Member]) -> None:
    """Refuses training data of one class: the model would learn to say it always, and score 100% on a test set
    of that class without a word of warning."""
    for m in members:
        classes = np.unique(examples.labels[m.train])
        if len(classes) < 2:
            which = f" of member {m.name!r}" if len(members) > 1 else ""
            only = f"one class ({examples.label_names[int(classes[0])]!r})" if len(classes) else "no example"
            raise DataError(f"the training split{which} holds {only}; a classifier needs examples of at least two "
                            f"classes (data: {examples.source})")


def train_members(cfg: Config, members: Sequence[Member] | Callable[[Examples], Sequence[Member]],
                  workdir: str | pathlib.Path, *, task: Task | None = None, examples: Examples | None = None,
                  callbacks: Sequence[Callback] = (), mesh=None) -> Run:
    """Trains (or resumes) `members` as one program in `workdir`. Returns the finished `Run` (its `summary()`,
    `member_summaries()`, and the best variables in `run.program`).

    Args:
      members: the members, or a function of the examples that makes them.
      task: the `Task` (default: the registered one named by `cfg.data.task`).
      examples: the task's examples when already loaded (else loaded here, once the workdir is locked).
    """
    cfg.validate()
    task = task or tasks_lib.get(cfg.data.task)
    with WorkdirLock(workdir):  # first: a second run on the workdir is refused before it loads anything
        examples = examples if examples is not None else task.load(cfg)
        members = list(members(examples) if callable(members) else members)
        check_classes(examples, members)
        data = task.prepare(cfg, examples, [m.rows() for m in members], [m.seed for m in members])
        run = Run(cfg, task, data, members, workdir, callbacks=callbacks, mesh=mesh)
        run.run_locked()
    return run


def train_and_evaluate(cfg: Config, workdir: str | pathlib.Path, *, task: Task | None = None,
                       callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Trains (or resumes) the run described by `cfg` in `workdir` (`jaxcnn train`): one member on the config's
    split, seed and fold. Returns its summary.

    Args:
      task: the `Task` (default: the registered one named by `cfg.data.task`); your own model plugs in here.
      callbacks: `Callback`s to hook into the loop.
    """
    run = train_members(cfg, lambda examples: [member_for(cfg, examples)], workdir, task=task, callbacks=callbacks)
    return run.summary()
