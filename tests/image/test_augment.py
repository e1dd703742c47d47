"""Augmentation: each transform pinned to a closed form, the chain jittable and vmappable, the spec parser strict."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import augment as A
from jaxcnn.errors import ConfigError


def rand_image(shape, seed=0):
    return jax.random.uniform(jax.random.key(seed), shape)


@pytest.mark.parametrize("shape", [(7, 7, 1), (6, 6, 3)])
def test_rotation_by_quarter_turns_equals_rot90(shape):
    img = rand_image(shape)
    np.testing.assert_allclose(A.rotate(img, 90), jnp.rot90(img), atol=1e-5)
    np.testing.assert_allclose(A.rotate(img, -90), jnp.rot90(img, -1), atol=1e-5)
    np.testing.assert_allclose(A.rotate(img, 180), jnp.rot90(img, 2), atol=1e-5)
    np.testing.assert_array_equal(A.rotate(img, 0), img)


def test_rotation_interpolates_bilinearly():
    # A horizontal ramp img[y, x] = x turned 90 degrees is a vertical ramp; at 45 degrees the centre pixel stays
    # put and a linear function stays linear wherever the source point is inside the image.
    n = 9
    ramp = jnp.tile(jnp.arange(n, dtype=jnp.float32)[None, :, None], (n, 1, 1))
    out = A.rotate(ramp, 45)
    c = (n - 1) / 2
    assert float(out[4, 4, 0]) == pytest.approx(c, abs=1e-5)
    # Output (y=4, x=5) is 1 pixel right of the centre: it comes from cos(45) right and sin(45) down of it.
    assert float(out[4, 5, 0]) == pytest.approx(c + np.cos(np.pi / 4), abs=1e-5)
    assert float(out[0, 0, 0]) == 0.0  # the corner comes from outside the image: filled with 0


def test_resized_crop_keeps_size_and_full_box_is_identity():
    img = rand_image((8, 10, 3))
    np.testing.assert_allclose(A.resized_crop(img, 0, 0, 8, 10), img, atol=1e-6)
    crop = A.RandomResizedCrop(scale=(0.3, 0.9))
    for seed in range(4):
        out = crop(jax.random.key(seed), img)
        assert out.shape == img.shape
        assert not np.allclose(out, img)


def test_resized_crop_of_left_half_stretches_a_ramp():
    n = 8
    ramp = jnp.tile(jnp.arange(n, dtype=jnp.float32)[None, :, None], (n, 1, 1))
    out = A.resized_crop(ramp, 0, 0, n, n / 2)
    # Output x samples the source at (x + 0.5) / 2 - 0.5 (half-pixel centres), clamped at the border.
    expected = np.clip((np.arange(n) + 0.5) / 2 - 0.5, 0, None)
    np.testing.assert_allclose(out[3, :, 0], expected, atol=1e-6)
    np.testing.assert_allclose(out[:, 5, 0], expected[5], atol=1e-6)


def test_flip_translate_and_cutout_are_exact():
    img = rand_image((5, 6, 2))
    np.testing.assert_array_equal(A.RandomFlip(1.0)(jax.random.key(0), img), img[:, ::-1])
    np.testing.assert_array_equal(A.RandomFlip(0.0)(jax.random.key(0), img), img)
    moved = A.translate(img, 1, -2)
    np.testing.assert_allclose(moved[1:, :-2], img[:-1, 2:], atol=1e-6)
    assert float(jnp.abs(moved[0]).max()) == 0.0 and float(jnp.abs(moved[:, -2:]).max()) == 0.0
    ones = jnp.ones((8, 8, 1))
    cut = A.cutout(ones, 4, 4, 3, 2)
    assert int(jnp.sum(cut == 0)) == 6
    np.testing.assert_array_equal(cut[3:6, 3:5], 0.0)
    # A random box may hang over the border, so at most (and at least one pixel of) the box is cut.
    for seed in range(5):
        zeros = int(jnp.sum(A.Cutout(0.5)(jax.random.key(seed), ones) == 0))
        assert 1 <= zeros <= 16


def test_zero_colour_jitter_is_the_identity():
    img = rand_image((6, 6, 3))
    chain = A.parse_augment("brightness=0,contrast=0,saturation=0,hue=0")
    np.testing.assert_array_equal(chain(jax.random.key(3), img), img)
    np.testing.assert_allclose(A.adjust_hue(img, 0.0), img, atol=1e-5)
    np.testing.assert_allclose(A.adjust_hue(img, 1.0), img, atol=1e-5)
    for fn in (A.adjust_brightness, A.adjust_contrast, A.adjust_saturation):
        np.testing.assert_allclose(fn(img, 1.0), img, atol=1e-6)


def test_colour_adjustments_closed_forms():
    img = rand_image((4, 4, 3)) * 0.5
    np.testing.assert_allclose(A.adjust_brightness(img, 1.5), img * 1.5, atol=1e-6)
    grey = A.grayscale(img)
    np.testing.assert_allclose(A.adjust_saturation(img, 0.0), jnp.broadcast_to(grey, img.shape), atol=1e-6)
    np.testing.assert_allclose(A.adjust_contrast(img, 0.0), jnp.full(img.shape, jnp.mean(grey)), atol=1e-6)
    red, green, blue = jnp.eye(3)[:, None, None, :]
    np.testing.assert_allclose(A.adjust_hue(red, 1 / 3), green, atol=1e-5)
    np.testing.assert_allclose(A.adjust_hue(red, -1 / 3), blue, atol=1e-5)
    grey_img = rand_image((4, 4, 1))
    np.testing.assert_allclose(A.adjust_contrast(grey_img, 2.0),
                               jnp.clip(2 * grey_img - jnp.mean(grey_img), 0, 1), atol=1e-6)
    with pytest.raises(ConfigError, match="--augment: hue needs RGB"):
        A.adjust_hue(grey_img, 0.1)
    with pytest.raises(ConfigError, match="--augment: saturation needs RGB"):
        A.parse_augment("saturation=0.2").check(1)


def test_noise_has_the_asked_standard_deviation():
    img = jnp.full((128, 128, 1), 0.5)
    out = A.GaussianNoise(0.05)(jax.random.key(0), img)
    diff = np.asarray(out - img)
    assert diff.std() == pytest.approx(0.05, rel=0.03)
    assert abs(diff.mean()) < 0.002


def test_spec_builds_the_chain_in_the_order_written():
    chain = A.parse_augment("cutout=0.25,rotate=10,crop=0.9,flip,translate=0.1,brightness=0.2,contrast=0.2,"
                            "saturation=0.1,hue=0.05,noise=0.05")
    assert chain.transforms == (
        A.Cutout(0.25), A.RandomRotation(10.0), A.RandomResizedCrop(scale=(0.9, 1.0)), A.RandomFlip(0.5),
        A.RandomTranslation(0.1), A.Brightness(0.2), A.Contrast(0.2), A.Saturation(0.1), A.Hue(0.05),
        A.GaussianNoise(0.05))
    chain.check(3)


def test_chain_is_jittable_vmappable_and_seeded():
    chain = A.parse_augment("rotate=10,crop=0.9,noise=0.05")
    images = rand_image((4, 8, 8, 1))
    keys = jax.random.split(jax.random.key(0), 4)
    batch_fn = jax.jit(lambda k, x: A.apply_batch(chain, k, x))
    batched = batch_fn(keys, images)
    assert batched.shape == images.shape
    one = jax.jit(chain)
    for i in range(4):  # each example depends on its own key only
        np.testing.assert_allclose(batched[i], one(keys[i], images[i]), atol=1e-5)
    np.testing.assert_array_equal(batched, batch_fn(keys, images))
    assert not np.allclose(batched, batch_fn(jax.random.split(jax.random.key(1), 4), images))


@pytest.mark.parametrize("spec, message", [
    ("rotat=10", "unknown transform 'rotat'"),
    ("rotate", "'rotate' needs a value"),
    ("rotate=abc", "'abc' is not a number"),
    ("rotate=-5", "degrees must be in"),
    ("crop=0", "area fraction"),
    ("hue=0.7", "in \\[0, 0.5\\]"),
    ("noise=nan", "finite"),
    ("rotate=10,rotate=5", "given twice"),
    ("rotate=10,,noise=0.1", "empty item"),
])
def test_bad_specs_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        A.parse_augment(spec)
    assert str(info.value).startswith("--augment: ") and "\n" not in str(info.value)


def test_empty_specs_mean_no_augmentation():
    assert A.parse_augment(None) is None
    assert A.parse_augment("none") is None
    assert A.parse_augment(" ") is None
