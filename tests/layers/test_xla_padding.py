"""Pads that XLA:CPU's convolution misreads (openxla/xla#48713, open): values and gradients against NumPy loops,
and the structural guarantee behind them.

XLA:CPU's f32 convolution reads outside its input when a dim is padded negatively at the start and positively at
the end. jaxcnn never builds such a padding itself, but JAX's transpose rules do: the input gradient of a
convolution with an explicit low pad wider than `dilation * (kernel - 1)`, and a `ConvTranspose` cropping more
than that at the start. The layers route exactly those cases through an explicit pad (or crop) and a VALID
convolution.

The bug reads uninitialised memory, so a wrong case can still agree once: the value tests run every case three
times, eagerly and under `jax.jit`, and the structural tests read the padding of every convolution in the traced
forward and backward programs.
"""

import itertools

import flax.linen as nn
import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn.layers import Conv, ConvTranspose, DepthwiseSeparableConv, MultiScaleConv

from . import np_reference as ref
from .util import rand

RUNS = 3


def _check(apply, arrays, expected):
    """apply(*arrays) and the gradients of sum(out * g) for every array equal `expected(g)` = (out, *grads), eager
    and jitted, `RUNS` times each."""
    out_shape = jax.eval_shape(apply, *arrays).shape
    g = rand(out_shape, 99)
    want = expected(g)

    def forward_and_grads(*a):
        out, vjp = jax.vjp(apply, *a)
        return (out, *vjp(jnp.asarray(g)))

    for mode, fn in (("eager", forward_and_grads), ("jit", jax.jit(forward_and_grads))):
        for run in range(RUNS):
            for name, got, ok in zip(["output", *(f"grad {i}" for i in range(len(arrays)))], fn(*arrays), want):
                np.testing.assert_allclose(np.asarray(got), ok, atol=1e-4, rtol=1e-4, err_msg=f"{mode} run {run}: {name}")


def _check_conv(x_shape, kernel, padding, pairs, strides=None, dilation=None, groups=1, features=6):
    rank = len(kernel)
    strides, dilation = strides or (1,) * rank, dilation or (1,) * rank
    x, w, b = rand(x_shape), rand((*kernel, x_shape[-1] // groups, features), 1), rand((features,), 2)
    module = Conv(features, kernel, strides=strides, padding=padding, kernel_dilation=dilation,
                  feature_group_count=groups)
    _check(lambda x, w, b: module.apply({"params": {"kernel": w, "bias": b}}, x), (x, w, b),
           lambda g: ref.conv_and_grads(x, w, b, strides, pairs, dilation, groups, g=g))


def _check_conv_transpose(x_shape, kernel, crops, strides=None, dilation=None, groups=1, features=6):
    rank = len(kernel)
    strides, dilation = strides or (1,) * rank, dilation or (1,) * rank
    x, w, b = rand(x_shape), rand((*kernel, x_shape[-1] // groups, features), 1), rand((features,), 2)
    module = ConvTranspose(features, kernel, strides=strides, padding=crops if rank > 1 else crops[0],
                           kernel_dilation=dilation, feature_group_count=groups)
    _check(lambda x, w, b: module.apply({"params": {"kernel": w, "bias": b}}, x), (x, w, b),
           lambda g: ref.conv_transpose_and_grads(x, w, b, strides, crops, dilation, groups, g=g))


# --- the issue's cases ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,padding,groups", [(3, (6, 1), 1), (2, (2, 0), 1), (4, (5, 1), 2)])
def test_conv_1d_issue_cases(kernel, padding, groups):
    _check_conv((2, 9, 4), (kernel,), padding, [padding], groups=groups)


def test_conv_2d_issue_case():
    _check_conv((2, 7, 6, 4), (3, 2), ((4, 0), (1, 1)), [(4, 0), (1, 1)])


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_bank_issue_case(impl):
    widths = (2, 3)
    x = rand((2, 8, 4))
    kernels = [rand((w, 4, 5), w) for w in widths]
    biases = [rand((5,), 10 + w) for w in widths]
    bank = MultiScaleConv(widths=widths, features=5, padding=(6, 1), concat=False, impl=impl)

    def apply(x, *p):
        params = {f"conv_w{w}": {"kernel": k, "bias": b} for w, k, b in zip(widths, p[:2], p[2:])}
        return jnp.concatenate(bank.apply({"params": params}, x), axis=1)

    def expected(g):
        # The branches are concatenated along time, so g splits the same way.
        splits = np.cumsum([8 + 7 - w + 1 for w in widths])[:-1]
        parts = [ref.conv_and_grads(x, k, b, (1,), [(6, 1)], (1,), g=gw)
                 for k, b, gw in zip(kernels, biases, np.split(g, splits, axis=1))]
        return (np.concatenate([p[0] for p in parts], axis=1), sum(p[1] for p in parts),
                *(p[2] for p in parts), *(p[3] for p in parts))

    _check(apply, (x, *kernels, *biases), expected)


@pytest.mark.parametrize("kernel,crop", [(3, (3, 1)), (3, (4, 0)), (4, (5, 1))])
def test_conv_transpose_issue_cases(kernel, crop):
    _check_conv_transpose((2, 6, 4), (kernel,), [crop])


# --- explicit pads wider than the kernel span -----------------------------------------------------------------

def _wide_pads(span):
    return [(span, 0), (span + 2, 1), (span + 1, span + 3), (1, span + 1)]


@pytest.mark.parametrize("kernel,stride,dilation,pads", [
    (k, s, d, p) for k, (s, d) in itertools.product([2, 3], [(1, 1), (2, 2)]) for p in _wide_pads(d * (k - 1) + 1)])
def test_conv_1d_pads_wider_than_the_span(kernel, stride, dilation, pads):
    _check_conv((2, 7, 4), (kernel,), pads, [pads], (stride,), (dilation,), groups=2)


@pytest.mark.parametrize("kernel,stride,dilation,crop", [
    (2, 1, 1, (2, 0)), (3, 1, 2, (6, 1)), (3, 2, 1, (4, 0)), (2, 3, 1, (3, 1)), (3, 1, 1, (-1, 2)),
    (3, 2, 1, (-2, 1)), (4, 1, 1, (7, -2)),
])
def test_conv_transpose_1d_crops_wider_than_the_span(kernel, stride, dilation, crop):
    _check_conv_transpose((2, 5, 4), (kernel,), [crop], (stride,), (dilation,), groups=2)


def test_2d_layers_with_wide_pads():
    _check_conv((1, 5, 6, 2), (2, 3), ((3, 1), (4, 0)), [(3, 1), (4, 0)], (1, 2), (2, 1))
    _check_conv_transpose((1, 3, 4, 2), (3, 2), [(3, 0), (-1, 1)], (1, 2))


# --- structure: the convolutions handed to XLA ----------------------------------------------------------------

def _convolutions(fn, *args):
    """The `padding` of every convolution in the traced program of fn(*args), nested programs included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                found.append(tuple(tuple(int(v) for v in p) for p in eqn.params["padding"]))
            for sub in jex.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def _misread(paddings):
    return [p for p in paddings if any(lo < 0 < hi for lo, hi in p)]


def _zeros_like_init(module, x):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(module.init, jax.random.key(0), x))


def _forward_and_backward(module, x):
    """(the gradient function of a loss through `module`, variables of the right shapes)."""
    def loss(v, x):
        return sum(jnp.sum(jnp.sin(y)) for y in jax.tree.leaves(module.apply(v, x)))

    return jax.grad(loss, argnums=(0, 1)), _zeros_like_init(module, x)


def test_the_issue_cases_would_misread_without_the_fix():
    # The raw convolution and its autodiff, as flax.linen.Conv runs them: the very paddings the layers avoid.
    x = jnp.zeros((1, 9, 4))
    for kernel, padding in [(3, (6, 1)), (2, (2, 0))]:
        fn, variables = _forward_and_backward(nn.Conv(5, (kernel,), padding=[padding]), x)
        assert _misread(_convolutions(fn, variables, x))
        fn, variables = _forward_and_backward(Conv(5, kernel, padding=padding), x)
        assert not _misread(_convolutions(fn, variables, x))


_PAD = st.integers(0, 7)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 12), kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 3),
       lo=_PAD, hi=_PAD, groups=st.sampled_from([1, 2]))
def test_conv_never_hands_xla_a_misread_padding(n, kernel, stride, dilation, lo, hi, groups):
    if n + lo + hi < dilation * (kernel - 1) + 1:
        return
    x = jnp.zeros((1, n, 4))
    ours, variables = _forward_and_backward(Conv(4, kernel, strides=stride, padding=(lo, hi), kernel_dilation=dilation,
                                                 feature_group_count=groups), x)
    assert not _misread(_convolutions(ours, variables, x))
    # Where Flax's own convolution is safe, jaxcnn runs exactly it: the same program, forward and backward.
    flax_conv = nn.Conv(4, (kernel,), strides=stride, padding=[(lo, hi)], kernel_dilation=dilation,
                        feature_group_count=groups)
    theirs, _ = _forward_and_backward(flax_conv, x)
    if not _misread(_convolutions(theirs, variables, x)):
        assert str(jax.make_jaxpr(ours)(variables, x)) == str(jax.make_jaxpr(theirs)(variables, x))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 8), kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       lo=st.integers(-3, 7), hi=st.integers(-3, 7))
def test_conv_transpose_never_hands_xla_a_misread_padding(n, kernel, stride, dilation, lo, hi):
    span = dilation * (kernel - 1) + 1
    if (n - 1) * stride + span - lo - hi < 1:
        return
    x = jnp.zeros((1, n, 2))
    fn, variables = _forward_and_backward(ConvTranspose(3, kernel, strides=stride, padding=(lo, hi),
                                                        kernel_dilation=dilation), x)
    paddings = _convolutions(fn, variables, x)
    assert not _misread(paddings)
    forward = paddings[0]
    if not any(a < 0 < b for a, b in [(span - 1 - lo, span - 1 - hi), (lo, hi)]):
        # Nothing to avoid: the one convolution of the scatter, padded by the span minus the crop, as always.
        assert forward == ((span - 1 - lo, span - 1 - hi),)


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CAUSAL", (1, 2), (2, 0)])
def test_default_paths_are_flax_itself(padding):
    # VALID, SAME, CAUSAL and explicit pads within the span run flax.linen.Conv unchanged (same program).
    x = jnp.zeros((2, 9, 4))
    ours, variables = _forward_and_backward(Conv(6, 3, padding=padding), x)
    theirs, _ = _forward_and_backward(nn.Conv(6, (3,), padding=padding if isinstance(padding, str) else [padding]), x)
    assert str(jax.make_jaxpr(ours)(variables, x)) == str(jax.make_jaxpr(theirs)(variables, x))


def test_separable_and_bank_route_their_misread_pads_too():
    x = jnp.zeros((1, 9, 4))
    for module in (DepthwiseSeparableConv(3, 3, padding=(6, 1)),
                   MultiScaleConv(widths=(2, 3), features=3, padding=(6, 1), concat=False, impl="xla")):
        paddings = _convolutions(*_forward_and_backward(module, x), x)
        assert paddings and not _misread(paddings)
