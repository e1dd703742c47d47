"""Masks for padded sequences: which positions are real, before and after a convolution.

A mask is <bool>[batch, *spatial], True at real positions. Padding must never count: masked pooling and masked
norms read these masks so that the zeros (or anything else) in padded positions cannot change their output.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.errors import ConfigError
from jaxcnn.layers._checks import PaddingLike, canonical_padding, positive_ints
from jaxcnn.layers.shapes import _layer_pads

Array = jax.Array


def sequence_mask(lengths: Array, max_len: int) -> Array:
    """Mask of the first `lengths[b]` positions of each row.

    Args:
      lengths: <int>[batch], real tokens per example.
      max_len: padded length (a Python int, so the shape is static).

    Returns:
      <bool>[batch, max_len], True where position < length.
    """
    max_len = positive_ints(max_len, 1, "sequence_mask", "max_len")[0]
    return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def conv_output_mask(mask: Array, kernel_size: int | Sequence[int], strides: int | Sequence[int] = 1,
                     padding: PaddingLike = "VALID", kernel_dilation: int | Sequence[int] = 1) -> Array:
    """Mask of a convolution's output, given the mask of its input.

    An output position is real iff its window touches at least one real input position. Kim pads every sentence
    with width - 1 padding tokens on both sides, so every VALID window that touches a real token is one his model
    pools over, and a window made only of padding is not; that is the rule here. A window partly in padding sees
    zero vectors (the padding embedding), exactly as in Kim's code. Positions added by the convolution's own
    padding count as padding.

    Args:
      mask: <bool>[batch, *spatial], True at real positions.
      kernel_size, strides, padding, kernel_dilation: those of the convolution, as in `Conv`.

    Returns:
      <bool>[batch, *out_spatial], the shape of the convolution's output without channels.
    """
    owner = "conv_output_mask"
    kernel = positive_ints(kernel_size, None, owner, "kernel_size")
    rank = len(kernel)
    strides = positive_ints(strides, rank, owner, "strides")
    dilation = positive_ints(kernel_dilation, rank, owner, "kernel_dilation")
    if mask.ndim != rank + 1:
        raise ConfigError(f"{owner}: expected a mask [batch, *spatial] with {rank} spatial dim(s) for kernel "
                          f"{kernel}, got shape {tuple(mask.shape)}")
    pads = _layer_pads(owner, mask.shape[1:], kernel, strides, canonical_padding(padding, rank, owner), dilation)
    hits = lax.reduce_window(jnp.asarray(mask, jnp.int32), 0, lax.max, (1, *kernel), (1, *strides),
                             ((0, 0), *pads), window_dilation=(1, *dilation))
    return hits > 0
