"""Shape arithmetic for convolutions and pooling, per spatial dim, and parameter counting.

Kim's `m = n - k + 1` (a VALID convolution of width k over n tokens) generalises to

    out = floor((n + lo + hi - span) / stride) + 1,    span = dilation * (kernel - 1) + 1,

where (lo, hi) is the padding added before and after (`explicit_padding`). Padding is written as in the layers:
"VALID" (0, 0); "SAME" (out = ceil(n / stride), the total split with the extra position at the end, as XLA does);
"CAUSAL" (span - 1 on the left only); an int p for (p, p); or a (lo, hi) pair. The layers call these same
functions, so what they print here is what the layers produce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxcnn.errors import ConfigError
from jaxcnn.layers._checks import Padding, PaddingLike, Pair, canonical_padding, flag, per_dim, positive_ints


class ReceptiveField(NamedTuple):
    """Receptive field of one output position of a stack of layers, in input positions.

    Attributes:
      size: extent, in input positions, of what one output position sees (a dilation after a stride can leave
        unseen holes inside it).
      jump: how far apart, in input positions, two neighbouring output positions are (the product of strides).
    """

    size: int
    jump: int


def _int(value: int, owner: str, attr: str) -> int:
    return positive_ints(value, 1, owner, attr)[0]


def _span(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


def _pads(n: int, kernel: int, stride: int, padding: str | Pair, dilation: int) -> Pair:
    span = _span(kernel, dilation)
    if padding == "VALID":
        return (0, 0)
    if padding == "CAUSAL":
        return (span - 1, 0)
    if padding == "SAME":
        total = max((-(-n // stride) - 1) * stride + span - n, 0)
        return (total // 2, total - total // 2)
    return padding


def _checked(owner: str, padding: PaddingLike, transposed: bool = False, **sizes: int) -> tuple:
    """Validates one dim's sizes (all positive ints) and padding, naming `owner` in any error."""
    padding = per_dim(canonical_padding(padding, 1, owner, causal=not transposed, negative=transposed), 1)[0]
    return (*(_int(value, owner, name) for name, value in sizes.items()), padding)


def explicit_padding(n: int, kernel: int, stride: int = 1, padding: PaddingLike = "VALID",
                     dilation: int = 1) -> Pair:
    """The (lo, hi) zeros a convolution or pooling window adds to an input of size `n` along one spatial dim.

    Args:
      n: input size along the dim.
      kernel: window size along the dim.
      stride: step between windows.
      padding: "VALID", "SAME", "CAUSAL", an int p, or a (lo, hi) pair.
      dilation: spacing between kernel taps.

    Returns:
      (lo, hi), the positions added before and after.
    """
    n, kernel, stride, dilation, padding = _checked("explicit_padding", padding, n=n, kernel=kernel, stride=stride,
                                                    dilation=dilation)
    return _pads(n, kernel, stride, padding, dilation)


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: PaddingLike = "VALID", dilation: int = 1) -> int:
    """Output size of a convolution along one spatial dim (`Conv`, the depthwise half of `DepthwiseSeparableConv`,
    `MultiScaleConv`, `conv_output_mask`).

    Args: as `explicit_padding`.

    Returns:
      floor((n + lo + hi - dilation * (kernel - 1) - 1) / stride) + 1.

    Raises:
      ConfigError: the padded input is shorter than the dilated kernel, so the output would be empty.
    """
    return _conv_size("conv_output_size", n, kernel, stride, padding, dilation)


def pool_output_size(n: int, window: int, stride: int | None = None, padding: PaddingLike = "VALID",
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output size of `max_pool`/`avg_pool` along one spatial dim, as PyTorch computes it.

    Args:
      n, padding: as `explicit_padding`.
      window: window size along the dim.
      stride: step between windows; default the window, as in the pools.
      dilation: spacing between window taps (PyTorch's max pool `dilation`).
      ceil_mode: round the division up, so a last, partial window covers what floor would drop (PyTorch's
        `ceil_mode`); that window must still start inside the input or its left padding, else it is dropped.

    Returns:
      floor_or_ceil((n + lo + hi - dilation * (window - 1) - 1) / stride) + 1, less 1 when ceil mode's last
      window would start at or after n + lo.
    """
    owner = "pool_output_size"
    return _conv_size(owner, n, window, window if stride is None else stride, padding, dilation,
                      flag(ceil_mode, owner, "ceil_mode"))


def _conv_size(owner: str, n: int, kernel: int, stride: int, padding: PaddingLike, dilation: int,
               ceil_mode: bool = False) -> int:
    n, kernel, stride, dilation, padding = _checked(owner, padding, n=n, kernel=kernel, stride=stride,
                                                    dilation=dilation)
    lo, hi = _pads(n, kernel, stride, padding, dilation)
    span = _span(kernel, dilation)
    extra = _ceil_extra(n, kernel, stride, (lo, hi), dilation) if ceil_mode else 0
    if n + lo + hi + extra < span:
        raise ConfigError(f"{owner}: input size {n} padded by ({lo}, {hi}) is shorter than the kernel span {span}; "
                          f"the output would be empty (pad the input to at least {span - lo - hi})")
    return _ceil_out(n, kernel, stride, (lo, hi), dilation) if ceil_mode else (n + lo + hi - span) // stride + 1


def _ceil_out(n: int, kernel: int, stride: int, pads: Pair, dilation: int) -> int:
    """PyTorch's `pooling_output_shape_pad_lr` in ceil mode: ceil((n + lo + hi - span) / stride) + 1, less one
    when the last window would start at or after n + lo (in the right padding). Within PyTorch's own limits
    (symmetric padding of at most half the window) that only drops a window ceil added; with a wider right
    padding it can also drop a floor window made of padding alone, as PyTorch's formula does."""
    lo, hi = pads
    out = -(-(n + lo + hi - _span(kernel, dilation)) // stride) + 1
    return out - 1 if (out - 1) * stride >= n + lo else out


def _ceil_extra(n: int, kernel: int, stride: int, pads: Pair, dilation: int) -> int:
    """Positions that PyTorch's `ceil_mode` adds after the hi padding, for one more, partial, window (0 when the
    windows already fit exactly, or when that window would start in the right padding; see `_ceil_out`). An
    input shorter than the window by less than a stride thus still gets one window."""
    lo, hi = pads
    span = _span(kernel, dilation)
    out = _ceil_out(n, kernel, stride, pads, dilation)
    return max((out - 1) * stride + span - (n + lo + hi), 0)


def transposed_cropping(kernel: int, stride: int = 1, padding: PaddingLike = "VALID", dilation: int = 1) -> Pair:
    """The (lo, hi) positions `ConvTranspose` crops from the full scattered output along one spatial dim.

    "VALID" crops nothing; "SAME" crops span - stride in total (more at the end), making the output n * stride and
    the layer the adjoint of a SAME `Conv`; an int p or a pair crops like PyTorch's `padding`, and a negative value
    adds zeros instead (PyTorch's `output_padding=q` is `(p, p - q)`).
    """
    return _crops("transposed_cropping", kernel, stride, padding, dilation)


def _crops(owner: str, kernel: int, stride: int, padding: PaddingLike, dilation: int) -> Pair:
    kernel, stride, dilation, padding = _checked(owner, padding, True, kernel=kernel, stride=stride,
                                                 dilation=dilation)
    if padding == "VALID":
        return (0, 0)
    if padding == "SAME":
        total = _span(kernel, dilation) - stride
        lo = max(total, 0) // 2
        return (lo, total - lo)
    return padding


def transposed_output_size(n: int, kernel: int, stride: int = 1, padding: PaddingLike = "VALID",
                           dilation: int = 1) -> int:
    """Output size of `ConvTranspose` along one spatial dim: (n - 1) * stride + dilation * (kernel - 1) + 1 - lo - hi,
    with (lo, hi) from `transposed_cropping`. VALID gives the full scatter, SAME gives n * stride.

    Raises:
      ConfigError: the cropping leaves no output.
    """
    owner = "transposed_output_size"
    n = _int(n, owner, "n")
    lo, hi = _crops(owner, kernel, stride, padding, dilation)
    out = (n - 1) * stride + _span(kernel, dilation) - lo - hi
    if out < 1:
        raise ConfigError(f"{owner}: cropping ({lo}, {hi}) leaves no output from input size {n}")
    return out


def receptive_field(layers: Sequence[Sequence[int]]) -> ReceptiveField:
    """Receptive field of a stack of convolutions and pools, input first.

    Args:
      layers: one (kernel, stride, dilation) or (kernel, stride) per layer; a pool is (window, stride).

    Returns:
      `ReceptiveField(size, jump)`: each layer widens the field by (kernel - 1) * dilation * jump, then multiplies
      the jump by its stride. Kim's bank (3/4/5 over tokens) has sizes 3, 4 and 5, jump 1.
    """
    size, jump = 1, 1
    for i, layer in enumerate(layers):
        if not isinstance(layer, Sequence) or len(layer) not in (2, 3):
            raise ConfigError(f"receptive_field: layer {i} must be (kernel, stride[, dilation]), got {layer!r}")
        kernel, stride, dilation = positive_ints(tuple(layer) + (1,) * (3 - len(layer)), 3, "receptive_field",
                                                 f"layers[{i}]")
        size += (kernel - 1) * dilation * jump
        jump *= stride
    return ReceptiveField(size, jump)


def conv_param_count(in_channels: int, out_channels: int, kernel: int | Sequence[int], groups: int = 1,
                     bias: bool = True) -> int:
    """Parameters of a `Conv`: prod(kernel) * (in_channels / groups) * out_channels weights, plus out_channels biases.

    Grouping divides the weights by `groups`, which is where depthwise convolutions save their parameters.
    """
    owner = "conv_param_count"
    in_channels, out_channels, groups = (_int(v, owner, a) for v, a in
                                         ((in_channels, "in_channels"), (out_channels, "out_channels"),
                                          (groups, "groups")))
    kernel = positive_ints(kernel, None, owner, "kernel")
    if in_channels % groups or out_channels % groups:
        raise ConfigError(f"{owner}.groups: {groups} must divide in_channels {in_channels} and "
                          f"out_channels {out_channels}")
    return math.prod(kernel) * (in_channels // groups) * out_channels + (out_channels if bias else 0)


def count_params(tree: Any) -> int:
    """Total number of scalars in a pytree of arrays (pass `variables["params"]` to count only trainable ones)."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def _layer_pads(owner: str, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                padding: Padding, dilation: Sequence[int]) -> tuple[Pair, ...]:
    """Explicit (lo, hi) per spatial dim for a layer's input, raising a one-line error naming the layer when an
    input is too short for its kernel (the classic "sentence shorter than the widest filter")."""
    pads = []
    for dim, (n, k, s, p, d) in enumerate(zip(spatial, kernel, strides, per_dim(padding, len(kernel)), dilation)):
        lo, hi = _pads(n, k, s, p, d)
        if n + lo + hi < _span(k, d):
            raise ConfigError(f"{owner}: input size {n} along spatial dim {dim} is shorter than the kernel span "
                              f"{_span(k, d)} with padding {p}; pad inputs to at least {_span(k, d) - lo - hi}")
        pads.append((lo, hi))
    return tuple(pads)


def _pool_pads(owner: str, spatial: Sequence[int], window: Sequence[int], strides: Sequence[int], padding: Padding,
               dilation: Sequence[int], ceil_mode: bool) -> tuple[tuple[int, int, int], ...]:
    """(lo, hi, extra) per spatial dim for a pool: its padding, checked as `_layer_pads` does, and the positions
    `ceil_mode` adds after hi (0 without it). Padding and extra differ for an average: PyTorch counts padding
    in the divisor (`count_include_pad`) but never the extra positions."""
    if not ceil_mode:
        return tuple((lo, hi, 0) for lo, hi in _layer_pads(owner, spatial, window, strides, padding, dilation))
    out = []
    for dim, (n, k, s, p, d) in enumerate(zip(spatial, window, strides, per_dim(padding, len(window)), dilation)):
        lo, hi = _pads(n, k, s, p, d)
        extra = _ceil_extra(n, k, s, (lo, hi), d)
        if n + lo + hi + extra < _span(k, d):
            raise ConfigError(f"{owner}: input size {n} along spatial dim {dim} is shorter than the kernel span "
                              f"{_span(k, d)} with padding {p}, even in ceil mode; pad inputs to at least "
                              f"{_span(k, d) - lo - hi - s + 1}")
        out.append((lo, hi, extra))
    return tuple(out)
