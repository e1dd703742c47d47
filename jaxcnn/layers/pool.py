"""Pooling: plain functions without parameters, channels-last.

Windowed pools take `[batch, *spatial, channels]` with one spatial dim per window dim (an int window means 1-D);
unlike `flax.linen.max_pool`, `strides` defaults to the window, as in PyTorch and Keras. They take PyTorch's
`dilation` and `ceil_mode` too, and `max_pool(..., return_indices=True)` feeds `max_unpool`. The `*_over_time` pools
and `k_max_pool` take `[batch, length, channels]` and a `<bool>[batch, length]` mask, and padding never
influences their output.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.errors import ConfigError
from jaxcnn.layers._checks import (PaddingLike, canonical_padding, check_mask, check_rank, check_spatial, flag,
                                   per_dim, positive_ints)
from jaxcnn.layers.shapes import _ceil_out, _pads, _pool_pads

Array = jax.Array


def _window_args(owner: str, x: Array, window: int | Sequence[int], strides: int | Sequence[int] | None,
                 padding: PaddingLike, dilation: int | Sequence[int] = 1, ceil_mode: bool = False
                 ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[tuple[int, int, int], ...]]:
    """Checked (window, strides, dilation, (lo, hi, extra) per dim); `extra` is what `ceil_mode` adds after hi."""
    window = positive_ints(window, None, owner, "window")
    rank = len(window)
    check_rank(x, rank, owner)
    strides = window if strides is None else positive_ints(strides, rank, owner, "strides")
    dilation = positive_ints(dilation, rank, owner, "dilation")
    pads = _pool_pads(owner, x.shape[1:-1], window, strides, canonical_padding(padding, rank, owner), dilation,
                      flag(ceil_mode, owner, "ceil_mode"))
    return window, strides, dilation, pads


def _ceil_sizes(x: Array, window: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...],
                pads: Sequence[tuple[int, int, int]], ceil_mode: bool) -> tuple[int, ...] | None:
    """The output sizes PyTorch's ceil mode keeps, where they are fewer than the grown padding gives (a right
    padding wider than PyTorch allows: a window of padding alone is dropped); None when nothing is cut."""
    if not ceil_mode:
        return None
    keep = tuple(_ceil_out(n, k, s, (lo, hi), d)
                 for n, k, s, d, (lo, hi, _) in zip(x.shape[1:-1], window, strides, dilation, pads))
    grown = tuple((n + lo + hi + extra - (d * (k - 1) + 1)) // s + 1
                  for n, k, s, d, (lo, hi, extra) in zip(x.shape[1:-1], window, strides, dilation, pads))
    return keep if keep != grown else None


def _keep(y: Array, sizes: tuple[int, ...] | None) -> Array:
    return y if sizes is None else y[(slice(None), *(slice(0, n) for n in sizes))]


def _window_sums(x: Array, window: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...],
                 pads: Sequence[tuple[int, int]]) -> Array:
    # The init 0.0 is a Python scalar, as Flax passes it, so that lax sees the monoid sum that has a gradient.
    return lax.reduce_window(x, 0.0, lax.add, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0)),
                             window_dilation=(1, *dilation, 1))


def max_pool(x: Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
             padding: PaddingLike = "VALID", *, dilation: int | Sequence[int] = 1, ceil_mode: bool = False,
             return_indices: bool = False) -> Array | tuple[Array, Array]:
    """Maximum over each window; padded positions never win (they are -inf).

    Args:
      x: <float>[batch, *spatial, channels].
      window: window per spatial dim; an int means 1-D.
      strides: int or one per dim; default the window (non-overlapping).
      padding: as in `Conv` ("VALID" default, "SAME", "CAUSAL", ints, pairs).
      dilation: spacing between the taps of a window, int or one per dim (default 1), as PyTorch's `dilation`.
      ceil_mode: keep a last, partial window where the windows do not fit exactly (PyTorch's `ceil_mode`; see
        `pool_output_size`).
      return_indices: also return where each maximum came from, as PyTorch's `return_indices=True`, for
        `max_unpool`.

    Returns:
      <float>[batch, *out_spatial, channels], out sizes `pool_output_size(n, window, stride, padding, dilation,
      ceil_mode)`; with `return_indices`, also <int32>[batch, *out_spatial, channels]: the flat (row-major)
      index over the input's spatial dims of each maximum, PyTorch's numbers. The first maximum in window order
      wins a tie; a window with no input position in it gives -inf and index -1.
    """
    window, strides, dilation, pads = _window_args("max_pool", x, window, strides, padding, dilation, ceil_mode)
    keep = _ceil_sizes(x, window, strides, dilation, pads, ceil_mode)
    grown = tuple((lo, hi + extra) for lo, hi, extra in pads)
    if flag(return_indices, "max_pool", "return_indices"):
        values, indices = _max_pool_with_indices(x, window, strides, dilation, grown)
        return _keep(values, keep), _keep(indices, keep)
    if all(d == 1 for d in dilation):
        return _keep(nn.max_pool(x, window, strides, grown), keep)
    # JAX has no gradient for a max `reduce_window` with window dilation; the taps form has one.
    return _keep(_max_pool_with_indices(x, window, strides, dilation, grown)[0], keep)


def _max_pool_with_indices(x: Array, window: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...],
                           pads: tuple[tuple[int, int], ...]) -> tuple[Array, Array]:
    """Every tap of every window as one strided slice, stacked, then an argmax over the taps.

    `reduce_window` cannot return where its maximum was, and its variadic form has no gradient; the taps are few
    (prod(window)), and the gradient of `take_along_axis` reaches the winning position only, as PyTorch's does.
    """
    spatial = x.shape[1:-1]
    out = [(n + lo + hi - d * (k - 1) - 1) // s + 1 for n, (lo, hi), k, s, d in zip(spatial, pads, window, strides,
                                                                                     dilation)]
    padded = lax.pad(x, jnp.asarray(-jnp.inf, x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)))
    # Shapes are static, so which input position each tap of each window reads is a NumPy constant (-1: padding).
    where = np.pad(np.arange(math.prod(spatial)).reshape(spatial), pads, constant_values=-1)
    values, positions = [], []
    for tap in itertools.product(*map(range, window)):
        box = tuple(slice(j * d, j * d + (o - 1) * s + 1, s) for j, d, o, s in zip(tap, dilation, out, strides))
        values.append(padded[(slice(None), *box)])
        positions.append(where[box])
    values = jnp.stack(values, axis=-2)                      # [batch, *out, taps, channels]
    positions = np.stack(positions, axis=-1)                  # [*out, taps]
    real = positions >= 0
    best = jnp.argmax(values, axis=-2)                        # [batch, *out, channels]; padding is -inf
    # PyTorch scans only a window's input positions, so padding must not win a tie with a real -inf: where the
    # argmax lands on padding, take the window's first real tap (a window without one keeps index -1).
    first_real = np.argmax(real, axis=-1)[None, ..., None]
    best = jnp.where(_take(jnp.asarray(real)[None, ..., None], best), best, first_real)
    picked = jnp.take_along_axis(values, best[..., None, :], axis=-2)[..., 0, :]
    index = _take(jnp.asarray(positions, jnp.int32)[None, ..., None], best)
    return picked, index.astype(jnp.int32)


def _take(table: Array, best: Array) -> Array:
    """table[b, *out, best[b, *out, c], c], with `table` broadcast over the batch and channel axes it lacks."""
    table = jnp.broadcast_to(table, (*best.shape[:-1], table.shape[-2], best.shape[-1]))
    return jnp.take_along_axis(table, best[..., None, :], axis=-2)[..., 0, :]


def max_unpool(x: Array, indices: Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
               padding: PaddingLike = "VALID", output_size: int | Sequence[int] | None = None) -> Array:
    """The inverse of `max_pool(..., return_indices=True)`: each value goes back to where its maximum came from,
    zeros elsewhere (PyTorch's `max_unpool1d/2d`).

    Args:
      x: <float>[batch, *spatial, channels], pooled values.
      indices: <int>[batch, *spatial, channels], from `max_pool(..., return_indices=True)`: flat row-major
        positions over the output's spatial dims. Positions outside the output (-1 included) are dropped.
      window, strides, padding: of the pool; they set the default output size (PyTorch ignores the pool's
        dilation there too). "SAME" depends on the size that was pooled, so it needs `output_size`.
      output_size: the spatial size to restore, int or one per dim; default `(n - 1) * stride - lo - hi +
        window` per dim (`transposed_output_size(n, window, stride, padding)`), so set it when the pooled size
        did not divide evenly.

    Returns:
      <float>[batch, *output_size, channels]. Where windows overlapped and shared a maximum, that position gets
      the value once; the gradient reaches every pooled value that points there, as in PyTorch.
    """
    owner = "max_unpool"
    window = positive_ints(window, None, owner, "window")
    rank = len(window)
    check_rank(x, rank, owner)
    if tuple(indices.shape) != tuple(x.shape) or not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ConfigError(f"{owner}: indices must be integers of the input's shape {tuple(x.shape)}, got "
                          f"{indices.dtype}{list(indices.shape)}")
    strides = window if strides is None else positive_ints(strides, rank, owner, "strides")
    if output_size is None:
        padding = canonical_padding(padding, rank, owner)
        if padding == "SAME":
            raise ConfigError(f"{owner}.padding: SAME depends on the size that was pooled; pass output_size")
        sizes = []
        for dim, (n, k, s, p) in enumerate(zip(x.shape[1:-1], window, strides, per_dim(padding, rank))):
            lo, hi = _pads(n, k, s, p, 1)
            sizes.append((n - 1) * s - lo - hi + k)
            if sizes[-1] < 1:
                raise ConfigError(f"{owner}.padding: ({lo}, {hi}) leaves no output from size {n} along spatial "
                                  f"dim {dim}")
    else:
        sizes = positive_ints(output_size, rank, owner, "output_size")
    batch, channels = x.shape[0], x.shape[-1]
    flat = _scatter_to(x.reshape(batch, -1, channels), indices.reshape(batch, -1, channels), math.prod(sizes))
    return flat.reshape(batch, *sizes, channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scatter_to(values: Array, indices: Array, size: int) -> Array:
    """[batch, size, channels] zeros with values[b, i, c] at [b, indices[b, i, c], c]; out-of-range are dropped."""
    batch, _, channels = values.shape
    # A negative index would count from the end under `.at`; send it out of range instead.
    indices = jnp.where(indices < 0, size, indices)
    return jnp.zeros((batch, size, channels), values.dtype).at[
        jnp.arange(batch)[:, None, None], indices, jnp.arange(channels)[None, None, :]].set(values, mode="drop")


def _scatter_to_fwd(values, indices, size):
    return _scatter_to(values, indices, size), indices


def _scatter_to_bwd(size, indices, grad):
    # A gather: every value that points at a position gets its gradient. Autodiff of the scatter would give a
    # position's gradient to one of them only, where windows overlap; PyTorch gives it to each.
    inside = (indices >= 0) & (indices < size)
    picked = jnp.take_along_axis(grad, jnp.clip(indices, 0, size - 1), axis=1)
    return jnp.where(inside, picked, 0), None


_scatter_to.defvjp(_scatter_to_fwd, _scatter_to_bwd)


def avg_pool(x: Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
             padding: PaddingLike = "VALID", count_include_pad: bool = True, *, dilation: int | Sequence[int] = 1,
             ceil_mode: bool = False) -> Array:
    """Mean over each window.

    Args:
      x, window, strides, padding, dilation, ceil_mode: as in `max_pool` (PyTorch's average pools have no
        dilation; here it spaces the taps as in `max_pool`).
      count_include_pad: divide by the full window even where it overlaps padding (default True, as Flax and
        PyTorch); False divides by the number of real positions (as TensorFlow's SAME), and a window made only of
        padding gives 0 (Flax would give 0/0 = NaN). Positions that `ceil_mode` adds past the padding never
        count, as in PyTorch.

    Returns:
      <float>[batch, *out_spatial, channels], out sizes as `max_pool`.
    """
    window, strides, dilation, pads = _window_args("avg_pool", x, window, strides, padding, dilation, ceil_mode)
    keep = _ceil_sizes(x, window, strides, dilation, pads, ceil_mode)
    grown = tuple((lo, hi + extra) for lo, hi, extra in pads)
    plain = all(d == 1 for d in dilation) and not any(extra for _, _, extra in pads)
    if plain and count_include_pad:
        return _keep(nn.avg_pool(x, window, strides, grown), keep)
    if plain:
        total = nn.pool(x, 0.0, lax.add, window, strides, grown)
        count = nn.pool(jnp.ones((1, *x.shape[1:-1], 1), x.dtype), 0.0, lax.add, window, strides, grown)
        return _keep(total / jnp.maximum(count, 1), keep)
    total = _window_sums(x, window, strides, dilation, grown)
    # The divisor counts the taps that fall on what is averaged: the padded input, or the input alone.
    counted = (tuple(n + lo + hi for n, (lo, hi, _) in zip(x.shape[1:-1], pads)) if count_include_pad
               else x.shape[1:-1])
    around = (tuple((0, extra) for _, _, extra in pads) if count_include_pad
              else tuple((lo, hi + extra) for lo, hi, extra in pads))
    count = _window_sums(jnp.ones((1, *counted, 1), x.dtype), window, strides, dilation, around)
    return _keep(total / jnp.maximum(count, 1), keep)


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
    for axis, out in zip(range(1, x.ndim - 1), _adaptive_sizes(output_size, x.ndim - 2, owner)):
        if out is None:  # PyTorch's None: this dim keeps its input size
            continue
        n = x.shape[axis]
        # PyTorch's bins: [floor(i * n / out), ceil((i + 1) * n / out)); never empty, overlapping when n % out != 0.
        # Shapes are static, so the bin table is a NumPy constant, not traced work.
        pos, bins = np.arange(n), np.arange(out)
        member = (pos[None, :] >= (bins[:, None] * n) // out) & (pos[None, :] < -((-(bins[:, None] + 1) * n) // out))
        moved = jnp.moveaxis(x, axis, -1)[..., None, :]  # [..., 1, n]
        x = jnp.moveaxis(reduce(moved, member), -1, axis)
    return x


def _adaptive_sizes(output_size: int | Sequence[int | None], rank: int, owner: str) -> tuple[int | None, ...]:
    """One positive int or None per spatial dim."""
    entries = list(output_size) if isinstance(output_size, (Sequence, np.ndarray)) else None
    if output_size is None or entries is None or not any(v is None for v in entries):
        # `positive_ints` reads a bare None as 1; here it is a mistake, not "keep every dim".
        if output_size is None:
            raise ConfigError(f"{owner}.output_size: expected a positive int or one positive int or None per "
                              f"spatial dim ({rank}), got None")
        return positive_ints(output_size, rank, owner, "output_size")
    if len(entries) != rank:
        raise ConfigError(f"{owner}.output_size: expected {rank} value(s), one per spatial dim, got {output_size!r}")
    return tuple(None if v is None else positive_ints(v, 1, owner, "output_size")[0] for v in entries)


def adaptive_max_pool(x: Array, output_size: int | Sequence[int | None]) -> Array:
    """Max pooling to a fixed output size, with PyTorch's bins start = floor(i * n / out), end = ceil((i+1) * n / out).

    Args:
      x: <float>[batch, *spatial, channels].
      output_size: an int (every spatial dim) or one per dim; may exceed the input size (bins then repeat). An
        entry None keeps that dim's input size, as in PyTorch.

    Returns:
      <float>[batch, *output_size, channels], a None entry giving the input's size.
    """
    return _adaptive(x, output_size, "adaptive_max_pool",
                     lambda v, member: jnp.max(jnp.where(member, v, -jnp.inf), axis=-1).astype(v.dtype))


def adaptive_avg_pool(x: Array, output_size: int | Sequence[int | None]) -> Array:
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
    values = jnp.swapaxes(x, 1, 2)  # [batch, channels, length]
    keys = k_max_positions(x, k, mask)
    out = jnp.where(keys < length, jnp.take_along_axis(values, keys % length, -1), 0)
    return jnp.swapaxes(out, 1, 2).astype(x.dtype)


def k_max_positions(x: Array, k: int, mask: Array) -> Array:
    """Where `k_max_pool` takes its values from: <int32>[batch, channels, k] positions in time order; a slot
    with no real position left (a row with fewer than k) holds a position >= length and is last.

    Args:
      x: <float>[batch, length, channels]. k: values per channel. mask: <bool>[batch, length].
    """
    length = x.shape[1]
    values = jnp.swapaxes(x, 1, 2)  # [batch, channels, length]: top_k works on the last axis
    valid = jnp.broadcast_to(jnp.asarray(mask, bool)[:, None, :], values.shape)
    _, picked = lax.top_k(jnp.where(valid, values, -jnp.inf), k)
    # Sorting by position restores the original order; shifting padding picks by `length` moves them last.
    return jnp.sort(jnp.where(jnp.take_along_axis(valid, picked, -1), picked, picked + length), axis=-1)
