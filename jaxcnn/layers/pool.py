"""Pooling: plain functions without parameters, channels-last.

Windowed pools take `[batch, *spatial, channels]` with one spatial dim per window dim (an int window means 1-D);
unlike `flax.linen.max_pool`, `strides` defaults to the window, as in PyTorch and Keras. The `*_over_time` pools
and `k_max_pool` take `[batch, length, channels]` and a `<bool>[batch, length]` mask, and padding never
influences their output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.errors import ConfigError
from jaxcnn.layers._checks import PaddingLike, canonical_padding, check_mask, check_rank, check_spatial, positive_ints
from jaxcnn.layers.shapes import _layer_pads

Array = jax.Array


def _window_args(owner: str, x: Array, window: int | Sequence[int], strides: int | Sequence[int] | None,
                 padding: PaddingLike) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...]]:
    window = positive_ints(window, None, owner, "window")
    rank = len(window)
    check_rank(x, rank, owner)
    strides = window if strides is None else positive_ints(strides, rank, owner, "strides")
    pads = _layer_pads(owner, x.shape[1:-1], window, strides, canonical_padding(padding, rank, owner), (1,) * rank)
    return window, strides, pads


def max_pool(x: Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
             padding: PaddingLike = "VALID") -> Array:
    """Maximum over each window; padded positions never win (they are -inf).

    Args:
      x: <float>[batch, *spatial, channels].
      window: window per spatial dim; an int means 1-D.
      strides: int or one per dim; default the window (non-overlapping).
      padding: as in `Conv` ("VALID" default, "SAME", "CAUSAL", ints, pairs).

    Returns:
      <float>[batch, *out_spatial, channels], out sizes `pool_output_size(n, window, stride, padding)`.
    """
    window, strides, pads = _window_args("max_pool", x, window, strides, padding)
    return nn.max_pool(x, window, strides, pads)


def avg_pool(x: Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
             padding: PaddingLike = "VALID", count_include_pad: bool = True) -> Array:
    """Mean over each window.

    Args:
      x, window, strides, padding: as in `max_pool`.
      count_include_pad: divide by the full window even where it overlaps padding (default True, as Flax and
        PyTorch); False divides by the number of real positions (as TensorFlow's SAME), and a window made only of
        padding gives 0 (Flax would give 0/0 = NaN).

    Returns:
      <float>[batch, *out_spatial, channels].
    """
    window, strides, pads = _window_args("avg_pool", x, window, strides, padding)
    if count_include_pad:
        return nn.avg_pool(x, window, strides, pads)
    total = nn.pool(x, 0.0, lax.add, window, strides, pads)
    count = nn.pool(jnp.ones((1, *x.shape[1:-1], 1), x.dtype), 0.0, lax.add, window, strides, pads)
    return total / jnp.maximum(count, 1)


def global_max_pool(x: Array) -> Array:
    """Maximum over every spatial position: <float>[batch, *spatial, channels] -> [batch, channels]."""
    check_spatial(x, "global_max_pool")
    return jnp.max(x, axis=tuple(range(1, x.ndim - 1)))


def global_avg_pool(x: Array) -> Array:
    """Mean over every spatial position: <float>[batch, *spatial, channels] -> [batch, channels]."""
    check_spatial(x, "global_avg_pool")
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def _adaptive(x: Array, output_size: int | Sequence[int], owner: str,
              reduce: Callable[[Array, Array], Array]) -> Array:
    check_spatial(x, owner)
    sizes = positive_ints(output_size, x.ndim - 2, owner, "output_size")
    for axis, out in zip(range(1, x.ndim - 1), sizes):
        n = x.shape[axis]
        # PyTorch's bins: [floor(i * n / out), ceil((i + 1) * n / out)); never empty, overlapping when n % out != 0.
        # Shapes are static, so the bin table is a NumPy constant, not traced work.
        pos, bins = np.arange(n), np.arange(out)
        member = (pos[None, :] >= (bins[:, None] * n) // out) & (pos[None, :] < -((-(bins[:, None] + 1) * n) // out))
        moved = jnp.moveaxis(x, axis, -1)[..., None, :]  # [..., 1, n]
        x = jnp.moveaxis(reduce(moved, member), -1, axis)
    return x


def adaptive_max_pool(x: Array, output_size: int | Sequence[int]) -> Array:
    """Max pooling to a fixed output size, with PyTorch's bins start = floor(i * n / out), end = ceil((i+1) * n / out).

    Args:
      x: <float>[batch, *spatial, channels].
      output_size: an int (every spatial dim) or one per dim; may exceed the input size (bins then repeat).

    Returns:
      <float>[batch, *output_size, channels].
    """
    return _adaptive(x, output_size, "adaptive_max_pool",
                     lambda v, member: jnp.max(jnp.where(member, v, -jnp.inf), axis=-1).astype(v.dtype))


def adaptive_avg_pool(x: Array, output_size: int | Sequence[int]) -> Array:
    """Average pooling to a fixed output size, with the bins of `adaptive_max_pool`.

    Args/Returns: as `adaptive_max_pool`.
    """
    return _adaptive(x, output_size, "adaptive_avg_pool",
                     lambda v, member: (jnp.sum(jnp.where(member, v, 0), axis=-1)
                                        / jnp.sum(member, axis=-1)).astype(v.dtype))


def _check_over_time(owner: str, x: Array, mask: Array) -> None:
    check_rank(x, 1, owner)
    check_mask(mask, x.shape[:2], owner)


def masked_max_over_time(x: Array, mask: Array) -> Array:
    """Maximum over the real positions of each sequence (Kim's 1-max pooling on padded batches).

    Padding is excluded before the max, not zeroed, because zero would win over a row whose real values are all
    negative (e.g. features before a tanh, or no activation at all).

    Args:
      x: <float>[batch, length, channels].
      mask: <bool>[batch, length], True at real positions.

    Returns:
      <float>[batch, channels]; a row with no real position gives 0, not -inf, so the next layer stays finite.
    """
    _check_over_time("masked_max_over_time", x, mask)
    valid = jnp.asarray(mask, bool)[..., None]
    best = jnp.max(jnp.where(valid, x, -jnp.inf), axis=1)
    return jnp.where(jnp.any(valid, axis=1), best, 0).astype(x.dtype)


def masked_mean_over_time(x: Array, mask: Array) -> Array:
    """Mean over the real positions of each sequence.

    Args:
      x: <float>[batch, length, channels].
      mask: <bool>[batch, length], True at real positions.

    Returns:
      <float>[batch, channels]; a row with no real position gives 0.
    """
    _check_over_time("masked_mean_over_time", x, mask)
    valid = jnp.asarray(mask, bool)[..., None]
    total = jnp.sum(jnp.where(valid, x, 0), axis=1)
    return (total / jnp.maximum(jnp.sum(valid, axis=1), 1)).astype(x.dtype)


def k_max_pool(x: Array, k: int, mask: Array | None = None) -> Array:
    """The k largest values of each channel over time, kept in their original order (Kalchbrenner et al. 2014).

    Ties go to the earlier position. Only real positions compete; when a row has fewer than k of them, its real
    values come first (in order) and the remaining slots are 0.

    Args:
      x: <float>[batch, length, channels].
      k: values kept per channel, 1 <= k <= length.
      mask: optional <bool>[batch, length], True at real positions (default: all real).

    Returns:
      <float>[batch, k, channels].
    """
    owner = "k_max_pool"
    check_rank(x, 1, owner)
    length = x.shape[1]
    k = positive_ints(k, 1, owner, "k")[0]
    if k > length:
        raise ConfigError(f"{owner}.k: {k} exceeds the sequence length {length}")
    if mask is None:
        mask = jnp.ones(x.shape[:2], bool)
    check_mask(mask, x.shape[:2], owner)
    values = jnp.swapaxes(x, 1, 2)  # [batch, channels, length]: top_k works on the last axis
    valid = jnp.broadcast_to(jnp.asarray(mask, bool)[:, None, :], values.shape)
    _, picked = lax.top_k(jnp.where(valid, values, -jnp.inf), k)
    # Sorting by position restores the original order; shifting padding picks by `length` moves them last.
    keys = jnp.sort(jnp.where(jnp.take_along_axis(valid, picked, -1), picked, picked + length), axis=-1)
    out = jnp.where(keys < length, jnp.take_along_axis(values, keys % length, -1), 0)
    return jnp.swapaxes(out, 1, 2).astype(x.dtype)
