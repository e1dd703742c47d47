"""Shape arithmetic: formulas by hand, and agreement with the real output shape of every layer."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from jaxcnn.errors import ConfigError
from jaxcnn.layers import (
    Conv,
    ConvTranspose,
    DepthwiseSeparableConv,
    MultiScaleConv,
    ReceptiveField,
    adaptive_max_pool,
    avg_pool,
    conv_output_mask,
    conv_output_size,
    conv_param_count,
    count_params,
    explicit_padding,
    max_pool,
    pool_output_size,
    receptive_field,
    transposed_cropping,
    transposed_output_size,
)

from .util import abstract


def test_conv_output_size_by_hand():
    assert conv_output_size(64, 5) == 60  # Kim: 56 tokens + 2 x 4 padding, width 5 -> m = n - k + 1
    assert conv_output_size(10, 3, padding="SAME") == 10
    assert conv_output_size(10, 3, stride=3, padding="SAME") == 4
    assert conv_output_size(10, 3, padding="CAUSAL", dilation=4) == 10
    assert conv_output_size(10, 3, dilation=2) == 6
    assert conv_output_size(10, 4, stride=2, padding=1) == 5
    assert conv_output_size(10, 4, stride=2, padding=(0, 3)) == 5
    assert conv_output_size(5, 5) == 1
    assert conv_output_size(np.int64(10), np.int32(3), padding=np.int64(1)) == 10  # NumPy integers are integers
    assert MultiScaleConv(widths=np.array([3, 4])).widths == (3, 4)
    assert explicit_padding(10, 4, padding="SAME") == (1, 2)  # the odd position goes at the end, as in XLA
    assert explicit_padding(10, 3, padding="CAUSAL", dilation=2) == (4, 0)
    assert pool_output_size(7, 2) == 3 and pool_output_size(7, 2, stride=1) == 6
    assert pool_output_size(7, 2, padding="SAME") == 4


def test_transposed_output_size_by_hand():
    assert transposed_output_size(5, 3, stride=2, padding="VALID") == 11
    assert transposed_output_size(5, 3, stride=2, padding="SAME") == 10
    assert transposed_output_size(5, 1, stride=3, padding="SAME") == 15  # crop (0, -2): zeros added at the end
    assert transposed_cropping(1, 3, "SAME") == (0, -2)
    assert transposed_output_size(5, 3, stride=2, padding=1) == 9  # PyTorch: (n-1)s - 2p + k
    assert transposed_output_size(5, 3, stride=2, padding=(1, 0)) == 10  # PyTorch output_padding=1


@pytest.mark.parametrize("call,fragment", [
    (lambda: conv_output_size(3, 5), "input size 3 padded by (0, 0) is shorter than the kernel span 5"),
    (lambda: conv_output_size(3, 3, dilation=2), "pad the input to at least 5"),
    (lambda: conv_output_size(10, 3, padding="FULL"), "conv_output_size.padding"),
    (lambda: conv_output_size(10, 0), "conv_output_size.kernel"),
    (lambda: transposed_output_size(1, 2, padding=(1, 1)), "leaves no output"),
    (lambda: pool_output_size(2, 3), "pool_output_size: input size 2"),
    (lambda: transposed_cropping(3, padding="CAUSAL"), "transposed_cropping.padding"),
    (lambda: receptive_field([(3, 1, 1, 1)]), "receptive_field: layer 0"),
    (lambda: conv_param_count(6, 4, 3, groups=4), "conv_param_count.groups"),
])
def test_shape_helpers_raise_one_line_config_errors(call, fragment):
    with pytest.raises(ConfigError) as error:
        call()
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_receptive_field_by_hand():
    assert receptive_field([(3, 1, 1), (3, 1, 1)]) == ReceptiveField(5, 1)
    assert receptive_field([(3, 2), (3, 2)]) == ReceptiveField(7, 4)
    assert receptive_field([(2, 1, 1), (2, 1, 2), (2, 1, 4)]) == ReceptiveField(8, 1)  # WaveNet doubling
    assert receptive_field([(5, 1), (2, 2), (3, 1)]) == ReceptiveField(10, 2)  # conv 5, pool 2, conv 3: 5 + 1 + 2 * 2
    assert receptive_field([]) == ReceptiveField(1, 1)


@pytest.mark.parametrize("stack", [[(3, 1, 1), (3, 2, 1), (2, 1, 3)], [(2, 2, 1), (3, 1, 2)], [(5, 1, 1)]])
def test_receptive_field_matches_the_gradient_support_of_a_real_stack(stack):
    def forward(x):
        for kernel, stride, dilation in stack:
            x = lax.conv_general_dilated(x, jnp.ones((1, 1, kernel)), (stride,), "VALID", rhs_dilation=(dilation,))
        return x

    x = jnp.ones((1, 1, 40))
    y = forward(x)
    field = receptive_field(stack)
    supports = []
    for position in (0, 1):
        grad = jax.grad(lambda v, p=position: forward(v)[0, 0, p])(x)
        supports.append(np.flatnonzero(np.asarray(grad)[0, 0]))
    assert y.shape[-1] > 1
    # The extent, not the count: a dilation after a stride can leave holes inside it (gridding), as stack 0 does.
    assert supports[0][-1] - supports[0][0] + 1 == field.size
    assert supports[1][0] - supports[0][0] == field.jump


def test_param_counts():
    assert conv_param_count(300, 100, 3) == 300 * 100 * 3 + 100  # one of Kim's banks
    assert conv_param_count(8, 16, (3, 3), groups=4, bias=False) == 9 * 2 * 16
    assert count_params({"a": np.zeros((2, 3)), "b": [np.zeros(4), jnp.zeros(())]}) == 11
    _, variables = abstract(MultiScaleConv(widths=(3, 4, 5), features=100, concat=False), jnp.zeros((1, 10, 300)))
    assert count_params(variables["params"]) == sum(conv_param_count(300, 100, w) for w in (3, 4, 5))


# --- the calculator against every layer's real output shape -----------------------------------------------------

_GRID = list(itertools.product([2, 7], [1, 2, 3], [1, 2], ["VALID", "SAME", "CAUSAL", 1, (2, 0)], [1, 2]))


def _agree(size, *layers):
    """Every layer's output has `size()` positions, or every one raises ConfigError when `size()` does."""
    try:
        expected = size()
    except ConfigError:
        for layer in layers:
            with pytest.raises(ConfigError, match=r"is shorter than the kernel span|leaves no output"):
                layer()
        return
    for layer in layers:
        assert layer().shape[1] == expected


@pytest.mark.parametrize("n,kernel,stride,padding,dilation", _GRID)
def test_calculator_agrees_with_conv_and_conv_output_mask(n, kernel, stride, padding, dilation):
    _agree(lambda: conv_output_size(n, kernel, stride, padding, dilation),
           lambda: abstract(Conv(2, kernel, strides=stride, padding=padding, kernel_dilation=dilation),
                            jnp.zeros((1, n, 3)))[0],
           lambda: jax.eval_shape(lambda: conv_output_mask(jnp.ones((1, n), bool), kernel, stride, padding, dilation)))


@pytest.mark.parametrize("n,kernel,stride,padding,dilation", _GRID)
def test_calculator_agrees_with_conv_transpose(n, kernel, stride, padding, dilation):
    padding = (0, 1) if padding == "CAUSAL" else padding
    _agree(lambda: transposed_output_size(n, kernel, stride, padding, dilation),
           lambda: abstract(ConvTranspose(2, kernel, strides=stride, padding=padding, kernel_dilation=dilation),
                            jnp.zeros((1, n, 3)))[0])


@pytest.mark.parametrize("n,window,stride,padding", list(itertools.product([2, 7], [1, 3], [None, 1, 2],
                                                                             ["VALID", "SAME", "CAUSAL", 1])))
def test_calculator_agrees_with_pools(n, window, stride, padding):
    x = jnp.zeros((1, n, 2))
    _agree(lambda: pool_output_size(n, window, stride, padding),
           lambda: jax.eval_shape(lambda: max_pool(x, window, stride, padding)),
           lambda: jax.eval_shape(lambda: avg_pool(x, window, stride, padding, False)))


@pytest.mark.parametrize("shape,kernel,strides,padding,dilation", [
    ((7, 6), (3, 2), (2, 1), "SAME", (1, 2)), ((7, 6), (3, 3), (1, 2), "VALID", (2, 1)),
    ((5, 8), (2, 3), (3, 3), ((1, 0), 2), (1, 1)), ((4, 4), (1, 1), (2, 2), 0, (1, 1)),
])
def test_calculator_agrees_with_2d_layers(shape, kernel, strides, padding, dilation):
    x = jnp.zeros((2, *shape, 4))
    pads = [padding] * 2 if isinstance(padding, (str, int)) else list(padding)
    conv_out = tuple(conv_output_size(n, k, s, p, d) for n, k, s, p, d in zip(shape, kernel, strides, pads, dilation))
    kwargs = dict(strides=strides, padding=padding, kernel_dilation=dilation)
    assert abstract(Conv(3, kernel, **kwargs), x)[0].shape == (2, *conv_out, 3)
    assert abstract(DepthwiseSeparableConv(3, kernel, **kwargs), x)[0].shape == (2, *conv_out, 3)
    up = tuple(transposed_output_size(n, k, s, p, d) for n, k, s, p, d in zip(shape, kernel, strides, pads, dilation))
    assert abstract(ConvTranspose(3, kernel, **kwargs), x)[0].shape == (2, *up, 3)
    pooled = tuple(pool_output_size(n, k, s, p) for n, k, s, p in zip(shape, kernel, strides, pads))
    assert jax.eval_shape(lambda: max_pool(x, kernel, strides, padding)).shape == (2, *pooled, 4)
    assert jax.eval_shape(lambda: adaptive_max_pool(x, (3, 5))).shape == (2, 3, 5, 4)


_PADDING = st.one_of(st.sampled_from(["VALID", "SAME", "CAUSAL"]), st.integers(0, 3),
                     st.tuples(st.integers(0, 3), st.integers(0, 3)))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), kernel=st.integers(1, 6), stride=st.integers(1, 4), dilation=st.integers(1, 3),
       padding=_PADDING)
def test_conv_output_size_property(n, kernel, stride, dilation, padding):
    conv = Conv(1, kernel, strides=stride, padding=padding, kernel_dilation=dilation)
    try:
        expected = conv_output_size(n, kernel, stride, padding, dilation)
    except ConfigError:
        with pytest.raises(ConfigError, match=r"Conv: input size"):
            abstract(conv, jnp.zeros((1, n, 1)))
        return
    assert abstract(conv, jnp.zeros((1, n, 1)))[0].shape == (1, expected, 1)
    if isinstance(padding, str) and padding != "CAUSAL":
        lo, hi = explicit_padding(n, kernel, stride, padding, dilation)
        assert lax.padtype_to_pads((n,), (dilation * (kernel - 1) + 1,), (stride,), padding) == [(lo, hi)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), kernel=st.integers(1, 5), stride=st.integers(1, 4), dilation=st.integers(1, 3),
       padding=st.one_of(st.sampled_from(["VALID", "SAME"]), st.tuples(st.integers(-2, 3), st.integers(-2, 3))))
def test_transposed_output_size_property(n, kernel, stride, dilation, padding):
    module = ConvTranspose(1, kernel, strides=stride, padding=padding, kernel_dilation=dilation)
    try:
        expected = transposed_output_size(n, kernel, stride, padding, dilation)
    except ConfigError:
        with pytest.raises(ConfigError, match=r"leaves no output"):
            abstract(module, jnp.zeros((1, n, 1)))
        return
    assert abstract(module, jnp.zeros((1, n, 1)))[0].shape == (1, expected, 1)
