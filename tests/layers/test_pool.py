"""Pooling: values by hand, agreement with NumPy loops, and masked pools that padding cannot influence."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcnn.errors import ConfigError
from jaxcnn.layers import (
    adaptive_avg_pool,
    adaptive_max_pool,
    avg_pool,
    global_avg_pool,
    global_max_pool,
    k_max_pool,
    masked_max_over_time,
    masked_mean_over_time,
    max_pool,
    sequence_mask,
)

from . import np_reference as ref
from .util import jitted, rand

_k_max = jax.jit(k_max_pool, static_argnums=1)


def _seq(values):
    return jnp.asarray(values, jnp.float32).reshape(1, -1, 1)


# --- windowed pools -------------------------------------------------------------------------------------------

def test_pools_by_hand():
    x = _seq([1, 3, 2, 5, 4])
    np.testing.assert_array_equal(max_pool(x, 2)[0, :, 0], [3, 5])  # stride defaults to the window
    np.testing.assert_array_equal(avg_pool(x, 2)[0, :, 0], [2, 3.5])
    np.testing.assert_array_equal(max_pool(x, 2, strides=1)[0, :, 0], [3, 3, 5, 5])
    np.testing.assert_array_equal(max_pool(-x, 2, padding="SAME")[0, :, 0], [-1, -2, -4])  # pad never wins
    np.testing.assert_array_equal(avg_pool(x, 2, padding="SAME")[0, :, 0], [2, 3.5, 2])
    np.testing.assert_array_equal(avg_pool(x, 2, padding="SAME", count_include_pad=False)[0, :, 0], [2, 3.5, 4])
    np.testing.assert_array_equal(max_pool(x, 3, strides=1, padding="CAUSAL")[0, :, 0], [1, 3, 3, 5, 5])
    # A window made only of padding averages to 0 when padding does not count (not 0/0).
    np.testing.assert_array_equal(avg_pool(x, 2, strides=1, padding=(0, 2), count_include_pad=False)[0, -2:, 0],
                                  [4, 0])


_GRID_1D = list(itertools.product([2, 3], [None, 1, 2], ["VALID", "SAME", "CAUSAL", 1, (0, 2)]))


@pytest.mark.parametrize("window,stride,padding", _GRID_1D)
def test_max_pool_1d_matches_numpy(window, stride, padding):
    x = rand((2, 7, 3))
    s = window if stride is None else stride
    pairs = [ref.pads(7, window, s, 1, padding)]
    np.testing.assert_allclose(max_pool(x, window, stride, padding), ref.pool(x, (window,), (s,), pairs, "max"),
                               atol=1e-6)


@pytest.mark.parametrize("window,stride,padding", _GRID_1D)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_1d_matches_numpy(window, stride, padding, count_include_pad):
    x = rand((2, 7, 3))
    s = window if stride is None else stride
    pairs = [ref.pads(7, window, s, 1, padding)]
    np.testing.assert_allclose(avg_pool(x, window, stride, padding, count_include_pad),
                               ref.pool(x, (window,), (s,), pairs, "avg", count_include_pad), atol=1e-6)


@pytest.mark.parametrize("window,strides,padding", [((2, 2), None, "VALID"), ((3, 2), (1, 2), "SAME"),
                                                    ((2, 3), (2, 1), ((1, 0), (0, 2))), ((3, 3), 1, 1)])
def test_pools_2d_match_numpy(window, strides, padding):
    x = rand((2, 6, 5, 2))
    s = window if strides is None else ((strides,) * 2 if isinstance(strides, int) else strides)
    if isinstance(padding, str):
        pairs = [ref.pads(n, k, st_, 1, padding) for n, k, st_ in zip((6, 5), window, s)]
    else:
        pairs = [(padding, padding)] * 2 if isinstance(padding, int) else list(padding)
    np.testing.assert_allclose(max_pool(x, window, strides, padding), ref.pool(x, window, s, pairs, "max"),
                               atol=1e-6)
    np.testing.assert_allclose(avg_pool(x, window, strides, padding, False),
                               ref.pool(x, window, s, pairs, "avg", False), atol=1e-6)


def test_pool_errors():
    with pytest.raises(ConfigError, match=r"max_pool: input size 2 along spatial dim 0 is shorter"):
        max_pool(jnp.zeros((1, 2, 3)), 3)
    with pytest.raises(ConfigError, match=r"avg_pool: expected input \[batch, height, width, channels\]"):
        avg_pool(jnp.zeros((1, 6, 3)), (2, 2))
    with pytest.raises(ConfigError, match=r"max_pool.window"):
        max_pool(jnp.zeros((1, 6, 3)), 0)


def test_global_pools():
    x = rand((2, 4, 3, 5))
    np.testing.assert_allclose(global_max_pool(x), x.max(axis=(1, 2)))
    np.testing.assert_allclose(global_avg_pool(x), x.mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(global_max_pool(x[:, :, 0]), x[:, :, 0].max(axis=1))
    with pytest.raises(ConfigError, match=r"global_max_pool"):
        global_max_pool(jnp.zeros((2, 3)))


# --- adaptive pools -------------------------------------------------------------------------------------------

def test_adaptive_pools_by_hand():
    x = _seq(range(10))  # bins of 10 -> 3: [0, 4), [3, 7), [6, 10)
    np.testing.assert_array_equal(jitted(adaptive_avg_pool, x, output_size=3)[0, :, 0], [1.5, 4.5, 7.5])
    np.testing.assert_array_equal(jitted(adaptive_max_pool, x, output_size=3)[0, :, 0], [3, 6, 9])
    # Upsampling repeats values.
    np.testing.assert_array_equal(jitted(adaptive_max_pool, _seq([4, 7]), output_size=4)[0, :, 0], [4, 4, 7, 7])


@pytest.mark.parametrize("n,out", [(5, 1), (5, 3), (7, 3), (7, 7), (10, 4), (4, 6)])
def test_adaptive_pools_1d_match_pytorch_bins(n, out):
    x = rand((2, n, 3))
    np.testing.assert_allclose(jitted(adaptive_max_pool, x, output_size=out), ref.adaptive_pool(x, (out,), "max"),
                               atol=1e-6)
    np.testing.assert_allclose(jitted(adaptive_avg_pool, x, output_size=out), ref.adaptive_pool(x, (out,), "avg"),
                               atol=1e-6)


def test_adaptive_pools_2d_match_pytorch_bins():
    x = rand((2, 7, 5, 3))
    np.testing.assert_allclose(jitted(adaptive_max_pool, x, output_size=(3, 2)), ref.adaptive_pool(x, (3, 2), "max"),
                               atol=1e-6)
    np.testing.assert_allclose(jitted(adaptive_avg_pool, x, output_size=4), ref.adaptive_pool(x, (4, 4), "avg"),
                               atol=1e-6)
    with pytest.raises(ConfigError, match=r"adaptive_avg_pool.output_size"):
        adaptive_avg_pool(x, (3, 2, 1))


# --- masked pools over time -----------------------------------------------------------------------------------

def test_masked_max_over_time_by_hand():
    x = jnp.asarray([[[-3.0, 1.0], [-2.0, 5.0], [0.0, 0.0], [0.0, 0.0]],
                     [[-1.0, -4.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
                     [[7.0, 7.0], [7.0, 7.0], [7.0, 7.0], [7.0, 7.0]]])
    mask = sequence_mask(jnp.array([2, 1, 0]), 4)
    # All-negative real values lose to nothing, not to the zero padding; an empty row gives 0, not -inf.
    np.testing.assert_array_equal(jitted(masked_max_over_time, x, mask), [[-2.0, 5.0], [-1.0, -4.0], [0.0, 0.0]])
    np.testing.assert_array_equal(jitted(masked_mean_over_time, x, mask), [[-2.5, 3.0], [-1.0, -4.0], [0.0, 0.0]])


def test_masked_max_gradient_is_finite_and_zero_at_padding():
    x = rand((3, 5, 2))
    mask = sequence_mask(jnp.array([5, 2, 0]), 5)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(masked_max_over_time(v, mask) + masked_mean_over_time(v, mask))))(x)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(np.asarray(grad)[~np.asarray(mask)], 0.0)


_MASKED_POOLS = (jax.jit(masked_max_over_time), jax.jit(masked_mean_over_time), lambda v, m: _k_max(v, 3, m))


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=3, max_size=3), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1.0, 1e3, -1e3]))
def test_masked_pools_ignore_padded_values(lengths, seed, scale):
    x = rand((3, 6, 4), seed)
    mask = sequence_mask(jnp.asarray(lengths), 6)
    garbage = np.where(np.asarray(mask)[..., None], x, scale * rand((3, 6, 4), seed + 1))
    for pool in _MASKED_POOLS:
        np.testing.assert_array_equal(pool(garbage, mask), pool(x, mask))


def test_masked_pools_reject_a_mismatched_mask():
    with pytest.raises(ConfigError, match=r"masked_max_over_time: mask shape \(2, 5\) does not match"):
        masked_max_over_time(jnp.zeros((2, 4, 3)), jnp.ones((2, 5), bool))
    with pytest.raises(ConfigError, match=r"masked_mean_over_time: expected input \[batch, length, channels\]"):
        masked_mean_over_time(jnp.zeros((2, 4)), jnp.ones((2, 4), bool))


# --- k-max pooling --------------------------------------------------------------------------------------------

def test_k_max_pool_by_hand():
    np.testing.assert_array_equal(_k_max(_seq([3, 1, 4, 1, 5, 9, 2, 6]), 3)[0, :, 0], [5, 9, 6])
    np.testing.assert_array_equal(_k_max(_seq([2, 1, 2, 2]), 2)[0, :, 0], [2, 2])
    # Fewer real positions than k: the real values in order, then zeros.
    mask = jnp.array([[True, False, True, False]])
    np.testing.assert_array_equal(_k_max(_seq([-1, 8, -3, 9]), 3, mask)[0, :, 0], [-1, -3, 0])


def _k_max_numpy(x, k):
    picked = np.sort(np.argsort(-x, axis=1, kind="stable")[:, :k], axis=1)
    return np.take_along_axis(x, picked, axis=1)


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_k_max_pool_matches_numpy(k):
    x = rand((3, 7, 4), k)
    np.testing.assert_array_equal(_k_max(x, k), _k_max_numpy(x, k))


def test_k_max_pool_with_mask_matches_numpy_on_the_real_prefix():
    x = rand((3, 8, 2), 5)
    lengths = [8, 5, 3]
    y = _k_max(x, 3, sequence_mask(jnp.asarray(lengths), 8))
    for row, n in enumerate(lengths):
        np.testing.assert_array_equal(y[row], _k_max_numpy(x[row:row + 1, :n], 3)[0])


def test_k_max_pool_errors():
    with pytest.raises(ConfigError, match=r"k_max_pool.k: 5 exceeds the sequence length 4"):
        k_max_pool(jnp.zeros((1, 4, 2)), 5)
    with pytest.raises(ConfigError, match=r"k_max_pool.k"):
        k_max_pool(jnp.zeros((1, 4, 2)), 0)
