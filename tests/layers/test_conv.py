"""Convolutions: shapes and dtypes, closed-form values, agreement with NumPy loops, and properties."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.errors import ConfigError
from jaxcnn.layers import (
    Conv,
    ConvTranspose,
    DepthwiseSeparableConv,
    MultiScaleConv,
    PointwiseConv,
    bank_taps,
    conv_output_mask,
    conv_param_count,
    count_params,
    global_max_pool,
    masked_max_over_time,
    sequence_mask,
    transposed_cropping,
)

from . import np_reference as ref
from .util import KEY, abstract, rand, random_variables

# --- Conv -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_dtype,dtype,out_dtype", [
    (jnp.float32, None, jnp.float32),
    (jnp.bfloat16, jnp.bfloat16, jnp.bfloat16),
    (jnp.bfloat16, None, jnp.float32),  # Flax promotes bf16 inputs with f32 params unless dtype is set
    (jnp.float32, jnp.bfloat16, jnp.bfloat16),
])
@pytest.mark.parametrize("shape,kernel", [((2, 9, 4), (3,)), ((2, 7, 6, 4), (3, 2))])
def test_conv_shape_and_dtype(in_dtype, dtype, out_dtype, shape, kernel):
    y, variables = abstract(Conv(8, kernel, padding="VALID", dtype=dtype), jnp.zeros(shape, in_dtype))
    assert y.shape == (shape[0], *[n - k + 1 for n, k in zip(shape[1:-1], kernel)], 8)
    assert y.dtype == out_dtype
    assert variables["params"]["kernel"].shape == (*kernel, 4, 8)
    assert variables["params"]["kernel"].dtype == jnp.float32


def test_conv_param_dtype_and_real_bfloat16_values():
    x = jnp.asarray(rand((2, 6, 3)), jnp.bfloat16)
    module = Conv(4, 3, padding="SAME", dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    variables = random_variables(module, x)
    y = module.apply(variables, x)
    assert variables["params"]["kernel"].dtype == jnp.bfloat16 and y.dtype == jnp.bfloat16
    p = variables["params"]
    expected = ref.conv(np.asarray(x, np.float32), np.asarray(p["kernel"], np.float32),
                        np.asarray(p["bias"], np.float32), (1,), [(1, 1)], (1,))
    np.testing.assert_allclose(np.asarray(y, np.float32), expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("use_bias", [False, True])
def test_conv_ones_kernel_on_ones_is_kernel_volume(use_bias):
    x = jnp.ones((1, 6, 5, 2))
    params = {"kernel": jnp.ones((3, 3, 2, 1))} | ({"bias": jnp.ones((1,))} if use_bias else {})
    y = Conv(1, (3, 3), padding="VALID", use_bias=use_bias).apply({"params": params}, x)
    np.testing.assert_array_equal(y, np.full((1, 4, 3, 1), 18.0 + use_bias))
    same = Conv(1, (3, 3), padding="SAME", use_bias=use_bias).apply({"params": params}, x)
    assert same[0, 0, 0, 0] == 8.0 + use_bias  # a corner window sees 2 x 2 real positions x 2 channels
    assert same[0, 2, 2, 0] == 18.0 + use_bias


def test_conv_identity_kernel_returns_input():
    x = rand((2, 7, 3))
    kernel = np.zeros((5, 3, 3), np.float32)
    kernel[2] = np.eye(3)
    y = Conv(3, (5,), padding="SAME").apply({"params": {"kernel": kernel, "bias": np.zeros(3, np.float32)}}, x)
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_conv_causal_output_never_sees_the_future():
    x = rand((1, 8, 2))
    module = Conv(3, (3,), padding="CAUSAL", kernel_dilation=2)
    variables = random_variables(module, x)
    changed = x.copy()
    changed[:, 5:] += 10.0
    np.testing.assert_allclose(module.apply(variables, changed)[:, :5], module.apply(variables, x)[:, :5], atol=1e-6)


_PADDINGS_1D = ["VALID", "SAME", "CAUSAL", 2, (0, 3)]


@pytest.mark.parametrize("stride,padding,dilation,groups",
                         list(itertools.product([1, 2, 3], _PADDINGS_1D, [1, 2], [1, 2])))
def test_conv_1d_matches_numpy_loops(stride, padding, dilation, groups):
    x = rand((2, 9, 4))
    kernel, bias = rand((3, 4 // groups, 6), 1), rand((6,), 2)
    module = Conv(6, (3,), strides=stride, padding=padding, kernel_dilation=dilation, feature_group_count=groups)
    y = module.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    expected = ref.conv(x, kernel, bias, (stride,), [ref.pads(9, 3, stride, dilation, padding)], (dilation,), groups)
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("strides,padding,dilation,groups", [
    ((1, 1), "VALID", (1, 1), 1), ((2, 1), "SAME", (1, 1), 3), ((1, 2), "SAME", (2, 1), 1),
    ((2, 2), 1, (1, 1), 3), ((1, 1), ((0, 2), (1, 0)), (1, 2), 1), ((2, 3), "VALID", (2, 1), 3),
    ((3, 2), (1, 2), (1, 1), 1), ((1, 1), "SAME", (2, 2), 3),
])
def test_conv_2d_matches_numpy_loops(strides, padding, dilation, groups):
    x = rand((2, 7, 6, 3))
    kernel, bias = rand((3, 2, 3 // groups, 6), 1), rand((6,), 2)
    module = Conv(6, (3, 2), strides=strides, padding=padding, kernel_dilation=dilation,
                  feature_group_count=groups)
    y = module.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    if isinstance(padding, str):
        pairs = [ref.pads(n, k, s, d, padding) for n, k, s, d in zip((7, 6), (3, 2), strides, dilation)]
    else:
        pairs = [(p, p) if isinstance(p, int) else p for p in (padding if not isinstance(padding, int)
                                                                else (padding, padding))]
    np.testing.assert_allclose(y, ref.conv(x, kernel, bias, strides, pairs, dilation, groups), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_grouped_conv_has_one_over_groups_weights(groups):
    _, variables = abstract(Conv(16, (3,), feature_group_count=groups), jnp.zeros((1, 5, 8)))
    weights = np.prod(variables["params"]["kernel"].shape)
    assert weights * groups == 3 * 8 * 16
    assert count_params(variables["params"]) == conv_param_count(8, 16, 3, groups=groups) == weights + 16


def test_grouped_conv_keeps_groups_apart():
    x = rand((1, 6, 4))
    module = Conv(4, (3,), feature_group_count=2)
    variables = random_variables(module, x)
    changed = x.copy()
    changed[..., 2:] += 5.0  # second input group only
    np.testing.assert_allclose(module.apply(variables, changed)[..., :2], module.apply(variables, x)[..., :2],
                               atol=1e-6)


@pytest.mark.parametrize("module,shape,fragment", [
    (Conv(4, (5,), padding="VALID"), (2, 3, 2), "pad inputs to at least 5"),
    (Conv(4, (3,), padding="VALID", kernel_dilation=3), (2, 6, 2), "shorter than the kernel span 7"),
    (Conv(4, (3,)), (2, 8), "expected input [batch, length, channels]"),
    (Conv(4, (3, 3)), (2, 8, 3), "[batch, height, width, channels]"),
    (Conv(4, (3,), feature_group_count=2), (2, 8, 3), "does not divide the input's 3 channels"),
])
def test_conv_bad_input_raises_one_line_config_error(module, shape, fragment):
    with pytest.raises(ConfigError) as error:
        abstract(module, jnp.zeros(shape))
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("Conv")


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(features=4, kernel_size=(3, 3), padding="CAUSAL"), "CAUSAL padding is only defined for 1-D"),
    (dict(features=4, kernel_size=(3,), padding="FULL"), "Conv.padding"),
    (dict(features=4, kernel_size=(3,), padding=-1), "must be >= 0"),
    (dict(features=4, kernel_size=(3, 3), padding=(1, 2, 3)), "Conv.padding"),
    (dict(features=4, kernel_size=(0,)), "Conv.kernel_size"),
    (dict(features=4, kernel_size=(3,), strides=(1, 2)), "Conv.strides: expected 1 value"),
    (dict(features=5, kernel_size=(3,), feature_group_count=2), "does not divide features 5"),
])
def test_conv_bad_attributes_raise_config_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        Conv(**kwargs)


def test_conv_padding_forms_are_equivalent():
    x = rand((1, 6, 2))
    variables = random_variables(Conv(3, 3), x)
    forms = [1, (1, 1), ((1, 1),), [(1, 1)], "same", "SAME"]
    outputs = [Conv(3, 3, padding=p).apply(variables, x) for p in forms]
    for y in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0])


def test_conv_params_are_interchangeable_with_flax():
    import flax.linen as nn

    x = rand((2, 7, 3))
    variables = random_variables(nn.Conv(5, (3,), padding="VALID"), x)
    np.testing.assert_array_equal(Conv(5, 3, padding="VALID").apply(variables, x),
                                  nn.Conv(5, (3,), padding="VALID").apply(variables, x))


# --- ConvTranspose --------------------------------------------------------------------------------------------

def test_conv_transpose_ones_kernel_counts_overlaps():
    y = ConvTranspose(1, 3, padding="VALID", use_bias=False).apply({"params": {"kernel": jnp.ones((3, 1, 1))}},
                                                                  jnp.ones((1, 4, 1)))
    np.testing.assert_array_equal(y[0, :, 0], [1, 2, 3, 3, 2, 1])
    up = ConvTranspose(1, 2, strides=2, padding="VALID", use_bias=False).apply(
        {"params": {"kernel": jnp.ones((2, 1, 1))}}, jnp.arange(1.0, 4.0).reshape(1, 3, 1))
    np.testing.assert_array_equal(up[0, :, 0], [1, 1, 2, 2, 3, 3])  # stride = kernel: nearest-neighbour upsampling


@pytest.mark.parametrize("stride,padding,dilation",
                         list(itertools.product([1, 2, 3], ["VALID", "SAME", 1, (2, 0), (1, -1)], [1, 2])))
def test_conv_transpose_1d_matches_numpy_scatter(stride, padding, dilation):
    x = rand((2, 4, 3))
    kernel, bias = rand((3, 3, 5), 1), rand((5,), 2)
    module = ConvTranspose(5, 3, strides=stride, padding=padding, kernel_dilation=dilation)
    y = module.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    span = dilation * 2 + 1
    if padding == "SAME":
        total = span - stride
        crop = (max(total, 0) // 2, total - max(total, 0) // 2)
    else:
        crop = {"VALID": (0, 0), 1: (1, 1)}.get(padding, padding)
    expected = ref.conv_transpose(x, kernel, bias, (stride,), [crop], (dilation,))
    if padding == "SAME":
        assert y.shape[1] == 4 * stride
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("strides,padding,dilation", [
    ((2, 2), "VALID", (1, 1)), ((2, 1), (1, (0, 1)), (1, 2)), ((1, 3), 0, (2, 1)), ((3, 2), ((1, 1), (2, 0)), (1, 1)),
])
def test_conv_transpose_2d_matches_numpy_scatter(strides, padding, dilation):
    x = rand((1, 3, 4, 2))
    kernel = rand((3, 2, 2, 4), 1)
    y = ConvTranspose(4, (3, 2), strides=strides, padding=padding, kernel_dilation=dilation, use_bias=False).apply(
        {"params": {"kernel": kernel}}, x)
    pairs = {"VALID": ((0, 0), (0, 0)), 0: ((0, 0), (0, 0))}.get(padding) or tuple(
        (p, p) if isinstance(p, int) else p for p in padding)
    np.testing.assert_allclose(y, ref.conv_transpose(x, kernel, None, strides, pairs, dilation), atol=1e-5)


@pytest.mark.parametrize("stride,padding,kernel", [(2, "SAME", 3), (2, "SAME", 4), (3, "SAME", 2), (2, "VALID", 4),
                                                   (1, 1, 3)])
def test_conv_transpose_is_the_adjoint_of_conv(stride, padding, kernel):
    # <Conv(x), y> == <x, ConvTranspose(y)> with the kernel's feature axes swapped, whenever the sizes line up.
    n = 12
    w = rand((kernel, 3, 5), 1)
    conv = Conv(5, kernel, strides=stride, padding=padding, use_bias=False)
    x = rand((1, n, 3), 2)
    cx = conv.apply({"params": {"kernel": w}}, x)
    y = rand(cx.shape, 3)
    ty = ConvTranspose(3, kernel, strides=stride, padding=padding, use_bias=False).apply(
        {"params": {"kernel": np.swapaxes(w, 1, 2)}}, y)
    if ty.shape != x.shape:  # VALID drops a tail the transposed conv gives back as extra positions
        ty = ty[:, :n]
    np.testing.assert_allclose(float(jnp.vdot(cx, y)), float(jnp.vdot(x, ty)), rtol=1e-5)


def test_conv_transpose_dtypes_and_errors():
    y, variables = abstract(ConvTranspose(4, (2, 2), strides=2, dtype=jnp.bfloat16), jnp.zeros((1, 3, 3, 2),
                                                                                           jnp.bfloat16))
    assert y.shape == (1, 6, 6, 4) and y.dtype == jnp.bfloat16
    assert variables["params"]["kernel"].shape == (2, 2, 2, 4)
    with pytest.raises(ConfigError, match=r"ConvTranspose.padding"):
        ConvTranspose(4, 3, padding="CAUSAL")
    with pytest.raises(ConfigError, match=r"leaves no output"):
        abstract(ConvTranspose(4, 3, padding=(3, 3)), jnp.zeros((1, 1, 2)))


# --- PointwiseConv, DepthwiseSeparableConv --------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 4, 5, 3)])
def test_pointwise_conv_is_a_kernel_one_conv(shape):
    x = rand(shape)
    variables = random_variables(PointwiseConv(4), x)
    assert variables["params"]["kernel"].shape == (1,) * (len(shape) - 2) + (3, 4)
    y = PointwiseConv(4).apply(variables, x)
    expected = Conv(4, (1,) * (len(shape) - 2)).apply(variables, x)
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_allclose(y, x @ np.asarray(variables["params"]["kernel"]).reshape(3, 4)
                               + variables["params"]["bias"], atol=1e-5)


@pytest.mark.parametrize("shape,kernel,multiplier", [((2, 7, 3), (3,), 1), ((2, 7, 3), (3,), 2),
                                                     ((1, 5, 6, 2), (3, 3), 2)])
def test_depthwise_separable_matches_numpy(shape, kernel, multiplier):
    x = rand(shape)
    module = DepthwiseSeparableConv(5, kernel, padding="SAME", depth_multiplier=multiplier)
    variables = random_variables(module, x)
    p = variables["params"]
    channels = shape[-1]
    assert set(p) == {"depthwise", "pointwise"} and "bias" not in p["depthwise"]
    assert p["depthwise"]["kernel"].shape == (*kernel, 1, channels * multiplier)
    assert p["pointwise"]["kernel"].shape == (1,) * len(kernel) + (channels * multiplier, 5)
    assert count_params(p) == (conv_param_count(channels, channels * multiplier, kernel, groups=channels, bias=False)
                               + conv_param_count(channels * multiplier, 5, 1))
    pairs = [ref.pads(n, k, 1, 1, "SAME") for n, k in zip(shape[1:-1], kernel)]
    depth = ref.conv(x, p["depthwise"]["kernel"], None, (1,) * len(kernel), pairs, (1,) * len(kernel), channels)
    expected = depth @ np.asarray(p["pointwise"]["kernel"]).reshape(-1, 5) + p["pointwise"]["bias"]
    np.testing.assert_allclose(module.apply(variables, x), expected, atol=1e-5)


# --- MultiScaleConv -------------------------------------------------------------------------------------------

def test_multiscale_kim_bank_names_and_output():
    x, lengths = rand((3, 12, 6)), jnp.array([12, 7, 2])
    mask = sequence_mask(lengths, 12)
    bank = MultiScaleConv(widths=(3, 4, 5), features=10, activation="relu", pool=masked_max_over_time)
    variables = random_variables(bank, x, mask)
    p = variables["params"]
    assert list(p) == ["conv_w3", "conv_w4", "conv_w5"]
    assert [p[f"conv_w{w}"]["kernel"].shape for w in (3, 4, 5)] == [(3, 6, 10), (4, 6, 10), (5, 6, 10)]
    y = jax.jit(bank.apply)(variables, x, mask)
    assert y.shape == (3, 30)
    for i, w in enumerate((3, 4, 5)):
        branch = np.maximum(ref.conv(x, p[f"conv_w{w}"]["kernel"], p[f"conv_w{w}"]["bias"], (1,), [(0, 0)], (1,)), 0)
        valid = np.asarray(conv_output_mask(mask, w))
        expected = np.where(valid[..., None], branch, -np.inf).max(axis=1)
        np.testing.assert_allclose(y[:, i * 10:(i + 1) * 10], expected, atol=1e-5)


def test_multiscale_default_init_is_glorot_uniform():
    _, variables = MultiScaleConv(widths=(3,), features=50).init_with_output(KEY, jnp.zeros((1, 6, 40)))
    kernel = np.asarray(variables["params"]["conv_w3"]["kernel"])
    limit = np.sqrt(6.0 / (3 * 40 + 3 * 50))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    np.testing.assert_allclose(kernel.var(), limit ** 2 / 3, rtol=0.1)


def test_multiscale_concat_list_and_same_padding():
    x = rand((2, 9, 3))
    listed = MultiScaleConv(widths=(2, 5), features=4, concat=False)
    variables = random_variables(listed, x)
    branches = listed.apply(variables, x)
    assert [b.shape for b in branches] == [(2, 8, 4), (2, 5, 4)]
    assert abstract(MultiScaleConv(widths=(2, 5), features=4, padding="SAME"), x)[0].shape == (2, 9, 8)
    pooled = MultiScaleConv(widths=(2, 5), features=4, pool=global_max_pool).apply(variables, x)
    np.testing.assert_allclose(pooled, np.concatenate([np.asarray(b).max(axis=1) for b in branches], -1), atol=1e-6)
    with pytest.raises(ConfigError, match=r"cannot be concatenated"):
        abstract(MultiScaleConv(widths=(2, 5), features=4), x)
    with pytest.raises(ConfigError, match=r"no pool"):
        abstract(MultiScaleConv(widths=(2,), features=4), x, jnp.ones((2, 9), bool))
    with pytest.raises(ConfigError, match=r"distinct"):
        MultiScaleConv(widths=(3, 3))
    with pytest.raises(ConfigError, match=r"unknown 'rleu'"):
        abstract(MultiScaleConv(widths=(3,), features=4, activation="rleu"), x)
    with pytest.raises(ConfigError, match=r"conv_w5|shorter than the kernel span 5"):
        abstract(MultiScaleConv(widths=(3, 5), features=4, pool=global_max_pool), jnp.zeros((1, 4, 3)))


def test_multiscale_under_jit_and_vmap_over_seeds():
    x = rand((4, 10, 3))
    mask = sequence_mask(jnp.array([10, 8, 5, 3]), 10)
    bank = MultiScaleConv(widths=(2,), features=4, activation=jax.nn.relu, pool=masked_max_over_time)
    members = jax.jit(jax.vmap(lambda k: bank.init(k, x, mask)))(jax.random.split(KEY, 3))
    assert members["params"]["conv_w2"]["kernel"].shape == (3, 2, 3, 4)
    y = jax.jit(jax.vmap(bank.apply, in_axes=(0, None, None)))(members, x, mask)
    assert y.shape == (3, 4, 4)
    assert not np.allclose(y[0], y[1])  # members really differ
    np.testing.assert_allclose(y[2], bank.apply(jax.tree.map(lambda a: a[2], members), x, mask), atol=1e-6)


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CAUSAL", (2, 1)])
def test_multiscale_matmul_impl_equals_xla_convolution(padding):
    x = rand((3, 11, 5))
    xla = MultiScaleConv(widths=(1, 3, 4), features=6, padding=padding, concat=False, impl="xla")
    mm = MultiScaleConv(widths=(1, 3, 4), features=6, padding=padding, concat=False, impl="matmul")
    variables = random_variables(xla, x)
    assert jax.tree.map(np.shape, mm.init(KEY, x)) == jax.tree.map(np.shape, variables)  # same parameter tree
    for a, b in zip(xla.apply(variables, x), mm.apply(variables, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # The matmul form's gradient is hand-written (shifted_tap_sums): parameters and inputs both checked.
    g_xla = jax.grad(lambda v, x: sum(jnp.sum(jnp.sin(y)) for y in xla.apply(v, x)), argnums=(0, 1))(variables, x)
    g_mm = jax.grad(lambda v, x: sum(jnp.sum(jnp.sin(y)) for y in mm.apply(v, x)), argnums=(0, 1))(variables, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), g_xla, g_mm)


def test_multiscale_matmul_gradient_under_vmap_equals_each_member_alone():
    x = rand((3, 9, 4))
    bank = MultiScaleConv(widths=(2, 3), features=5, padding="SAME", impl="matmul", activation="relu",
                          pool=masked_max_over_time)
    mask = sequence_mask(jnp.array([9, 4, 1]), 9)
    members = jax.vmap(lambda k: bank.init(k, x, mask))(jax.random.split(KEY, 3))
    xs = jnp.stack([x, 2 * x, -x])

    def loss(v, x):
        return jnp.sum(jnp.sin(bank.apply(v, x, mask)))

    together = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(members, xs)
    for m in range(3):
        alone = jax.grad(loss, argnums=(0, 1))(jax.tree.map(lambda a: a[m], members), xs[m])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[m], b, atol=1e-5), together, alone)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_multiscale_projected_inputs_equal_the_plain_call(padding):
    # A lookup table folded into the taps ahead of time gives the same bank outputs (what inference uses).
    table, ids = rand((11, 6)), jnp.array([[1, 4, 4, 0, 0, 0, 0], [2, 3, 5, 7, 9, 10, 0]])
    mask = ids != 0
    x = jnp.where(mask[..., None], table[ids], 0.0)
    bank = MultiScaleConv(widths=(2, 3), features=5, activation="relu", pool=masked_max_over_time, padding=padding)
    variables = random_variables(bank, x, mask)
    p = variables["params"]
    taps = bank_taps([p["conv_w2"]["kernel"], p["conv_w3"]["kernel"]])
    assert taps.shape == (6, (2 + 3) * 5)
    folded = jnp.where(mask[..., None], (table @ taps)[ids], 0.0)
    np.testing.assert_allclose(bank.apply(variables, folded, mask, projected=True), bank.apply(variables, x, mask),
                               atol=1e-6)
    with pytest.raises(ConfigError, match=r"projected inputs need .* 25 channels"):
        bank.apply(variables, x, mask, projected=True)


# --- padding modes ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,expected", [("zeros", [3, 6, 5]), ("reflect", [5, 6, 7]), ("circular", [6, 6, 6]),
                                           ("replicate", [4, 6, 8])])
def test_padding_modes_by_hand(mode, expected):
    # [1, 2, 3] padded by one on each side: zeros 0|123|0, reflect 2|123|2, circular 3|123|1, replicate 1|123|3;
    # a ones kernel of width 3 sums each window.
    x = jnp.arange(1.0, 4.0).reshape(1, 3, 1)
    y = Conv(1, 3, padding=1, padding_mode=mode, use_bias=False).apply({"params": {"kernel": jnp.ones((3, 1, 1))}}, x)
    np.testing.assert_array_equal(y[0, :, 0], expected)


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
@pytest.mark.parametrize("padding,stride,dilation,groups", [("SAME", 1, 1, 1), ("CAUSAL", 2, 2, 2), ((3, 1), 1, 1, 2),
                                                            (2, 3, 1, 1)])
def test_padding_modes_1d_match_numpy_with_gradients(mode, padding, stride, dilation, groups):
    x, kernel, bias = rand((2, 7, 4)), rand((3, 4 // groups, 6), 1), rand((6,), 2)
    module = Conv(6, 3, strides=stride, padding=padding, kernel_dilation=dilation, feature_group_count=groups,
                  padding_mode=mode)
    pairs = [ref.pads(7, 3, stride, dilation, padding)]
    y, vjp = jax.vjp(lambda x, w: module.apply({"params": {"kernel": w, "bias": bias}}, x), x, kernel)
    g = rand(y.shape, 3)
    want, dx, dw, _ = ref.conv_and_grads(x, kernel, bias, (stride,), pairs, (dilation,), groups, mode, g)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, atol=1e-5, rtol=1e-5)
    for got, expected in zip(vjp(jnp.asarray(g)), (dx, dw)):
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_padding_modes_2d_and_separable_match_numpy(mode):
    x = rand((2, 5, 6, 3))
    kernel, bias = rand((3, 2, 3, 4), 1), rand((4,), 2)
    pairs = [(2, 0), (1, 1)]
    y = Conv(4, (3, 2), padding=((2, 0), 1), kernel_dilation=(1, 2), padding_mode=mode).apply(
        {"params": {"kernel": kernel, "bias": bias}}, x)
    np.testing.assert_allclose(y, ref.conv(x, kernel, bias, (1, 1), pairs, (1, 2), mode=mode), atol=1e-5)
    module = DepthwiseSeparableConv(4, (3, 3), padding="SAME", padding_mode=mode, depthwise_bias=True)
    p = random_variables(module, x)["params"]
    depth = ref.conv(x, p["depthwise"]["kernel"], p["depthwise"]["bias"], (1, 1), [(1, 1), (1, 1)], (1, 1), 3, mode)
    expected = depth @ np.asarray(p["pointwise"]["kernel"]).reshape(3, 4) + p["pointwise"]["bias"]
    np.testing.assert_allclose(module.apply({"params": p}, x), expected, atol=1e-5)


def test_every_route_creates_flax_parameters():
    # The explicit routes (a padding mode, a pad XLA would misread) make the same parameters as flax.linen.Conv.
    import flax.linen as nn

    x = jnp.zeros((1, 9, 4))
    expected = nn.Conv(6, (3,), padding=[(6, 1)], feature_group_count=2).init(KEY, x)
    for module in (Conv(6, 3, padding=(6, 1), feature_group_count=2),
                   Conv(6, 3, padding=(6, 1), feature_group_count=2, padding_mode="circular")):
        jax.tree.map(np.testing.assert_array_equal, module.init(KEY, x), expected)


@pytest.mark.parametrize("build,shape,fragment", [
    (lambda: Conv(4, 3, padding_mode="wrap"), None, "Conv.padding_mode: expected one of zeros, circular"),
    (lambda: Conv(4, 3, padding_mode=None), None, "Conv.padding_mode"),
    (lambda: Conv(4, 3, padding_mode="reflect", input_dilation=2), None, "needs input_dilation 1"),
    (lambda: Conv(4, 3, padding=3, padding_mode="reflect"), (1, 3, 2), "reflect padding (3, 3) along spatial dim 0 "
                                                                       "must be smaller than the input size 3"),
    (lambda: Conv(4, 3, padding=(4, 0), padding_mode="circular"), (1, 3, 2), "must be at most the input size 3"),
    (lambda: DepthwiseSeparableConv(4, 3, padding_mode="mirror"), (1, 5, 2), "DepthwiseSeparableConv.padding_mode"),
    (lambda: DepthwiseSeparableConv(4, 3, depthwise_bias="yes"), (1, 5, 2), "DepthwiseSeparableConv.depthwise_bias"),
])
def test_padding_mode_errors_are_one_line_config_errors(build, shape, fragment):
    with pytest.raises(ConfigError) as error:
        module = build()
        abstract(module, jnp.zeros(shape))
    assert fragment in str(error.value) and "\n" not in str(error.value)


# --- grouped ConvTranspose, depthwise bias ------------------------------------------------------------------------

def test_grouped_conv_transpose_shapes_and_block_structure():
    y, variables = abstract(ConvTranspose(6, 3, strides=2, feature_group_count=2), jnp.zeros((1, 4, 4)))
    assert variables["params"]["kernel"].shape == (3, 2, 6) and y.shape == (1, 8, 6)
    x = rand((1, 4, 4))
    module = ConvTranspose(6, 3, strides=2, feature_group_count=2)
    v = random_variables(module, x)
    changed = x.copy()
    changed[..., 2:] += 5.0  # the second input group feeds the second output group only
    np.testing.assert_allclose(module.apply(v, changed)[..., :3], module.apply(v, x)[..., :3], atol=1e-6)
    with pytest.raises(ConfigError, match=r"ConvTranspose.feature_group_count: 4 does not divide features 6"):
        ConvTranspose(6, 3, feature_group_count=4)
    with pytest.raises(ConfigError, match=r"does not divide the input's 3 channels"):
        abstract(ConvTranspose(6, 3, feature_group_count=2), jnp.zeros((1, 4, 3)))


@pytest.mark.parametrize("stride,padding,dilation", [(1, "SAME", 1), (2, "VALID", 2), (3, (1, 0), 1), (2, (4, -1), 1)])
def test_grouped_conv_transpose_matches_numpy(stride, padding, dilation):
    x, kernel, bias = rand((2, 4, 6)), rand((3, 2, 6), 1), rand((6,), 2)
    y = ConvTranspose(6, 3, strides=stride, padding=padding, kernel_dilation=dilation, feature_group_count=3).apply(
        {"params": {"kernel": kernel, "bias": bias}}, x)
    crop = transposed_cropping(3, stride, padding, dilation)
    np.testing.assert_allclose(y, ref.conv_transpose(x, kernel, bias, (stride,), [crop], (dilation,), 3), atol=1e-5)


def test_grouped_conv_transpose_is_the_adjoint_of_grouped_conv():
    # Conv kernel [k, C/G, F] maps C -> F; its adjoint maps F -> C with kernel [k, F/G, C], block by block.
    groups, c, f = 2, 4, 6
    w = rand((3, c // groups, f), 1)
    adjoint = w.reshape(3, c // groups, groups, f // groups).transpose(0, 3, 2, 1).reshape(3, f // groups, c)
    x = rand((1, 10, c), 2)
    cx = Conv(f, 3, strides=2, padding="SAME", feature_group_count=groups, use_bias=False).apply(
        {"params": {"kernel": w}}, x)
    y = rand(cx.shape, 3)
    ty = ConvTranspose(c, 3, strides=2, padding="SAME", feature_group_count=groups, use_bias=False).apply(
        {"params": {"kernel": adjoint}}, y)
    np.testing.assert_allclose(float(jnp.vdot(cx, y)), float(jnp.vdot(x, ty)), rtol=1e-5)


def test_depthwise_bias_parameters_and_value():
    x = rand((2, 5, 3))
    module = DepthwiseSeparableConv(4, 3, depth_multiplier=2, depthwise_bias=True)
    p = random_variables(module, x)["params"]
    assert p["depthwise"]["bias"].shape == (6,)
    assert count_params(p) == conv_param_count(3, 6, 3, groups=3) + conv_param_count(6, 4, 1)
    # With a zero depthwise kernel only the biases remain: pointwise(depthwise bias) + pointwise bias, everywhere.
    p["depthwise"]["kernel"] = np.zeros_like(p["depthwise"]["kernel"])
    expected = np.asarray(p["depthwise"]["bias"]) @ np.asarray(p["pointwise"]["kernel"]).reshape(6, 4) + \
        p["pointwise"]["bias"]
    np.testing.assert_allclose(module.apply({"params": p}, x), np.broadcast_to(expected, (2, 5, 4)), atol=1e-5)
