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
TEXT_TASK = "text"
IMAGE_TASK = "image"


def _f(default: Any = dataclasses.MISSING, help: str = "", task: str | None = None, **kwargs: Any) -> Any:
    """A config field with its one-sentence help (the flag's `--help` text and the section's `Attributes:`) and,
    for a field only one task reads, that task."""
    metadata = {"help": help, **({"task": task} if task else {})}
    return field(default=default, metadata=metadata, **kwargs)


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they become ids."""

    task: str = _f("text", "text (sentence classification) or image (image classification)")
    dataset: str | None = _f("mr", "a registry set (text: mr, sst1, sst2, subj, trec, cr, mpqa; image: digits, mnist, "
                                   "fashion_mnist, cifar10); none with --train-file")
    data_dir: str | None = _f(None, "the data folder; none: JAXCNN_DATA_DIR, then the copies bundled with jaxcnn "
                                    "(mr, trec), then the Hugging Face Hub")
    train_file: str | None = _f(None, "your own training data (a file, a Hub dataset id or a folder) instead of a "
                                      "registry set")
    dev_file: str | None = _f(None, "your own dev data, in the training file's format")
    test_file: str | None = _f(None, "your own test data, in the training file's format")
    format: Literal["kim", "csv", "tsv", "jsonl"] = _f(
        "kim", "the format of your files: kim (one '<label> <sentence>' a line), csv, tsv or jsonl", TEXT_TASK)
    text_column: str = _f("text", "the text's column (csv, tsv) or key (jsonl) in your files", TEXT_TASK)
    label_column: str = _f("label", "the label's column (csv, tsv) or key (jsonl) in your files", TEXT_TASK)
    phrases: bool | None = _f(None, "SST: train on every labelled phrase of the training trees, as Kim did (the "
                                    "default for SST); --no-phrases: on the sentences only", TEXT_TASK)
    fine_labels: bool = _f(False, "TREC: the 50 fine labels instead of the 6 coarse ones", TEXT_TASK)
    fold: int = _f(0, "for a set without a test split: the fold tested on (the others train)", TEXT_TASK)
    folds: int = _f(10, "for a set without a test split: how many cross-validation folds (Kim: 10)", TEXT_TASK)
    dev_fraction: float = _f(0.1, "the share of the training examples held out as dev where a set has no dev split "
                                  "(Kim: 0.1)")
    stratify: bool = _f(False, "keep the class proportions in folds and dev splits (Kim's were not)")
    tokenizer: str | None = _f(None, "kim, kim_sst, kim_cased, whitespace, regex or char; none: the set's own "
                                     "(Kim's clean_str)", TEXT_TASK)
    max_len: int | None = _f(None, "tokens kept per sentence; none: the longest training sentence, at most 1000",
                             TEXT_TASK)
    min_freq: int = _f(1, "the fewest training occurrences a word needs to enter the vocabulary (Kim: 1)",
                       TEXT_TASK)
    max_vocab: int | None = _f(None, "the most words the vocabulary keeps, the most frequent first (none: all)",
                               TEXT_TASK)
    extend_vocab: bool = _f(True, "with pretrained vectors: dev and test words that have a vector join the "
                                  "vocabulary (Kim's covered all of a set's text; no label is read)", TEXT_TASK)
    image_size: int | None = _f(None, "resize images to this size x this size (none: keep their size)", IMAGE_TASK)
    channels: int | None = _f(None, "1 (greyscale) or 3 (RGB); none: the data's", IMAGE_TASK)
    augment: str | None = _f(None, "on-device training augmentation, e.g. rotate=10,crop=0.9,noise=0.05 (none: "
                                   "none)", IMAGE_TASK)


@dataclass(frozen=True)
class ModelConfig:
    """The model's shape: Kim's CNN for text, LeNet-5 or the small CNN for images."""

    variant: Literal["rand", "static", "non-static", "multichannel"] = _f(
        "rand", "rand: random embeddings, trained; static: pretrained, frozen; non-static: pretrained, fine-tuned; "
                "multichannel: a frozen and a fine-tuned copy, each filter seeing both", TEXT_TASK)
    embeddings: str | None = _f(None, "the pretrained word vectors for static, non-static and multichannel",
                                TEXT_TASK)
    embeddings_format: str = _f("auto", "the vectors' format: auto, word2vec_bin, word2vec_txt, glove or fasttext",
                                TEXT_TASK)
    unknown_init: Literal["uniform", "match"] = _f(
        "uniform", "words without a pretrained vector: uniform draws U(-a, a) with a = --unknown-scale (Kim); "
                   "match fits a to the found vectors' variance", TEXT_TASK)
    unknown_scale: float = _f(0.25, "the bound a of U(-a, a) for words without a vector (Kim: 0.25)", TEXT_TASK)
    embed_dim: int = _f(300, "the size of random embeddings (pretrained ones bring their own)", TEXT_TASK)
    windows: tuple[int, ...] = _f((3, 4, 5), "the filter widths (Kim: 3 4 5)", TEXT_TASK)
    maps: int = _f(100, "feature maps per filter width (Kim: 100)", TEXT_TASK)
    activation: str = _f("relu", "the filters' non-linearity: relu, gelu, tanh, sigmoid, leaky_relu, elu, selu, "
                                 "swish, softplus or identity", TEXT_TASK)
    conv_init: Literal["kim", "glorot"] = _f("kim", "the filters' init: kim (U(-0.01, 0.01) for ReLU, as his code) "
                                                    "or glorot", TEXT_TASK)
    pooling: Literal["max", "kmax", "avg"] = _f("max", "pooling over time, padding never counted: max (Kim's 1-max), "
                                                       "kmax (the --k largest) or avg", TEXT_TASK)
    k: int = _f(1, "how many values kmax pooling keeps per feature map", TEXT_TASK)
    dropout: float = _f(0.5, "the dropout rate on the penultimate layer (Kim: 0.5)")
    dropout_scaling: Literal["inverted", "kim"] = _f(
        "inverted", "inverted (Flax's: kept units x 1/(1-p) in training) or kim (his Theano code's: x (1-p) at "
                    "test time)", TEXT_TASK)
    hidden: tuple[int, ...] = _f((), "sizes of extra dense layers between the pooling and the output (Kim: none)",
                                 TEXT_TASK)
    norm: Literal["none", "batch", "layer"] = _f("none", "normalisation of the pooled features: none, batch or "
                                                         "layer", TEXT_TASK)
    precision: Literal["float32", "bfloat16"] = _f(
        "float32", "the arithmetic of the filter bank and the output layer: float32, or bfloat16 with float32 "
        "accumulation (parameters, optimizer state, losses and metrics stay float32)", TEXT_TASK)
    model: Literal["lenet5", "lenet5_classic", "small_cnn"] | None = _f(
        None, "lenet5 (ReLU, max pooling), lenet5_classic (tanh, average pooling) or small_cnn (none: lenet5)",
        IMAGE_TASK)
    width: int = _f(32, "small_cnn: the channels of its first block (doubled per block)", IMAGE_TASK)
    depth: int = _f(2, "small_cnn: how many convolution blocks", IMAGE_TASK)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer, schedule and regularisation. Kim: Adadelta (rho 0.95, eps 1e-6), max-norm 3 on the softmax."""

    optimizer: Literal["sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop", "adadelta"] = _f(
        "adadelta", "the optimizer (Kim: adadelta)")
    lr: float | None = _f(None, "the peak learning rate; none: the optimizer's usual one (Adadelta: 1.0, it has "
                                "no learning rate of its own)")
    rho: float = _f(0.95, "Adadelta's and RMSProp's decay (Kim: 0.95)")
    eps: float = _f(1e-6, "Adadelta's epsilon (Kim: 1e-6)")
    momentum: float = _f(0.9, "momentum of sgd with momentum and nesterov")
    b1: float = _f(0.9, "Adam's first-moment decay")
    b2: float = _f(0.999, "Adam's second-moment decay")
    schedule: Literal["constant", "step", "cosine", "warmup_cosine"] = _f(
        "constant", "the learning-rate schedule: constant, step (x --decay-rate every --decay-epochs), cosine, "
                    "warmup_cosine (--warmup-epochs)")
    warmup_epochs: float = _f(1.0, "warmup_cosine: epochs of linear warmup")
    decay_epochs: float = _f(10.0, "step: epochs between decays")
    decay_rate: float = _f(0.1, "step: the factor of each decay")
    clip_norm: float | None = _f(None, "clip the global gradient norm to this (none: no clipping)")
    l1: float = _f(0.0, "an L1 penalty on the weights, added to the loss (embeddings excluded)")
    l2: float = _f(0.0, "an L2 penalty on the weights, added to the loss (embeddings excluded)")
    weight_decay: float = _f(0.0, "decoupled weight decay on dense and conv kernels, after any optimizer (adamw's "
                                  "own for adamw)")
    max_norm: float | None = _f(3.0, "rescale each output unit's weights to an L2 norm of at most this after "
                                     "every step (Kim's constraint: 3; none: off)")
    lazy_embeddings: bool = _f(True, "update embedding tables by the rows a batch touches, where that is exact "
                                     "(Adadelta, Adagrad, no clipping): the same result, faster")


@dataclass(frozen=True)
class TrainConfig:
    """The loop."""

    epochs: int = _f(25, "epochs to train (Kim: 25)")
    batch_size: int = _f(50, "examples per step (Kim: 50)")
    eval_batch_size: int = _f(500, "examples per evaluation batch (batches are padded and masked: no example is "
                                   "dropped)")
    seed: int = _f(0, "seeds the split, the initialisation, the data order and dropout")
    loss: Literal["softmax_ce", "sigmoid_ce", "multilabel_sigmoid_ce", "mse", "huber"] = _f(
        "softmax_ce", "the loss (Kim: softmax_ce)")
    label_smoothing: float = _f(0.0, "softmax_ce: label smoothing (0: none)")
    patience: int | None = _f(None, "stop once dev accuracy has not improved for this many epochs (none: run every "
                                    "epoch)")
    steps_per_dispatch: int = _f(100, "training steps per call to the device (a lax.scan); speed only")
    devices: int | None = _f(None, "how many local devices share each batch (none: all)")
    checkpoint_every: int = _f(1, "epochs between checkpoints (the last epoch is always saved)")
    tensorboard: bool = _f(True, "write TensorBoard event files to WORKDIR/tensorboard")
    plots: bool = _f(True, "draw curves.png and confusion.png at the end")
    progress: bool = _f(True, "show a progress bar (on a terminal)")


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
    for _field in fields(_cls):
        assert _field.name not in FIELD_SECTION, f"config field {_field.name} is not unique"
        FIELD_SECTION[_field.name] = _section
        if "task" in _field.metadata:
            FIELD_TASK[_field.name] = _field.metadata["task"]
    # The help texts are the fields' documentation too: one source, read by `help()` and by `--help`.
    _cls.__doc__ = (_cls.__doc__ or "") + "\n\n    Attributes:\n" + "".join(
        f"      {f.name}: {f.metadata['help']}.\n" for f in fields(_cls))


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
