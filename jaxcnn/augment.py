"""Image augmentation in pure JAX: jittable, vmappable per example, and seeded.

Every transform works on ONE image `<float32>[height, width, channels]` (values in [0, 1]) with its own PRNG key:
`transform(key, image) -> image` of the same shape. A batch is augmented with `apply_batch(transform, keys,
images)`, a `jax.vmap` over examples, so each example draws its own parameters and the result does not depend on
how the batch is laid out or sharded. The deterministic cores (`rotate`, `resized_crop`, `translate`,
`adjust_brightness`, ...) are public and tested on their own.

The command line gives a chain as `--augment rotate=10,crop=0.9,noise=0.05`; `parse_augment` turns that into a
`Compose` that applies the transforms in the order written (names and values: `SPEC_HELP`, docs/images.md).
Geometric transforms fill what they uncover with 0 (black, the background of MNIST-style digits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

from jaxcnn.errors import ConfigError

Array = jax.Array
Transform = Callable[[Array, Array], Array]

# Luma weights of ITU-R BT.601, the greyscale that torchvision and PIL use.
_LUMA = (0.299, 0.587, 0.114)


# ------------------------------------------------------------------------------------------------------------
# Deterministic cores


def _sample(image: Array, src_y: Array, src_x: Array, mode: str = "constant", fill: float = 0.0) -> Array:
    """Bilinear samples of every channel at source coordinates <float32>[h', w'] (pixel centres are integers)."""
    coords = [src_y, src_x]

    def one(channel: Array) -> Array:
        return ndimage.map_coordinates(channel, coords, order=1, mode=mode, cval=fill)

    return jax.vmap(one, in_axes=-1, out_axes=-1)(image).astype(image.dtype)


def _grid(h: int, w: int) -> tuple[Array, Array]:
    return jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")


def rotate(image: Array, degrees: Array | float, fill: float = 0.0) -> Array:
    """Rotates counter-clockwise (as displayed, row 0 on top) about the centre, with bilinear interpolation.

    Args:
      image: <float32>[height, width, channels].
      degrees: the angle; 90 on a square image is `jnp.rot90(image)`.
      fill: value of the uncovered corners.

    Returns:
      <float32>[height, width, channels].
    """
    h, w = image.shape[:2]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    y, x = _grid(h, w)
    # Output (u, v) (v pointing up) comes from the source point rotated back by -theta.
    u, v = x - cx, cy - y
    su = u * jnp.cos(theta) + v * jnp.sin(theta)
    sv = -u * jnp.sin(theta) + v * jnp.cos(theta)
    return _sample(image, cy - sv, cx + su, fill=fill)


def resized_crop(image: Array, top: Array | float, left: Array | float, height: Array | float,
                 width: Array | float) -> Array:
    """The box (top, left, height, width) in pixels (fractional allowed), resized bilinearly to the full image.

    Args:
      image: <float32>[H, W, channels]. top/left/height/width: the box, inside the image.

    Returns:
      <float32>[H, W, channels]; the full box (0, 0, H, W) is the identity.
    """
    h, w = image.shape[:2]
    y, x = _grid(h, w)
    # Pixel centres of the output map to evenly spaced centres inside the box (the half-pixel convention of
    # image resizers), so a box the size of the image maps every pixel onto itself.
    src_y = top + (y + 0.5) * (height / h) - 0.5
    src_x = left + (x + 0.5) * (width / w) - 0.5
    return _sample(image, src_y, src_x, mode="nearest")


def translate(image: Array, dy: Array | int, dx: Array | int, fill: float = 0.0) -> Array:
    """Shifts the content down by `dy` and right by `dx` whole pixels; uncovered pixels get `fill`.

    Returns:
      <float32>[height, width, channels], out[y, x] = image[y - dy, x - dx].
    """
    h, w = image.shape[:2]
    y, x = _grid(h, w)
    return _sample(image, y - jnp.asarray(dy, jnp.float32), x - jnp.asarray(dx, jnp.float32), fill=fill)


def cutout(image: Array, center_y: Array | int, center_x: Array | int, size_h: int, size_w: int,
           fill: float = 0.0) -> Array:
    """Sets the `size_h` x `size_w` box centred at (center_y, center_x) to `fill` (clipped at the borders).

    Returns:
      <float32>[height, width, channels].
    """
    h, w = image.shape[:2]
    top = center_y - size_h // 2
    left = center_x - size_w // 2
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return jnp.where(inside[..., None], jnp.asarray(fill, image.dtype), image)


def grayscale(image: Array) -> Array:
    """<float32>[h, w, 3] -> <float32>[h, w, 1] luma (BT.601); a 1-channel image is returned as it is."""
    if image.shape[-1] == 1:
        return image
    return jnp.sum(image * jnp.asarray(_LUMA, image.dtype), axis=-1, keepdims=True)


def _blend(image: Array, other: Array, factor: Array | float) -> Array:
    return jnp.clip(other + (image - other) * factor, 0.0, 1.0).astype(image.dtype)


def adjust_brightness(image: Array, factor: Array | float) -> Array:
    """image * factor, clipped to [0, 1]; factor 1 is the identity."""
    return _blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image: Array, factor: Array | float) -> Array:
    """Moves pixels away from (factor > 1) or towards (< 1) the image's mean grey level, clipped to [0, 1]."""
    return _blend(image, jnp.mean(grayscale(image)), factor)


def adjust_saturation(image: Array, factor: Array | float) -> Array:
    """RGB only: blends each pixel with its own grey (factor 0 gives greyscale, 1 the identity), clipped."""
    _need_rgb(image, "saturation")
    return _blend(image, grayscale(image), factor)


def adjust_hue(image: Array, shift: Array | float) -> Array:
    """RGB only: rotates the hue by `shift` turns (in [-0.5, 0.5]; 1/3 turns red into green) in HSV space."""
    _need_rgb(image, "hue")
    h, s, v = _rgb_to_hsv(image)
    return _hsv_to_rgb(jnp.mod(h + shift, 1.0), s, v).astype(image.dtype)


def _need_rgb(image: Array, what: str) -> None:
    if image.shape[-1] != 3:
        raise ConfigError(f"--augment: {what} needs RGB images (3 channels), got {image.shape[-1]}")


def _rgb_to_hsv(rgb: Array) -> tuple[Array, Array, Array]:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.max(rgb, axis=-1)
    delta = v - jnp.min(rgb, axis=-1)
    s = jnp.where(v > 0, delta / jnp.where(v > 0, v, 1.0), 0.0)
    safe = jnp.where(delta > 0, delta, 1.0)
    h = jnp.where(v == r, (g - b) / safe, jnp.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = jnp.where(delta > 0, jnp.mod(h / 6.0, 1.0), 0.0)
    return h, s, v


def _hsv_to_rgb(h: Array, s: Array, v: Array) -> Array:
    # The standard closed form: channel n is v - v*s*clip(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6.
    def channel(n: float) -> Array:
        k = jnp.mod(n + h * 6.0, 6.0)
        return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)

    return jnp.stack([channel(5.0), channel(3.0), channel(1.0)], axis=-1)


# ------------------------------------------------------------------------------------------------------------
# Random transforms: `transform(key, image) -> image`


def _factor(key: Array, amount: float) -> Array:
    """A factor drawn from U[max(0, 1 - amount), 1 + amount] (torchvision's ColorJitter convention)."""
    return jax.random.uniform(key, (), minval=max(0.0, 1.0 - amount), maxval=1.0 + amount)


@dataclasses.dataclass(frozen=True)
class RandomRotation:
    """Rotation by an angle drawn from U[-degrees, degrees], bilinear; corners filled with 0.

    Attributes:
      degrees: the largest angle, in (0, 180].
    """

    degrees: float

    def __call__(self, key: Array, image: Array) -> Array:
        return rotate(image, jax.random.uniform(key, (), minval=-self.degrees, maxval=self.degrees))


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop:
    """A random box with area fraction in `scale` and aspect ratio (width/height) log-uniform in `ratio`, resized
    back to the input size (Szegedy et al. 2015's crop, as torchvision's `RandomResizedCrop`, without retries: a
    box larger than the image is clipped to it).

    Attributes:
      scale: (min, max) fraction of the image area kept, in (0, 1].
      ratio: (min, max) aspect ratio of the box.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, key: Array, image: Array) -> Array:
        h, w = image.shape[:2]
        k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
        area = jax.random.uniform(k_area, (), minval=self.scale[0], maxval=self.scale[1])
        log_ratio = jax.random.uniform(k_ratio, (), minval=math.log(self.ratio[0]), maxval=math.log(self.ratio[1]))
        ratio = jnp.exp(log_ratio)
        box_h = jnp.minimum(h * jnp.sqrt(area / ratio), h)
        box_w = jnp.minimum(w * jnp.sqrt(area * ratio), w)
        top = jax.random.uniform(k_top, ()) * (h - box_h)
        left = jax.random.uniform(k_left, ()) * (w - box_w)
        return resized_crop(image, top, left, box_h, box_w)


@dataclasses.dataclass(frozen=True)
class RandomFlip:
    """Horizontal (left-right) flip with probability `p`."""

    p: float = 0.5

    def __call__(self, key: Array, image: Array) -> Array:
        return jnp.where(jax.random.uniform(key, ()) < self.p, image[:, ::-1], image)


@dataclasses.dataclass(frozen=True)
class RandomTranslation:
    """Shift by whole pixels, up to `fraction` of the height (vertically) and width (horizontally); exact (no
    interpolation), uncovered pixels 0."""

    fraction: float

    def __call__(self, key: Array, image: Array) -> Array:
        h, w = image.shape[:2]
        ky, kx = jax.random.split(key)
        dy = jnp.round(jax.random.uniform(ky, (), minval=-self.fraction, maxval=self.fraction) * h)
        dx = jnp.round(jax.random.uniform(kx, (), minval=-self.fraction, maxval=self.fraction) * w)
        return translate(image, dy, dx)


@dataclasses.dataclass(frozen=True)
class Brightness:
    """Brightness jitter: image * f, f ~ U[max(0, 1 - amount), 1 + amount], clipped to [0, 1]."""

    amount: float

    def __call__(self, key: Array, image: Array) -> Array:
        return adjust_brightness(image, _factor(key, self.amount)) if self.amount else image


@dataclasses.dataclass(frozen=True)
class Contrast:
    """Contrast jitter about the mean grey level, factor as in `Brightness`."""

    amount: float

    def __call__(self, key: Array, image: Array) -> Array:
        return adjust_contrast(image, _factor(key, self.amount)) if self.amount else image


@dataclasses.dataclass(frozen=True)
class Saturation:
    """Saturation jitter (RGB only), factor as in `Brightness`."""

    amount: float

    def __call__(self, key: Array, image: Array) -> Array:
        return adjust_saturation(image, _factor(key, self.amount)) if self.amount else image


@dataclasses.dataclass(frozen=True)
class Hue:
    """Hue jitter (RGB only): a shift drawn from U[-amount, amount] turns, amount in [0, 0.5]."""

    amount: float

    def __call__(self, key: Array, image: Array) -> Array:
        if not self.amount:
            return image
        return adjust_hue(image, jax.random.uniform(key, (), minval=-self.amount, maxval=self.amount))


@dataclasses.dataclass(frozen=True)
class GaussianNoise:
    """Adds N(0, std^2) to every pixel, not clipped (so the noise has exactly the asked spread)."""

    std: float

    def __call__(self, key: Array, image: Array) -> Array:
        return image + self.std * jax.random.normal(key, image.shape, image.dtype)


@dataclasses.dataclass(frozen=True)
class Cutout:
    """Zeroes a box of `fraction` of the height by `fraction` of the width, centred anywhere in the image (so it
    may hang over the border: DeVries & Taylor 2017)."""

    fraction: float

    def __call__(self, key: Array, image: Array) -> Array:
        h, w = image.shape[:2]
        ky, kx = jax.random.split(key)
        size_h, size_w = max(1, round(self.fraction * h)), max(1, round(self.fraction * w))
        return cutout(image, jax.random.randint(ky, (), 0, h), jax.random.randint(kx, (), 0, w), size_h, size_w)


@dataclasses.dataclass(frozen=True)
class Compose:
    """Applies `transforms` in order, each with its own key split from the example's key.

    Attributes:
      transforms: the chain, each `transform(key, image) -> image`.
      spec: the `--augment` text it came from (for logs), if any.
    """

    transforms: tuple[Transform, ...]
    spec: str = ""

    def __call__(self, key: Array, image: Array) -> Array:
        if not self.transforms:
            return image
        for k, transform in zip(jax.random.split(key, len(self.transforms)), self.transforms):
            image = transform(k, image)
        return image

    def check(self, channels: int) -> None:
        """Raises ConfigError when a transform cannot act on images with `channels` channels."""
        for t in self.transforms:
            if isinstance(t, (Saturation, Hue)) and channels != 3:
                name = "saturation" if isinstance(t, Saturation) else "hue"
                raise ConfigError(f"--augment: {name} needs RGB images (3 channels); these have {channels}")


def apply_batch(transform: Transform, keys: Array, images: Array) -> Array:
    """Augments each example with its own key.

    Args:
      transform: `transform(key, image) -> image`.
      keys: <key>[batch] typed PRNG keys.
      images: <float32>[batch, height, width, channels].

    Returns:
      <float32>[batch, height, width, channels].
    """
    return jax.vmap(transform)(keys, images)


# ------------------------------------------------------------------------------------------------------------
# The `--augment` spec


@dataclasses.dataclass(frozen=True)
class _Entry:
    build: Callable[[float], Transform]
    check: Callable[[float], bool]
    rule: str
    default: float | None = None


_ENTRIES: dict[str, _Entry] = {
    "rotate": _Entry(RandomRotation, lambda v: 0 < v <= 180, "degrees must be in (0, 180]"),
    "crop": _Entry(lambda v: RandomResizedCrop(scale=(v, 1.0)), lambda v: 0 < v <= 1,
                   "the smallest kept area fraction must be in (0, 1]"),
    "flip": _Entry(RandomFlip, lambda v: 0 <= v <= 1, "the probability must be in [0, 1]", default=0.5),
    "translate": _Entry(RandomTranslation, lambda v: 0 <= v <= 0.5, "the fraction must be in [0, 0.5]"),
    "brightness": _Entry(Brightness, lambda v: v >= 0, "the amount must be >= 0"),
    "contrast": _Entry(Contrast, lambda v: v >= 0, "the amount must be >= 0"),
    "saturation": _Entry(Saturation, lambda v: v >= 0, "the amount must be >= 0"),
    "hue": _Entry(Hue, lambda v: 0 <= v <= 0.5, "the amount must be in [0, 0.5]"),
    "noise": _Entry(GaussianNoise, lambda v: v >= 0, "the standard deviation must be >= 0"),
    "cutout": _Entry(Cutout, lambda v: 0 < v <= 1, "the box fraction must be in (0, 1]"),
}

SPEC_HELP = ("comma-separated NAME=VALUE, applied in order: rotate=DEGREES, crop=MIN_AREA, flip[=P], "
             "translate=FRACTION, brightness=X, contrast=X, saturation=X, hue=X, noise=STD, cutout=FRACTION")


def parse_augment(spec: str | None) -> Compose | None:
    """`"rotate=10,crop=0.9,noise=0.05"` -> the `Compose` chain; None or "" (or "none") -> None.

    Raises:
      ConfigError: one line naming `--augment` and the bad item.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    transforms: list[Transform] = []
    seen: set[str] = set()
    for item in spec.split(","):
        item = item.strip()
        name, has_value, text = (part.strip() for part in item.partition("="))
        name = name.lower()
        if not name:
            raise ConfigError(f"--augment: empty item in {spec!r}; {SPEC_HELP}")
        entry = _ENTRIES.get(name)
        if entry is None:
            raise ConfigError(f"--augment: unknown transform {name!r} in {spec!r}; choose from "
                              f"{', '.join(_ENTRIES)}")
        if name in seen:
            raise ConfigError(f"--augment: {name!r} is given twice in {spec!r}")
        seen.add(name)
        if not has_value and entry.default is None:
            raise ConfigError(f"--augment: {name!r} needs a value, e.g. {name}=0.1")
        value = _number(name, text, spec) if has_value else entry.default
        if not entry.check(value):
            raise ConfigError(f"--augment: {name}={text}: {entry.rule}")
        transforms.append(entry.build(value))
    return Compose(tuple(transforms), spec=spec)


def _number(name: str, text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--augment: {name}={text}: {text!r} is not a number (in {spec!r})") from None
    if not math.isfinite(value):
        raise ConfigError(f"--augment: {name}={text}: must be a finite number")
    return value
