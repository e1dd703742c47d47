"""Prediction and evaluation from a workdir alone: `jaxcnn.load(workdir).predict(["a sentence"])`.

One predictor for every workdir. A `SavedProgram` is one training program read back from its checkpoints: its
task, config and prepared data (rebuilt from the checkpoint's meta: config, vocabulary, labels; nothing of the
training data is needed) and its members' variables. A `Predictor` holds one program of one member (`jaxcnn
train`), or the programs of an ensemble (`jaxcnn ensemble`) with the rule that combines their members. Inputs go
through the task (`Task.batches`): text is tokenized and encoded as in training, images are loaded and resized;
the records differ only in the input's key ("text" or "file").
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import pathlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxcnn import tasks as tasks_lib
from jaxcnn.configs import ENSEMBLE_METHODS, Config
from jaxcnn.errors import ConfigError, DataError, WorkdirError
from jaxcnn.tasks.api import Task, TaskData
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train.checkpoint import CheckpointManager
from jaxcnn.train.losses import get_loss
from jaxcnn.train.program import abstract_state
from jaxcnn.train.state import TrainState
from jaxcnn.train.steps import predict_step

ENSEMBLE_FILE = "ensemble.json"
_EPS = 1e-7


class SavedProgram:
    """A trained program read back from its workdir, ready for inference.

    Attributes:
      task, cfg, data: the task, the run's config and its prepared data (without examples).
      state: the TrainState with a leading member axis (each member's best variables, or the latest).
      members: the members' `Member.describe()` dicts. epoch: the epoch of the variables (one member's best
        epoch with `checkpoint="best"`).
      aux: what `Task.inference_aux` precomputed from the variables (Kim's CNN: the folded embedding), or None
        (`use_aux=False`, or nothing to precompute).
    """

    def __init__(self, task: Task, cfg: Config, data: TaskData, state: TrainState, members: Sequence[dict[str, Any]],
                 epoch: int, *, use_aux: bool = True):
        self.task, self.cfg, self.data, self.state = task, cfg, data, state
        self.members, self.epoch = list(members), epoch
        single = len(self.members) == 1
        # One member runs on its own state: the member axis squeezed once, not vmapped at every call.
        self._state = jax.tree.map(lambda x: x[0], state) if single else state
        self.aux = None
        if use_aux:
            aux = functools.partial(task.inference_aux, cfg)
            self.aux = jax.jit(aux if single else jax.vmap(aux))(self._state.params)
        if single:
            logits = jax.jit(predict_step)
            self._logits = lambda s, b, a: logits(s, b, a)[None]
        else:
            self._logits = jax.jit(jax.vmap(predict_step, in_axes=(0, None, 0)))

    def __len__(self) -> int:
        return len(self.members)

    def infer(self, batch: Mapping[str, Any]) -> jax.Array:
        """<float32>[members, batch, classes] logits of one batch of model inputs (as `Task.batches` yields)."""
        return self._logits(self._state, dict(batch), self.aux)

    def logits(self, inputs: Any, batch_size: int = 256) -> np.ndarray:
        """<float32>[members, n, classes] every member's logits for the raw `inputs` (texts, image files or
        arrays, as the task reads them)."""
        out = np.zeros((len(self), len(inputs), self.data.num_classes), np.float32)
        for positions, batch in self.task.batches(self.cfg, self.data, inputs, batch_size):
            out[:, positions] = np.asarray(self.infer(batch))[:, : len(positions)]
        return out


def _resolve_task(name: str, task: Task | None, workdir: pathlib.Path) -> Task:
    if task is not None:
        if task.name != name:
            raise WorkdirError(f"{workdir}: holds a model of task {name!r}, not of {task.name!r}")
        return task
    if name not in tasks_lib.TASKS:
        raise WorkdirError(f"{workdir}: holds a model of your own task {name!r}; load it in Python with "
                           f"jaxcnn.load({str(workdir)!r}, task=...)")
    return tasks_lib.get(name)


def load_program(workdir: str | os.PathLike, checkpoint: str = "best", task: Task | None = None) -> SavedProgram:
    """Reads a program back from `workdir` (`checkpoint`: "best", each member's variables at its best dev epoch,
    or "latest"); `task` for a workdir of your own task."""
    workdir = pathlib.Path(workdir)
    ckpt_dir = workdir / "checkpoints"
    if not ckpt_dir.is_dir():
        raise WorkdirError(f"{workdir}: no checkpoints/ folder; train a model there first (jaxcnn train "
                           f"--workdir {workdir} ...)")
    if checkpoint not in ("best", "latest"):
        raise ConfigError(f"--checkpoint: {checkpoint!r} is not one of best, latest")
    # Read-only: a training run may be writing to the same workdir. The meta (config, vocabulary, labels) is the
    # same in every step of a run, so the newest readable one shapes the restore target.
    with CheckpointManager(ckpt_dir, best_metric=None, read_only=True) as ckpt:
        meta = ckpt.read_meta()
        try:
            task = _resolve_task(str(meta.get("task", "text")), task, workdir)
            cfg = Config.from_dict(meta["config"])
            data = task.restore(cfg, meta)
            members = list(meta["members"])
        except (KeyError, TypeError, ValueError) as e:
            raise WorkdirError(f"{ckpt_dir}: the checkpoint's meta is not one jaxcnn wrote ({e!r})") from None
        template, abstract = abstract_state(cfg, task, data, members)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), abstract)
        restored = ckpt.restore_latest(abstract)
    if restored is None:
        raise WorkdirError(f"{ckpt_dir}: holds no finished checkpoint")
    _, saved, meta = restored
    state = template.restore(saved["train"])
    epoch = int(saved["epoch"])
    if checkpoint == "best":
        state = state.replace(params=saved["best"]["params"], model_state=saved["best"]["model_state"])
        progress = meta.get("progress", {}).get("members", [])
        if len(members) == 1 and progress:
            epoch = int(progress[0]["best_epoch"])
    return SavedProgram(task, cfg, data, state, members, epoch)


# ----------------------------------------------------------------------------------------------------------------
# Ensemble combiners: probabilities of K members <float32>[K, n, C] -> class scores <float>[n, C]


def stacking_features(probs: np.ndarray) -> np.ndarray:
    """<float32>[n, K * C] log-probabilities, member-major: what the stacking combiner reads."""
    return np.log(np.clip(probs, _EPS, 1.0)).transpose(1, 0, 2).reshape(probs.shape[1], -1)


def combine_scores(method: str, probs: np.ndarray, combiner: Mapping[str, Any] | None = None) -> np.ndarray:
    """<float>[n, C] an ensemble's class scores, whose argmax is its prediction: probabilities for average,
    bagging and stacking; vote shares, ties broken by the mean probability, for vote; normalised alpha-weighted
    votes for boosting."""
    combiner = combiner or {}
    c = probs.shape[-1]
    if method in ("average", "bagging"):
        return probs.mean(0)
    if method == "vote":
        votes = np.stack([np.bincount(p, minlength=c) for p in probs.argmax(-1).T]).astype(np.float64)
        return (votes + 0.5 * probs.mean(0)) / (probs.shape[0] + 0.5)
    if method == "stacking":
        logits = stacking_features(probs) @ np.asarray(combiner["weights"]) + np.asarray(combiner["bias"])
        return np.asarray(jax.nn.softmax(logits, -1))
    alphas = combiner.get("alphas", [1.0] * probs.shape[0])
    votes = np.zeros(probs.shape[1:])
    for a, hits in zip(alphas, probs.argmax(-1)):
        votes += a * np.eye(c)[hits]
    return votes / np.maximum(votes.sum(-1, keepdims=True), _EPS)


# ----------------------------------------------------------------------------------------------------------------
# The predictor


class Predictor:
    """A trained classifier: one program of one member, or an ensemble's programs and their combining rule.

    Attributes:
      programs: the `SavedProgram`s. method: None for one model, else the ensemble's combining rule.
      combiner: the rule's fitted values (stacking weights, boosting alphas). label_names: class names.
      input_name: the raw input's key in prediction records ("text", "file").
    """

    def __init__(self, programs: Sequence[SavedProgram], method: str | None = None,
                 combiner: Mapping[str, Any] | None = None):
        self.programs, self.method, self.combiner = list(programs), method, dict(combiner or {})
        first = self.programs[0]
        self.label_names = list(first.data.label_names)
        self.input_name = first.task.input_name
        for p in self.programs[1:]:
            if list(p.data.label_names) != self.label_names:
                raise WorkdirError(f"the ensemble's programs disagree on the labels: {p.data.label_names} vs "
                                   f"{self.label_names}")
        if method is None and (len(self.programs) != 1 or len(first) != 1):
            raise WorkdirError(f"a predictor without a combining rule takes one program of one model, got "
                               f"{sum(len(p) for p in self.programs)} models")

    @classmethod
    def from_workdir(cls, workdir: str | os.PathLike, checkpoint: str = "best", task: Task | None = None
                     ) -> Predictor:
        """The model of a `jaxcnn train` workdir, or the chosen ensemble of a `jaxcnn ensemble` workdir."""
        workdir = pathlib.Path(workdir)
        if (workdir / ENSEMBLE_FILE).is_file():
            method, combiner, dirs = read_ensemble(workdir)
            return cls([load_program(d, "best", task) for d in dirs], method, combiner)
        program = load_program(workdir, checkpoint, task)
        if len(program) != 1:
            raise WorkdirError(f"{workdir}: holds a program of {len(program)} models (cv, search); predict and "
                               f"evaluate take the workdir of one model (jaxcnn train) or of an ensemble")
        return cls([program])

    @property
    def program(self) -> SavedProgram:
        """The one program (of a `jaxcnn train` workdir)."""
        return self.programs[0]

    @property
    def cfg(self) -> Config:
        """The (first) program's config."""
        return self.programs[0].cfg

    @property
    def data(self) -> TaskData:
        """The (first) program's prepared data (the text encoder and vocabulary, the image shape, the labels)."""
        return self.programs[0].data

    @property
    def state(self) -> TrainState:
        """The one model's TrainState (its variables; no member axis)."""
        if self.method is not None:
            raise WorkdirError(f"an ensemble ({self.method}) has no single state; see .programs")
        return jax.tree.map(lambda x: x[0], self.programs[0].state)

    @property
    def epoch(self) -> int:
        return self.programs[0].epoch

    # -- prediction -------------------------------------------------------------------------------------------
    def scores(self, inputs: Any, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """(<float>[n, classes] class scores (probabilities, or an ensemble's scores), the one model's
        <float32>[n, classes] logits or None for an ensemble)."""
        outputs = [p.logits(inputs, batch_size) for p in self.programs]
        if self.method is None:
            logits = outputs[0][0]
            return np.asarray(jax.nn.softmax(logits, axis=-1)), logits
        probs = np.concatenate([np.asarray(jax.nn.softmax(o, axis=-1)) for o in outputs])
        return combine_scores(self.method, probs, self.combiner), None

    def predict_proba(self, inputs: Any, batch_size: int = 256) -> np.ndarray:
        """<float32>[len(inputs), classes] class probabilities (an ensemble: its scores, see `combine_scores`)."""
        return self.scores(inputs, batch_size)[0]

    def predict(self, inputs: Any, batch_size: int = 256) -> list[dict[str, Any]]:
        """[{"text" (or "file"), "label", "probabilities": {label name: p}}] for each input."""
        return list(self.predict_stream(inputs, batch_size))

    def predict_stream(self, inputs: Iterable[Any], batch_size: int = 256, window: int = 16
                       ) -> Iterator[dict[str, Any]]:
        """Like `predict`, lazily: reads `window` batches of inputs at a time, so any number streams in bounded
        memory, in input order."""
        for chunk in _chunks(inputs, batch_size * window):
            for item, p in zip(chunk, self.predict_proba(chunk, batch_size)):
                yield {self.input_name: item if isinstance(item, str) else str(item),
                       "label": self.label_names[int(np.argmax(p))],
                       "probabilities": {name: float(q) for name, q in zip(self.label_names, p)}}

    # -- explanation ------------------------------------------------------------------------------------------
    def explain(self, texts: Sequence[str], batch_size: int = 256, steps: int | None = None
                ) -> list[dict[str, Any]]:
        """Why each text got its label: one record per text (see `jaxcnn.explain`): the logits split exactly into
        the head's bias and the contributions of the n-grams that won the filters (`"method": "exact"`), or, for
        a head with hidden layers or normalization, integrated gradients over `steps` points."""
        from jaxcnn.explain import collector_paused

        with collector_paused():  # a list of acyclic records: scanning it while it grows is all waste
            return list(self.explain_stream(texts, batch_size, steps))

    def explain_stream(self, texts: Iterable[str], batch_size: int = 256, steps: int | None = None
                       ) -> Iterator[dict[str, Any]]:
        """Like `explain`, lazily, a batch at a time (any number of texts in bounded memory, in input order)."""
        from jaxcnn import explain as explain_lib

        model, variables = self._kim_model()
        for window in _chunks(texts, batch_size * 16):
            out: list[Any] = [None] * len(window)
            pending = None  # the batch dispatched before: its records are built while the next one computes
            for batch in [*self._encoded(window, batch_size), None]:
                started = None if batch is None else explain_lib.start(
                    model, variables, batch[1], steps or explain_lib.IG_STEPS, folded=self.program.aux)
                if pending is not None:
                    (positions, ids, shown), done = pending
                    chunk = [window[i] for i in positions]
                    for i, record in zip(positions, explain_lib.finish(done, ids, chunk, shown, self.label_names)):
                        out[i] = record
                pending = None if batch is None else (batch, started)
            yield from out

    def filters(self, texts: Iterable[str], top: int = 5, batch_size: int = 256) -> dict[str, Any]:
        """What each filter learned, over `texts` (e.g. a split: `self.split("test")[0]`): for every filter the
        `top` n-grams that activate it most, and for every class the n-grams whose exact contributions to its
        logit add up to the most (see `jaxcnn.explain.FilterReport`)."""
        from jaxcnn import explain as explain_lib

        model, variables = self._kim_model()
        if not explain_lib.is_exact(model):
            raise WorkdirError("filters needs the exact decomposition: a model without hidden layers or "
                               "normalization")
        report = explain_lib.FilterReport(model, self.label_names, top)
        for window in _chunks(texts, batch_size * 16):
            for _, ids, shown in self._encoded(window, batch_size):
                report.add(variables["params"], ids, shown, folded=self.program.aux)
        return report.result()

    def _kim_model(self) -> tuple[Any, dict[str, Any]]:
        from jaxcnn.models.text_cnn import TextCNN

        if self.method is not None:
            raise WorkdirError(f"an ensemble ({self.method}) combines several models' votes and has no single "
                               f"decomposition; explain one of its programs' workdirs")
        p = self.program
        model = p.task.model(p.cfg, p.data)
        if not isinstance(model, TextCNN):
            raise WorkdirError(f"explain takes a Kim CNN (jaxcnn train on text), not a {type(model).__name__}")
        state = self.state
        return model, {"params": state.params, **state.model_state}

    def _encoded(self, texts: Sequence[str], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, list]]:
        """Per batch: (positions in `texts`, <int32>[n, length] their rows, the tokens each row kept). As predict
        batches (`TextTask.batches`): sorted by length, each batch's rows cut to its longest sentence."""
        from jaxcnn.tasks.text import row_length

        p = self.program
        encoder, vocab = p.data.encoder, p.data.encoder.vocab
        token_lists = encoder.tokenizer.batch(list(texts))
        enc = encoder.encode_tokens(token_lists)
        # The tokens each row kept, with the markers the row holds, for display beside the positions.
        marks = 2 if vocab.bos_eos else 0
        shown = [list(t[: int(n) - marks]) for t, n in zip(token_lists, enc.lengths)]
        if marks:
            shown = [[vocab.itos[vocab.bos_id], *t, vocab.itos[vocab.eos_id]] for t in shown]
        order = np.argsort(enc.lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            length = row_length(p.cfg, p.data, int(enc.lengths[rows].max()))
            yield rows, enc.ids[rows, :length], [shown[i] for i in rows]

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate_inputs(self, inputs: Any, labels: np.ndarray, batch_size: int = 500) -> dict[str, Any]:
        """Metrics (loss, accuracy, macro-F1, per-class precision/recall, confusion) over labelled inputs."""
        labels = np.asarray(labels, np.int32)
        c = len(self.label_names)
        if len(labels) == 0:
            return metrics_lib.summarize({"loss_sum": 0.0, "count": 0.0, "confusion": np.zeros((c, c))},
                                         self.label_names)
        scores, logits = self.scores(inputs, batch_size)
        if logits is not None:
            loss = np.asarray(get_loss(self.program.cfg.train.loss)(logits, labels, 0.0))
        else:
            loss = -np.log(np.clip(scores[np.arange(len(labels)), labels], _EPS, None))
        confusion = np.zeros((c, c))
        np.add.at(confusion, (labels, scores.argmax(-1)), 1)
        return metrics_lib.summarize({"loss_sum": float(loss.sum()), "count": float(len(labels)),
                                      "confusion": confusion}, self.label_names)

    def evaluate_split(self, split: str = "test", data_dir: str | None = None) -> dict[str, Any]:
        """Metrics on a split of the run's own data (same protocol, fold, seed and dev carving as in training),
        read from `data_dir` if given (the data may have moved since)."""
        inputs, labels = self.split(split, data_dir)
        return {"split": split, "epoch": self.epoch, **self.evaluate_inputs(inputs, labels)}

    def split(self, split: str = "test", data_dir: str | None = None) -> tuple[Any, np.ndarray]:
        """(raw inputs, <int64>[n] labels) of a split of the run's own data: the same protocol, fold, seed and dev
        carving as in training, read from `data_dir` if given (the data may have moved since)."""
        p = self.program
        cfg = p.cfg if data_dir is None else p.cfg.replace(data_dir=str(data_dir))
        examples = p.task.load(cfg)
        rows = examples.rows(cfg, fold=p.members[0].get("fold"))[split]
        return examples.take(rows), examples.labels[rows]

    def evaluate_file(self, path: str, fmt: str | None = None) -> dict[str, Any]:
        """Metrics on a labelled file; its labels are matched to the model's by name (or by integer id)."""
        p = self.program
        inputs, labels, names = p.task.read_labelled(p.cfg, p.data, path, fmt)
        mapping = match_labels(names, self.label_names, path)
        return {"file": str(path), "epoch": self.epoch, **self.evaluate_inputs(inputs, mapping[labels])}


def read_ensemble(workdir: pathlib.Path) -> tuple[str, dict[str, Any], list[pathlib.Path]]:
    """(method, combiner, program folders) of the chosen ensemble in `workdir/ensemble.json`, checked: a damaged
    or crafted file is a one-line WorkdirError, and every folder it names must lie inside the workdir."""
    path = workdir / ENSEMBLE_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        method = info["chosen"]
        combiner = info.get("combiners", {}).get(method, {})
        dirs = info["programs"][method]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise WorkdirError(f"{path}: not a readable ensemble description ({e.__class__.__name__}: {e})") from None
    if method not in ENSEMBLE_METHODS or not isinstance(combiner, dict) or not isinstance(dirs, list) or not dirs:
        raise WorkdirError(f"{path}: not a readable ensemble description (method {method!r})")
    root = workdir.resolve()
    folders = []
    for d in dirs:
        folder = (workdir / str(d)).resolve()
        if not isinstance(d, str) or not folder.is_relative_to(root) or folder == root:
            raise WorkdirError(f"{path}: program folder {d!r} is not inside {workdir}")
        folders.append(folder)
    return method, combiner, folders


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


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
