"""Every layer against PyTorch (`torch.nn.functional`): the same weights copied across, float32, the outputs and
the gradients of the input and of every weight, eagerly and under `jax.jit`.

Each PyTorch side takes the arrays in jaxcnn's layout and converts them inside the autograd graph, so its
gradients come back in jaxcnn's layout too: channels-last inputs become channels-first (`movedim(-1, 1)`); a
`Conv` kernel [*k, in/groups, out] becomes torch's weight [out, in/groups, *k]; a `ConvTranspose` kernel
[*k, in/groups, out] becomes torch's transposed weight [in, out/groups, *k] (group by group, see
`_torch_transposed_weight`). Asymmetric pads and padding modes go through `F.pad`, as `torch.nn.Conv1d` does
for its `padding_mode`.

Every case runs twice in each mode: XLA:CPU's convolution bug (openxla/xla#48713, see `jaxcnn.layers.conv`)
reads uninitialised memory, so values differ between runs and one agreeing run proves little. The grids with
most cases are in the default run; the rest of each grid is marked slow and exhaustive (`-m exhaustive`).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.layers import (
    ACTIVATIONS,
    BatchNorm,
    Conv,
    ConvTranspose,
    DepthwiseSeparableConv,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    MaskedBatchNorm,
    MaskedInstanceNorm,
    MultiScaleConv,
    PointwiseConv,
    adaptive_avg_pool,
    adaptive_max_pool,
    avg_pool,
    conv_output_size,
    explicit_padding,
    global_avg_pool,
    global_max_pool,
    k_max_pool,
    masked_max_over_time,
    masked_mean_over_time,
    max_pool,
    max_unpool,
    pool_output_size,
    sequence_mask,
    transposed_cropping,
    transposed_output_size,
)

from .util import rand

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = dict(rtol=1e-4, atol=1e-4)
RUNS = 2


# --- the harness ----------------------------------------------------------------------------------------------

def _numpy(t):
    return t.detach().numpy()


def _split(cases, every):
    """Every `every`-th case runs by default; the others are marked slow and exhaustive (`pytest -m exhaustive`
    runs them; .ci/run leaves them out to stay within its time). A case is a tuple of the parameters (a 1-tuple
    for one), or a bare value for one that is not a tuple."""
    cases = [c if isinstance(c, tuple) else (c,) for c in cases]
    return [pytest.param(*c) if i % every == 0 else pytest.param(*c, marks=[pytest.mark.slow, pytest.mark.exhaustive])
            for i, c in enumerate(cases)]


def _parity(jax_fn, torch_fn, *arrays, tol=TOL):
    """`jax_fn(*arrays)` equals `torch_fn(*tensors)`, and so do the gradients of sum(out * g) with respect to every
    array, eager and jitted, `RUNS` times each. Both functions take and return jaxcnn's layout."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = torch_fn(*tensors)
    g = rand(tuple(expected.shape), seed=99)
    expected.backward(torch.tensor(g))
    want = [_numpy(expected)] + [_numpy(t.grad) for t in tensors]

    def forward_and_grads(*a):
        out, vjp = jax.vjp(jax_fn, *a)
        return (out, *vjp(jnp.asarray(g)))

    for mode, fn in (("eager", forward_and_grads), ("jit", jax.jit(forward_and_grads))):
        for run in range(RUNS):
            got = fn(*arrays)
            assert len(got) == len(want)
            for name, a, b in zip(["output"] + [f"grad {i}" for i in range(len(arrays))], got, want):
                np.testing.assert_allclose(np.asarray(a), b, err_msg=f"{mode} run {run}: {name}", **tol)


def _params(kernel, bias):
    return {"params": {"kernel": kernel} | ({} if bias is None else {"bias": bias})}


def _per_dim(padding, rank):
    """A layer's `padding` as one entry per spatial dim: a mode, an int, or a (lo, hi) pair."""
    if isinstance(padding, (str, int)):
        return [padding] * rank
    if rank == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [tuple(padding)]
    return list(padding)


def _pairs(padding, spatial, kernel, strides, dilation):
    """A layer's padding as one (lo, hi) per dim, from jaxcnn's calculator (itself checked against torch below)."""
    return [explicit_padding(n, k, s, p, d)
            for n, k, s, p, d in zip(spatial, kernel, strides, _per_dim(padding, len(spatial)), dilation)]


def _torch_pad(xt, pairs, mode, value=0.0):
    """F.pad over the trailing (spatial) dims of a channels-first tensor; F.pad lists the last dim first."""
    flat = [v for lo_hi in reversed(pairs) for v in lo_hi]
    if not any(flat):
        return xt
    if mode == "zeros":
        return F.pad(xt, flat, mode="constant", value=value)
    return F.pad(xt, flat, mode=mode)


_TORCH_CONV = {1: F.conv1d, 2: F.conv2d}
_TORCH_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


def _torch_conv(x, kernel, bias, strides, pairs, dilation, groups, mode="zeros"):
    """torch's convolution of channels-last x with a Flax kernel; symmetric zero pads use conv's own `padding`."""
    rank = kernel.dim() - 2
    weight = kernel.permute(rank + 1, rank, *range(rank))
    xt = x.movedim(-1, 1)
    if mode == "zeros" and all(lo == hi for lo, hi in pairs):
        padding = tuple(lo for lo, _ in pairs)
    else:
        xt, padding = _torch_pad(xt, pairs, mode), 0
    return _TORCH_CONV[rank](xt, weight, bias, strides, padding, dilation, groups).movedim(1, -1)


def _conv_case(x_shape, features, kernel, strides, padding, dilation, groups, mode="zeros", bias=True, seed=0):
    x = rand(x_shape, seed)
    w = rand((*kernel, x_shape[-1] // groups, features), seed + 1)
    b = rand((features,), seed + 2) if bias else None
    module = Conv(features, kernel, strides=strides, padding=padding, kernel_dilation=dilation,
                  feature_group_count=groups, use_bias=bias, padding_mode=mode)
    pairs = _pairs(padding, x_shape[1:-1], kernel, strides, dilation)
    arrays = (x, w) + ((b,) if bias else ())
    _parity(lambda x, w, *b: module.apply(_params(w, b[0] if b else None), x),
            lambda x, w, *b: _torch_conv(x, w, b[0] if b else None, strides, pairs, dilation, groups, mode),
            *arrays)


# --- Conv -----------------------------------------------------------------------------------------------------

# The cases of the XLA:CPU bug named in the issue (a low pad wider than the kernel span, the high one not).
_ISSUE_CONV_1D = [(3, (6, 1), 1), (2, (2, 0), 1), (4, (5, 1), 2)]


@pytest.mark.parametrize("k,padding,groups", _ISSUE_CONV_1D)
def test_conv_1d_issue_cases(k, padding, groups):
    _conv_case((2, 9, 4), 6, (k,), (1,), padding, (1,), groups)


def test_conv_2d_issue_case():
    _conv_case((2, 7, 6, 4), 6, (3, 2), (1, 1), ((4, 0), (1, 1)), (1, 1), 1)


def _wide(k, d):
    """Explicit pads wider than the dilated kernel's span, at the start, the end, or both."""
    span = d * (k - 1) + 1
    return [(span, 0), (span + 2, 1), (1, span + 1), (span + 1, span + 3)]


_CONV_1D = [(3, s, d, g, p) for s, d, g in [(1, 1, 1), (2, 1, 2), (1, 2, 2), (2, 2, 1)]
            for p in ["VALID", "SAME", "CAUSAL", 2, (0, 3)] + _wide(3, d)]


@pytest.mark.parametrize("k,stride,dilation,groups,padding", _split(_CONV_1D, 7))
def test_conv_1d(k, stride, dilation, groups, padding):
    _conv_case((2, 9, 4), 6, (k,), (stride,), padding, (dilation,), groups)


@pytest.mark.parametrize("k,stride,dilation,groups,padding", _split([
    (k, s, d, 4, p) for k, (s, d) in itertools.product([2, 4], [(1, 1), (3, 1), (1, 3)])
    for p in _wide(k, d)[1::2]], 5))
def test_conv_1d_other_kernels_wide_pads(k, stride, dilation, groups, padding):
    _conv_case((2, 11, 4), 8, (k,), (stride,), padding, (dilation,), groups, bias=False)


_MODES = ["circular", "reflect", "replicate"]


@pytest.mark.parametrize("mode,padding,stride,dilation,groups", _split([
    (m, *c) for c in [("SAME", 1, 1, 1), ("CAUSAL", 1, 2, 1), (2, 2, 1, 2), ((3, 1), 1, 1, 1), ((0, 4), 3, 2, 2),
                      (8, 1, 1, 1)] for m in _MODES], 5))
def test_conv_1d_padding_modes(mode, padding, stride, dilation, groups):
    _conv_case((2, 9, 4), 6, (3,), (stride,), padding, (dilation,), groups, mode)


_CONV_2D = [
    ((1, 1), "VALID", (1, 1), 1), ((2, 1), "SAME", (1, 2), 2), ((1, 2), 1, (2, 1), 1), ((2, 2), ((0, 2), 1), (1, 1), 2),
    ((1, 1), ((5, 0), (2, 3)), (1, 1), 1), ((1, 1), ((1, 1), (4, 0)), (2, 1), 2), ((2, 1), ((6, 6), (0, 0)), (1, 1), 1),
]


@pytest.mark.parametrize("strides,padding,dilation,groups", _split(_CONV_2D, 3))
def test_conv_2d(strides, padding, dilation, groups):
    _conv_case((2, 7, 6, 4), 6, (3, 2), strides, padding, dilation, groups)


@pytest.mark.parametrize("mode,strides,padding,dilation", _split([
    (m, *c) for c in [((1, 1), "SAME", (1, 1)), ((2, 1), ((2, 0), (1, 3)), (1, 2))] for m in _MODES], 4))
def test_conv_2d_padding_modes(mode, strides, padding, dilation):
    _conv_case((2, 7, 6, 4), 6, (3, 2), strides, padding, dilation, 2, mode)


def test_pointwise_conv():
    x, w, b = rand((2, 5, 4, 3)), rand((1, 1, 3, 5), 1), rand((5,), 2)
    _parity(lambda x, w, b: PointwiseConv(5).apply(_params(w, b), x),
            lambda x, w, b: _torch_conv(x, w, b, (1, 1), [(0, 0)] * 2, (1, 1), 1), x, w, b)


@pytest.mark.parametrize("shape,kernel,padding,mode,multiplier,depthwise_bias", _split([
    ((2, 9, 3), (3,), (5, 1), "zeros", 2, True), ((2, 6, 5, 2), (3, 3), "SAME", "replicate", 1, True),
    ((2, 9, 3), (2,), "CAUSAL", "reflect", 1, True), ((2, 6, 5, 2), (2, 3), ((4, 0), 1), "zeros", 2, True),
    ((2, 9, 3), (3,), 2, "circular", 2, False), ((2, 9, 3), (3,), "SAME", "zeros", 1, False),
    ((2, 6, 5, 2), (3, 2), 1, "reflect", 1, False),
], 4))
def test_depthwise_separable_conv(shape, kernel, padding, mode, multiplier, depthwise_bias):
    channels, rank = shape[-1], len(kernel)
    x = rand(shape)
    dw, pw = rand((*kernel, 1, channels * multiplier), 1), rand((1,) * rank + (channels * multiplier, 4), 2)
    db, pb = rand((channels * multiplier,), 3), rand((4,), 4)
    module = DepthwiseSeparableConv(4, kernel, padding=padding, padding_mode=mode, depth_multiplier=multiplier,
                                    depthwise_bias=depthwise_bias)
    pairs = _pairs(padding, shape[1:-1], kernel, (1,) * rank, (1,) * rank)

    # The depthwise bias goes last, and only when there is one: torch gives an unused tensor no gradient.
    def ours(x, dw, pw, pb, *db):
        depthwise = {"kernel": dw} | ({"bias": db[0]} if db else {})
        return module.apply({"params": {"depthwise": depthwise, "pointwise": {"kernel": pw, "bias": pb}}}, x)

    def theirs(x, dw, pw, pb, *db):
        y = _torch_conv(x, dw, db[0] if db else None, (1,) * rank, pairs, (1,) * rank, channels, mode)
        return _torch_conv(y, pw, pb, (1,) * rank, [(0, 0)] * rank, (1,) * rank, 1)

    _parity(ours, theirs, x, dw, pw, pb, *((db,) if depthwise_bias else ()))


# --- ConvTranspose --------------------------------------------------------------------------------------------

def _torch_transposed_weight(kernel, groups):
    """Flax-layout [*k, in/groups, out] -> torch's [in, out/groups, *k]: group g's block of inputs keeps its own
    block of outputs."""
    rank = kernel.dim() - 2
    *k, cin, out = kernel.shape
    blocks = kernel.reshape(*k, cin, groups, out // groups)       # [*k, in/g, g, out/g]
    blocks = blocks.permute(rank + 1, rank, rank + 2, *range(rank))  # [g, in/g, out/g, *k]
    return blocks.reshape(groups * cin, out // groups, *k)


def _torch_conv_transpose(x, kernel, bias, strides, crops, dilation, groups):
    """torch's transposed convolution with the crops (lo, hi): its own `padding`/`output_padding` where they
    can say it (lo >= hi, lo - hi < max(stride, dilation)); otherwise the full output, cropped or zero-padded."""
    rank = kernel.dim() - 2
    weight = _torch_transposed_weight(kernel, groups)
    xt = x.movedim(-1, 1)
    native = all(0 <= hi <= lo and lo - hi < max(s, d) for (lo, hi), s, d in zip(crops, strides, dilation))
    if native:
        y = _TORCH_CONV_T[rank](xt, weight, bias, strides, tuple(lo for lo, _ in crops),
                                tuple(lo - hi for lo, hi in crops), groups, dilation)
        return y.movedim(1, -1)
    y = _TORCH_CONV_T[rank](xt, weight, None, strides, 0, 0, groups, dilation)
    y = _torch_pad(y, [(max(-lo, 0), max(-hi, 0)) for lo, hi in crops], "zeros")
    index = tuple(slice(max(lo, 0), y.shape[2 + a] - max(hi, 0)) for a, (lo, hi) in enumerate(crops))
    y = y[(slice(None), slice(None), *index)]
    y = y if bias is None else y + bias.reshape(-1, *([1] * rank))
    return y.movedim(1, -1)


def _conv_transpose_case(x_shape, features, kernel, strides, padding, dilation, groups, seed=0):
    rank = len(kernel)
    x = rand(x_shape, seed)
    w, b = rand((*kernel, x_shape[-1] // groups, features), seed + 1), rand((features,), seed + 2)
    module = ConvTranspose(features, kernel, strides=strides, padding=padding, kernel_dilation=dilation,
                           feature_group_count=groups)
    crops = [transposed_cropping(k, s, p, d) for k, s, p, d in zip(kernel, strides, _per_dim(padding, rank), dilation)]
    _parity(lambda x, w, b: module.apply(_params(w, b), x),
            lambda x, w, b: _torch_conv_transpose(x, w, b, strides, crops, dilation, groups), x, w, b)


# The issue's cases: stride 1, a crop wider than the kernel span at the start.
@pytest.mark.parametrize("k,padding", [(3, (3, 1)), (3, (4, 0)), (4, (5, 1))])
def test_conv_transpose_issue_cases(k, padding):
    _conv_transpose_case((2, 6, 4), 6, (k,), (1,), padding, (1,), 1)


_CONV_T_1D = [(k, s, d, g, p) for k, (s, d, g) in itertools.product([3, 4], [(1, 1, 2), (2, 1, 1), (3, 2, 2)])
              for p in ["VALID", "SAME", 1, (2, 1)]]
# Crops that add zeros (negative), crops wider than the span at either end, and a stride or groups with them.
_CONV_T_1D_EDGES = [(3, 1, 1, 1, p) for p in [(-1, 1), (0, -2), (-2, -1), (5, 0), (6, -2)]] + [
    (3, 2, 1, 2, (4, 0)), (4, 1, 2, 2, (7, 1)), (2, 3, 1, 1, (-1, 3)), (4, 2, 2, 1, (1, -1))]


@pytest.mark.parametrize("k,stride,dilation,groups,padding", _split(_CONV_T_1D, 7) + _split(_CONV_T_1D_EDGES, 3))
def test_conv_transpose_1d(k, stride, dilation, groups, padding):
    _conv_transpose_case((2, 5, 4), 6, (k,), (stride,), padding, (dilation,), groups)


@pytest.mark.parametrize("strides,padding,dilation,groups", _split([
    ((2, 1), ((1, 0), (0, 1)), (1, 2), 2), ((2, 2), "SAME", (1, 1), 1), ((1, 1), ((3, 0), (0, 0)), (1, 1), 1),
    ((1, 3), "VALID", (2, 1), 2), ((3, 2), (1, (2, 1)), (1, 1), 2),
], 3))
def test_conv_transpose_2d(strides, padding, dilation, groups):
    _conv_transpose_case((2, 3, 4, 4), 4, (3, 2), strides, padding, dilation, groups)


# --- MultiScaleConv -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl,padding", [("xla", (6, 1)), ("matmul", (6, 1))] + _split([
    ("xla", "VALID"), ("matmul", "SAME"), ("xla", (5, 5)), ("matmul", "CAUSAL"), ("xla", (2, 0)), ("matmul", "VALID"),
    ("xla", "SAME"), ("matmul", (2, 0)), ("xla", "CAUSAL"), ("matmul", (5, 5)),
], 4))
def test_multiscale_conv_both_impls(impl, padding):
    widths = (2, 3, 5)
    x = rand((2, 9, 4))
    kernels = [rand((w, 4, 3), w) for w in widths]
    biases = [rand((3,), 10 + w) for w in widths]
    bank = MultiScaleConv(widths=widths, features=3, padding=padding, concat=False, impl=impl)

    def ours(x, *p):
        params = {f"conv_w{w}": {"kernel": k, "bias": b} for w, k, b in zip(widths, p[:3], p[3:])}
        return jnp.concatenate(bank.apply({"params": params}, x), axis=1)

    def theirs(x, *p):
        return torch.cat([_torch_conv(x, k, b, (1,), _pairs(padding, (9,), (w,), (1,), (1,)), (1,), 1)
                          for w, k, b in zip(widths, p[:3], p[3:])], dim=1)

    _parity(ours, theirs, x, *kernels, *biases)


# --- windowed pools -------------------------------------------------------------------------------------------

def _torch_pool(kind, rank):
    return getattr(F, f"{kind}_pool{rank}d")


def _torch_valid(fn):
    """Whether torch accepts a pooling configuration (it refuses, e.g., pads wider than half the window)."""
    try:
        fn()
    except RuntimeError:
        return False
    return True


_MAX_1D = list(itertools.product([2, 3], [1, 2], [0, 1], [1, 2], [True, False]))


@pytest.mark.parametrize("window,stride,pad,dilation,ceil_mode", _split(_MAX_1D, 7))
def test_max_pool_1d_with_indices(window, stride, pad, dilation, ceil_mode):
    _max_pool_case((2, 8, 3), (window,), (stride,), (pad,), (dilation,), ceil_mode)


@pytest.mark.parametrize("window,strides,pads,dilation,ceil_mode", _split([
    ((3, 2), (2, 1), (1, 1), (1, 2), True), ((2, 2), (2, 2), (0, 0), (1, 1), False),
    ((3, 3), (3, 2), (1, 0), (2, 1), True), ((2, 3), (1, 2), (1, 1), (1, 1), True),
], 4))
def test_max_pool_2d_with_indices(window, strides, pads, dilation, ceil_mode):
    _max_pool_case((2, 7, 6, 2), window, strides, pads, dilation, ceil_mode)


def _max_pool_case(shape, window, strides, pads, dilation, ceil_mode):
    rank = len(window)
    x = rand(shape)
    x[0, 1] = x[0, 2]  # a tie between neighbours: the first in window order must win on both sides
    pool = _torch_pool("max", rank)
    xt = torch.tensor(x).movedim(-1, 1)
    values_t, indices_t = pool(xt, window, strides, pads, dilation, ceil_mode=ceil_mode, return_indices=True)
    padding = tuple((p, p) for p in pads)
    values, indices = max_pool(x, window, strides, padding, dilation=dilation, ceil_mode=ceil_mode,
                               return_indices=True)
    np.testing.assert_array_equal(np.asarray(indices), _numpy(indices_t.movedim(1, -1)))
    np.testing.assert_array_equal(np.asarray(values), _numpy(values_t.movedim(1, -1)))
    # Both of jaxcnn's forms (the plain one, and the one with indices), side by side on the channel axis.
    kwargs = dict(dilation=dilation, ceil_mode=ceil_mode)
    _parity(lambda x: jnp.concatenate([max_pool(x, window, strides, padding, **kwargs),
                                       max_pool(x, window, strides, padding, **kwargs, return_indices=True)[0]], -1),
            lambda x: torch.cat([pool(x.movedim(-1, 1), window, strides, pads, dilation,
                                      ceil_mode=ceil_mode).movedim(1, -1)] * 2, -1), x)


_AVG_1D = list(itertools.product([2, 3], [1, 2], [0, 1], [True, False], [True, False]))


@pytest.mark.parametrize("window,stride,pad,ceil_mode,count_include_pad", _split(_AVG_1D, 7))
def test_avg_pool_1d(window, stride, pad, ceil_mode, count_include_pad):
    _avg_pool_case((2, 8, 3), (window,), (stride,), (pad,), ceil_mode, count_include_pad)


@pytest.mark.parametrize("window,strides,pads,ceil_mode,count_include_pad", _split([
    ((3, 2), (2, 1), (1, 1), True, True), ((2, 2), (2, 2), (0, 0), False, True), ((2, 3), (1, 2), (1, 1), True, False),
    ((3, 3), (2, 2), (1, 0), True, False),
], 4))
def test_avg_pool_2d(window, strides, pads, ceil_mode, count_include_pad):
    _avg_pool_case((2, 7, 6, 2), window, strides, pads, ceil_mode, count_include_pad)


def _avg_pool_case(shape, window, strides, pads, ceil_mode, count_include_pad):
    pool = _torch_pool("avg", len(window))
    _parity(lambda x: avg_pool(x, window, strides, tuple((p, p) for p in pads), count_include_pad,
                               ceil_mode=ceil_mode),
            lambda x: pool(x.movedim(-1, 1), window, strides, pads, ceil_mode, count_include_pad).movedim(1, -1),
            rand(shape))


@pytest.mark.parametrize("shape,window,strides,pads,output_size", _split([
    ((2, 8, 3), (3,), (1,), (1,), None), ((2, 9, 3), (3,), (2,), (1,), None), ((2, 6, 6, 2), (3, 2), (2, 1), (1, 0), (6, 6)),
    ((2, 8, 3), (2,), (2,), (0,), None), ((2, 9, 3), (2,), (2,), (0,), 9), ((2, 6, 7, 2), (2, 2), (2, 2), (0, 0), (6, 7)),
], 3))
def test_max_unpool(shape, window, strides, pads, output_size):
    rank = len(window)
    x = rand(shape)
    padding = tuple((p, p) for p in pads)
    values, indices = max_pool(x, window, strides, padding, return_indices=True)
    indices_t = torch.tensor(np.asarray(indices, np.int64)).movedim(-1, 1)
    unpool = getattr(F, f"max_unpool{rank}d")
    size = None if output_size is None else (output_size,) * rank if isinstance(output_size, int) else output_size
    _parity(lambda v: max_unpool(v, indices, window, strides, padding, output_size=size),
            lambda v: unpool(v.movedim(-1, 1), indices_t, window, strides, pads, output_size=size).movedim(1, -1),
            np.asarray(values))


# --- adaptive, global, masked and k-max pools -----------------------------------------------------------------

@pytest.mark.parametrize("kind,shape,output_size", _split([(kind, *c) for c in [
    ((2, 7, 3), 3), ((2, 7, 5, 2), (None, 2)), ((2, 7, 3), 10), ((2, 7, 5, 2), (4, None)), ((2, 7, 3), (None,)),
    ((2, 7, 5, 2), (3, 2)), ((2, 7, 3), 1), ((2, 7, 5, 2), 9), ((2, 7, 3), 7),
] for kind in ["max", "avg"]], 5))
def test_adaptive_pools(kind, shape, output_size):
    rank = len(shape) - 2
    ours = adaptive_max_pool if kind == "max" else adaptive_avg_pool
    theirs = getattr(F, f"adaptive_{kind}_pool{rank}d")
    torch_size = output_size[0] if rank == 1 and isinstance(output_size, tuple) else output_size
    if torch_size is None:  # torch's 1-D form takes no None; keeping the size is asking for it
        torch_size = shape[1]
    _parity(lambda x: ours(x, output_size), lambda x: theirs(x.movedim(-1, 1), torch_size).movedim(1, -1),
            rand(shape))


@pytest.mark.parametrize("shape", _split([((2, 4, 5, 3),), ((2, 7, 3),)], 2))
def test_global_pools(shape):
    axes = tuple(range(1, len(shape) - 1))
    x = rand(shape)
    _parity(global_max_pool, lambda x: torch.amax(x, dim=axes), x)
    _parity(global_avg_pool, lambda x: torch.mean(x, dim=axes), x)


def test_masked_pools_over_time():
    x = rand((3, 6, 4))
    mask = sequence_mask(jnp.array([6, 3, 0]), 6)
    m = torch.tensor(np.asarray(mask))[..., None]

    def torch_max(x):
        best = torch.amax(x.masked_fill(~m, -torch.inf), dim=1)
        return torch.where(m.any(dim=1), best, torch.zeros_like(best))

    def torch_mean(x):
        return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)

    _parity(lambda x: masked_max_over_time(x, mask), torch_max, x)
    _parity(lambda x: masked_mean_over_time(x, mask), torch_mean, x)


@pytest.mark.parametrize("k", _split([3, 1, 6], 3))
def test_k_max_pool(k):
    x = rand((3, 6, 4), k)

    def torch_k_max(x):
        picked = torch.sort(torch.topk(x, k, dim=1).indices, dim=1).values  # the k largest, in time order
        return torch.gather(x, 1, picked)

    _parity(lambda x: k_max_pool(x, k), torch_k_max, x)


# --- norms ----------------------------------------------------------------------------------------------------

def _affine(channels):
    return 1.0 + 0.5 * rand((channels,), 7), rand((channels,), 8)


@pytest.mark.parametrize("shape,train", _split([((4, 5, 3), True), ((2, 3, 4, 3), False), ((4, 5, 3), False),
                                                 ((2, 3, 4, 3), True)], 3))
def test_batch_norm(shape, train):
    channels = shape[-1]
    mean, var = rand((channels,), 11), 0.5 + np.abs(rand((channels,), 12))

    def ours(x, scale, bias):
        return BatchNorm(use_running_average=not train).apply(
            {"params": {"scale": scale, "bias": bias}, "batch_stats": {"mean": mean, "var": var}}, x,
            mutable=["batch_stats"])[0]

    def theirs(x, scale, bias):
        y = F.batch_norm(x.movedim(-1, 1), torch.tensor(mean), torch.tensor(var), scale, bias, training=train,
                         eps=1e-5)
        return y.movedim(1, -1)

    _parity(ours, theirs, 2.0 + 3.0 * rand(shape), *_affine(channels))


_NORMS = {
    "layer": (LayerNorm(), lambda x, s, b: F.layer_norm(x, (x.shape[-1],), s, b, eps=1e-6)),
    "instance": (InstanceNorm(),
                 lambda x, s, b: F.instance_norm(x.movedim(-1, 1), weight=s, bias=b, eps=1e-6).movedim(1, -1)),
    "group1": (GroupNorm(num_groups=1), lambda x, s, b: F.group_norm(x.movedim(-1, 1), 1, s, b, 1e-6).movedim(1, -1)),
    "group3": (GroupNorm(num_groups=3), lambda x, s, b: F.group_norm(x.movedim(-1, 1), 3, s, b, 1e-6).movedim(1, -1)),
}


@pytest.mark.parametrize("norm,shape", _split(list(itertools.product(_NORMS, [(2, 3, 4, 3), (4, 5, 3)])), 3))
def test_layer_instance_and_group_norms(norm, shape):
    module, theirs = _NORMS[norm]
    _parity(lambda x, s, b: module.apply({"params": {"scale": s, "bias": b}}, x), theirs, rand(shape),
            *_affine(shape[-1]))


def _torch_masked_norm(x, m, axes, scale, bias, eps):
    count = m.sum(dim=axes, keepdim=True)
    mean = (x * m).sum(dim=axes, keepdim=True) / count
    var = (((x - mean) ** 2) * m).sum(dim=axes, keepdim=True) / count
    return torch.where(m, (x - mean) / torch.sqrt(var + eps) * scale + bias, torch.zeros_like(x))


@pytest.mark.parametrize("kind", _split(["batch", "instance"], 1))
def test_masked_norms(kind):
    x = rand((3, 6, 4))
    mask = sequence_mask(jnp.array([6, 4, 2]), 6)
    m = torch.tensor(np.asarray(mask))[..., None]
    if kind == "batch":
        stats = {"mean": np.zeros(4, np.float32), "var": np.ones(4, np.float32)}
        _parity(lambda x, s, b: MaskedBatchNorm(use_running_average=False).apply(
            {"params": {"scale": s, "bias": b}, "batch_stats": stats}, x, mask, mutable=["batch_stats"])[0],
            lambda x, s, b: _torch_masked_norm(x, m, (0, 1), s, b, 1e-5), x, *_affine(4))
    else:
        _parity(lambda x, s, b: MaskedInstanceNorm().apply({"params": {"scale": s, "bias": b}}, x, mask),
                lambda x, s, b: _torch_masked_norm(x, m, (1,), s, b, 1e-6), x, *_affine(4))


# --- activations ----------------------------------------------------------------------------------------------

_TORCH_ACTIVATIONS = {
    "relu": F.relu, "gelu": lambda x: F.gelu(x, approximate="tanh"), "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "leaky_relu": F.leaky_relu, "elu": F.elu, "selu": F.selu, "swish": F.silu, "silu": F.silu,
    "softplus": F.softplus, "identity": lambda x: x * 1, "linear": lambda x: x * 1,
}


@pytest.mark.parametrize("name", _split(sorted(ACTIVATIONS), 3))
def test_activations(name):
    _parity(ACTIVATIONS[name], _TORCH_ACTIVATIONS[name], 3.0 * rand((4, 7)))


# --- shape arithmetic (torch only; nothing compiles) ----------------------------------------------------------

def test_conv_and_transposed_sizes_match_torch_shapes():
    points = 0
    for n, k, s, d, lo, hi in itertools.product(range(1, 9), range(1, 4), range(1, 4), range(1, 3), range(0, 5),
                                                range(0, 3)):
        x = torch.zeros(1, 1, n)
        span = d * (k - 1) + 1
        if n + lo + hi >= span:
            y = F.conv1d(F.pad(x, (lo, hi)), torch.zeros(1, 1, k), stride=s, dilation=d)
            assert conv_output_size(n, k, s, (lo, hi), d) == y.shape[-1]
            points += 1
        if lo >= hi and lo - hi < max(s, d):
            full = (n - 1) * s + span
            if full - lo - hi >= 1:
                y = F.conv_transpose1d(x, torch.zeros(1, 1, k), stride=s, padding=lo, output_padding=lo - hi,
                                       dilation=d)
                assert transposed_output_size(n, k, s, (lo, hi), d) == y.shape[-1]
                points += 1
    assert points > 1500


def test_pool_output_size_matches_torch_shapes_with_ceil_mode_and_dilation():
    points = 0
    for n, k, s, p, d, ceil_mode in itertools.product(range(1, 13), range(1, 5), range(1, 4), range(0, 3),
                                                      range(1, 3), (False, True)):
        try:
            y = F.max_pool1d(torch.zeros(1, 1, n), k, s, p, d, ceil_mode=ceil_mode)
        except RuntimeError:  # torch refuses pads over half the window, and empty outputs
            continue
        assert pool_output_size(n, k, s, p, d, ceil_mode) == y.shape[-1], (n, k, s, p, d, ceil_mode)
        points += 1
        if d == 1:
            assert F.avg_pool1d(torch.zeros(1, 1, n), k, s, p, ceil_mode).shape[-1] == y.shape[-1]
    assert points > 1000
