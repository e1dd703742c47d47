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
    max_unpool,
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


# --- ceil mode, dilation ------------------------------------------------------------------------------------------

def test_ceil_mode_and_dilation_by_hand():
    x = _seq([1, 3, 2, 5, 4])
    # Ceil mode keeps the last, partial window [4]; an average divides it by its one position.
    np.testing.assert_array_equal(max_pool(x, 2, ceil_mode=True)[0, :, 0], [3, 5, 4])
    np.testing.assert_array_equal(avg_pool(x, 2, ceil_mode=True)[0, :, 0], [2, 3.5, 4])
    # ... unless that window would start in the right padding: with padding 1, windows start at -1, 1, 3 and the
    # fourth (at 5) is dropped, as PyTorch does.
    np.testing.assert_array_equal(max_pool(x, 2, padding=1, ceil_mode=True)[0, :, 0], [1, 3, 5])
    np.testing.assert_array_equal(max_pool(x, 2, padding=1)[0, :, 0], [1, 3, 5])
    # Dilation 2: each window is x[t] and x[t + 2].
    np.testing.assert_array_equal(max_pool(x, 2, strides=1, dilation=2)[0, :, 0], [2, 5, 4])
    np.testing.assert_array_equal(avg_pool(x, 2, strides=1, dilation=2)[0, :, 0], [1.5, 4, 3])
    # Count-include-pad counts padding, never the positions ceil mode adds: the last window covers 4 and the
    # right pad, so it divides by 2.
    np.testing.assert_allclose(avg_pool(x, 3, strides=2, padding=1, ceil_mode=True)[0, :, 0], [4 / 3, 10 / 3, 3],
                               rtol=1e-6)
    np.testing.assert_array_equal(max_pool(x[:, :1], 3, ceil_mode=True)[0, :, 0], [1])  # PyTorch: one window


_CEIL_GRID = list(itertools.product([2, 3], [1, 2, 3], [0, 1, (0, 2)], [1, 2]))


@pytest.mark.parametrize("window,stride,padding,dilation", _CEIL_GRID)
def test_pools_with_ceil_mode_and_dilation_match_numpy(window, stride, padding, dilation):
    x = rand((2, 8, 3))
    pairs = [(padding, padding) if isinstance(padding, int) else padding]
    kwargs = dict(dilation=dilation, ceil_mode=True)
    np.testing.assert_allclose(max_pool(x, window, stride, padding, **kwargs),
                               ref.pool(x, (window,), (stride,), pairs, "max", dilation=(dilation,), ceil_mode=True),
                               atol=1e-6)
    for count_include_pad in (True, False):
        np.testing.assert_allclose(avg_pool(x, window, stride, padding, count_include_pad, **kwargs),
                                   ref.pool(x, (window,), (stride,), pairs, "avg", count_include_pad, (dilation,),
                                            True), atol=1e-6)


def test_pools_2d_with_ceil_mode_and_dilation_match_numpy():
    x = rand((2, 7, 6, 2))
    kwargs = dict(dilation=(2, 1), ceil_mode=True)
    pairs = [(1, 1), (0, 1)]
    np.testing.assert_allclose(max_pool(x, (2, 3), (2, 2), (1, (0, 1)), **kwargs),
                               ref.pool(x, (2, 3), (2, 2), pairs, "max", dilation=(2, 1), ceil_mode=True), atol=1e-6)
    np.testing.assert_allclose(avg_pool(x, (2, 3), (2, 2), (1, (0, 1)), False, **kwargs),
                               ref.pool(x, (2, 3), (2, 2), pairs, "avg", False, (2, 1), True), atol=1e-6)


def test_dilated_max_pool_has_a_gradient_to_the_first_maximum():
    x = _seq([1, 3, 3, 0, 2])
    grad = jax.grad(lambda v: jnp.sum(max_pool(v, 2, strides=1, dilation=2)))(x)  # windows {0,2} {1,3} {2,4}
    np.testing.assert_array_equal(grad[0, :, 0], [0, 1, 2, 0, 0])


# --- indices and unpooling ------------------------------------------------------------------------------------

def test_max_pool_indices_and_unpool_by_hand():
    x = _seq([1, 3, 2, 5, 4])
    values, indices = max_pool(x, 2, return_indices=True)
    np.testing.assert_array_equal(values[0, :, 0], [3, 5])
    np.testing.assert_array_equal(indices[0, :, 0], [1, 3])
    assert indices.dtype == jnp.int32
    np.testing.assert_array_equal(max_unpool(values, indices, 2)[0, :, 0], [0, 3, 0, 5])
    np.testing.assert_array_equal(max_unpool(values, indices, 2, output_size=5)[0, :, 0], [0, 3, 0, 5, 0])
    # Ties go to the first position; padding never wins, even against a real -inf.
    np.testing.assert_array_equal(max_pool(_seq([2, 2, 1]), 2, strides=1, return_indices=True)[1][0, :, 0], [0, 1])
    minus = _seq([-np.inf, -np.inf])
    values, indices = max_pool(minus, 2, strides=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(indices[0, :, 0], [0, 0, 1])


def test_max_unpool_gradient_reaches_every_value_that_points_at_a_position():
    # Overlapping windows share the maximum 5: the unpooled position holds it once, and both pooled values get its
    # gradient (PyTorch's max_unpool backward is a gather).
    values, indices = max_pool(_seq([1, 5, 2]), 2, strides=1, return_indices=True)
    np.testing.assert_array_equal(indices[0, :, 0], [1, 1])
    grad = jax.grad(lambda v: jnp.sum(max_unpool(v, indices, 2, strides=1) * jnp.arange(3.0)[None, :, None]))(values)
    np.testing.assert_array_equal(grad[0, :, 0], [1, 1])


@pytest.mark.parametrize("window,stride,padding,dilation,ceil_mode", [
    ((2,), (2,), 0, 1, False), ((3,), (2,), 1, 2, True), ((3,), (1,), (0, 2), 1, True), ((2, 3), (1, 2), 1, (2, 1), True),
    ((2, 2), (2, 2), 0, 1, False),
])
def test_max_pool_indices_and_unpool_match_numpy(window, stride, padding, dilation, ceil_mode):
    rank = len(window)
    x = rand((2, 7, 6, 2)[:rank + 1] + (2,))
    x[0, 2] = x[0, 3]
    pairs = ([(padding, padding)] * rank if isinstance(padding, int) else [padding])
    values, indices = jitted(max_pool, x, window=window, strides=stride, padding=padding, dilation=dilation,
                             ceil_mode=ceil_mode, return_indices=True)
    want_values, want_indices = ref.max_pool_indices(x, window, stride, pairs, (dilation,) * rank
                                                     if isinstance(dilation, int) else dilation, ceil_mode)
    np.testing.assert_array_equal(values, want_values.astype(np.float32))
    np.testing.assert_array_equal(indices, want_indices)
    spatial = x.shape[1:-1]
    np.testing.assert_array_equal(jitted(max_unpool, values, indices, window=window, strides=stride,
                                         output_size=spatial),
                                  ref.max_unpool(values, indices, spatial))


def test_max_unpool_default_size_and_errors():
    values, indices = max_pool(rand((1, 7, 6, 2)), (3, 2), (2, 2), 1, return_indices=True)
    assert max_unpool(values, indices, (3, 2), (2, 2), 1).shape == (1, 7, 6, 2)  # (n - 1) * s - lo - hi + k
    with pytest.raises(ConfigError, match=r"max_unpool.padding: SAME depends on the size that was pooled"):
        max_unpool(values, indices, (3, 2), padding="SAME")
    with pytest.raises(ConfigError, match=r"max_unpool: indices must be integers of the input's shape"):
        max_unpool(values, indices.astype(jnp.float32), (3, 2))
    with pytest.raises(ConfigError, match=r"max_unpool.output_size"):
        max_unpool(values, indices, (3, 2), output_size=(7,))


@pytest.mark.parametrize("call,fragment", [
    (lambda: max_pool(jnp.zeros((1, 6, 2)), 2, ceil_mode="yes"), "max_pool.ceil_mode: expected True or False"),
    (lambda: avg_pool(jnp.zeros((1, 6, 2)), 2, dilation=0), "avg_pool.dilation"),
    (lambda: max_pool(jnp.zeros((1, 6, 2)), 2, return_indices=1), "max_pool.return_indices"),
    # One position and a window of 3: with stride 3 ceil mode still gives PyTorch's one window, with stride 1 none.
    (lambda: max_pool(jnp.zeros((1, 1, 2)), 3, strides=1, ceil_mode=True), "even in ceil mode"),
    (lambda: adaptive_max_pool(jnp.zeros((1, 6, 5, 2)), None), "adaptive_max_pool.output_size"),
    (lambda: adaptive_avg_pool(jnp.zeros((1, 6, 5, 2)), (None, 2, 3)), "adaptive_avg_pool.output_size: expected 2"),
    (lambda: adaptive_avg_pool(jnp.zeros((1, 6, 5, 2)), (None, 0)), "adaptive_avg_pool.output_size"),
])
def test_new_pool_options_raise_one_line_config_errors(call, fragment):
    with pytest.raises(ConfigError) as error:
        call()
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_ceil_mode_keeps_one_window_over_an_input_shorter_than_it():
    # PyTorch: ceil((1 - 2) / 2) + 1 = 1 window, which starts inside the input.
    np.testing.assert_array_equal(max_pool(_seq([7]), 2, ceil_mode=True)[0, :, 0], [7])


# --- adaptive pools with None ---------------------------------------------------------------------------------

def test_adaptive_pools_with_none_keep_that_dim():
    x = rand((2, 7, 5, 3))
    y = jitted(adaptive_max_pool, x, output_size=(None, 2))
    assert y.shape == (2, 7, 2, 3)
    np.testing.assert_allclose(y, ref.adaptive_pool(x, (None, 2), "max"), atol=1e-6)
    np.testing.assert_allclose(jitted(adaptive_avg_pool, x, output_size=(3, None)), ref.adaptive_pool(x, (3, None), "avg"),
                               atol=1e-6)
    np.testing.assert_array_equal(jitted(adaptive_avg_pool, x, output_size=(None, None)), x)
