"""Image CNNs: shapes, closed-form parameter counts, a reference forward pass, the matmul/XLA convolution twins,
and batch norm that ignores padding examples in training and uses its running averages in eval.

Shapes come from `jax.eval_shape` and numeric tests use NumPy-drawn variables: compiling Flax's random
initialisers is most of the cost of a model test on a CPU, and none of these tests is about initialisation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxcnn import layers
from jaxcnn.models.image_cnn import LeNet5, SmallCNN, lenet_paddings


def images(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def shapes(model, x_shape):
    """(logits shape, variables as ShapeDtypeStructs), without computing anything."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    return jax.eval_shape(model.apply, variables, x).shape, variables


def variables_for(model, x_shape, seed=0):
    """Variables of the right structure: kernels ~ N(0, 1/fan_in), zero biases, BN stats mean 0, var 1."""
    rng = np.random.default_rng(seed)

    def draw(path, s):
        name = jax.tree_util.keystr(path)
        if "batch_stats" in name:
            return jnp.zeros(s.shape) if name.endswith("['mean']") else jnp.ones(s.shape)
        if name.endswith("['kernel']"):
            return jnp.asarray(rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape), s.dtype)
        return jnp.asarray(rng.normal(0, 0.1, s.shape) + (1.0 if name.endswith("['scale']") else 0.0), s.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes(model, x_shape)[1])


@pytest.mark.parametrize("size, pads", [(8, ("SAME", "SAME")), (16, ("SAME", "SAME")), (28, ("SAME", "VALID")),
                                        (32, ("VALID", "VALID"))])
def test_lenet_auto_padding(size, pads):
    assert lenet_paddings(size) == pads


@pytest.mark.parametrize("shape, flat", [((8, 8, 1), 2 * 2 * 16), ((28, 28, 1), 5 * 5 * 16),
                                         ((32, 32, 1), 5 * 5 * 16), ((32, 32, 3), 5 * 5 * 16)])
def test_lenet_shapes_and_parameter_count(shape, flat):
    out, variables = shapes(LeNet5(num_classes=10), (2, *shape))
    assert out == (2, 10)
    params = variables["params"]
    assert set(variables) == {"params"} and set(params) == {"conv1", "conv2", "fc1", "fc2", "head"}
    assert params["fc1"]["kernel"].shape == (flat, 120)
    c = shape[-1]
    # conv1 5*5*c*6 + 6, conv2 5*5*6*16 + 16, fc1 flat*120 + 120, fc2 120*84 + 84, head 84*10 + 10:
    # 61,706 on a 28x28 or 32x32 grey digit (LeCun's partially connected C3 and RBF output made it 60,000).
    expected = (150 * c + 6) + 2416 + (flat * 120 + 120) + 10164 + 850
    assert layers.count_params(params) == expected
    if shape in ((28, 28, 1), (32, 32, 1)):
        assert expected == 61706


def _reference_lenet(params, x, classic: bool, pads):
    """LeNet-5 written out with lax ops, as a check on the module."""
    act = jnp.tanh if classic else jax.nn.relu
    for name, pad in zip(("conv1", "conv2"), pads):
        x = lax.conv_general_dilated(x, params[name]["kernel"], (1, 1), pad,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + params[name]["bias"]
        x = act(x)
        if classic:
            x = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
        else:
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    x = x.reshape(x.shape[0], -1)
    for name in ("fc1", "fc2"):
        x = act(x @ params[name]["kernel"] + params[name]["bias"])
    return x @ params["head"]["kernel"] + params["head"]["bias"]


@pytest.mark.parametrize("variant", ["classic", "modern"])
@pytest.mark.parametrize("size", [8, 28])
def test_lenet_matches_a_reference_forward_pass(variant, size):
    x = images((3, size, size, 1)) - 0.5
    model = LeNet5(num_classes=10, variant=variant)
    variables = variables_for(model, x.shape)
    np.testing.assert_allclose(model.apply(variables, x),
                               _reference_lenet(variables["params"], x, variant == "classic", lenet_paddings(size)),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("depth, shape", [(1, (8, 8, 1)), (2, (8, 8, 1)), (3, (8, 8, 1)), (2, (28, 28, 3))])
def test_small_cnn_shapes(depth, shape):
    out, variables = shapes(SmallCNN(num_classes=7, width=4, depth=depth), (2, *shape))
    assert out == (2, 7)
    assert set(variables) == {"params", "batch_stats"}
    assert {f"conv{i}" for i in range(1, depth + 1)} | {"separable", "bn_separable", "head"} <= set(
        variables["params"])
    assert variables["batch_stats"]["bn_separable"]["mean"].shape == (4 * 2 ** depth,)


def test_small_cnn_parameter_count():
    _, variables = shapes(SmallCNN(num_classes=10, width=8, depth=2), (1, 8, 8, 1))
    # conv1 3*3*1*8 (no bias; BN has one) + bn1 2*8, conv2 3*3*8*16 + bn2 2*16, separable: depthwise 3*3*16,
    # pointwise 16*32 (no bias) + bn 2*32, head 32*10 + 10.
    assert layers.count_params(variables["params"]) == 72 + 16 + 1152 + 32 + 144 + 512 + 64 + 330
    assert layers.count_params(variables["batch_stats"]) == 2 * (8 + 16 + 32)


@pytest.mark.parametrize("model, size", [(LeNet5(num_classes=5), 12), (LeNet5(num_classes=5, padding="VALID"), 28),
                                         (SmallCNN(num_classes=5, width=4), 12)])
def test_matmul_and_xla_convolutions_are_twins(model, size):
    x = images((2, size, size, 1))
    xla, matmul = model.clone(conv_impl="xla"), model.clone(conv_impl="matmul")
    variables = variables_for(xla, x.shape)
    assert jax.tree.structure(variables) == jax.tree.structure(shapes(matmul, x.shape)[1])
    np.testing.assert_allclose(xla.apply(variables, x), matmul.apply(variables, x), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def bn_model():
    model = SmallCNN(num_classes=3, width=4, depth=1)
    return model, variables_for(model, (1, 8, 8, 1))


def test_batch_norm_ignores_padding_examples_in_training(bn_model):
    model, variables = bn_model
    real = images((4, 8, 8, 1))
    padded = jnp.concatenate([real, 100.0 * images((3, 8, 8, 1), seed=1)])  # garbage in the padding slots
    mask = jnp.arange(7) < 4
    out_real, state_real = model.apply(variables, real, train=True, mutable=["batch_stats"])
    out_pad, state_pad = model.apply(variables, padded, train=True, mask=mask, mutable=["batch_stats"])
    np.testing.assert_allclose(out_pad[:4], out_real, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), state_pad, state_real)
    # Without the mask the garbage would move the statistics.
    _, state_bad = model.apply(variables, padded, train=True, mutable=["batch_stats"])
    assert not np.allclose(state_bad["batch_stats"]["bn1"]["mean"], state_real["batch_stats"]["bn1"]["mean"])


def test_batch_norm_eval_uses_the_running_averages(bn_model):
    model, variables = bn_model
    x = images((6, 8, 8, 1))
    _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
    stats = updated["batch_stats"]
    assert not np.allclose(stats["bn1"]["mean"], 0.0)  # moved from the initial mean 0
    trained = {"params": variables["params"], "batch_stats": stats}
    # Eval: an example's output does not depend on the rest of the batch, and it follows the running stats.
    alone = model.apply(trained, x[:1])
    np.testing.assert_allclose(model.apply(trained, x)[:1], alone, atol=1e-5)
    shifted = jax.tree.map(lambda v: v + 1.0, stats)
    assert not np.allclose(model.apply({"params": variables["params"], "batch_stats": shifted}, x[:1]), alone)
    # Training mode normalises by the batch instead, so the same example comes out differently.
    in_batch, _ = model.apply(trained, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(in_batch[:1], alone, atol=1e-3)


def test_dropout_is_per_example_and_off_in_eval(bn_model):
    _, variables = bn_model
    model = SmallCNN(num_classes=3, width=4, depth=1, dropout=0.5)
    x = jnp.tile(images((1, 8, 8, 1)), (2, 1, 1, 1))
    keys = jax.random.split(jax.random.key(1), 2)
    out, _ = model.apply(variables, x, train=True, dropout_keys=keys, mutable=["batch_stats"])
    assert not np.allclose(out[0], out[1])  # same image, different keys
    same, _ = model.apply(variables, x, train=True, dropout_keys=jnp.stack([keys[0], keys[0]]),
                          mutable=["batch_stats"])
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)
    evaluated = model.apply(variables, x)
    np.testing.assert_allclose(evaluated[0], evaluated[1], atol=1e-6)
