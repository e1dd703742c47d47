"""Image data: scikit-learn digits and its fixed split, IDX / .npz / PNG-folder readers with one-line errors
naming the file, the registry's local files and Hub fallback, and Hub-style parquet folders."""

from __future__ import annotations

import gzip
import pathlib
import struct

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import images as I
from jaxcnn.errors import ConfigError, DataError


def write_idx(path: pathlib.Path, array: np.ndarray, *, compress: bool = False) -> pathlib.Path:
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[array.dtype.type]
    raw = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def mnist_like(folder: pathlib.Path, n: int = 6, prefix: str = "train", compress: bool = True, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 4, 5), dtype=np.uint8)
    y = (np.arange(n) % 3).astype(np.uint8)
    gz = ".gz" if compress else ""
    images = write_idx(folder / f"{prefix}-images-idx3-ubyte{gz}", x, compress=compress)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{gz}", y, compress=compress)
    return images, x, y


def png_tree(root: pathlib.Path, classes=("cat", "dog"), per_class: int = 3, size=(6, 5), mode: str = "L"):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(root / name / f"{i}.png")
    return root


def test_digits_and_its_fixed_split():
    loaded = I.load_digits()
    x, y = loaded.parts["train"]
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
    assert loaded.label_names == [str(i) for i in range(10)]
    a = I.resolve_image_splits(loaded, dev_fraction=0.1, seed=0, stratify=False)
    b = I.resolve_image_splits(loaded, dev_fraction=0.1, seed=1, stratify=True)
    assert [len(a[s][1]) for s in ("train", "dev", "test")] == [1295, 143, 359]  # 80/20, then 10% of train
    np.testing.assert_array_equal(a["test"][0], b["test"][0])  # the test set does not move with the seed
    assert not np.array_equal(a["dev"][0], b["dev"][0])
    assert np.bincount(a["test"][1]).min() >= 35  # stratified: every digit ~20%
    seen = np.concatenate([p[0].reshape(len(p[0]), -1) for p in a.values()])
    assert len(np.unique(seen, axis=0)) == len(np.unique(x.reshape(1797, -1), axis=0))  # a partition


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    images, x, y = mnist_like(tmp_path, compress=compress)
    loaded = I.load_image_files(images)
    got_x, got_y = loaded.parts["train"]
    np.testing.assert_array_equal(got_x[..., 0], x)
    np.testing.assert_array_equal(got_y, y)
    assert loaded.label_names == ["0", "1", "2"]
    np.testing.assert_array_equal(I.read_idx(write_idx(tmp_path / "f.idx", np.arange(6, dtype=np.float32))),
                                  np.arange(6))


def _damage(path: pathlib.Path, fn) -> pathlib.Path:
    path.write_bytes(fn(path.read_bytes()))
    return path


@pytest.mark.parametrize("damage, message, offset", [
    (lambda b: b"\x01" + b[1:], "not an IDX file", 0),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX type code 0x07", 2),
    (lambda b: b[:-3], "need 120 data bytes after the header, found 117", 16),
    (lambda b: b[:9], "truncated IDX header", 3),
])
def test_bad_idx_files_name_the_file_and_byte(tmp_path, damage, message, offset):
    images, _, _ = mnist_like(tmp_path, compress=False)
    _damage(images, damage)
    with pytest.raises(DataError, match=message) as info:
        I.load_image_files(images)
    assert str(info.value).startswith(f"{images}: byte {offset}: ")


def test_idx_pair_problems(tmp_path):
    images, _, _ = mnist_like(tmp_path, compress=True)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(5, np.uint8), compress=True)
    with pytest.raises(DataError, match="5 labels for 6 images"):
        I.load_image_files(images)
    labels.unlink()
    with pytest.raises(DataError, match="no labels file train-labels-idx1-ubyte.gz"):
        I.load_image_files(images)
    _damage(images, lambda b: b[:20])
    with pytest.raises(DataError, match=f"{images}: corrupt gzip stream"):
        I.read_idx(images)
    other = tmp_path / "pictures.bin"
    other.write_bytes(b"x")
    with pytest.raises(DataError, match="not a .npz, an image folder or an IDX images file"):
        I.load_image_files(other)


def test_npz_files(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([0, 1, 2, 1, 0]))
    np.savez(tmp_path / "b.npz", images=x[..., 0].astype(np.float32) / 255, labels=np.array([1, 0, 1, 0, 1]),
             label_names=np.array(["no", "yes"]))
    a = I.load_image_files(tmp_path / "a.npz", test_file=tmp_path / "a.npz")
    assert a.parts["train"][0].shape == (5, 3, 4, 3) and a.label_names == ["0", "1", "2"]
    b = I.load_image_files(tmp_path / "b.npz")
    assert b.parts["train"][0].shape == (5, 3, 4, 1) and b.label_names == ["no", "yes"]
    np.testing.assert_allclose(I.to_float(a.parts["train"][0]), x / 255.0, atol=1e-7)
    with pytest.raises(DataError, match="images are 3x4x1, the training images 3x4x3"):
        I.load_image_files(tmp_path / "a.npz", test_file=tmp_path / "b.npz")


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((2, 3, 3))}, r"needs arrays 'x' and 'y' \(or 'images' and 'labels'\); it has \['x'\]"),
    ({"x": np.zeros((2, 3)), "y": np.zeros(2, int)}, "must be \\[n, h, w\\] or \\[n, h, w, c\\]"),
    ({"x": np.zeros((2, 3, 3)), "y": np.zeros(3, int)}, "3 labels \\('y'\\) for 2 images"),
    ({"x": np.zeros((2, 3, 3)), "y": np.zeros(2)}, "'y' must be 1-D integers"),
    ({"x": np.zeros((2, 3, 3)), "y": np.array([0, -1])}, "negative label -1"),
    ({"x": np.array([None, None], dtype=object), "y": np.zeros(2, int)}, "member x.npy: holds Python objects"),
])
def test_bad_npz_files_name_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        I.load_image_files(path)
    assert str(info.value).startswith(f"{path}: ")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz: not a readable .npz"):
        I.read_npz(tmp_path / "junk.npz")


def test_png_folders(tmp_path):
    train = png_tree(tmp_path / "train", per_class=3)
    test = png_tree(tmp_path / "test", classes=("dog",), per_class=2)
    loaded = I.load_image_files(train, test_file=test)
    assert loaded.label_names == ["cat", "dog"]
    x, y = loaded.parts["train"]
    assert x.shape == (6, 5, 6, 1) and x.dtype == np.uint8 and list(y) == [0, 0, 0, 1, 1, 1]
    assert list(loaded.parts["test"][1]) == [1, 1]
    rgb = I.load_image_files(train, size=4, channels=3).parts["train"][0]
    assert rgb.shape == (6, 4, 4, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])  # grey converted to RGB


def test_bad_png_folders_name_the_file(tmp_path):
    root = png_tree(tmp_path / "a")
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(root / "cat" / "big.png")
    with pytest.raises(DataError, match=r"big.png: is 7x7x1, 0.png is 5x6x1; pass --image-size"):
        I.load_image_files(root)
    I.load_image_files(root, size=8)  # resized, fine
    (root / "cat" / "big.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"cat/big.png: cannot read the image"):
        I.load_image_files(root, size=8)
    (root / "cat" / "big.png").unlink()
    (root / "dog" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"dog/notes.txt: not an image file"):
        I.load_image_files(root)
    (root / "dog" / "notes.txt").unlink()
    (root / "README").write_text("x")
    with pytest.raises(DataError, match=r"a/README: an image folder holds one sub-folder per class"):
        I.load_image_files(root)
    (root / "README").unlink()
    test = png_tree(tmp_path / "t", classes=("cow",))
    with pytest.raises(DataError, match=r"t/cow: class 'cow' is not among the training classes"):
        I.load_image_files(root, test_file=test)
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="empty: empty class folder"):
        I.load_image_files(root)


def test_registry_reads_local_idx_then_explains_the_hub_failure(tmp_path):
    folder = tmp_path / "mnist"
    mnist_like(folder, n=6, prefix="train")
    mnist_like(folder, n=4, prefix="t10k", seed=1)
    loaded = I.load_image_dataset("mnist", tmp_path)
    assert [len(loaded.parts[s][1]) for s in ("train", "test")] == [6, 4]
    assert loaded.label_names == [str(i) for i in range(10)] and loaded.source == str(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="mnist: found some of its files but not t10k-labels-idx1-ubyte"):
        I.load_image_dataset("mnist", tmp_path)
    # Nothing local and the Hub is off (tests run with HF_HUB_OFFLINE=1): one line naming both ways.
    with pytest.raises(DataError, match=r"fashion_mnist: not found: put train-images-idx3-ubyte.* under "
                                        r".*fashion_mnist \(--data-dir\) \(the Hugging Face Hub is unreachable"):
        I.load_image_dataset("fashion-mnist", tmp_path)
    with pytest.raises(ConfigError, match="--dataset: unknown image dataset 'svhn'"):
        I.load_image_dataset("svhn", tmp_path)


def test_hub_style_parquet_folder(tmp_path):
    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        pics = [Image.fromarray(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)) for _ in range(n)]
        ds = datasets.Dataset.from_dict({"img": pics, "label": [i % 2 for i in range(n)]}, features=features)
        ds.to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    loaded = I.load_hub_images(str(tmp_path), image_column="img")
    assert loaded.label_names == ["a", "b"]
    assert loaded.parts["train"][0].shape == (4, 3, 3, 3) and list(loaded.parts["test"][1]) == [0, 1]
    with pytest.raises(DataError, match=r"\[train\]: no column 'image'; columns are: img, label"):
        I.load_hub_images(str(tmp_path))


def test_conform_converts_channels_and_size():
    grey = np.random.default_rng(0).uniform(size=(2, 4, 4, 1)).astype(np.float32)
    rgb = I.conform(grey, None, 3)
    assert rgb.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(I.conform(rgb, None, 1), grey, atol=1e-6)  # luma of grey is grey
    assert I.conform(grey, 8, None).shape == (2, 8, 8, 1)


def test_bad_array_files_get_one_line_errors(tmp_path):
    import struct

    from jaxcnn.data.images import load_image_files, read_idx
    from jaxcnn.errors import DataError

    huge = tmp_path / "huge-images-idx3-ubyte"
    huge.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 2**31 - 1, 2**31 - 1, 2**31 - 1))
    with pytest.raises(DataError, match="huge-images-idx3-ubyte"):
        read_idx(huge)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive at all" * 10)
    with pytest.raises(DataError) as e:
        load_image_files(garbage)
    assert "pickle" not in str(e.value) and "garbage.npz" in str(e.value)
    far = tmp_path / "far.npz"
    np.savez(far, x=np.zeros((3, 8, 8), np.uint8), y=np.array([0, 1, 999]))
    with pytest.raises(DataError, match="label 999 is far above"):
        load_image_files(far)
