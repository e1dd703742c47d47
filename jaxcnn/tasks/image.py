"""Image classification: LeNet-5 or the small batch-norm CNN (or your own Flax module) on image arrays, with
on-device augmentation.

In training each example gets its own key, `fold_in(step_rng, batch["index"][i])`, from which its augmentation and
dropout keys derive: the draws depend only on (seed, step, example), never on the batch layout or the device
count, and a resumed run repeats them exactly. Batch norm reads `batch["mask"]`, so padding examples never enter
its statistics.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import augment
from jaxcnn.configs import Config
from jaxcnn.data import images as images_lib
from jaxcnn.errors import ConfigError, DataError
from jaxcnn.models.image_cnn import IMAGE_MODELS
from jaxcnn.tasks.api import Examples, Forward, PyTree
from jaxcnn.tasks.base import BuiltinOrOwnModel, linen_forward

DEFAULT_MODEL = "lenet5"
SPLITS = ("train", "dev", "test")
# Per-example stream tags: the example key folded with these gives independent augmentation and dropout keys.
_AUGMENT_STREAM, _DROPOUT_STREAM = 0, 1


@dataclasses.dataclass
class ImageData:
    """Images and what prediction needs to treat new images the same way.

    Attributes:
      label_names: class names, index = label id.
      arrays: {"image": <float32>[rows, height, width, channels] in [0, 1], "label": <int32>[rows]} ({} once
        restored).
      image_shape: (height, width, channels) the model takes.
      source: where the images came from (registry set, Hub id or path).
      model: the `--model` name. augment: the `--augment` spec (None: none).
    """

    label_names: list[str]
    arrays: dict[str, np.ndarray]
    image_shape: tuple[int, int, int]
    source: str
    model: str = DEFAULT_MODEL
    augment: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def pretrained(self, seed: int) -> None:
        return None

    def meta(self) -> dict[str, Any]:
        return {"label_names": list(self.label_names), "image_shape": list(self.image_shape), "source": self.source}

    def describe(self, rows: Mapping[str, np.ndarray]) -> str:
        h, w, c = self.image_shape
        return f"{self.source} | images {h}x{w}x{c} | model {self.model} | augment {self.augment or 'none'}"

    def summary(self) -> dict[str, Any]:
        return {"task": "image", "model": self.model, "augment": self.augment, "image_shape": list(self.image_shape)}


class ImageTask(BuiltinOrOwnModel):
    """Image classification (see the module docstring); `ImageTask(model=factory)` trains `factory(cfg, data)`,
    a Linen module called as `module(images, *, train)` with dropout from the "dropout" rng stream."""

    input_name = "file"
    default_name = "image"

    # -- data ----------------------------------------------------------------------------------------------------
    def load(self, cfg: Config) -> Examples:
        d = cfg.data
        if d.train_file is not None:
            loaded = images_lib.load_image_files(d.train_file, d.dev_file, d.test_file, size=d.image_size,
                                                 channels=d.channels)
        elif d.dataset is None:
            raise ConfigError("--dataset: give an image dataset (digits, mnist, ...) or --train-file")
        else:
            loaded = images_lib.load_image_dataset(d.dataset, d.data_dir)
        present = [s for s in SPLITS if s in loaded.parts]
        splits, start = {}, 0
        for s in present:
            splits[s] = np.arange(start, start + len(loaded.parts[s][1]))
            start += len(splits[s])
        raw = (loaded.parts[present[0]][0] if len(present) == 1
               else np.concatenate([loaded.parts[s][0] for s in present]))
        images = images_lib.conform(images_lib.to_float(raw), d.image_size, d.channels)
        labels = np.concatenate([np.asarray(loaded.parts[s][1], np.int32) for s in present])
        return Examples(images, labels, list(loaded.label_names), splits, "holdout", loaded.source)

    def prepare(self, cfg: Config, examples: Examples, splits: Sequence[Mapping[str, np.ndarray]],
                seeds: Sequence[int]) -> ImageData:
        images = examples.inputs
        chain = augment.parse_augment(cfg.data.augment)
        if chain is not None:
            chain.check(images.shape[-1])
        return ImageData(list(examples.label_names), {"image": images, "label": examples.labels},
                         tuple(int(n) for n in images.shape[1:]), examples.source, model_name(cfg), cfg.data.augment)

    def restore(self, cfg: Config, meta: Mapping[str, Any]) -> ImageData:
        return ImageData(list(meta["label_names"]), {}, tuple(int(n) for n in meta["image_shape"]), meta["source"],
                         model_name(cfg), cfg.data.augment)

    # -- model ---------------------------------------------------------------------------------------------------
    def model(self, cfg: Config, data: ImageData, dropout: Any = None) -> nn.Module:
        if self.own_model:
            return self.factory_model(cfg, data, dropout)
        m = cfg.model
        rate = m.dropout if dropout is None else dropout
        name = model_name(cfg)
        if name == "small_cnn":
            return IMAGE_MODELS[name](num_classes=data.num_classes, width=m.width, depth=m.depth, dropout=rate)
        return IMAGE_MODELS[name](num_classes=data.num_classes, dropout=rate)

    def init(self, cfg: Config, data: ImageData, key: jax.Array, pretrained: None) -> tuple[PyTree, PyTree]:
        variables = self.model(cfg, data).init(key, jnp.zeros((1, *data.image_shape), jnp.float32), train=False)
        return variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def forward(self, cfg: Config, data: ImageData, *, dropout: Any = None) -> Forward:
        model = self.model(cfg, data, dropout)
        if self.own_model:
            return linen_forward(model, "image")
        return image_forward(model, augment.parse_augment(cfg.data.augment))

    def trainable(self, cfg: Config, params: PyTree) -> PyTree:
        return jax.tree.map(lambda _: True, params)

    def embedding_tables(self, cfg: Config, params: PyTree) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (), ()

    def inference_aux(self, cfg: Config, params: PyTree) -> None:
        return None

    # -- prediction ----------------------------------------------------------------------------------------------
    def batches(self, cfg: Config, data: ImageData, inputs: np.ndarray | Sequence[str | pathlib.Path],
                batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """`inputs`: image files (converted and resized to what the model was trained on), or
        <float32>[n, height, width, channels] arrays in [0, 1]."""
        arrays = isinstance(inputs, np.ndarray) or (len(inputs) > 0 and isinstance(inputs[0], np.ndarray))
        if arrays:
            inputs = self._check(data, np.asarray(inputs))
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            batch = np.zeros((batch_size, *data.image_shape), np.float32)
            batch[: len(chunk)] = chunk if arrays else load_images(data, chunk)
            yield np.arange(start, start + len(chunk)), {"image": batch}

    @staticmethod
    def _check(data: ImageData, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim == 3 and data.image_shape[-1] == 1:
            images = images[..., None]
        if images.shape[1:] != data.image_shape:
            raise DataError(f"images are {list(images.shape[1:])}, the model takes {list(data.image_shape)}",
                            path="images")
        return images

    def read_labelled(self, cfg: Config, data: ImageData, path: str, fmt: str | None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """A `.npz`, an IDX pair or a class-folder tree (`fmt` is unused: the format follows from the path)."""
        del fmt
        h, w, c = data.image_shape
        size = h if h == w else None
        loaded = images_lib.load_image_files(path, size=size, channels=c)
        images, labels = loaded.parts["train"]
        return images_lib.conform(images_lib.to_float(images), size, c), labels, list(loaded.label_names)


def model_name(cfg: Config) -> str:
    return cfg.model.model or DEFAULT_MODEL


def load_images(data: ImageData, paths: Sequence[str | pathlib.Path]) -> np.ndarray:
    """Image files -> <float32>[n, height, width, channels] in [0, 1], converted (grey or RGB) and resized
    (bilinear) to what the model was trained on."""
    h, w, c = data.image_shape
    out = np.zeros((len(paths), h, w, c), np.float32)
    for i, p in enumerate(paths):
        out[i] = images_lib.load_image(p, size=(h, w), channels=c).astype(np.float32) / 255.0
    return out


def example_keys(rng: jax.Array, index: jax.Array) -> jax.Array:
    """<key>[batch]: one key per example, from the step's key and the example's row in the dataset."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, index)


def train_inputs(images: jax.Array, keys: jax.Array, chain: augment.Compose | None) -> jax.Array:
    """The images a training step sees: each example augmented with its own key (unchanged without a chain)."""
    if chain is None:
        return images
    aug_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, _AUGMENT_STREAM)
    return augment.apply_batch(chain, aug_keys, images)


def image_forward(model: nn.Module, chain: augment.Compose | None = None) -> Forward:
    """The model as the engine calls it: training augments on the device (inside the jitted, scanned step) and
    passes the example mask to batch norm; evaluation and prediction see the images as they are."""

    def forward(variables, batch, *, train, rng, mutable, aux=None):
        del aux
        images = batch["image"]
        if not train:
            return model.apply(variables, images, train=False, mutable=mutable)
        keys = example_keys(rng, batch["index"])
        dropout_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, _DROPOUT_STREAM)
        return model.apply(variables, train_inputs(images, keys, chain), train=True, mask=batch["mask"],
                           dropout_keys=dropout_keys, mutable=mutable)

    return forward

