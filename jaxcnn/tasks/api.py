"""The Task API: everything the engine, the predictor and the experiments know about a task.

A task turns a `Config` into labelled examples, prepares them for a model, builds and calls that model, and reads
raw inputs for prediction. `TextTask` (Kim's CNN, or your own Flax module on the text pipeline) and `ImageTask`
implement it; so can your own class. jaxcnn's training engine (`jaxcnn.train`), predictor (`jaxcnn.predict`) and
experiments use nothing of a task outside this protocol.

The life of a run, in these terms:

    examples = task.load(cfg)                         # every example once, the splits it came with
    rows = protocol_rows(examples.splits, examples.protocol, ...)   # per member: train/dev/test rows
    data = task.prepare(cfg, examples, [rows, ...], seeds)          # one encoded pool for all members
    params, state = task.init(cfg, data, key, data.pretrained(seed))
    forward = task.forward(cfg, data)                 # what the engine's steps call
    ... train ...; the checkpoint stores data.meta()
    data = task.restore(cfg, meta)                    # prediction: no examples needed
    for positions, batch in task.batches(cfg, data, inputs, 256): ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from jaxcnn.data.splits import protocol_rows

PyTree = Any

# forward(variables, batch, *, train, rng, mutable, aux=None) -> logits, or (logits, updated collections) when
# `mutable` names collections. batch: {"<input>": <[batch, ...]>, "label": <int32>[batch], "mask": <bool or
# float32>[batch] (0 for padding examples, a loss weight otherwise), "index": <int32>[batch] (each example's
# position in its member's training list: per-example randomness derives from it)}. rng: the step's key in
# training, None otherwise. aux: what `Task.inference_aux` precomputed, at inference only.
Forward = Callable[..., Any]


@dataclasses.dataclass
class Examples:
    """A labelled dataset before any protocol: every example once, and the splits it came with.

    Attributes:
      inputs: the raw inputs, indexable by row (texts: list[str]; images: <float32>[n, h, w, c]).
      labels: <int32>[n] class ids.
      label_names: class names, index = class id.
      splits: {"train"|"dev"|"test": <int64>[rows]} the rows of each split the data came with.
      protocol: how train, dev and test rows follow from those splits (`jaxcnn.data.splits.protocol_rows`).
      source: where the examples were found (a data folder, a file, a Hub id), for the run's first log line.
    """

    inputs: Any
    labels: np.ndarray
    label_names: list[str]
    splits: dict[str, np.ndarray]
    protocol: str
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, cfg: Any, *, fold: int | None = None) -> dict[str, np.ndarray]:
        """{"train", "dev", "test": <int32>[rows]} of the config's split under the examples' protocol: fold `fold`
        (default the config's) of `cfg.data.folds`, dev carving and folds seeded by the config's seed."""
        d = cfg.data
        return protocol_rows(self.splits, self.protocol, labels=self.labels, fold=d.fold if fold is None else fold,
                             folds=d.folds, seed=cfg.train.seed, dev_fraction=d.dev_fraction, stratify=d.stratify)

    def take(self, rows: Sequence[int] | np.ndarray) -> Any:
        """The raw inputs of `rows`."""
        if isinstance(self.inputs, np.ndarray):
            return self.inputs[np.asarray(rows, np.int64)]
        return [self.inputs[int(i)] for i in rows]


@runtime_checkable
class TaskData(Protocol):
    """A task's examples prepared for its model, and what prediction needs to treat new inputs the same way.

    Attributes:
      label_names: class names, index = class id.
      arrays: the encoded pool, {name: <[rows, ...]>} with "label" <int32>[rows] and the model's inputs (e.g.
        "ids" or "image"); every member's rows index it. Empty after `Task.restore`.
    """

    label_names: list[str]
    arrays: dict[str, np.ndarray]

    @property
    def num_classes(self) -> int: ...

    def pretrained(self, seed: int) -> PyTree | None:
        """Arrays from outside the model that initialise parameters (pretrained word vectors) for `seed`, or None.
        Members with the same seed share them; they reach `Task.init` as arguments of the compiled init."""

    def meta(self) -> dict[str, Any]:
        """JSON that `Task.restore` rebuilds this (without examples) from; saved with every checkpoint."""

    def describe(self, rows: Mapping[str, np.ndarray]) -> str:
        """The task's part of the run's data log line, for one member's split `rows`."""

    def summary(self) -> dict[str, Any]:
        """Task-specific entries of summary.json."""


@runtime_checkable
class Task(Protocol):
    """What a task provides. Attributes: `name` (saved in checkpoints; `jaxcnn.load` and `jaxcnn predict` find
    the registered tasks by it) and `input_name` (the key of a raw input in a prediction record: "text", "file")."""

    name: str
    input_name: str

    def load(self, cfg: Any) -> Examples:
        """The config's labelled examples (a registry set, your files, a Hub dataset)."""

    def prepare(self, cfg: Any, examples: Examples, splits: Sequence[Mapping[str, np.ndarray]],
                seeds: Sequence[int]) -> TaskData:
        """Fits what is learned from data (a vocabulary: on the union of the members' training rows only) and
        encodes every example. `splits`: each member's {"train", "dev", "test": rows}; `seeds`: their seeds."""

    def restore(self, cfg: Any, meta: Mapping[str, Any]) -> TaskData:
        """The prepared data of a saved run, from its `TaskData.meta()`, without examples."""

    def init(self, cfg: Any, data: TaskData, key: Any, pretrained: PyTree | None) -> tuple[PyTree, PyTree]:
        """(params, model_state) of a fresh model; model_state holds the non-parameter collections ({} if none).
        Must be traceable: the engine vmaps it over members' keys (and `pretrained`, where they differ)."""

    def forward(self, cfg: Any, data: TaskData, *, dropout: Any = None) -> Forward:
        """The model as the engine calls it (see `Forward`). `dropout`: a traced rate replacing the config's
        (a search over rates inside one program), or None."""

    def trainable(self, cfg: Any, params: PyTree) -> PyTree:
        """A bool pytree like `params`: False for parameters the optimizer must leave alone (frozen tables)."""

    def embedding_tables(self, cfg: Any, params: PyTree) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(trainable, frozen) top-level names of embedding tables that the forward indexes by `batch["ids"]`
        with `jnp.take` only, so the engine may update them by rows (`jaxcnn.train.sparse`). ((), ()) if none."""

    def inference_aux(self, cfg: Any, params: PyTree) -> PyTree | None:
        """Something precomputed once per set of parameters that makes inference cheaper (passed to the forward
        as `aux`), or None."""

    def batches(self, cfg: Any, data: TaskData, inputs: Any, batch_size: int
                ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Prediction batches of raw inputs: (positions of the inputs in this batch, model inputs with
        `batch_size` rows, the rows past those positions padding). Any order; every input exactly once."""

    def read_labelled(self, cfg: Any, data: TaskData, path: str, fmt: str | None
                      ) -> tuple[Any, np.ndarray, list[str]]:
        """(raw inputs, label ids, label names) of a labelled file, for `evaluate --file`."""
