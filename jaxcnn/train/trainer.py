"""`train_and_evaluate(config, workdir)`: the whole run, resumable, with Kim's model selection.

Workdir layout:
    config.json           the run's config (a different config on the same workdir is refused)
    checkpoints/          Orbax: the latest and the best-by-dev epochs (state + JSON meta: config, vocab, labels)
    metrics.jsonl         one line per epoch and split ("train", "dev", "test")
    tensorboard/          event files
    summary.json          the result: test accuracy at the best dev epoch, timings
    curves.png, confusion.png

Restore order: the newest readable checkpoint in WORKDIR/checkpoints (a corrupt one is skipped with a warning),
else a fresh start from the seed. Data order and dropout depend only on (seed, epoch, step, example), so a
resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.configs import Config
from jaxcnn.errors import TrainingError
from jaxcnn import tasks
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train import parallel
from jaxcnn.train.checkpoint import CheckpointManager
from jaxcnn.train.losses import get_loss
from jaxcnn.train import sparse as sparse_lib
from jaxcnn.train.optim import make_constraint, make_optimizer, make_schedule
from jaxcnn.train.state import TrainState
from jaxcnn.train.steps import bind, evaluate_steps, train_steps
from jaxcnn.train.workdir import WorkdirLock, atomic_write_json, check_config
from jaxcnn.train.writers import MetricWriter

log = logging.getLogger("jaxcnn")

# Fields that do not change the numbers a run produces, so they may differ when resuming a workdir.
RESULT_NEUTRAL = ("epochs", "patience", "progress", "tensorboard", "plots", "steps_per_dispatch", "devices",
                  "eval_batch_size", "data_dir", "checkpoint_every")


def flat_config(cfg: Config) -> dict[str, Any]:
    return {k: v for section in cfg.to_dict().values() for k, v in section.items()}


def epoch_indices(n: int, batch_size: int, padded_batch: int, seed: int, epoch: int,
                  steps_per_dispatch: int) -> np.ndarray:
    """Example indices of one epoch as <int32>[blocks, steps_per_dispatch, padded_batch].

    A seeded permutation of all n examples cut into batches of `batch_size`; the last batch, the slots that pad a
    batch to a multiple of the device count, and the rows that fill the last block are -1 (masked, no update).
    Depends only on (seed, epoch), which is what makes resuming exact.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
    steps = math.ceil(n / batch_size)
    blocks = math.ceil(steps / steps_per_dispatch)
    out = np.full((blocks * steps_per_dispatch, padded_batch), -1, np.int32)
    flat = np.full(steps * batch_size, -1, np.int32)
    flat[:n] = perm
    out[:steps, :batch_size] = flat.reshape(steps, batch_size)
    return out.reshape(blocks, steps_per_dispatch, padded_batch)


def eval_indices(n: int, padded_batch: int) -> np.ndarray:
    """<int32>[batches, padded_batch]: 0..n-1 in order, then -1 padding."""
    batches = max(math.ceil(n / padded_batch), 1)
    out = np.full(batches * padded_batch, -1, np.int32)
    out[:n] = np.arange(n, dtype=np.int32)
    return out.reshape(batches, padded_batch)


@dataclasses.dataclass
class Progress:
    """Model selection and timing carried across resumes (saved in the checkpoint's meta)."""

    epoch: int = 0
    best_epoch: int = 0
    best_dev: float = -1.0
    best_dev_metrics: dict | None = None
    best_test_metrics: dict | None = None
    stopped_early: bool = False
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    examples_trained: int = 0


class Run:
    """One training run in a workdir. `train_and_evaluate` is the way in; tests reach inside."""

    def __init__(self, cfg: Config, workdir: pathlib.Path, data: Any = None):
        self.cfg = cfg
        self.workdir = workdir
        task = tasks.get(cfg.data.task)
        self.data = data if data is not None else task.prepare(cfg)
        self.mesh = parallel.make_mesh(cfg.train.devices)
        t = cfg.train
        n_train = len(self.data.splits["train"]["label"])
        self.steps_per_epoch = math.ceil(n_train / t.batch_size)
        init_key, rng = jax.random.split(jax.random.key(t.seed))
        self.rng = parallel.replicate(rng, self.mesh)
        state = create_state(cfg, task, *task.build(cfg, self.data, init_key), self.steps_per_epoch)
        self.state = parallel.replicate(state, self.mesh)
        self.device_data = {k: parallel.replicate(v, self.mesh) for k, v in self.data.splits.items()}
        step_fn, eval_fn = bind(get_loss(t.loss), label_smoothing=t.label_smoothing, l1=cfg.optim.l1,
                                l2=cfg.optim.l2)
        sharding = parallel.batch_sharded(self.mesh) if self.mesh.devices.size > 1 else None
        self.batch = parallel.padded_batch_size(t.batch_size, self.mesh)
        self.eval_batch = parallel.padded_batch_size(t.eval_batch_size, self.mesh)
        self.train_fn = jax.jit(functools.partial(train_steps, step_fn=step_fn, num_classes=self.data.num_classes,
                                                  sharding=sharding), donate_argnums=0)
        self.eval_fn = jax.jit(functools.partial(evaluate_steps, eval_fn=eval_fn,
                                                 num_classes=self.data.num_classes, sharding=sharding))
        self.progress = Progress()

    # -- checkpoint content ---------------------------------------------------------------------------------
    def saveable(self) -> dict[str, Any]:
        return {"train": self.state.saveable(), "epoch": jnp.asarray(self.progress.epoch, jnp.int32),
                "rng": jax.random.key_data(self.rng)}

    def meta(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), **self.data.meta(), "progress": dataclasses.asdict(self.progress)}

    def restore(self, ckpt: CheckpointManager) -> bool:
        restored = ckpt.restore_latest(self.saveable())
        if restored is None:
            return False
        step, saved, meta = restored
        self.state = self.state.restore(saved["train"])
        self.rng = parallel.replicate(jax.random.wrap_key_data(saved["rng"]), self.mesh)
        self.progress = Progress(**meta["progress"])
        log.info("resumed from %s at epoch %d", ckpt_dir(self.workdir) / str(step), self.progress.epoch)
        return True

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, split: str) -> dict[str, Any]:
        n = len(self.data.splits[split]["label"])
        idx = parallel.replicate(eval_indices(n, self.eval_batch), self.mesh)
        sums = self.eval_fn(self.state, self.device_data[split], idx)
        return metrics_lib.summarize(jax.device_get(sums), self.data.label_names)

    # -- the loop ---------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, bar) -> dict[str, Any]:
        t = self.cfg.train
        n = len(self.data.splits["train"]["label"])
        idx = epoch_indices(n, t.batch_size, self.batch, t.seed, epoch, t.steps_per_dispatch)
        start = time.perf_counter()
        totals = None
        steps_left = self.steps_per_epoch
        for block in idx:
            block = parallel.replicate(block, self.mesh)
            self.state, sums, bad = self.train_fn(self.state, self.device_data["train"], block, self.rng)
            sums, bad = jax.device_get((sums, bad))
            if bad >= 0:
                raise TrainingError(
                    f"non-finite loss or gradient at step {int(bad)} (epoch {epoch}); training stopped, the last "
                    f"good checkpoint (epoch {self.progress.epoch}) is kept in {ckpt_dir(self.workdir)}")
            totals = sums if totals is None else metrics_lib.add(totals, sums)
            done = min(t.steps_per_dispatch, steps_left)
            steps_left -= done
            if bar is not None:
                seen = float(totals["count"])
                bar.update(done)
                bar.set_postfix(epoch=epoch, loss=f"{float(totals['loss_sum']) / max(seen, 1):.4f}",
                                acc=f"{np.trace(totals['confusion']) / max(seen, 1):.4f}",
                                ex_s=f"{seen / (time.perf_counter() - start):.0f}")
        seconds = time.perf_counter() - start
        out = metrics_lib.summarize(totals, self.data.label_names)
        out["seconds"] = seconds
        out["examples_per_second"] = out["examples"] / seconds
        out["grad_norm"] = float(totals["grad_norm_sum"]) / max(self.steps_per_epoch, 1)
        self.progress.train_seconds += seconds
        self.progress.examples_trained += out["examples"]
        return out

    def run(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.train
        t_start = time.perf_counter()
        wall_before = 0.0
        log_data_summary(self)
        with CheckpointManager(ckpt_dir(self.workdir), best_metric="selection") as ckpt, \
                MetricWriter(self.workdir, tensorboard=t.tensorboard) as writer:
            self.restore(ckpt)
            # Also after a fresh start: a run killed before its first checkpoint was complete logged epochs that
            # no checkpoint holds.
            epoch_done = self.progress.epoch
            writer.truncate(lambda r: r.get("epoch", 0) <= epoch_done)
            wall_before = self.progress.wall_seconds
            bar = make_bar(t, self.steps_per_epoch, self.progress.epoch)
            try:
                while self.progress.epoch < t.epochs and not self.progress.stopped_early:
                    epoch = self.progress.epoch + 1
                    train_m = self.train_epoch(epoch, bar)
                    dev_m, test_m = self.evaluate("dev"), self.evaluate("test")
                    self.progress.epoch = epoch
                    if dev_m["accuracy"] >= self.progress.best_dev:  # ties go to the later epoch, as in Kim's code
                        self.progress.best_dev, self.progress.best_epoch = dev_m["accuracy"], epoch
                        self.progress.best_dev_metrics, self.progress.best_test_metrics = dev_m, test_m
                    if t.patience is not None and epoch - self.progress.best_epoch >= t.patience:
                        self.progress.stopped_early = True
                    step = int(jax.device_get(self.state.step))
                    for kind, m in (("train", train_m), ("dev", dev_m), ("test", test_m)):
                        writer.write({"kind": kind, "epoch": epoch, "step": step, **m})
                    log.info("epoch %d: train loss %.4f acc %.4f | dev acc %.4f | test acc %.4f | %.0f ex/s",
                             epoch, train_m["loss"], train_m["accuracy"], dev_m["accuracy"], test_m["accuracy"],
                             train_m["examples_per_second"])
                    self.progress.wall_seconds = wall_before + time.perf_counter() - t_start
                    last = epoch == t.epochs or self.progress.stopped_early
                    if last or epoch % t.checkpoint_every == 0:
                        # Later epochs win ties in the retention policy too, so the kept "best" is best_epoch.
                        ckpt.save(epoch, self.saveable(), self.meta(),
                                  metrics={"dev_accuracy": dev_m["accuracy"],
                                           "selection": dev_m["accuracy"] + 1e-9 * epoch})
            finally:
                if bar is not None:
                    bar.close()
            ckpt.wait()
        summary = self.summary()
        atomic_write_json(self.workdir / "summary.json", summary)
        if t.plots:
            write_plots(self.workdir, summary, self.data.label_names)
        return summary

    def summary(self) -> dict[str, Any]:
        p, cfg = self.progress, self.cfg
        dev, test = p.best_dev_metrics or {}, p.best_test_metrics or {}
        return {
            "dataset": cfg.data.dataset if cfg.data.train_file is None else cfg.data.train_file,
            "variant": cfg.model.variant,
            "seed": cfg.train.seed,
            "fold": cfg.data.fold,
            "epochs": p.epoch,
            "stopped_early": p.stopped_early,
            "best_epoch": p.best_epoch,
            "dev_accuracy": dev.get("accuracy"),
            "test_accuracy": test.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "test_loss": test.get("loss"),
            "test_confusion": test.get("confusion"),
            "label_names": self.data.label_names,
            "train_examples": len(self.data.splits["train"]["label"]),
            "dev_examples": len(self.data.splits["dev"]["label"]),
            "test_examples": len(self.data.splits["test"]["label"]),
            **self.data.summary(),
            "wall_seconds": p.wall_seconds,
            "train_seconds": p.train_seconds,
            "train_examples_per_second": p.examples_trained / p.train_seconds if p.train_seconds else None,
            "devices": int(self.mesh.devices.size),
            "platform": jax.devices()[0].platform,
        }


def create_state(cfg: Config, task, forward, params, model_state, trainable,
                 steps_per_epoch: int) -> TrainState:
    """The initial TrainState: the optimizer from the config, Kim's max-norm, and lazy embedding rows where that
    is exact (`jaxcnn.train.sparse`). Also used under `jax.eval_shape` to shape a restore target."""
    o = cfg.optim
    total = steps_per_epoch * cfg.train.epochs
    sparse = None
    tables = task.embedding_tables(params) if hasattr(task, "embedding_tables") else ((), ())
    # Weight decay acts on kernels only, so it leaves the rows' update exact; clipping needs the whole gradient.
    if o.lazy_embeddings and o.clip_norm is None:
        sparse = sparse_lib.make(o.optimizer, rho=o.rho, eps=o.eps, trainable=tables[0], frozen=tables[1],
                                 learning_rate=make_schedule(o, steps_per_epoch, total))
    if sparse is not None:
        trainable = {k: v for k, v in trainable.items() if k not in sparse.tables}
    tx = make_optimizer(o, steps_per_epoch=steps_per_epoch, total_steps=total, trainable=trainable)
    return TrainState.create(apply_fn=forward, params=params, tx=tx, model_state=model_state,
                             constraint=make_constraint(o), sparse=sparse)


def ckpt_dir(workdir: pathlib.Path) -> pathlib.Path:
    return workdir / "checkpoints"


def make_bar(t, steps_per_epoch: int, epochs_done: int):
    if not t.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps_per_epoch * t.epochs, initial=steps_per_epoch * epochs_done, unit="step",
                dynamic_ncols=True, leave=False)


def log_data_summary(run: Run) -> None:
    log.info("%s", run.data.describe())
    log.info("devices: %d x %s | batch %d (padded to %d)", run.mesh.devices.size, jax.devices()[0].platform,
             run.cfg.train.batch_size, run.batch)


def write_plots(workdir: pathlib.Path, summary: dict[str, Any], label_names: list[str]) -> None:
    from jaxcnn.train.plots import plot_confusion_matrix, plot_training_curves
    from jaxcnn.train.writers import read_metrics

    plot_training_curves(read_metrics(workdir / "metrics.jsonl"), workdir / "curves.png")
    if summary.get("test_confusion") is not None:
        plot_confusion_matrix(np.asarray(summary["test_confusion"]), label_names, workdir / "confusion.png")


def train_and_evaluate(cfg: Config, workdir: str | pathlib.Path, data: Any = None) -> dict[str, Any]:
    """Trains (or resumes) the run described by `cfg` in `workdir` and returns its summary."""
    cfg.validate()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(workdir):
        check_config(workdir, flat_config(cfg), ignore=RESULT_NEUTRAL)
        return Run(cfg, workdir, data).run()
