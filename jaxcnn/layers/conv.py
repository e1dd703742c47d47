"""Convolutions, channels-last, 1-D (`[batch, length, channels]`) and 2-D (`[batch, height, width, channels]`).

The kernel rank is `len(kernel_size)`; an int kernel size means 1-D. Padding is "VALID", "SAME", "CAUSAL" (1-D),
an int, a (lo, hi) pair (1-D), or one int or pair per spatial dim (see `shapes.explicit_padding`). Every layer
checks its attributes and input shapes and raises a one-line `ConfigError` naming itself, instead of an XLA error.
Output sizes are `shapes.conv_output_size` / `shapes.transposed_output_size` per spatial dim.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.errors import ConfigError
from jaxcnn.layers import bf16_ffi
from jaxcnn.layers._checks import (PADDING_MODES, PaddingLike, canonical_padding, canonical_padding_mode, check_rank,
                                   check_spatial, flag, positive_ints)
from jaxcnn.layers.masking import conv_output_mask
from jaxcnn.layers.regularize import get_activation
from jaxcnn.layers.shapes import _layer_pads, transposed_cropping

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

_default_kernel_init = nn.initializers.lecun_normal()  # Flax's default for Conv and ConvTranspose


def _channels_last(ndim: int) -> lax.ConvDimensionNumbers:
    # [batch, *spatial, channels] inputs and outputs; [*spatial, in, out] kernels.
    spatial = tuple(range(1, ndim - 1))
    return lax.ConvDimensionNumbers((0, ndim - 1, *spatial), (ndim - 1, ndim - 2, *range(ndim - 2)),
                                    (0, ndim - 1, *spatial))


def _hazards(pads: Sequence[tuple[int, int]]) -> bool:
    # XLA:CPU's f32 convolution reads outside its input when a dim is padded negatively at the start and
    # positively at the end (openxla/xla#48713): garbage values, different on every run.
    return any(lo < 0 < hi for lo, hi in pads)


def _xla_would_misread(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                       pads: Sequence[tuple[int, int]], lhs_dilation: Sequence[int],
                       rhs_dilation: Sequence[int]) -> bool:
    """Whether `lax.conv_general_dilated` with these arguments, or one of the two convolutions that JAX's
    transpose rules build for its gradients, would pad a dim negatively before and positively after.

    The gradients' paddings are JAX's (`_conv_general_vjp_lhs_padding` / `_rhs_padding`): for the input,
    (span - 1 - lo, n' + span - 1 - out' - (span - 1 - lo)); for the kernel, (lo, out' - n' + span - 1 - lo),
    with n' the dilated input, out' the stride-dilated output and span the dilated kernel. So the input
    gradient of a `Conv` misreads whenever an explicit lo exceeds `dilation * (kernel - 1)`, and the end of the
    output is not cut off by at least as much.
    """
    lhs, rhs = [], []
    for n, k, s, (lo, hi), ld, d in zip(spatial, kernel, strides, pads, lhs_dilation, rhs_dilation):
        n_dilated, span = (n - 1) * ld + 1, d * (k - 1) + 1
        out_dilated = ((n_dilated + lo + hi - span) // s) * s + 1
        lhs.append((span - 1 - lo, n_dilated + span - 1 - out_dilated - (span - 1 - lo)))
        rhs.append((lo, out_dilated - n_dilated + span - 1 - lo))
    return _hazards(pads) or _hazards(lhs) or _hazards(rhs)


def _pad_spatial(x: Array, pads: Sequence[tuple[int, int]], mode: str = "zeros",
                 dilation: Sequence[int] | None = None) -> Array:
    """x [batch, *spatial, channels] with (lo, hi) positions added on each spatial dim, filled as `mode` says;
    for zeros a negative count removes positions and `dilation` first puts d - 1 zeros between neighbours."""
    if mode == "zeros":
        interior = dilation or (1,) * len(pads)
        return lax.pad(x, jnp.zeros((), x.dtype),
                       ((0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(pads, interior)), (0, 0, 0)))
    return jnp.pad(x, ((0, 0), *pads, (0, 0)), mode=PADDING_MODES[mode])


def _check_mode_pads(owner: str, mode: str, spatial: Sequence[int], pads: Sequence[tuple[int, int]]) -> None:
    """PyTorch's limits: reflect needs pads < n (no edge to mirror otherwise), circular pads <= n (one wrap)."""
    for dim, (n, (lo, hi)) in enumerate(zip(spatial, pads)):
        if (mode == "reflect" and max(lo, hi) >= n) or (mode == "circular" and max(lo, hi) > n):
            limit = "smaller than" if mode == "reflect" else "at most"
            raise ConfigError(f"{owner}.padding_mode: {mode} padding ({lo}, {hi}) along spatial dim {dim} must be "
                              f"{limit} the input size {n}")


class Conv(nn.Conv):
    """Convolution with stride, padding, dilation and groups: a checked `flax.linen.Conv`.

    Parameters are Flax's: `kernel` <param_dtype>[*kernel_size, in_channels / groups, features] and
    `bias` <param_dtype>[features], so checkpoints are interchangeable with `nn.Conv`.

    Attributes:
      features: output channels.
      kernel_size: window per spatial dim, `(k,)` for sequences or `(kh, kw)` for images; an int means `(k,)`.
      strides: int or one per spatial dim (default 1).
      padding: "SAME" (Flax's default; output ceil(n / stride)), "VALID" (none; Kim's n - k + 1), "CAUSAL" (1-D:
        dilation * (k - 1) zeros on the left only), an int p, a (lo, hi) pair (1-D), or one int or pair per dim.
      kernel_dilation: spacing between kernel taps, int or one per dim (default 1).
      feature_group_count: groups; input channels and `features` must both divide by it, and each group of
        `features / groups` outputs sees only its `in_channels / groups` inputs (`groups == in_channels` is a
        depthwise convolution).
      use_bias: add a learned bias (default True).
      dtype: computation dtype (default: promoted from the input and parameters, as in Flax).
      param_dtype: parameter dtype (default float32).
      precision: `lax.Precision` of the convolution.
      kernel_init: Flax's default `lecun_normal()`.
      bias_init: Flax's default zeros.
      padding_mode: what fills the positions `padding` adds, as PyTorch's `padding_mode`: "zeros" (default),
        "circular" (wrap around; pads at most n), "reflect" (mirror without repeating the edge; pads below n)
        or "replicate" (repeat the edge).
    Other `nn.Conv` fields (`input_dilation`, `mask`, ...) pass through unchanged.

    Zero padding runs `flax.linen.Conv` itself, except where an explicit low pad is wider than `dilation *
    (kernel - 1)` in a way that would make XLA:CPU misread memory in the input gradient (see
    `_xla_would_misread`); those pads, and the other padding modes, are added to the input explicitly and the
    convolution is then VALID, which gives the same numbers and the same parameters.
    """

    padding_mode: str = "zeros"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        kernel = positive_ints(self.kernel_size, None, owner, "kernel_size")
        rank = len(kernel)
        # Canonical tuples, so that Flax sees exactly what was validated (e.g. a 1-D (lo, hi) pair).
        object.__setattr__(self, "kernel_size", kernel)
        object.__setattr__(self, "strides", positive_ints(self.strides, rank, owner, "strides"))
        object.__setattr__(self, "kernel_dilation",
                           positive_ints(self.kernel_dilation, rank, owner, "kernel_dilation"))
        object.__setattr__(self, "padding", canonical_padding(self.padding, rank, owner))
        object.__setattr__(self, "padding_mode", canonical_padding_mode(self.padding_mode, owner))
        groups = positive_ints(self.feature_group_count, 1, owner, "feature_group_count")[0]
        if positive_ints(self.features, 1, owner, "features")[0] % groups:
            raise ConfigError(f"{owner}.feature_group_count: {groups} does not divide features {self.features}")
        if self.padding_mode != "zeros" and positive_ints(self.input_dilation, rank, owner, "input_dilation") != (
                1,) * rank:
            raise ConfigError(f"{owner}.padding_mode: {self.padding_mode} padding needs input_dilation 1, got "
                              f"{self.input_dilation!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Convolves the input.

        Args:
          inputs: <float>[batch, *spatial, in_channels], one spatial dim per kernel dim.

        Returns:
          <dtype>[batch, *out_spatial, features], out sizes `conv_output_size(n, k, stride, padding, dilation)`.
        """
        owner = type(self).__name__
        rank = len(self.kernel_size)
        check_rank(inputs, rank, owner)
        if inputs.shape[-1] % self.feature_group_count:
            raise ConfigError(f"{owner}.feature_group_count: {self.feature_group_count} does not divide the "
                              f"input's {inputs.shape[-1]} channels")
        spatial = inputs.shape[1:-1]
        pads = _layer_pads(owner, spatial, self.kernel_size, self.strides, self.padding, self.kernel_dilation)
        input_dilation = positive_ints(self.input_dilation, rank, owner, "input_dilation")
        if self.padding_mode == "zeros" and not _xla_would_misread(spatial, self.kernel_size, self.strides, pads,
                                                                    input_dilation, self.kernel_dilation):
            return super().__call__(inputs)
        _check_mode_pads(owner, self.padding_mode, spatial, pads)
        # Flax's own parameters, in Flax's order, so that init and checkpoints match the path above.
        kernel_shape = (*self.kernel_size, inputs.shape[-1] // self.feature_group_count, self.features)
        if self.mask is not None and self.mask.shape != kernel_shape:
            raise ConfigError(f"{owner}.mask: shape {self.mask.shape} does not match the kernel's {kernel_shape}")
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        if self.mask is not None:
            kernel *= self.mask
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        if self.conv_general_dilated_cls is not None:
            conv = self.conv_general_dilated_cls()
        else:
            conv = self.conv_general_dilated or lax.conv_general_dilated
        x = _pad_spatial(inputs, pads, self.padding_mode, input_dilation)
        y = conv(x, kernel, self.strides, "VALID", rhs_dilation=self.kernel_dilation,
                 dimension_numbers=_channels_last(x.ndim), feature_group_count=self.feature_group_count,
                 precision=self.precision)
        return y if bias is None else y + bias


class ConvTranspose(nn.Module):
    """Transposed (fractionally strided) convolution, for upsampling.

    Defined directly as a scatter: input position i adds `x[i] @ kernel[j]` to output position
    `i * stride + j * dilation - lo`, then (lo, hi) positions are cropped (`shapes.transposed_cropping`). This is
    PyTorch's `ConvTranspose` and, with the kernel's feature axes swapped, the adjoint (gradient) of `Conv` with the
    same stride, dilation, padding and groups. Written here because `flax.linen.ConvTranspose` follows
    `lax.conv_transpose`: its VALID output is n * stride + max(k - stride, 0) and its explicit padding pads the
    dilated input rather than cropping, which matches neither.

    Attributes:
      features: output channels.
      kernel_size: window per spatial dim; an int means `(k,)`.
      strides: upsampling factor, int or one per dim (default 1).
      padding: "SAME" (default; output n * stride), "VALID" (full scatter: (n - 1) * stride + dilation * (k - 1)
        + 1), an int p or (lo, hi) pair(s) cropped from the full output; negative values add zeros (PyTorch's
        `output_padding=q` is `(p, p - q)`).
      kernel_dilation: int or one per dim (default 1).
      feature_group_count: groups (default 1), as PyTorch's `groups`: input and output channels split into that
        many groups, and output group g is scattered from input group g only. Both channel counts must divide.
      use_bias: add a learned bias (default True).
      dtype: computation dtype (default: promoted from input and parameters).
      param_dtype: parameter dtype (default float32).
      precision: `lax.Precision` of the convolution.
      kernel_init: Flax's default `lecun_normal()`, for `kernel` [*kernel_size, in_channels / groups, features]
        (PyTorch's weight [in_channels, features / groups, *kernel_size] is
        `kernel[j, c, g * features / groups + o] = weight[g * in_channels / groups + c, o, j]`).
      bias_init: zeros, for `bias` [features].
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    kernel_dilation: int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = nn.initializers.zeros_init()

    def __post_init__(self) -> None:
        owner = type(self).__name__
        kernel = positive_ints(self.kernel_size, None, owner, "kernel_size")
        rank = len(kernel)
        object.__setattr__(self, "kernel_size", kernel)
        object.__setattr__(self, "strides", positive_ints(self.strides, rank, owner, "strides"))
        object.__setattr__(self, "kernel_dilation",
                           positive_ints(self.kernel_dilation, rank, owner, "kernel_dilation"))
        object.__setattr__(self, "padding",
                           canonical_padding(self.padding, rank, owner, causal=False, negative=True))
        groups = positive_ints(self.feature_group_count, 1, owner, "feature_group_count")[0]
        if positive_ints(self.features, 1, owner, "features")[0] % groups:
            raise ConfigError(f"{owner}.feature_group_count: {groups} does not divide features {self.features}")
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Upsamples the input.

        Args:
          inputs: <float>[batch, *spatial, in_channels], one spatial dim per kernel dim.

        Returns:
          <dtype>[batch, *out_spatial, features], out sizes `transposed_output_size(n, k, stride, padding,
          dilation)`.
        """
        owner = type(self).__name__
        rank = len(self.kernel_size)
        check_rank(inputs, rank, owner)
        groups = self.feature_group_count
        if inputs.shape[-1] % groups:
            raise ConfigError(f"{owner}.feature_group_count: {groups} does not divide the input's "
                              f"{inputs.shape[-1]} channels")
        pads = []
        for dim, (n, k, s, d) in enumerate(zip(inputs.shape[1:-1], self.kernel_size, self.strides,
                                               self.kernel_dilation)):
            lo, hi = transposed_cropping(k, s, self.padding if isinstance(self.padding, str) else self.padding[dim],
                                         d)
            if (n - 1) * s + d * (k - 1) + 1 - lo - hi < 1:
                raise ConfigError(f"{owner}.padding: cropping ({lo}, {hi}) leaves no output from input size {n} "
                                  f"along spatial dim {dim}")
            # A stride-1 correlation of the stride-dilated input with the flipped kernel, padded by the kernel
            # span minus the crop, is exactly the scatter above (negative padding crops).
            pads.append((d * (k - 1) - lo, d * (k - 1) - hi))
        kernel = self.param("kernel", self.kernel_init,
                            (*self.kernel_size, inputs.shape[-1] // groups, self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        flipped = jnp.flip(kernel, axis=tuple(range(rank)))
        common = dict(rhs_dilation=self.kernel_dilation, dimension_numbers=_channels_last(inputs.ndim),
                      feature_group_count=groups, precision=self.precision)
        if _xla_would_misread(inputs.shape[1:-1], self.kernel_size, (1,) * rank, pads, self.strides,
                              self.kernel_dilation):
            # A crop wider than the kernel span at the start (or added zeros at the start with a crop at the
            # end, for the input gradient) is a padding XLA:CPU misreads; dilate, pad and crop the input here
            # instead, then convolve VALID.
            y = lax.conv_general_dilated(_pad_spatial(inputs, pads, dilation=self.strides), flipped, (1,) * rank,
                                         "VALID", **common)
        else:
            y = lax.conv_general_dilated(inputs, flipped, (1,) * rank, pads, lhs_dilation=self.strides, **common)
        return y if bias is None else y + bias


class PointwiseConv(nn.Module):
    """1x1 convolution: mixes channels at each position independently; any number of spatial dims.

    The kernel is stored as <param_dtype>[1, ..., 1, in_channels, features] (one 1 per spatial dim), the shape a
    `Conv` with kernel size 1 would have, so the two are checkpoint-compatible.

    Attributes:
      features: output channels.
      use_bias: add a learned bias (default True).
      dtype: computation dtype (default: promoted from input and parameters).
      param_dtype: parameter dtype (default float32).
      precision: `lax.Precision` of the matmul.
      kernel_init: Flax's default `lecun_normal()`.
      bias_init: zeros.
    """

    features: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Args: inputs <float>[batch, *spatial, in_channels] (at least one spatial dim).

        Returns:
          <dtype>[batch, *spatial, features].
        """
        owner = type(self).__name__
        positive_ints(self.features, 1, owner, "features")
        check_spatial(inputs, owner)
        in_channels = inputs.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (1,) * (inputs.ndim - 2) + (in_channels, self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = lax.dot_general(inputs, kernel.reshape(in_channels, self.features),
                            (((inputs.ndim - 1,), (0,)), ((), ())), precision=self.precision)
        return y if bias is None else y + bias


class DepthwiseSeparableConv(nn.Module):
    """Depthwise convolution (one filter per input channel) followed by a pointwise 1x1 convolution.

    Submodules: `depthwise`, a `Conv` with `feature_group_count = in_channels`, `in_channels * depth_multiplier`
    outputs and (by default) no bias; `pointwise`, a `PointwiseConv` with the bias. Parameters: k * in * m +
    in * m * features (+ features, + in * m with `depthwise_bias`), against k * in * features for a full `Conv`.

    Attributes:
      features: output channels.
      kernel_size: depthwise window per spatial dim; an int means `(k,)`.
      strides, padding, kernel_dilation, padding_mode: of the depthwise convolution, as in `Conv` (padding
        default "SAME", padding_mode default "zeros").
      depth_multiplier: depthwise outputs per input channel (default 1).
      use_bias: bias on the pointwise convolution (default True).
      depthwise_bias: a bias on the depthwise convolution too, `depthwise/bias` [in_channels * depth_multiplier]
        (default False), as a PyTorch port of `Conv2d(groups=in_channels)` with its default `bias=True` has.
      dtype, param_dtype, precision: as in `Conv`.
      kernel_init: for both kernels (Flax's default `lecun_normal()`).
      bias_init: zeros.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    kernel_dilation: int | Sequence[int] = 1
    depth_multiplier: int = 1
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = nn.initializers.zeros_init()
    padding_mode: str = "zeros"
    depthwise_bias: bool = False

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Args: inputs <float>[batch, *spatial, in_channels].

        Returns:
          <dtype>[batch, *out_spatial, features], out sizes as `Conv` with the same kernel, stride and padding.
        """
        owner = type(self).__name__
        multiplier = positive_ints(self.depth_multiplier, 1, owner, "depth_multiplier")[0]
        depthwise_bias = flag(self.depthwise_bias, owner, "depthwise_bias")
        padding_mode = canonical_padding_mode(self.padding_mode, owner)
        in_channels = inputs.shape[-1]
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision,
                      kernel_init=self.kernel_init)
        y = Conv(in_channels * multiplier, self.kernel_size, strides=self.strides, padding=self.padding,
                 kernel_dilation=self.kernel_dilation, feature_group_count=in_channels, use_bias=depthwise_bias,
                 bias_init=self.bias_init, padding_mode=padding_mode, name="depthwise", **common)(inputs)
        return PointwiseConv(self.features, use_bias=self.use_bias, bias_init=self.bias_init, name="pointwise",
                             **common)(y)


class MultiScaleConv(nn.Module):
    """A bank of parallel 1-D convolutions of different widths over the same sequence (Kim 2014: 3/4/5 x 100).

    Each width w is its own `Conv` named `conv_w{w}` (stable parameter paths: `conv_w3/kernel`
    [3, in_channels, features]). Each branch is convolved, passed through `activation`, then through `pool` if
    given, and the branches are concatenated on the channel axis in `widths` order. With VALID padding the widths
    give different lengths (n - w + 1), so either pool each branch to a fixed size or set `concat=False`. Kim's
    layer is

        MultiScaleConv(widths=(3, 4, 5), features=100, activation="relu", pool=masked_max_over_time)(x, mask)

    which gives [batch, 300]: with a `mask`, `pool(y, branch_mask)` gets each branch's own output mask
    (`conv_output_mask`: an output is real iff its window touches a real token); without one, `pool(y)`.

    Attributes:
      widths: kernel widths, distinct positive ints (default (3, 4, 5)).
      features: feature maps per width (default 100).
      padding: of every branch, as in `Conv` (default "VALID", as Kim).
      activation: applied per branch before pooling: a name for `get_activation`, a callable, or None.
      pool: per-branch reduction, `pool(y)` or `pool(y, mask)` with y [batch, length_w, features]; e.g.
        `masked_max_over_time`, `global_max_pool`, `functools.partial(k_max_pool, k=2)`.
      concat: concatenate the branches (default True); False returns the list.
      use_bias: as in `Conv` (default True).
      dtype, param_dtype, precision: as in `Conv`.
      kernel_init: Glorot-uniform by default (Kim's init; the other convolutions keep Flax's lecun_normal).
      bias_init: zeros.
      impl: "xla" (one `lax.conv` per width), "matmul" (one matrix multiply of the input against every width's
        taps, then shifted sums: the same numbers, to float rounding, and the same parameters), or "auto":
        matmul on CPU, xla elsewhere. Why: XLA's CPU convolution inside a `lax.scan`/`while` loop (the trainer
        runs many steps per dispatch that way) measured ~15x slower than outside one, while the matmul form is
        equally fast in both (scripts/benchmark.py, "conv bank").
    """

    widths: Sequence[int] = (3, 4, 5)
    features: int = 100
    padding: PaddingLike = "VALID"
    activation: str | Callable[[Array], Array] | None = None
    pool: Callable[..., Array] | None = None
    concat: bool = True
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = nn.initializers.glorot_uniform()
    bias_init: Initializer = nn.initializers.zeros_init()
    impl: str = "auto"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.impl not in ("auto", "xla", "matmul"):
            raise ConfigError(f"{owner}.impl: {self.impl!r} is not one of auto, xla, matmul")
        widths = positive_ints(self.widths, None, owner, "widths")
        if len(set(widths)) != len(widths):
            raise ConfigError(f"{owner}.widths: widths must be distinct (each names its conv_w<k>), got {widths}")
        object.__setattr__(self, "widths", widths)
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: Array, mask: Array | None = None, *, projected: bool = False
                 ) -> Array | list[Array]:
        """Applies every branch.

        Args:
          inputs: <float>[batch, length, in_channels]; with `projected`, <float>[batch, length, sum(widths) *
            features]: the input already multiplied by `bank_taps` of this layer's kernels (see `bank_taps`).
          mask: optional <bool>[batch, length], True at real tokens; requires `pool`, which then gets the mask of
            each branch's output.
          projected: inputs are projected (needs existing parameters; the matmul form is then the only one).

        Returns:
          With `concat`: <dtype>[batch, ..., features * len(widths)], where `...` is what `pool` leaves (nothing
          for max-over-time) or the common length. Otherwise the list of branch outputs, in `widths` order.
        """
        owner = type(self).__name__
        if mask is not None and self.pool is None:
            raise ConfigError(f"{owner}: a mask was given but no pool to use it; set pool= (e.g. "
                              f"masked_max_over_time) or drop the mask")
        activation = get_activation(self.activation) if isinstance(self.activation, str) else self.activation
        impl = self.impl
        if impl == "auto":
            impl = "matmul" if jax.default_backend() == "cpu" else "xla"
        if projected:
            impl = "matmul"
        branches = self._matmul_branches(inputs, projected) if impl == "matmul" else [
            Conv(self.features, (width,), padding=self.padding, use_bias=self.use_bias, dtype=self.dtype,
                 param_dtype=self.param_dtype, precision=self.precision, kernel_init=self.kernel_init,
                 bias_init=self.bias_init, name=f"conv_w{width}")(inputs) for width in self.widths]
        outputs = []
        for width, y in zip(self.widths, branches):
            if activation is not None:
                y = activation(y)
            if self.pool is not None:
                y = self.pool(y) if mask is None else self.pool(y, conv_output_mask(mask, width,
                                                                                    padding=self.padding))
            outputs.append(y)
        if not self.concat:
            return outputs
        shapes = [y.shape[:-1] for y in outputs]
        if len(set(shapes)) > 1:
            raise ConfigError(f"{owner}: widths {self.widths} with padding {self.padding!r} give branch shapes "
                              f"{shapes} that cannot be concatenated; set pool= or concat=False")
        return jnp.concatenate(outputs, axis=-1)

    def _matmul_branches(self, inputs: Array, projected: bool = False) -> list[Array]:
        """Every width's convolution from one matmul: y = x @ [taps of all widths], then, for width k,
        out[t] = sum_j y[t + j, tap j] over the zero-padded time axis (padded y rows are x's zero rows)."""
        owner = type(self).__name__
        check_rank(inputs, 1, owner)
        batch, length, channels = inputs.shape
        if projected:
            want = sum(self.widths) * self.features
            stored = self.variables.get("params", {}).get(f"conv_w{self.widths[0]}")
            if channels != want or stored is None:
                raise ConfigError(f"{owner}: projected inputs need this layer's parameters and {want} channels "
                                  f"(sum(widths) * features), got {channels}")
            channels = stored["kernel"].shape[1]  # the kernels' own input size, which projected inputs hide
        params = [_BankParams(width, channels, self.features, self.use_bias, self.param_dtype, self.kernel_init,
                              self.bias_init, name=f"conv_w{width}")() for width in self.widths]
        dtype = self.dtype or jnp.result_type(inputs, *(k for k, _ in params))
        # 16-bit operands multiply into float32 sums (mixed precision): the tap sums, the bias and what follows
        # are float32.
        mixed = accumulates_in_float32(dtype)
        if projected:
            y = inputs.astype(jnp.float32 if mixed else dtype)  # a row lookup: nothing to gain from rounding it
        elif mixed:
            y = mixed_matmul(inputs, bank_taps([k for k, _ in params]), dtype)
        else:
            taps = bank_taps([k for k, _ in params])
            y = jnp.einsum("blc,cf->blf", inputs.astype(dtype), taps.astype(dtype), precision=self.precision)
        dtype = y.dtype
        padding = canonical_padding(self.padding, 1, owner)
        pads = tuple((int(lo), int(hi)) for width in self.widths
                     for ((lo, hi),) in [_layer_pads(owner, (length,), (width,), (1,), padding, (1,))])
        sums = shifted_tap_sums(y, tuple(self.widths), self.features, pads)
        return [out if bias is None else out + bias.astype(dtype) for out, (_, bias) in zip(sums, params)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def shifted_tap_sums(y: Array, widths: tuple[int, ...], features: int,
                     pads: tuple[tuple[int, int], ...]) -> list[Array]:
    """Each width's convolution from the taps' products: out_k[t] = sum_j y_k[t + j - lo_k, tap j], zero outside.

    Args:
      y: <float>[batch, length, sum(widths) * features], an input times `bank_taps` (width-major, then tap,
        then feature).
      widths, features: of the bank. pads: (lo, hi) per width, as the layer's padding resolves.

    Returns:
      Per width k, <float>[batch, length + lo + hi - k + 1, features].

    The gradient is written by hand: autodiff transposes each tap's slice of y into a pad to the full
    [batch, length, sum(widths) * features] and adds those up (three full-size tensors, plus a transposed copy,
    per step), where the transpose is one shifted copy of each output gradient per tap, written once. Measured
    on Kim's MR step (2 CPU cores): about 1.2x the training throughput of the autodiff version.
    """
    batch, length, _ = y.shape
    outs, offset = [], 0
    for width, (lo, hi) in zip(widths, pads):
        yk = y[..., offset:offset + width * features].reshape(batch, length, width, features)
        offset += width * features
        yk = jnp.pad(yk, ((0, 0), (lo, hi), (0, 0), (0, 0)))
        out_len = length + lo + hi - width + 1
        outs.append(sum(yk[:, j:j + out_len, j] for j in range(width)))
    return outs


def _shifted_tap_sums_fwd(y, widths, features, pads):
    # No residual: the transpose is linear and needs no values of y.
    return shifted_tap_sums(y, widths, features, pads), None


def _shifted_tap_sums_bwd(widths, features, pads, _, grads):
    taps = []
    for width, (lo, hi), g in zip(widths, pads, grads):
        out_len = g.shape[1]
        length = out_len - lo - hi + width - 1
        # dy[:, s, tap j] = g[:, s + lo - j]: g shifted right by j - lo, cut or zero-filled to the length.
        zero = jnp.zeros((), g.dtype)
        taps += [lax.pad(g, zero, ((0, 0, 0), (j - lo, length - (j - lo) - out_len, 0), (0, 0, 0)))
                 for j in range(width)]
    # One concatenate of every (width, tap) block, in bank_taps' column order, so XLA writes dy in one pass.
    return (jnp.concatenate(taps, axis=-1),)


shifted_tap_sums.defvjp(_shifted_tap_sums_fwd, _shifted_tap_sums_bwd)


def accumulates_in_float32(dtype: Any) -> bool:
    """Whether a computation dtype is a 16-bit float, whose products the bank and Kim's head sum in float32."""
    return dtype is not None and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def mixed_matmul(x: Array, w: Array, dtype: Any = jnp.bfloat16) -> Array:
    """<float32>[..., n] = x <float>[..., k] @ w <float>[k, n], multiplied in `dtype` (a 16-bit float) and summed
    in float32, and so is the gradient: the float32 cotangent is rounded to `dtype` and both of the backward
    pass's products (the input's and the weight's gradients) multiply in `dtype` and sum in float32. (Autodiff
    of `preferred_element_type` would multiply the float32 cotangent by the 16-bit operand, which XLA promotes:
    a float32 backward pass.) The gradients have x's and w's own dtypes.

    bfloat16 products take `bf16_ffi.route()`: XLA's dot, or on a CPU with AMX jaxcnn's FFI kernel."""
    dtype = jnp.dtype(dtype)
    use_ffi = dtype == jnp.dtype(jnp.bfloat16) and bf16_ffi.route().ffi
    return _mixed_matmul(x, w, dtype, jnp.dtype(x.dtype), jnp.dtype(w.dtype), use_ffi)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _mixed_matmul(x: Array, w: Array, dtype, x_dtype, w_dtype, use_ffi) -> Array:
    return _mixed_matmul_fwd(x, w, dtype, x_dtype, w_dtype, use_ffi)[0]


def _mixed_matmul_fwd(x, w, dtype, x_dtype, w_dtype, use_ffi):
    x16, w16 = x.astype(dtype), w.astype(dtype)
    if not use_ffi:
        return jnp.einsum("...k,kn->...n", x16, w16, preferred_element_type=jnp.float32), (x16, w16)
    y = bf16_ffi.matmul(x16.reshape(-1, x16.shape[-1]), w16)
    return y.reshape(x.shape[:-1] + (w.shape[-1],)), (x16, w16)


def _mixed_matmul_bwd(dtype, x_dtype, w_dtype, use_ffi, residuals, g):
    x16, w16 = residuals
    g16 = g.astype(dtype)
    x2, g2 = x16.reshape(-1, x16.shape[-1]), g16.reshape(-1, g16.shape[-1])
    if use_ffi:
        dx = bf16_ffi.matmul(g2, w16, transpose_b=True).reshape(x16.shape)
        dw = bf16_ffi.matmul(x2, g2, transpose_a=True)
    else:
        dx = jnp.einsum("...n,kn->...k", g16, w16, preferred_element_type=jnp.float32)
        dw = jnp.einsum("mk,mn->kn", x2, g2, preferred_element_type=jnp.float32)
    return dx.astype(x_dtype), dw.astype(w_dtype)


_mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


def bank_taps(kernels: Sequence[Array]) -> Array:
    """<float>[in_channels, sum(widths) * features]: the kernels <float>[width, in_channels, features] of a
    `MultiScaleConv`, as one matrix whose columns are every width's taps (width-major, then tap, then feature).

    `x @ bank_taps(...)` is what the layer computes first, so a lookup table T (rows: vectors) can be folded
    into it ahead of time, `(T @ taps)[ids] == T[ids] @ taps`, and passed with `projected=True`.
    """
    return jnp.concatenate([jnp.transpose(k, (1, 0, 2)).reshape(k.shape[1], -1) for k in kernels], axis=1)


class _BankParams(nn.Module):
    """The parameters of one `MultiScaleConv` width, shaped and named as `Conv`'s (kernel [k, in, out], bias)."""

    width: int
    in_channels: int
    features: int
    use_bias: bool
    param_dtype: Dtype
    kernel_init: Initializer
    bias_init: Initializer

    @nn.compact
    def __call__(self) -> tuple[Array, Array | None]:
        kernel = self.param("kernel", self.kernel_init, (self.width, self.in_channels, self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        return kernel, bias
