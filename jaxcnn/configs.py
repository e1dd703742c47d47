"""Typed, frozen run configuration with Kim (2014)'s hyper-parameters as defaults.

A `Config` has four sections (`data`, `model`, `optim`, `train`). Field names are unique across sections, so the
command line exposes every field as one flag (`--batch-size`, `--lr`, `--windows 3 4 5`) and JSON round-trips
through `Config.to_dict` / `Config.from_dict`, where an unknown key or a value of the wrong type is a
`ConfigError` naming the key.

Presets: `kim2014(dataset, variant)` is the paper's recipe; `tiny()` runs in seconds on a CPU (tests, smoke runs);
`image(dataset, model)` is the image task's recipe (Adam, no max-norm), and `defaults(task)` is what the command
line starts from for `--task`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args, get_origin

from jaxcnn.errors import ConfigError

VARIANTS = ("rand", "static", "non-static", "multichannel")
ENSEMBLE_METHODS = ("average", "vote", "stacking", "bagging", "boosting")
# A field that only one task reads says so in its metadata; a config of the other task refuses it at a non-default
# value (a flag of the wrong task is a mistake, not something to ignore).
TEXT = {"task": "text"}
IMAGE = {"task": "image"}


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they become ids.

    Attributes:
      task: "text" (sentence classification; the default) or "image" (image classification).
      dataset: a registry name (text: mr, sst1, sst2, subj, trec, cr, mpqa; image: digits, mnist, fashion_mnist,
        cifar10), or None when `train_file` is given.
      data_dir: the data folder; None reads `JAXCNN_DATA_DIR`, then the Hugging Face Hub.
      train_file/dev_file/test_file/format/text_column/label_column: your own data instead of a registry set.
      phrases: SST only: train on every labelled phrase of the training trees, not only sentences (None: the
        dataset's default, which for SST is phrases, as Kim 2014).
      fine_labels: TREC only: the 50 fine labels instead of the 6 coarse ones.
      fold/folds: for sets without a test split: test on fold `fold` of `folds`, train on the rest.
      dev_fraction: share of the training examples held out as dev where the set has no dev split (Kim: 0.1).
      stratify: stratified folds and dev split (Kim's were not).
      tokenizer: tokenizer name; None takes the dataset's (Kim's clean_str).
      max_len: cap on tokens kept per sentence (None: the longest training sentence).
      min_freq/max_vocab: vocabulary limits (Kim: every training word).
      extend_vocab: with pretrained vectors, dev/test words that have a vector join the vocabulary with their
        pretrained rows (Kim's vocabulary covered all of a dataset's text; no label is read).
      image_size: image task: resize images to image_size x image_size (None: keep their size).
      channels: image task: 1 (greyscale) or 3 (RGB); None keeps the data's.
      augment: image task: on-device training augmentation, e.g. "rotate=10,crop=0.9,noise=0.05" (None: none).
    """

    task: str = "text"
    dataset: str | None = "mr"
    data_dir: str | None = None
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    format: Literal["kim", "csv", "tsv", "jsonl"] = field(default="kim", metadata=TEXT)
    text_column: str = field(default="text", metadata=TEXT)
    label_column: str = field(default="label", metadata=TEXT)
    phrases: bool | None = field(default=None, metadata=TEXT)
    fine_labels: bool = field(default=False, metadata=TEXT)
    fold: int = field(default=0, metadata=TEXT)
    folds: int = field(default=10, metadata=TEXT)
    dev_fraction: float = 0.1
    stratify: bool = False
    tokenizer: str | None = field(default=None, metadata=TEXT)
    max_len: int | None = field(default=None, metadata=TEXT)
    min_freq: int = field(default=1, metadata=TEXT)
    max_vocab: int | None = field(default=None, metadata=TEXT)
    extend_vocab: bool = field(default=True, metadata=TEXT)
    image_size: int | None = field(default=None, metadata=IMAGE)
    channels: int | None = field(default=None, metadata=IMAGE)
    augment: str | None = field(default=None, metadata=IMAGE)


@dataclass(frozen=True)
class ModelConfig:
    """The Kim CNN's shape.

    Attributes:
      variant: rand (random embeddings, trained), static (pretrained, frozen), non-static (pretrained,
        fine-tuned), multichannel (one frozen and one fine-tuned copy; each filter sees both).
      embeddings/embeddings_format: pretrained vectors (word2vec .bin/.txt, GloVe, fastText .vec).
      unknown_init/unknown_scale: words missing from the vectors get U(-a, a): a = `unknown_scale` (Kim: 0.25)
        for "uniform", or a matched to the found vectors' variance for "match".
      embed_dim: size of random embeddings (pretrained ones bring their own).
      windows/maps: filter widths and feature maps per width.
      conv_init: "kim" (U(-0.01, 0.01) for ReLU filters, as Kim's code) or "glorot".
      activation/pooling/k: non-linearity and pooling over time (max, kmax with k, avg), masked so padding never
        counts.
      dropout: on the penultimate layer. hidden: sizes of extra dense layers. norm: after the convolutions.
      dropout_scaling: "inverted" (Flax's, kept units x 1/(1-p) in training) or "kim" (Kim's, x (1-p) at test time).
        The same function with the layer above scaled by 1-p, so that under "kim" the max-norm and Adadelta's
        steps act on the weights at the scale of Kim's Theano code.
      model: image task: lenet5 (ReLU, max pooling), lenet5_classic (tanh, average pooling) or small_cnn (None:
        lenet5).
      width/depth: small_cnn: channels of the first block (doubled per block) and number of conv blocks.
    """

    variant: Literal["rand", "static", "non-static", "multichannel"] = field(default="rand", metadata=TEXT)
    embeddings: str | None = field(default=None, metadata=TEXT)
    embeddings_format: str = field(default="auto", metadata=TEXT)
    unknown_init: Literal["uniform", "match"] = field(default="uniform", metadata=TEXT)
    unknown_scale: float = field(default=0.25, metadata=TEXT)
    embed_dim: int = field(default=300, metadata=TEXT)
    windows: tuple[int, ...] = field(default=(3, 4, 5), metadata=TEXT)
    maps: int = field(default=100, metadata=TEXT)
    activation: str = field(default="relu", metadata=TEXT)
    conv_init: Literal["kim", "glorot"] = field(default="kim", metadata=TEXT)
    pooling: Literal["max", "kmax", "avg"] = field(default="max", metadata=TEXT)
    k: int = field(default=1, metadata=TEXT)
    dropout: float = 0.5
    dropout_scaling: Literal["inverted", "kim"] = field(default="inverted", metadata=TEXT)
    hidden: tuple[int, ...] = field(default=(), metadata=TEXT)
    norm: Literal["none", "batch", "layer"] = field(default="none", metadata=TEXT)
    model: Literal["lenet5", "lenet5_classic", "small_cnn"] | None = field(default=None, metadata=IMAGE)
    width: int = field(default=32, metadata=IMAGE)
    depth: int = field(default=2, metadata=IMAGE)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer, schedule and regularisation. Kim: Adadelta (rho 0.95, eps 1e-6), max-norm 3 on the softmax.

    Attributes:
      optimizer: sgd, momentum, nesterov, adam, adamw, adagrad, rmsprop, adadelta.
      lr: peak learning rate; None takes the optimizer's usual one (`DEFAULT_LR`; Adadelta's is 1.0: it has
        no learning rate of its own).
      schedule: constant, step (x decay_rate every decay_epochs), cosine, warmup_cosine (warmup_epochs).
      clip_norm: clip the global gradient norm (None: off).
      l1/l2: penalties added to the loss (embeddings excluded); weight_decay: decoupled, on dense and conv kernels
        (adamw's, or the same after any other optimizer).
      max_norm: rescale each output unit's weight vector of every dense layer to L2 norm <= max_norm after each
        step (Kim's constraint; None: off).
      lazy_embeddings: update embedding tables by the rows a batch touches, catching up the rows' accumulators
        when next touched; used only where that is exact (Adadelta, Adagrad; no gradient clipping).
    """

    optimizer: Literal["sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop", "adadelta"] = "adadelta"
    lr: float | None = None
    rho: float = 0.95
    eps: float = 1e-6
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    schedule: Literal["constant", "step", "cosine", "warmup_cosine"] = "constant"
    warmup_epochs: float = 1.0
    decay_epochs: float = 10.0
    decay_rate: float = 0.1
    clip_norm: float | None = None
    l1: float = 0.0
    l2: float = 0.0
    weight_decay: float = 0.0
    max_norm: float | None = 3.0
    lazy_embeddings: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """The loop.

    Attributes:
      epochs/batch_size/seed: Kim: 25 epochs, batch 50.
      eval_batch_size: evaluation batches are padded and masked: no example is ever dropped.
      loss/label_smoothing: softmax_ce (default), sigmoid_ce, multilabel_sigmoid_ce, mse, huber.
      patience: stop when dev accuracy has not improved for this many epochs (None: run all epochs).
      steps_per_dispatch: training steps run on the device per host call (a `lax.scan`).
      devices: how many local devices to spread each batch over (None: all).
      checkpoint_every: epochs between checkpoints (the last epoch is always saved).
      tensorboard/plots/progress: outputs.
    """

    epochs: int = 25
    batch_size: int = 50
    eval_batch_size: int = 500
    seed: int = 0
    loss: Literal["softmax_ce", "sigmoid_ce", "multilabel_sigmoid_ce", "mse", "huber"] = "softmax_ce"
    label_smoothing: float = 0.0
    patience: int | None = None
    steps_per_dispatch: int = 100
    devices: int | None = None
    checkpoint_every: int = 1
    tensorboard: bool = True
    plots: bool = True
    progress: bool = True


DEFAULT_LR = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adam": 1e-3, "adamw": 1e-3, "adagrad": 0.01,
              "rmsprop": 1e-3, "adadelta": 1.0}

SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: _to_json(dataclasses.asdict(getattr(self, name))) for name in SECTIONS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        unknown = set(d) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section {sorted(unknown)[0]!r} (sections: {', '.join(SECTIONS)})")
        return cls(**{name: section_from_dict(sec, d.get(name, {}), name) for name, sec in SECTIONS.items()})

    def replace(self, **flat: Any) -> Config:
        """A copy with fields changed by their (unique) names: `cfg.replace(lr=0.1, epochs=3)`."""
        updates: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            section = FIELD_SECTION.get(key)
            if section is None:
                raise ConfigError(f"unknown config field {key!r}")
            updates.setdefault(section, {})[key] = coerce(SECTIONS[section], key, value)
        return dataclasses.replace(self, **{s: replace(getattr(self, s), **u) for s, u in updates.items()})

    def validate(self) -> Config:
        """Checks values that types alone do not catch. Returns self."""
        self._validate_task()  # first: a flag of the other task explains more than its knock-on errors
        d, m, o, t = self.data, self.model, self.optim, self.train
        checks = [
            (d.dataset is not None or d.train_file is not None, "dataset", "give --dataset or --train-file"),
            (d.folds >= 2, "folds", f"must be >= 2, got {d.folds}"),
            (0 <= d.fold < d.folds, "fold", f"must be in [0, {d.folds}), got {d.fold}"),
            (0.0 < d.dev_fraction < 1.0, "dev-fraction", f"must be in (0, 1), got {d.dev_fraction}"),
            (d.min_freq >= 1, "min-freq", f"must be >= 1, got {d.min_freq}"),
            (d.max_len is None or d.max_len >= 1, "max-len", f"must be >= 1, got {d.max_len}"),
            (len(m.windows) >= 1 and min(m.windows) >= 1, "windows", f"need widths >= 1, got {m.windows}"),
            (m.maps >= 1, "maps", f"must be >= 1, got {m.maps}"),
            (m.embed_dim >= 1, "embed-dim", f"must be >= 1, got {m.embed_dim}"),
            (0.0 <= m.dropout < 1.0, "dropout", f"must be in [0, 1), got {m.dropout}"),
            (m.k >= 1, "k", f"must be >= 1, got {m.k}"),
            (m.variant == "rand" or m.embeddings is not None, "embeddings",
             f"variant {m.variant!r} needs pretrained vectors: give --embeddings PATH"),
            (o.lr is None or o.lr > 0, "lr", f"must be > 0, got {o.lr}"),
            (o.max_norm is None or o.max_norm > 0, "max-norm", f"must be > 0, got {o.max_norm}"),
            (o.clip_norm is None or o.clip_norm > 0, "clip-norm", f"must be > 0, got {o.clip_norm}"),
            (t.epochs >= 1, "epochs", f"must be >= 1, got {t.epochs}"),
            (t.batch_size >= 1, "batch-size", f"must be >= 1, got {t.batch_size}"),
            (t.eval_batch_size >= 1, "eval-batch-size", f"must be >= 1, got {t.eval_batch_size}"),
            (t.steps_per_dispatch >= 1, "steps-per-dispatch", f"must be >= 1, got {t.steps_per_dispatch}"),
            (t.devices is None or t.devices >= 1, "devices", f"must be >= 1, got {t.devices}"),
            (0.0 <= t.label_smoothing < 1.0, "label-smoothing", f"must be in [0, 1), got {t.label_smoothing}"),
        ]
        for ok, flag, message in checks:
            if not ok:
                raise ConfigError(f"--{flag}: {message}")
        return self

    def _validate_task(self) -> None:
        """Refuses fields of the other task (at a non-default value) and checks the image task's own."""
        d, m = self.data, self.model
        task = d.task
        if task not in ("text", "image"):
            raise ConfigError(f"--task: unknown task {task!r} (choices: text, image)")
        for name, owner in FIELD_TASK.items():
            if owner == task:
                continue
            section = getattr(self, FIELD_SECTION[name])
            if getattr(section, name) != _default(type(section), name):
                raise ConfigError(f"--{name.replace('_', '-')}: only for --task {owner} (this run is --task {task})")
        if task == "image":
            checks = [
                (m.width >= 1, "width", f"must be >= 1, got {m.width}"),
                (1 <= m.depth <= 8, "depth", f"must be in 1..8, got {m.depth}"),
                (d.image_size is None or d.image_size >= 4, "image-size", f"must be >= 4, got {d.image_size}"),
                (d.channels in (None, 1, 3), "channels", f"must be 1 or 3, got {d.channels}"),
            ]
            for ok, flag, message in checks:
                if not ok:
                    raise ConfigError(f"--{flag}: {message}")
            from jaxcnn.augment import parse_augment

            parse_augment(d.augment)


def _default(cls, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


FIELD_SECTION: dict[str, str] = {}
FIELD_TASK: dict[str, str] = {}  # the fields only one task reads, and that task
for _section, _cls in SECTIONS.items():
    for _f in fields(_cls):
        assert _f.name not in FIELD_SECTION, f"config field {_f.name} is not unique"
        FIELD_SECTION[_f.name] = _section
        if "task" in _f.metadata:
            FIELD_TASK[_f.name] = _f.metadata["task"]


def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(cls, key: str, value: Any) -> Any:
    """Checks (and converts, where lossless) a JSON/CLI value to the field's declared type."""
    return _coerce(field_types(cls)[key], value, key)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # inf and nan pass every comparison a range check makes, and poison a run
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp} for {key}")


def section_from_dict(cls, d: dict[str, Any], name: str):
    if not isinstance(d, dict):
        raise ConfigError(f"config section {name!r} must be an object")
    known = {f.name for f in fields(cls)}
    for key in d:
        if key not in known:
            raise ConfigError(f"unknown config field {name}.{key}")
    return cls(**{k: coerce(cls, k, v) for k, v in d.items()})


def _to_json(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def kim2014(dataset: str = "mr", variant: str = "rand", embeddings: str | None = None) -> Config:
    """Kim (2014)'s recipe: windows 3/4/5 x 100 maps, ReLU, 1-max pooling, dropout 0.5, batch 50, Adadelta
    (rho 0.95, eps 1e-6), max-norm 3 on the softmax, 25 epochs, U(-0.25, 0.25) for unknown words.

    `jaxcnn train --dataset mr --variant rand --workdir runs/mr` runs it; expected test accuracy in the README.
    """
    return Config().replace(dataset=dataset, variant=variant, embeddings=embeddings)


def image(dataset: str = "digits", model: str = "lenet5", **overrides: Any) -> Config:
    """The image task's recipe: Adam (lr 1e-3), batch 32, label smoothing 0.1, no max-norm, no dropout, 50 epochs.

    `jaxcnn train --task image --dataset digits --model lenet5 --workdir runs/digits` runs it (docs/images.md has
    the figures it reaches).
    """
    recipe = dict(optimizer="adam", lr=1e-3, max_norm=None, dropout=0.0, batch_size=32, epochs=50,
                  label_smoothing=0.1)
    return Config().replace(task="image", dataset=dataset, model=model, **(recipe | overrides))


def defaults(task: str = "text") -> Config:
    """The config the command line starts from for `--task`: Kim's recipe for text, `image()` for images."""
    return image(model=None) if task == "image" else Config()


def tiny() -> Config:
    """Seconds on a CPU: 2 epochs, small embeddings and maps. For tests and smoke runs."""
    return Config().replace(embed_dim=16, maps=8, windows=(2, 3), epochs=2, batch_size=16, eval_batch_size=64,
                            progress=False, tensorboard=False, plots=False, steps_per_dispatch=8)
