"""Direct NumPy-loop definitions of convolution, transposed convolution, pooling and normalization.

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


def conv(x, w, b, strides, pad_pairs, dilation, groups=1):
    """y[b, o, f] = bias[f] + sum_{j, c in group(f)} xpad[b, o*s + j*d, c] * w[j, c - group start, f]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    batch, *spatial, channels = x.shape
    kernel, features = w.shape[:-2], w.shape[-1]
    xp = np.pad(x, [(0, 0), *pad_pairs, (0, 0)])
    out = [(n + lo + hi - d * (k - 1) - 1) // s + 1
           for n, (lo, hi), k, s, d in zip(spatial, pad_pairs, kernel, strides, dilation)]
    cin, fout = channels // groups, features // groups
    y = np.zeros((batch, *out, features))
    for o in itertools.product(*map(range, out)):
        for j in itertools.product(*map(range, kernel)):
            pos = tuple(oi * s + ji * d for oi, ji, s, d in zip(o, j, strides, dilation))
            patch = xp[(slice(None), *pos)]
            for g in range(groups):
                y[(slice(None), *o, slice(g * fout, (g + 1) * fout))] += (
                    patch[:, g * cin:(g + 1) * cin] @ w[j][:, g * fout:(g + 1) * fout])
    return y + (0 if b is None else np.asarray(b, np.float64))


def conv_transpose(x, w, b, strides, crops, dilation):
    """Scatter: y[b, i*s + j*d] += x[b, i] @ w[j]; then crop (lo, hi) per dim, a negative crop adding zeros."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    batch, *spatial, _ = x.shape
    kernel = w.shape[:-2]
    full = [(n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(spatial, kernel, strides, dilation)]
    y = np.zeros((batch, *full, w.shape[-1]))
    for i in itertools.product(*map(range, spatial)):
        for j in itertools.product(*map(range, kernel)):
            pos = tuple(ii * s + ji * d for ii, ji, s, d in zip(i, j, strides, dilation))
            y[(slice(None), *pos)] += x[(slice(None), *i)] @ w[j]
    y = np.pad(y, [(0, 0), *[(max(-lo, 0), max(-hi, 0)) for lo, hi in crops], (0, 0)])
    index = tuple(slice(max(lo, 0), y.shape[a + 1] - max(hi, 0)) for a, (lo, hi) in enumerate(crops))
    return y[(slice(None), *index)] + (0 if b is None else np.asarray(b, np.float64))


def pool(x, window, strides, pad_pairs, kind, count_include_pad=True):
    """Max or mean over each window; padded positions never win a max and count in a mean only if asked."""
    x = np.asarray(x, np.float64)
    batch, *spatial, channels = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, [(0, 0), *pad_pairs, (0, 0)], constant_values=fill)
    real = np.pad(np.ones(spatial), pad_pairs)
    out = [(n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(spatial, pad_pairs, window, strides)]
    y = np.zeros((batch, *out, channels))
    for o in itertools.product(*map(range, out)):
        box = tuple(slice(oi * s, oi * s + k) for oi, s, k in zip(o, strides, window))
        patch = xp[(slice(None), *box)].reshape(batch, -1, channels)
        if kind == "max":
            y[(slice(None), *o)] = patch.max(axis=1)
        else:
            count = math.prod(window) if count_include_pad else real[box].sum()
            y[(slice(None), *o)] = patch.sum(axis=1) / max(count, 1)  # a window of padding only averages to 0
    return y


def adaptive_pool(x, out_sizes, kind):
    """PyTorch's adaptive pooling: bin i of a dim of size n spans [floor(i*n/out), ceil((i+1)*n/out))."""
    x = np.asarray(x, np.float64)
    batch, *spatial, channels = x.shape
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
