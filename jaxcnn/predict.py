"""Prediction and evaluation from a workdir alone: `jaxcnn.load(workdir).predict(["a sentence"])`.

The checkpoint's meta holds the config, the tokenizer, the vocabulary and the label names, so nothing of the
training data is needed to predict (evaluating a split reloads that split, encoded with the saved vocabulary).
"""

from __future__ import annotations

import itertools
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import data as data_lib
from jaxcnn.configs import Config
from jaxcnn.errors import DataError, WorkdirError
from jaxcnn.models.text_cnn import fold_embeddings, folded_size, trainable_mask
from jaxcnn.tasks import text as text_task
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train.checkpoint import CheckpointManager
from jaxcnn.train.losses import get_loss
from jaxcnn.train.state import TrainState
from jaxcnn.train.steps import eval_step, predict_step
from jaxcnn.train.trainer import create_state


def abstract_run_state(cfg: Config, vocab_size: int, num_classes: int, length: int,
                       embed_dim: int | None, sharding=None) -> tuple[TrainState, dict[str, Any]]:
    """The shapes of a run's checkpointed state, without allocating it (a restore target)."""
    model = text_task.build_model(cfg, vocab_size, num_classes, embed_dim)

    def build(key):
        params, model_state = text_task.init_variables(model, key, length)
        return create_state(cfg, text_task, text_task.make_forward(model), params, model_state,
                            trainable_mask(params), steps_per_epoch=1)

    state = jax.eval_shape(build, jax.random.key(0))  # static fields (apply_fn, tx, ...) ride in the treedef
    saved = {"train": state.saveable(), "epoch": jax.ShapeDtypeStruct((), jnp.int32),
             "rng": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))}
    if sharding is not None:
        saved = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), saved)
    return state, saved


LENGTH_BUCKET = 8
# Largest `fold_embeddings` table a Predictor builds (4x the embedding for Kim's bank); above it, the plain path.
FOLD_LIMIT_BYTES = 1 << 30


def fold_for_inference(cfg: Config, params: dict[str, Any]) -> jax.Array | None:
    """The precomputed embedding x conv-taps table (`fold_embeddings`), or None where it would not fit."""
    m = cfg.model
    vocab = next(params[k]["embedding"].shape[0] for k in ("embed", "embed_static") if k in params)
    if folded_size(vocab, m.windows, m.maps) > FOLD_LIMIT_BYTES:
        return None
    return jax.jit(fold_embeddings, static_argnums=1)(params, tuple(m.windows))


class Predictor:
    """A trained text classifier.

    Attributes:
      cfg: the run's Config. encoder: the training TextEncoder. label_names: class names.
      state: the TrainState restored from the chosen checkpoint. epoch: its epoch.
    """

    def __init__(self, cfg: Config, encoder, label_names: list[str], state: TrainState, epoch: int):
        self.cfg, self.encoder, self.label_names, self.state, self.epoch = cfg, encoder, label_names, state, epoch
        self._logits = jax.jit(predict_step)
        self._eval = jax.jit(lambda s, b, f: eval_step(s, b, loss_fn=get_loss(cfg.train.loss), folded=f))
        self.folded = fold_for_inference(cfg, state.params)

    def logits(self, batch: dict[str, Any]) -> jax.Array:
        """<float32>[batch, classes] for {"ids": <int32>[batch, length]}."""
        return self._logits(self.state, batch, self.folded)

    @classmethod
    def from_workdir(cls, workdir: str | pathlib.Path, checkpoint: str = "best") -> Predictor:
        ckpt_dir = pathlib.Path(workdir) / "checkpoints"
        if not ckpt_dir.is_dir():
            raise WorkdirError(f"{workdir}: no checkpoints/ folder; train a model there first (jaxcnn train "
                               f"--workdir {workdir} ...)")
        # Read-only: a training run may be writing to the same workdir. The meta (config, vocabulary, labels) is
        # the same in every step of a run, so the newest readable one shapes the restore target.
        with CheckpointManager(ckpt_dir, best_metric="selection", read_only=True) as ckpt:
            meta = ckpt.read_meta()
            if meta.get("task", "text") == "image":  # same methods (predict_stream, evaluate_*), image inputs
                from jaxcnn.tasks.image import ImagePredictor

                return ImagePredictor.from_checkpoints(ckpt, meta, checkpoint)
            cfg = Config.from_dict(meta["config"])
            vocab = data_lib.Vocabulary.from_dict(meta["vocab"])
            encoder = data_lib.TextEncoder.from_config(meta["encoder"], vocab)
            labels = list(meta["label_names"])
            template, abstract = abstract_run_state(
                cfg, len(vocab), len(labels), encoder.length, meta.get("embed_dim"),
                sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
            restore = ckpt.restore_best if checkpoint == "best" else ckpt.restore_latest
            restored = restore(abstract)
            if restored is None:
                raise WorkdirError(f"{ckpt_dir}: holds no finished checkpoint")
            _, saved, _ = restored
        return cls(cfg, encoder, labels, template.restore(saved["train"]), int(saved["epoch"]))

    # -- prediction -----------------------------------------------------------------------------------------
    # Texts are sorted by length and each batch is cut to its longest sentence plus Kim's padding, rounded up to
    # a multiple of LENGTH_BUCKET: the same outputs as at the full length (windows over padding alone are masked
    # out of the pooling), with a fraction of the work, and at most length / LENGTH_BUCKET compiled shapes.
    def _batches(self, ids: np.ndarray, lengths: np.ndarray, batch_size: int):
        """Yields (rows of `ids` in this batch, <int32>[batch_size, trimmed length] ids padded with zero rows)."""
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            length = self._trimmed_length(int(lengths[rows].max()))
            batch = np.zeros((batch_size, length), np.int32)
            batch[: len(rows)] = ids[rows, :length]
            yield rows, batch

    def _trimmed_length(self, longest: int) -> int:
        m = self.cfg.model
        shortest = max(m.windows) + (m.k - 1 if m.pooling == "kmax" else 0)
        need = max(longest + 2 * self.encoder.pad_width, shortest)
        return min(-(-need // LENGTH_BUCKET) * LENGTH_BUCKET, self.encoder.length)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """<float32>[len(texts), classes] class probabilities."""
        enc = self.encoder.encode(list(texts))
        out = np.zeros((len(enc.ids), len(self.label_names)), np.float32)
        for rows, batch in self._batches(enc.ids, enc.lengths, batch_size):
            logits = self.logits({"ids": jnp.asarray(batch)})
            out[rows] = np.asarray(jax.nn.softmax(logits[: len(rows)], axis=-1))
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[dict[str, Any]]:
        """[{"text", "label", "probabilities": {label name: p}}] for each text."""
        return list(self.predict_stream(texts, batch_size))

    def predict_stream(self, texts: Iterable[str], batch_size: int = 256,
                       window: int = 16) -> Iterator[dict[str, Any]]:
        """Like `predict`, lazily: reads `window` batches of texts at a time (sorted by length within that window),
        so any number streams in bounded memory, in input order."""
        for chunk in _chunks(texts, batch_size * window):
            for text, p in zip(chunk, self.predict_proba(chunk, batch_size)):
                yield {"text": text, "label": self.label_names[int(np.argmax(p))],
                       "probabilities": {name: float(q) for name, q in zip(self.label_names, p)}}

    # -- evaluation -----------------------------------------------------------------------------------------
    def evaluate_texts(self, texts: Sequence[str], labels: np.ndarray, batch_size: int = 500) -> dict[str, Any]:
        """Metrics (loss, accuracy, macro-F1, per-class precision/recall, confusion) over labelled texts."""
        enc = self.encoder.encode(list(texts))
        labels = np.asarray(labels, np.int32)
        total = None
        for rows, batch in self._batches(enc.ids, enc.lengths, batch_size):
            y = np.zeros(batch_size, np.int32)
            y[: len(rows)] = labels[rows]
            mask = np.arange(batch_size) < len(rows)
            sums = jax.device_get(self._eval(self.state, {"ids": batch, "label": y, "mask": mask}, self.folded))
            total = sums if total is None else metrics_lib.add(total, sums)
        if total is None:
            total = {"loss_sum": 0.0, "count": 0.0, "confusion": np.zeros((len(self.label_names),) * 2)}
        return metrics_lib.summarize(total, self.label_names)

    def evaluate_split(self, split: str = "test") -> dict[str, Any]:
        """Metrics on a split of the run's own dataset (same fold, seed and dev carving as in training)."""
        dsd, _, _ = text_task.load_splits(self.cfg)
        rows = dsd[split][:]
        result = self.evaluate_texts(rows["text"], np.asarray(rows["label"]))
        return {"split": split, "epoch": self.epoch, **result}

    def evaluate_file(self, path: str, fmt: str | None = None) -> dict[str, Any]:
        """Metrics on a labelled file; its labels are matched to the model's by name (or by integer id)."""
        d = self.cfg.data
        ds = data_lib.load_files(path, fmt=fmt or d.format, text_column=d.text_column,
                                 label_column=d.label_column)["train"]
        mapping = match_labels(ds.features["label"].names, self.label_names, path)
        rows = ds[:]
        labels = mapping[np.asarray(rows["label"], np.int64)]
        return {"file": str(path), "epoch": self.epoch, **self.evaluate_texts(rows["text"], labels)}


def match_labels(file_names: Sequence[str], model_names: Sequence[str], path: str | os.PathLike) -> np.ndarray:
    """<int32>[len(file_names)]: the model's id of each label of a labelled file, matched by name, else read as an
    integer id; a label the model does not know is a DataError naming the file."""
    mapping = []
    for name in file_names:
        if name in model_names:
            mapping.append(list(model_names).index(name))
        elif name.isdigit() and int(name) < len(model_names):
            mapping.append(int(name))
        else:
            raise DataError(f"label {name!r} is not one of the model's labels {list(model_names)}", path=path)
    return np.asarray(mapping, np.int32)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
