"""Direct NumPy-loop definitions of convolution, transposed convolution, pooling and normalization, with the
convolutions' gradients, PyTorch's padding modes, ceil-mode pooling, and max pooling's indices and unpooling.

They are written from the textbook definitions, in float64, without lax or Flax, so that agreement with the
layers is evidence rather than a tautology. Shapes are tiny; speed does not matter here.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def pads(n: int, k: int, s: int, d: int, padding) -> tuple[int, int]:
    """(lo, hi) per dim: SAME is XLA's (output ceil(n/s), the odd position at the end); CAUSAL pads the left."""
    span = d * (k - 1) + 1
    if padding == "VALID":
        return (0, 0)
    if padding == "CAUSAL":
        return (span - 1, 0)
    if padding == "SAME":
        total = max((math.ceil(n / s) - 1) * s + span - n, 0)
        return (total // 2, total - total // 2)
    if isinstance(padding, int):
        return (padding, padding)
    return tuple(padding)


def source(p: int, n: int, lo: int, mode: str = "zeros"):
    """The input position that padded position p (0 = the first of the lo added ones) reads, or None for a zero.

    PyTorch's padding modes: circular wraps, reflect mirrors about the edge without repeating it, replicate
    repeats the edge.
    """
    i = p - lo
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "circular":
        return i % n
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    raise ValueError(mode)


def conv(x, w, b, strides, pad_pairs, dilation, groups=1, mode="zeros"):
    """y[b, o, f] = bias[f] + sum_{j, c in group(f)} xpad[b, o*s + j*d, c] * w[j, c - group start, f], where xpad
    reads the input through `source` (zeros or a PyTorch padding mode)."""
    return conv_and_grads(x, w, b, strides, pad_pairs, dilation, groups, mode)[0]


def conv_and_grads(x, w, b, strides, pad_pairs, dilation, groups=1, mode="zeros", g=None):
    """(y, dL/dx, dL/dw, dL/db) of L = sum(y * g), by the same loops (the gradients are None without g).

    A padded position's gradient goes to the input position it reads, so where a mode reads one input position
    from several padded ones, their gradients add up.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    batch, *spatial, channels = x.shape
    kernel, features = w.shape[:-2], w.shape[-1]
    cin, fout = channels // groups, features // groups
    out = [(n + lo + hi - d * (k - 1) - 1) // s + 1
           for n, (lo, hi), k, s, d in zip(spatial, pad_pairs, kernel, strides, dilation)]
    y = np.zeros((batch, *out, features))
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    gg = None if g is None else np.asarray(g, np.float64)
    for o in itertools.product(*map(range, out)):
        for j in itertools.product(*map(range, kernel)):
            pos = [oi * s + ji * d for oi, ji, s, d in zip(o, j, strides, dilation)]
            i = tuple(source(p, n, lo, mode) for p, n, (lo, _) in zip(pos, spatial, pad_pairs))
            if any(v is None for v in i):
                continue
            patch = x[(slice(None), *i)]
            for grp in range(groups):
                cs, fs = slice(grp * cin, (grp + 1) * cin), slice(grp * fout, (grp + 1) * fout)
                y[(slice(None), *o, fs)] += patch[:, cs] @ w[j][:, fs]
                if gg is not None:
                    go = gg[(slice(None), *o, fs)]
                    dx[(slice(None), *i, cs)] += go @ w[j][:, fs].T
                    dw[(*j, slice(None), fs)] += patch[:, cs].T @ go
    y = y + (0 if b is None else np.asarray(b, np.float64))
    if gg is None:
        return y, None, None, None
    return y, dx, dw, gg.reshape(-1, features).sum(axis=0)


def conv_transpose(x, w, b, strides, crops, dilation, groups=1):
    """Scatter: y[b, i*s + j*d] += x[b, i] @ w[j] (group by group); then crop (lo, hi) per dim, a negative crop
    adding zeros. w is [*kernel, in/groups, out]."""
    return conv_transpose_and_grads(x, w, b, strides, crops, dilation, groups)[0]


def conv_transpose_and_grads(x, w, b, strides, crops, dilation, groups=1, g=None):
    """(y, dL/dx, dL/dw, dL/db) of L = sum(y * g) for `conv_transpose`, by the same loops."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    batch, *spatial, channels = x.shape
    kernel, features = w.shape[:-2], w.shape[-1]
    cin, fout = channels // groups, features // groups
    full = [(n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(spatial, kernel, strides, dilation)]

    def scatter_pairs():
        for i in itertools.product(*map(range, spatial)):
            for j in itertools.product(*map(range, kernel)):
                pos = tuple(ii * s + ji * d for ii, ji, s, d in zip(i, j, strides, dilation))
                for grp in range(groups):
                    yield i, j, pos, slice(grp * cin, (grp + 1) * cin), slice(grp * fout, (grp + 1) * fout)

    y = np.zeros((batch, *full, features))
    for i, j, pos, cs, fs in scatter_pairs():
        y[(slice(None), *pos, fs)] += x[(slice(None), *i, cs)] @ w[j][:, fs]
    widen = [(max(-lo, 0), max(-hi, 0)) for lo, hi in crops]
    y = np.pad(y, [(0, 0), *widen, (0, 0)])
    index = tuple(slice(max(lo, 0), y.shape[a + 1] - max(hi, 0)) for a, (lo, hi) in enumerate(crops))
    y = y[(slice(None), *index)] + (0 if b is None else np.asarray(b, np.float64))
    if g is None:
        return y, None, None, None
    # The gradient of the full scatter is g put back where the crop took it from, zero where it was cut off.
    g = np.asarray(g, np.float64)
    gfull = np.zeros((batch, *[f + a + c for f, (a, c) in zip(full, widen)], features))
    gfull[(slice(None), *index)] = g
    gfull = gfull[(slice(None), *(slice(a, a + f) for f, (a, _) in zip(full, widen)))]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i, j, pos, cs, fs in scatter_pairs():
        go = gfull[(slice(None), *pos, fs)]
        dx[(slice(None), *i, cs)] += go @ w[j][:, fs].T
        dw[(*j, slice(None), fs)] += x[(slice(None), *i, cs)].T @ go
    return y, dx, dw, g.reshape(-1, features).sum(axis=0)


def pool_size(n, k, s, lo, hi, d=1, ceil_mode=False):
    """PyTorch's pooling_output_shape, with (lo, hi) for its symmetric pad: floor or ceil, and in ceil mode the
    last window must start before n + lo."""
    room = n + lo + hi - d * (k - 1) - 1
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def _pool_windows(spatial, window, strides, pad_pairs, dilation, ceil_mode):
    """Output positions, each with its taps in input coordinates (row-major tap order)."""
    out = [pool_size(n, k, s, lo, hi, d, ceil_mode)
           for n, (lo, hi), k, s, d in zip(spatial, pad_pairs, window, strides, dilation)]
    for o in itertools.product(*map(range, out)):
        yield out, o, [tuple(oi * s + ji * d - lo for oi, ji, s, d, (lo, _) in
                             zip(o, j, strides, dilation, pad_pairs)) for j in itertools.product(*map(range, window))]


def pool(x, window, strides, pad_pairs, kind, count_include_pad=True, dilation=None, ceil_mode=False):
    """Max or mean over each window, as PyTorch loops: only taps inside the input take part in a max (none: -inf)
    or a sum; a mean divides by the taps inside the padded extent [-lo, n + hi) (`count_include_pad`) or inside
    the input, at least 1 (a window of padding only averages to 0)."""
    x = np.asarray(x, np.float64)
    batch, *spatial, channels = x.shape
    y = None
    for out, o, taps in _pool_windows(spatial, window, strides, pad_pairs, dilation or (1,) * len(window), ceil_mode):
        y = np.zeros((batch, *out, channels)) if y is None else y
        inside = [t for t in taps if all(0 <= ti < n for ti, n in zip(t, spatial))]
        values = np.stack([x[(slice(None), *t)] for t in inside], 1) if inside else np.zeros((batch, 0, channels))
        if kind == "max":
            y[(slice(None), *o)] = values.max(axis=1) if inside else -np.inf
        else:
            extent = [t for t in taps if all(-lo <= ti < n + hi for ti, n, (lo, hi) in zip(t, spatial, pad_pairs))]
            y[(slice(None), *o)] = values.sum(axis=1) / max(len(extent) if count_include_pad else len(inside), 1)
    return y


def max_pool_indices(x, window, strides, pad_pairs, dilation=None, ceil_mode=False):
    """(values, indices) as PyTorch's max_pool(return_indices=True): per window, the first tap (row-major) that
    holds the maximum of the taps inside the input; indices are flat over the input's spatial dims, -1 (and
    value -inf) for a window without an input position."""
    x = np.asarray(x, np.float64)
    batch, *spatial, channels = x.shape
    values = indices = None
    for out, o, taps in _pool_windows(spatial, window, strides, pad_pairs, dilation or (1,) * len(window), ceil_mode):
        if values is None:
            values = np.full((batch, *out, channels), -np.inf)
            indices = np.full((batch, *out, channels), -1, np.int64)
        at = (slice(None), *o)
        for t in taps:
            if all(0 <= ti < n for ti, n in zip(t, spatial)):
                v = x[(slice(None), *t)]
                better = (v > values[at]) | (indices[at] < 0)
                values[at] = np.where(better, v, values[at])
                indices[at] = np.where(better, np.ravel_multi_index(t, spatial), indices[at])
    return values, indices


def max_unpool(x, indices, out_spatial):
    """Zeros of [batch, *out_spatial, channels], with x[b, p, c] written at the flat position indices[b, p, c]."""
    x = np.asarray(x, np.float64)
    batch, *_, channels = x.shape
    y = np.zeros((batch, math.prod(out_spatial), channels))
    flat_x, flat_i = x.reshape(batch, -1, channels), np.asarray(indices).reshape(batch, -1, channels)
    for b, p, c in itertools.product(range(batch), range(flat_x.shape[1]), range(channels)):
        y[b, flat_i[b, p, c], c] = flat_x[b, p, c]
    return y.reshape(batch, *out_spatial, channels)


def adaptive_pool(x, out_sizes, kind):
    """PyTorch's adaptive pooling: bin i of a dim of size n spans [floor(i*n/out), ceil((i+1)*n/out)); an out
    size None is n."""
    x = np.asarray(x, np.float64)
    batch, *spatial, channels = x.shape
    out_sizes = [n if m is None else m for n, m in zip(spatial, out_sizes)]
    y = np.zeros((batch, *out_sizes, channels))
    reduce = np.max if kind == "max" else np.mean
    for o in itertools.product(*map(range, out_sizes)):
        box = tuple(slice(math.floor(i * n / m), math.ceil((i + 1) * n / m))
                    for i, n, m in zip(o, spatial, out_sizes))
        y[(slice(None), *o)] = reduce(x[(slice(None), *box)].reshape(batch, -1, channels), axis=1)
    return y


def normalize(x, axes, scale, bias, eps, mask=None):
    """(x - mean) / sqrt(var + eps) * scale + bias, mean and biased var over `axes` (and `mask`, if given)."""
    x = np.asarray(x, np.float64)
    weight = np.ones_like(x) if mask is None else np.broadcast_to(np.asarray(mask, np.float64)[..., None], x.shape)
    count = weight.sum(axis=axes, keepdims=True)
    mean = (x * weight).sum(axis=axes, keepdims=True) / count
    var = (((x - mean) ** 2) * weight).sum(axis=axes, keepdims=True) / count
    return (x - mean) / np.sqrt(var + eps) * scale + bias, mean, var


def group_norm(x, groups, scale, bias, eps):
    """Per example, mean and var over the spatial positions and the channels of each group."""
    x = np.asarray(x, np.float64)
    batch, *spatial, channels = x.shape
    g = x.reshape(batch, *spatial, groups, channels // groups)
    axes = (*range(1, len(spatial) + 1), g.ndim - 1)
    mean = g.mean(axis=axes, keepdims=True)
    var = g.var(axis=axes, keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias
