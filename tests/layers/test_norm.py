"""Normalization: agreement with NumPy definitions, train/eval behaviour of batch norm, and masked statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.errors import ConfigError
from jaxcnn.layers import (
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    MaskedBatchNorm,
    MaskedInstanceNorm,
    sequence_mask,
)

from . import np_reference as ref
from .util import abstract, rand

SHAPES = [(4, 5, 3), (2, 3, 4, 3)]


def _affine(channels, seed=7):
    return {"scale": 1.0 + 0.5 * rand((channels,), seed), "bias": rand((channels,), seed + 1)}


def _running(channels):
    return {"mean": rand((channels,), 11), "var": 0.5 + np.abs(rand((channels,), 12))}


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_training_uses_batch_statistics_and_updates_running_averages(shape):
    x, params, stats = 2.0 + 3.0 * rand(shape), _affine(shape[-1]), _running(shape[-1])
    axes = tuple(range(len(shape) - 1))
    y, updated = BatchNorm(momentum=0.9).apply({"params": params, "batch_stats": stats}, x,
                                               use_running_average=False, mutable=["batch_stats"])
    expected, mean, var = ref.normalize(x, axes, params["scale"], params["bias"], 1e-5)
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.9 * stats["mean"] + 0.1 * mean.ravel(), rtol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["var"], 0.9 * stats["var"] + 0.1 * var.ravel(), rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_eval_uses_running_averages_and_leaves_them(shape):
    x, params, stats = rand(shape), _affine(shape[-1]), _running(shape[-1])
    y, updated = BatchNorm(use_running_average=True).apply({"params": params, "batch_stats": stats}, x,
                                                           mutable=["batch_stats"])
    expected = (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * params["scale"] + params["bias"]
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(updated["batch_stats"]["mean"], stats["mean"])
    np.testing.assert_array_equal(updated["batch_stats"]["var"], stats["var"])


def test_batch_norm_variables_and_fresh_running_averages():
    _, variables = abstract(BatchNorm(use_running_average=False), jnp.zeros((2, 5, 3)))
    assert {k: set(v) for k, v in variables.items()} == {"params": {"scale", "bias"},
                                                         "batch_stats": {"mean", "var"}}
    variables = BatchNorm(use_running_average=True).init(jax.random.key(0), jnp.zeros((2, 5, 3)))
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], 0.0)
    np.testing.assert_array_equal(variables["batch_stats"]["var"], 1.0)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_matches_numpy(shape):
    x, params = rand(shape), _affine(shape[-1])
    expected, _, _ = ref.normalize(x, (-1,), params["scale"], params["bias"], 1e-6)
    np.testing.assert_allclose(LayerNorm().apply({"params": params}, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_instance_norm_matches_numpy(shape):
    x, params = 1.0 + rand(shape), _affine(shape[-1])
    expected, _, _ = ref.normalize(x, tuple(range(1, len(shape) - 1)), params["scale"], params["bias"], 1e-6)
    np.testing.assert_allclose(InstanceNorm().apply({"params": params}, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 4), (2, 3, 4, 4)])
@pytest.mark.parametrize("kwargs,groups", [({"num_groups": 2}, 2), ({"num_groups": 1}, 1), ({"num_groups": 4}, 4),
                                           ({"num_groups": None, "group_size": 2}, 2)])
def test_group_norm_matches_numpy(shape, kwargs, groups):
    x, params = rand(shape), _affine(shape[-1])
    expected = ref.group_norm(x, groups, params["scale"], params["bias"], 1e-6)
    np.testing.assert_allclose(GroupNorm(**kwargs).apply({"params": params}, x), expected, atol=1e-5, rtol=1e-5)


def test_group_norm_rejects_groups_that_do_not_divide_channels():
    with pytest.raises(ConfigError, match=r"GroupNorm.num_groups: 3 does not divide the input's 4 channels"):
        GroupNorm(num_groups=3).apply({"params": _affine(4)}, jnp.zeros((1, 5, 4)))


# --- masked variants ------------------------------------------------------------------------------------------

def _padded_batch(seed=0):
    x = 1.0 + 2.0 * rand((3, 6, 2), seed)
    mask = np.array(sequence_mask(jnp.array([6, 3, 1]), 6))
    return x, mask


def test_masked_batch_norm_statistics_exclude_padding():
    x, mask = _padded_batch()
    params, stats = _affine(2), _running(2)
    y, updated = MaskedBatchNorm(momentum=0.8).apply({"params": params, "batch_stats": stats}, x, mask,
                                                     use_running_average=False, mutable=["batch_stats"])
    expected, mean, var = ref.normalize(x, (0, 1), params["scale"], params["bias"], 1e-5, mask=mask)
    np.testing.assert_allclose(np.asarray(y)[mask], expected[mask], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(y)[~mask], 0.0)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.8 * stats["mean"] + 0.2 * mean.ravel(), rtol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["var"], 0.8 * stats["var"] + 0.2 * var.ravel(), rtol=1e-5)


def test_masked_batch_norm_eval_and_padding_invariance():
    x, mask = _padded_batch()
    variables = {"params": _affine(2), "batch_stats": _running(2)}
    garbage = np.where(mask[..., None], x, 1e4 * rand(x.shape, 3))
    for train in (False, True):
        y = MaskedBatchNorm(use_running_average=not train).apply(variables, x, mask, mutable=["batch_stats"])[0]
        np.testing.assert_array_equal(
            MaskedBatchNorm(use_running_average=not train).apply(variables, garbage, mask,
                                                                 mutable=["batch_stats"])[0], y)
    eval_y = MaskedBatchNorm(use_running_average=True).apply(variables, x, mask)
    s = variables["batch_stats"]
    expected = (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * variables["params"]["scale"] + variables["params"]["bias"]
    np.testing.assert_allclose(np.asarray(eval_y)[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_masked_instance_norm_per_example_statistics_exclude_padding():
    x, mask = _padded_batch()
    mask[2] = False  # an empty example
    params = _affine(2)
    y = MaskedInstanceNorm().apply({"params": params}, x, mask)
    expected, _, _ = ref.normalize(x[:2], (1,), params["scale"], params["bias"], 1e-6, mask=mask[:2])
    np.testing.assert_allclose(np.asarray(y[:2])[mask[:2]], expected[mask[:2]], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(y)[~mask], 0.0)
    garbage = np.where(mask[..., None], x, -1e4)
    np.testing.assert_array_equal(MaskedInstanceNorm().apply({"params": params}, garbage, mask), y)


@pytest.mark.parametrize("layer", ["batch", "instance"])
def test_masked_norms_stay_finite_with_no_real_position(layer):
    x, mask = rand((2, 4, 3)), np.zeros((2, 4), bool)
    if layer == "batch":
        module, variables = MaskedBatchNorm(use_running_average=False), {"params": _affine(3),
                                                                          "batch_stats": _running(3)}
        run = lambda v, p: module.apply(p, v, mask, mutable=["batch_stats"])  # noqa: E731
    else:
        module, variables = MaskedInstanceNorm(), {"params": _affine(3)}
        run = lambda v, p: (module.apply(p, v, mask), {})  # noqa: E731
    y, updated = jax.jit(run)(x, variables)
    np.testing.assert_array_equal(y, 0.0)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(updated))
    grads = jax.jit(jax.grad(lambda v, p: jnp.sum(run(v, p)[0] ** 2 + run(v, p)[0]), argnums=(0, 1)))(x, variables)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))


def test_masked_norms_reject_a_mismatched_mask():
    with pytest.raises(ConfigError, match=r"MaskedBatchNorm: mask shape \(2, 3\) does not match"):
        MaskedBatchNorm(use_running_average=True).init(jax.random.key(0), jnp.zeros((2, 4, 3)),
                                                       jnp.ones((2, 3), bool))
    with pytest.raises(ConfigError, match=r"MaskedInstanceNorm: mask shape"):
        MaskedInstanceNorm().init(jax.random.key(0), jnp.zeros((2, 4, 3)), jnp.ones((2, 4, 3), bool))
