"""The image classification task: from a `Config` to image splits, an image CNN, on-device augmentation, and a
predictor for trained image workdirs.

`forward(variables, batch, *, train, rng, mutable)` is what the engine's steps call. In training each example
gets its own key, `fold_in(step_rng, batch["index"][i])`, from which its augmentation and dropout keys derive:
the draws depend only on (seed, step, example), never on the batch layout or the device count, and a resumed run
repeats them exactly. Batch norm reads `batch["mask"]`, so padding examples never enter its statistics.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import augment, tasks
from jaxcnn.configs import Config
from jaxcnn.data import images as images_lib
from jaxcnn.errors import ConfigError, DataError, WorkdirError
from jaxcnn.models.image_cnn import IMAGE_MODELS
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train.checkpoint import CheckpointManager
from jaxcnn.train.losses import get_loss
from jaxcnn.train.state import TrainState
from jaxcnn.train.steps import eval_step, predict_step
from jaxcnn.train.trainer import create_state

DEFAULT_MODEL = "lenet5"
# Per-example stream tags: the example key folded with these gives independent augmentation and dropout keys.
_AUGMENT_STREAM, _DROPOUT_STREAM = 0, 1


@dataclasses.dataclass
class ImageData:
    """Image splits and what prediction needs to treat new images the same way.

    Attributes:
      label_names: class names, index = label id.
      splits: {"train"|"dev"|"test": {"image": <float32>[n, height, width, channels] in [0, 1],
        "label": <int32>[n]}}.
      source: where the images came from (registry set, Hub id or path).
      model: the `--model` name. augment: the `--augment` spec (None: none).
    """

    label_names: list[str]
    splits: dict[str, dict[str, np.ndarray]]
    source: str
    model: str = DEFAULT_MODEL
    augment: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.splits["train"]["image"].shape[1:])

    def describe(self) -> str:
        """One log line about the data."""
        sizes = ", ".join(f"{k} {len(v['label'])}" for k, v in self.splits.items())
        h, w, c = self.image_shape
        return (f"data: {sizes} | images {h}x{w}x{c} from {self.source} | classes {self.label_names} | model "
                f"{self.model} | augment {self.augment or 'none'}")

    def summary(self) -> dict[str, Any]:
        """Task-specific entries of summary.json."""
        return {"task": "image", "model": self.model, "augment": self.augment, "image_shape": list(self.image_shape)}

    def meta(self) -> dict[str, Any]:
        """JSON that, with the config, rebuilds the model and the input conversion for prediction."""
        return {"task": "image", "label_names": list(self.label_names), "image_shape": list(self.image_shape),
                "source": self.source}


def model_name(cfg: Config) -> str:
    return cfg.model.model or DEFAULT_MODEL


def load(cfg: Config) -> images_lib.Loaded:
    """The run's images as loaded (before the train/dev/test carving)."""
    d = cfg.data
    if d.train_file is not None:
        return images_lib.load_image_files(d.train_file, d.dev_file, d.test_file, size=d.image_size,
                                           channels=d.channels)
    if d.dataset is None:
        raise ConfigError("--dataset: give an image dataset (digits, mnist, ...) or --train-file")
    return images_lib.load_image_dataset(d.dataset, d.data_dir)


def prepare(cfg: Config) -> ImageData:
    d = cfg.data
    loaded = load(cfg)
    parts = images_lib.resolve_image_splits(loaded, dev_fraction=d.dev_fraction, seed=cfg.train.seed,
                                            stratify=d.stratify)
    splits = {}
    for name, (images, labels) in parts.items():
        images = images_lib.conform(images_lib.to_float(images), d.image_size, d.channels)
        splits[name] = {"image": images, "label": np.asarray(labels, np.int32)}
    chain = augment.parse_augment(d.augment)
    if chain is not None:
        chain.check(splits["train"]["image"].shape[-1])
    return ImageData(loaded.label_names, splits, loaded.source, model_name(cfg), d.augment)


def build_model(cfg: Config, num_classes: int) -> nn.Module:
    m = cfg.model
    name = model_name(cfg)
    if name == "small_cnn":
        return IMAGE_MODELS[name](num_classes=num_classes, width=m.width, depth=m.depth, dropout=m.dropout)
    return IMAGE_MODELS[name](num_classes=num_classes, dropout=m.dropout)


def build(cfg: Config, data: ImageData, key: jax.Array):
    """(forward, params, model_state, trainable mask) of a fresh model for `data`."""
    model = build_model(cfg, data.num_classes)
    params, model_state = init_variables(model, key, data.image_shape)
    return (make_forward(model, augment.parse_augment(cfg.data.augment)), params, model_state,
            jax.tree.map(lambda _: True, params))


def init_variables(model: nn.Module, key: jax.Array, image_shape: Sequence[int]):
    """(params, model_state): model_state holds the non-parameter collections ({"batch_stats": ...} or {})."""
    variables = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return params, {k: v for k, v in variables.items() if k != "params"}


def example_keys(rng: jax.Array, index: jax.Array) -> jax.Array:
    """<key>[batch]: one key per example, from the step's key and the example's row in the dataset."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, index)


def train_inputs(images: jax.Array, keys: jax.Array, chain: augment.Compose | None) -> jax.Array:
    """The images a training step sees: each example augmented with its own key (unchanged without a chain)."""
    if chain is None:
        return images
    aug_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, _AUGMENT_STREAM)
    return augment.apply_batch(chain, aug_keys, images)


def make_forward(model: nn.Module, chain: augment.Compose | None = None):
    """The model as the engine calls it: `forward(variables, batch, *, train, rng, mutable)`.

    Training augments on the device (inside the jitted, scanned step) and passes the example mask to batch norm;
    evaluation and prediction see the images as they are.
    """

    def forward(variables, batch, *, train, rng, mutable):
        images = batch["image"]
        if not train:
            return model.apply(variables, images, train=False, mutable=mutable)
        keys = example_keys(rng, batch["index"])
        dropout_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, _DROPOUT_STREAM)
        return model.apply(variables, train_inputs(images, keys, chain), train=True, mask=batch["mask"],
                           dropout_keys=dropout_keys, mutable=mutable)

    return forward


# ------------------------------------------------------------------------------------------------------------
# Prediction and evaluation from a workdir


def abstract_run_state(cfg: Config, num_classes: int, image_shape: Sequence[int], sharding=None
                       ) -> tuple[TrainState, dict[str, Any]]:
    """The shapes of an image run's checkpointed state, without allocating it (a restore target)."""
    model = build_model(cfg, num_classes)

    def build_state(key):
        params, model_state = init_variables(model, key, image_shape)
        return create_state(cfg, tasks.get("image"), make_forward(model), params, model_state,
                            jax.tree.map(lambda _: True, params), steps_per_epoch=1)

    state = jax.eval_shape(build_state, jax.random.key(0))  # static fields ride in the treedef
    saved = {"train": state.saveable(), "epoch": jax.ShapeDtypeStruct((), jnp.int32),
             "rng": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))}
    if sharding is not None:
        saved = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), saved)
    return state, saved


class ImagePredictor:
    """A trained image classifier, with the text `Predictor`'s methods (so `jaxcnn predict/evaluate` serve both).

    Attributes:
      cfg: the run's Config. label_names: class names. image_shape: (height, width, channels) the model takes.
      state: the TrainState restored from the chosen checkpoint (batch-norm running averages included).
      epoch: its epoch.
    """

    def __init__(self, cfg: Config, label_names: list[str], image_shape: Sequence[int], state: TrainState,
                 epoch: int):
        self.cfg, self.label_names, self.state, self.epoch = cfg, label_names, state, epoch
        self.image_shape = tuple(int(d) for d in image_shape)
        self._logits = jax.jit(predict_step)
        self._eval = jax.jit(lambda s, b: eval_step(s, b, loss_fn=get_loss(cfg.train.loss)))

    @classmethod
    def from_checkpoints(cls, ckpt: CheckpointManager, meta: dict[str, Any], checkpoint: str = "best"
                         ) -> ImagePredictor:
        """From an open (read-only) checkpoint manager and its meta (`CheckpointManager.read_meta()`)."""
        cfg = Config.from_dict(meta["config"])
        labels = list(meta["label_names"])
        template, abstract = abstract_run_state(cfg, len(labels), meta["image_shape"],
                                                sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
        restored = (ckpt.restore_best if checkpoint == "best" else ckpt.restore_latest)(abstract)
        if restored is None:
            raise WorkdirError(f"{ckpt.directory}: holds no finished checkpoint")
        _, saved, _ = restored
        return cls(cfg, labels, meta["image_shape"], template.restore(saved["train"]), int(saved["epoch"]))

    @classmethod
    def from_workdir(cls, workdir: str | pathlib.Path, checkpoint: str = "best") -> ImagePredictor:
        ckpt_dir = pathlib.Path(workdir) / "checkpoints"
        if not ckpt_dir.is_dir():
            raise WorkdirError(f"{workdir}: no checkpoints/ folder; train a model there first")
        with CheckpointManager(ckpt_dir, best_metric="selection", read_only=True) as ckpt:
            meta = ckpt.read_meta()
            if meta.get("task") != "image":
                raise WorkdirError(f"{workdir}: holds a {meta.get('task', 'text')} model, not an image model")
            return cls.from_checkpoints(ckpt, meta, checkpoint)

    # -- inputs -----------------------------------------------------------------------------------------------
    def load_images(self, paths: Sequence[str | pathlib.Path]) -> np.ndarray:
        """Image files -> <float32>[n, height, width, channels] in [0, 1], converted (grey or RGB) and resized
        (bilinear) to what the model was trained on."""
        h, w, c = self.image_shape
        out = np.zeros((len(paths), h, w, c), np.float32)
        for i, p in enumerate(paths):
            out[i] = images_lib.load_image(p, size=(h, w), channels=c).astype(np.float32) / 255.0
        return out

    def _check(self, images: np.ndarray, where: str) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim == 3 and self.image_shape[-1] == 1:
            images = images[..., None]
        if images.shape[1:] != self.image_shape:
            raise DataError(f"images are {list(images.shape[1:])}, the model takes {list(self.image_shape)}",
                            path=where)
        return images

    # -- prediction -------------------------------------------------------------------------------------------
    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """<float32>[n, classes] class probabilities of <float32>[n, height, width, channels] images in [0, 1]."""
        images = self._check(images, "images")
        out = [self._proba_batch(images[i:i + batch_size], batch_size) for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict(self, paths: Sequence[str | pathlib.Path], batch_size: int = 256) -> list[dict[str, Any]]:
        """[{"file", "label", "probabilities": {label name: p}}] for each image file."""
        return list(self.predict_stream(paths, batch_size))

    def predict_stream(self, paths: Iterable[str | pathlib.Path], batch_size: int = 256
                       ) -> Iterator[dict[str, Any]]:
        """Like `predict`, lazily, `batch_size` files at a time."""
        it = iter(paths)
        while chunk := [str(p) for p in itertools.islice(it, batch_size)]:
            probs = self._proba_batch(self.load_images(chunk), batch_size)
            for path, p in zip(chunk, probs):
                yield {"file": path, "label": self.label_names[int(np.argmax(p))],
                       "probabilities": {name: float(q) for name, q in zip(self.label_names, p)}}

    def _proba_batch(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        # Every call pads to `batch_size` rows: one compiled shape whatever the number of images.
        padded = np.zeros((batch_size, *self.image_shape), np.float32)
        padded[: len(images)] = images
        logits = self._logits(self.state, {"image": jnp.asarray(padded)})
        return np.asarray(jax.nn.softmax(logits[: len(images)], axis=-1))

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate_arrays(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> dict[str, Any]:
        """Metrics (loss, accuracy, macro-F1, per-class precision/recall, confusion) over labelled images."""
        images = self._check(images, "images")
        labels = np.asarray(labels, np.int32)
        total = None
        for start in range(0, max(len(images), 1), batch_size):
            n = len(images[start:start + batch_size])
            x = np.zeros((batch_size, *self.image_shape), np.float32)
            y = np.zeros(batch_size, np.int32)
            mask = np.zeros(batch_size, bool)
            x[:n], y[:n], mask[:n] = images[start:start + n], labels[start:start + n], True
            sums = jax.device_get(self._eval(self.state, {"image": x, "label": y, "mask": mask}))
            total = sums if total is None else metrics_lib.add(total, sums)
        return metrics_lib.summarize(total, self.label_names)

    def evaluate_split(self, split: str = "test") -> dict[str, Any]:
        """Metrics on a split of the run's own data (same seeded split and dev carving as in training)."""
        data = prepare(self.cfg)
        part = data.splits[split]
        return {"split": split, "epoch": self.epoch, **self.evaluate_arrays(part["image"], part["label"])}

    def evaluate_file(self, path: str, fmt: str | None = None) -> dict[str, Any]:
        """Metrics on labelled images (a `.npz`, an IDX pair or a class-folder tree); their labels are matched to
        the model's by name (or by integer id). `fmt` is unused (the format follows from the path)."""
        del fmt
        h, w, c = self.image_shape
        size = h if h == w else None
        loaded = images_lib.load_image_files(path, size=size, channels=c)
        images, labels = loaded.parts["train"]
        from jaxcnn.predict import match_labels  # predict imports this module lazily; no cycle at import time

        mapping = match_labels(loaded.label_names, self.label_names, path)
        images = images_lib.conform(images_lib.to_float(images), size, c)
        return {"file": str(path), "epoch": self.epoch, **self.evaluate_arrays(images, mapping[labels])}
