"""Image classification data: the registry sets and your own files, as uint8 or float arrays plus labels.

Registry (`IMAGE_DATASETS`):
  digits         scikit-learn's bundled 8x8 handwritten digits (1797 images, no download; needs scikit-learn,
                 the `images` extra). No official split: a fixed, stratified 80/20 train/test split (seed 0).
  mnist          28x28 grey digits: `<data_dir>/mnist/` IDX files, else the Hub (`ylecun/mnist`).
  fashion_mnist  28x28 grey clothes: `<data_dir>/fashion_mnist/` IDX files, else `zalando-datasets/fashion_mnist`.
  cifar10        32x32 RGB: `<data_dir>/cifar10/{train,test}.npz`, else `uoft-cs/cifar10`.
Own files (`load_image_files`): IDX (MNIST's format, `.gz` or not), NumPy `.npz` (arrays `x`/`y` or
`images`/`labels`, optional `label_names`), or a folder holding one sub-folder of images (PNG, JPEG, BMP, GIF,
WebP) per class.

Images come back as <uint8 or float32>[n, height, width, channels]; `to_float` scales them to [0, 1].
A missing, unreadable or malformed file is a one-line `DataError` naming it (and the byte offset or array).
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import pathlib
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxcnn.data import splits as splits_lib
from jaxcnn.errors import ConfigError, DataError

SPLITS = ("train", "dev", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TEST_FRACTION = 0.2
TEST_SEED = 0  # the held-out test set must not move with the run's --seed, or runs would not be comparable
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")

Part = tuple[np.ndarray, np.ndarray]  # (images [n, h, w, c], labels [n])


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """One registry set.

    Attributes:
      name: registry key. title: human name. label_names: class names in label-id order.
      hub_id: Hugging Face Hub id. hub_image_column: its image column (the label column is "label").
      local: (split, file names under `<data_dir>/<name>/`) read instead of the Hub when present.
    """

    name: str
    title: str
    label_names: tuple[str, ...]
    hub_id: str | None
    hub_image_column: str = "image"
    local: tuple[tuple[str, tuple[str, ...]], ...] = ()


_DIGITS = tuple(str(i) for i in range(10))
_MNIST_FILES = (("train", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
                ("test", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")))

IMAGE_DATASETS: dict[str, ImageSpec] = {
    "digits": ImageSpec("digits", "scikit-learn 8x8 digits (UCI optdigits test set)", _DIGITS, None),
    "mnist": ImageSpec("mnist", "MNIST", _DIGITS, "ylecun/mnist", local=_MNIST_FILES),
    "fashion_mnist": ImageSpec(
        "fashion_mnist", "Fashion-MNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "zalando-datasets/fashion_mnist", local=_MNIST_FILES),
    "cifar10": ImageSpec(
        "cifar10", "CIFAR-10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "uoft-cs/cifar10", hub_image_column="img", local=(("train", ("train.npz",)), ("test", ("test.npz",)))),
}


@dataclasses.dataclass
class Loaded:
    """Splits as loaded (some of train/dev/test), their class names and where they came from."""

    parts: dict[str, Part]
    label_names: list[str]
    source: str


# ------------------------------------------------------------------------------------------------------------
# Registry


def get_image_spec(name: str) -> ImageSpec:
    key = name.lower().replace("-", "_")
    if key not in IMAGE_DATASETS:
        raise ConfigError(f"--dataset: unknown image dataset {name!r}; choose one of {', '.join(IMAGE_DATASETS)} "
                          f"or give --train-file")
    return IMAGE_DATASETS[key]


def load_image_dataset(name: str, data_dir: str | os.PathLike | None = None,
                       cache_dir: str | os.PathLike | None = None) -> Loaded:
    """A registry set: local files under `<data_dir>/<name>/` (data_dir None: $JAXCNN_DATA_DIR) when they are
    there, else the Hugging Face Hub; `digits` always comes from scikit-learn."""
    spec = get_image_spec(name)
    if spec.name == "digits":
        return load_digits()
    folder = data_dir if data_dir is not None else os.environ.get("JAXCNN_DATA_DIR") or None
    if folder is not None:
        root = pathlib.Path(folder)
        if not root.is_dir():
            raise DataError("data folder not found", path=root)
        local = _load_local(root / spec.name, spec)
        if local is not None:
            return local
    needed = ", ".join(f for _, files in spec.local for f in files)
    where = (f"{pathlib.Path(folder) / spec.name} (--data-dir)" if folder is not None
             else f"<data folder>/{spec.name} with --data-dir (or JAXCNN_DATA_DIR)")
    from jaxcnn.data.registry import hub_reachable

    if not hub_reachable():
        raise DataError(f"{spec.name}: not found: put {needed} under {where} (the Hugging Face Hub is unreachable or "
                        f"offline)")
    try:
        loaded = load_hub_images(spec.hub_id, image_column=spec.hub_image_column, cache_dir=cache_dir)
    except DataError as e:
        raise DataError(f"{spec.name}: no local files and the Hub copy failed ({e}); put {needed} under {where}"
                        ) from e
    return Loaded(loaded.parts, list(spec.label_names), f"hub:{spec.hub_id}")


def load_digits() -> Loaded:
    """scikit-learn's 8x8 digits (pixel values 0..16, ink high) as float32 in [0, 1]; one "train" part."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ConfigError("--dataset digits: needs scikit-learn (pip install 'jaxcnn[images]')") from None
    bunch = sk_load_digits()
    images = (np.asarray(bunch.images, np.float32) / 16.0)[..., None]
    return Loaded({"train": (images, np.asarray(bunch.target, np.int32))}, list(_DIGITS), "sklearn:digits")


def _load_local(folder: pathlib.Path, spec: ImageSpec) -> Loaded | None:
    found = {split: [_find_file(folder, f) for f in files] for split, files in spec.local}
    paths = [p for ps in found.values() for p in ps]
    if not any(paths):
        return None
    missing = [f for (_, files), ps in zip(spec.local, found.values()) for f, p in zip(files, ps) if p is None]
    if missing:
        raise DataError(f"{spec.name}: found some of its files but not {', '.join(missing)} (nor .gz)", path=folder)
    parts = {}
    for split, ps in found.items():
        if len(ps) == 2:
            parts[split] = read_idx_pair(ps[0], ps[1])
        else:
            parts[split] = read_npz(ps[0])[:2]
    _check_label_range(parts, len(spec.label_names), folder)
    return Loaded(parts, list(spec.label_names), str(folder))


def _find_file(folder: pathlib.Path, name: str) -> pathlib.Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def load_hub_images(ref: str, *, image_column: str = "image", label_column: str = "label",
                    cache_dir: str | os.PathLike | None = None) -> Loaded:
    """A Hub dataset id, or a local folder laid out like one (e.g. `data/train-*.parquet`), with an image column
    and an integer/ClassLabel label column. Splits train, validation (as dev) and test are kept."""
    import datasets

    try:
        raw = datasets.load_dataset(str(ref), cache_dir=None if cache_dir is None else str(cache_dir))
    except (OSError, ValueError, RuntimeError, datasets.exceptions.DatasetsError) as e:
        reason = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise DataError(f"cannot load {ref!r} with datasets.load_dataset: {e.__class__.__name__}: {reason}") from e
    renamed = {"train": "train", "validation": "dev", "valid": "dev", "dev": "dev", "test": "test"}
    parts: dict[str, Part] = {}
    for split, ds in raw.items():
        if split in renamed:
            parts[renamed[split]] = _hub_arrays(ds, f"{ref}[{split}]", image_column, label_column)
    if "train" not in parts:
        raise DataError(f"{ref}: no 'train' split (found: {', '.join(raw) or 'nothing'})")
    feature = raw["train"].features[label_column]
    names = getattr(feature, "names", None)
    if names is None:
        names = [str(i) for i in range(int(parts["train"][1].max()) + 1)]
    _check_label_range(parts, len(names), ref)
    return Loaded(parts, list(names), f"hub:{ref}")


def _hub_arrays(ds: Any, where: str, image_column: str, label_column: str) -> Part:
    for col in (image_column, label_column):
        if col not in ds.column_names:
            raise DataError(f"{where}: no column {col!r}; columns are: {', '.join(ds.column_names)}")
    # The numpy format decodes the Image feature to arrays; rows of one size stack into one array.
    rows = ds.with_format("numpy")[:]
    images = rows[image_column]
    if images.dtype == object:
        shapes = {np.shape(im) for im in images}
        if len(shapes) > 1:
            raise DataError(f"{where}: images differ in size ({sorted(shapes)[:3]}...)")
        images = np.stack(list(images))
    return _nhwc(images, where), np.asarray(rows[label_column], np.int32)


# ------------------------------------------------------------------------------------------------------------
# Own files


def load_image_files(train_file: str | os.PathLike, dev_file: str | os.PathLike | None = None,
                     test_file: str | os.PathLike | None = None, *, size: int | None = None,
                     channels: int | None = None) -> Loaded:
    """Your own images: each path an IDX images file (its labels file found by MNIST's naming), a `.npz`, or a
    folder with one sub-folder per class. Class names: the training folder's sub-folders (sorted), a `.npz`'s
    `label_names`, else "0".."max label".

    Args:
      size: resize every image to size x size (folders only; arrays must already have one size).
      channels: 1 (greyscale) or 3 (RGB) for folders; None: 1 if the first image is greyscale, else 3.
    """
    given = {s: pathlib.Path(p) for s, p in zip(SPLITS, (train_file, dev_file, test_file)) if p is not None}
    parts: dict[str, Part] = {}
    names: list[str] | None = None
    for split, path in given.items():
        if path.is_dir():
            images, labels, classes = read_image_folder(path, size=size, channels=channels,
                                                        classes=None if split == "train" else names)
        else:
            images, labels, classes = _read_array_file(path)
        parts[split] = (images, labels)
        if split == "train":
            names = classes
    assert names is not None
    for split, (images, _) in parts.items():
        if images.shape[1:] != parts["train"][0].shape[1:]:
            raise DataError(f"images are {_shape_text(images.shape[1:])}, the training images "
                            f"{_shape_text(parts['train'][0].shape[1:])}", path=given[split])
    _check_label_range(parts, len(names), given["train"])
    return Loaded(parts, names, str(given["train"]))


def _read_array_file(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not path.is_file():
        raise DataError("file not found", path=path)
    if path.suffix.lower() == ".npz":
        images, labels, names = read_npz(path)
    else:
        images, labels = read_idx_pair(path, idx_labels_path(path))
        names = None
    if names is None:
        # Without names the classes are 0..max label; a label far above the number of distinct ones is a typo
        # or a corrupt file, not thousands of empty classes (the text readers apply the same rule).
        top, distinct = int(labels.max(initial=0)), len(np.unique(labels))
        if top >= max(2 * distinct, 2):
            raise DataError(f"label {top} is far above the {distinct} distinct labels; give label_names or "
                            f"number classes from 0", path=path)
        names = [str(i) for i in range(top + 1)]
    return images, labels, names


def idx_labels_path(images_path: pathlib.Path) -> pathlib.Path:
    """MNIST's naming: `*-images-idx3-ubyte[.gz]` (or `*-images.idx3-ubyte`) -> `*-labels-idx1-ubyte[.gz]`."""
    name = images_path.name
    for old, new in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
        if old in name:
            labels = images_path.with_name(name.replace(old, new))
            if not labels.is_file():
                raise DataError(f"no labels file {labels.name} beside it (MNIST naming)", path=images_path)
            return labels
    raise DataError("not a .npz, an image folder or an IDX images file named like MNIST's "
                    "(*-images-idx3-ubyte[.gz], with *-labels-idx1-ubyte[.gz] beside it)", path=images_path)


_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (LeCun's MNIST format, plain or gzip): 2 zero bytes, a type code, the number of dims, dims
    as big-endian int32, then the data big-endian. Offsets in errors are into the decompressed bytes."""
    path = pathlib.Path(path)
    raw, zipped = _read_maybe_gzip(path)
    note = " (decompressed)" if zipped else ""
    if len(raw) < 4:
        raise DataError(f"truncated IDX header{note}: {len(raw)} bytes", path=path, offset=len(raw))
    if raw[0] or raw[1]:
        raise DataError(f"not an IDX file{note}: it starts with {raw[:2].hex()}, not 0000", path=path, offset=0)
    dtype = _IDX_TYPES.get(raw[2])
    if dtype is None:
        raise DataError(f"unknown IDX type code 0x{raw[2]:02x}{note}", path=path, offset=2)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"truncated IDX header{note}: {ndim} dims need {header} bytes, found {len(raw)}",
                        path=path, offset=min(len(raw), 3))
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    need = math.prod(dims) * dtype.itemsize  # Python ints: a huge header must not overflow
    if len(raw) - header != need:
        raise DataError(f"IDX dims {dims} need {need} data bytes after the header, found {len(raw) - header}"
                        f"{note}", path=path, offset=header)
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _read_maybe_gzip(path: pathlib.Path) -> tuple[bytes, bool]:
    """(the bytes, decompressed if the file is gzip, whether it was)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", path=path) from None
    if data[:2] != b"\x1f\x8b":
        return data, False
    try:
        return gzip.decompress(data), True
    except (OSError, EOFError) as e:
        raise DataError(f"corrupt gzip stream: {e}", path=path) from None


def read_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> Part:
    """An IDX images file ([n, h, w] or [n, h, w, c]) and its IDX labels file ([n])."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim not in (3, 4):
        raise DataError(f"IDX images must have 3 or 4 dims [n, h, w(, c)], found {images.shape}", path=images_path,
                        offset=3)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"IDX labels must be 1-D integers, found {labels.dtype}{list(labels.shape)}",
                        path=labels_path, offset=2)
    if len(labels) != len(images):
        raise DataError(f"{len(labels)} labels for {len(images)} images in {pathlib.Path(images_path).name}",
                        path=labels_path, offset=4)
    return _nhwc(images, images_path), _labels(labels, labels_path)


_NPZ_PAIRS = (("x", "y"), ("images", "labels"))


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """A `.npz` with arrays `x` and `y` (or `images` and `labels`), and optionally `label_names` (strings).

    Images: [n, h, w] or [n, h, w, c], uint8 (0..255) or float (taken as [0, 1]). Labels: [n] integers >= 0.
    Object arrays are refused (they would need pickle).
    """
    path = pathlib.Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        # numpy's message for a non-array file suggests allow_pickle, which jaxcnn never uses on data.
        reason = "not a zip archive of .npy arrays" if "pickle" in str(e) else str(e)
        raise DataError(f"not a readable .npz: {reason}", path=path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError("is a single .npy array, not a .npz archive of x and y", path=path)
    with archive:
        keys = set(archive.files)
        pair = next(((x, y) for x, y in _NPZ_PAIRS if x in keys and y in keys), None)
        if pair is None:
            raise DataError(f"needs arrays 'x' and 'y' (or 'images' and 'labels'); it has {sorted(keys)}", path=path)
        images, labels = (_member(archive, k, path) for k in pair)
        names = _member(archive, "label_names", path) if "label_names" in keys else None
    if images.ndim not in (3, 4):
        raise DataError(f"array {pair[0]!r} must be [n, h, w] or [n, h, w, c], found shape {images.shape}", path=path)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"array {pair[1]!r} must be 1-D integers, found {labels.dtype}{list(labels.shape)}",
                        path=path)
    if len(labels) != len(images):
        raise DataError(f"{len(labels)} labels ({pair[1]!r}) for {len(images)} images ({pair[0]!r})", path=path)
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise DataError(f"array 'label_names' must be 1-D strings, found {names.dtype}{list(names.shape)}", path=path)
    label_names = None if names is None else [str(n) for n in names]
    return _nhwc(images, path), _labels(labels, path), label_names


def _member(archive: Any, key: str, path: pathlib.Path) -> np.ndarray:
    try:
        return archive[key]
    except MemoryError:
        raise DataError(f"member {key}.npy: its header declares an array too large to load", path=path) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        reason = "holds Python objects, not numbers (jaxcnn never unpickles data)" if "pickle" in str(e) else str(e)
        raise DataError(f"member {key}.npy: {reason}", path=path) from None


def read_image_folder(root: str | os.PathLike, *, size: int | None = None, channels: int | None = None,
                      classes: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`root/<class name>/<image>` files -> (uint8 [n, h, w, c], labels, class names).

    Args:
      classes: the known classes (a dev/test folder is read against the training folder's classes); None: the
        sorted sub-folder names.
    """
    root = pathlib.Path(root)
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise DataError("an image folder holds one sub-folder per class and nothing else", path=stray[0])
    folders = {p.name: p for p in entries}
    if not folders:
        raise DataError("no class sub-folders", path=root)
    names = list(classes) if classes is not None else sorted(folders)
    for name, folder in folders.items():
        if name not in names:
            raise DataError(f"class {name!r} is not among the training classes {names}", path=folder)
    files: list[tuple[pathlib.Path, int]] = []
    for name, folder in folders.items():
        members = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if not members:
            raise DataError("empty class folder", path=folder)
        for p in members:
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"not an image file (expected {', '.join(IMAGE_SUFFIXES)})", path=p)
            files.append((p, names.index(name)))
    if channels is None:
        channels = 1 if _open_image(files[0][0]).mode in _GREY_MODES else 3
    arrays = [load_image(p, size=size, channels=channels) for p, _ in files]
    first = arrays[0].shape
    for (p, _), a in zip(files, arrays):
        if a.shape != first:
            raise DataError(f"is {_shape_text(a.shape)}, {files[0][0].name} is {_shape_text(first)}; pass "
                            f"--image-size to resize every image", path=p)
    return np.stack(arrays), np.asarray([y for _, y in files], np.int32), names


def _open_image(path: pathlib.Path) -> Any:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ConfigError("image files need pillow (pip install 'jaxcnn[images]')") from None
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read the image: {e}", path=path) from None
    return image


def load_image(path: str | os.PathLike, *, size: int | tuple[int, int] | None = None,
               channels: int = 1) -> np.ndarray:
    """One image file -> uint8 [h, w, channels] (converted to greyscale or RGB; resized bilinearly to `size`,
    an int for a square or (height, width))."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    image = _open_image(path).convert("L" if channels == 1 else "RGB")
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if image.size != (w, h):
            from PIL import Image

            image = image.resize((w, h), Image.Resampling.BILINEAR)
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


# ------------------------------------------------------------------------------------------------------------
# Shapes, labels, splits


def _nhwc(images: np.ndarray, where: Any) -> np.ndarray:
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"images must be [n, h, w] or [n, h, w, 1 or 3], found shape {images.shape}", path=where)
    if len(images) == 0:
        raise DataError("no images", path=where)
    return images


def _labels(labels: np.ndarray, where: Any) -> np.ndarray:
    if len(labels) and labels.min() < 0:
        raise DataError(f"negative label {int(labels.min())} (labels are class ids 0, 1, ...)", path=where)
    return labels.astype(np.int32)


def _check_label_range(parts: Mapping[str, Part], num_classes: int, where: Any) -> None:
    for split, (_, labels) in parts.items():
        if len(labels) and labels.max() >= num_classes:
            raise DataError(f"{split} label {int(labels.max())} is not a class id below {num_classes}", path=where)


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 in [0, 1]; floats are taken as they are."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def resolve_image_splits(loaded: Loaded, *, dev_fraction: float, seed: int, stratify: bool
                         ) -> dict[str, Part]:
    """Exactly train/dev/test: a missing test split is a fixed stratified 20% of train (seed 0, whatever the
    run's seed), a missing dev split is `dev_fraction` of the rest (seeded with the run's seed)."""
    parts = dict(loaded.parts)
    if "test" not in parts:
        images, labels = parts["train"]
        rest, test = splits_lib.dev_split(len(labels), TEST_FRACTION, TEST_SEED, labels)
        parts["train"], parts["test"] = (images[rest], labels[rest]), (images[test], labels[test])
    if "dev" not in parts:
        images, labels = parts["train"]
        train, dev = splits_lib.dev_split(len(labels), dev_fraction, seed, labels if stratify else None)
        parts["train"], parts["dev"] = (images[train], labels[train]), (images[dev], labels[dev])
    return {s: parts[s] for s in SPLITS}


def conform(images: np.ndarray, size: int | None, channels: int | None) -> np.ndarray:
    """float32 [n, h, w, c] -> [n, size, size, channels]: bilinear (antialiased) resize, grey <-> RGB (luma)."""
    if channels is not None and images.shape[-1] != channels:
        if channels == 3:
            images = np.repeat(images, 3, axis=-1)
        else:
            images = images @ np.asarray([[0.299], [0.587], [0.114]], np.float32)
    if size is not None and images.shape[1:3] != (size, size):
        import jax

        shape = (images.shape[0], size, size, images.shape[-1])
        images = np.asarray(jax.image.resize(images, shape, "bilinear"), np.float32)
    return images.astype(np.float32)
