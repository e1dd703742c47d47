"""Masks: sequence masks by hand, and conv output masks against a brute-force window scan."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.errors import ConfigError
from jaxcnn.layers import conv_output_mask, conv_output_size, sequence_mask

from . import np_reference as ref


def test_sequence_mask_by_hand():
    np.testing.assert_array_equal(sequence_mask(jnp.array([0, 2, 4]), 4),
                                  [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    assert sequence_mask(jnp.array([1]), 3).dtype == jnp.bool_
    with pytest.raises(ConfigError, match=r"sequence_mask.max_len"):
        sequence_mask(jnp.array([1]), 0)


def test_kim_padding_makes_every_window_touching_a_token_real():
    # A 5-token sentence with Kim's width - 1 = 4 padding tokens on both sides, then padded to 20 for batching.
    mask = np.zeros((1, 20), bool)
    mask[0, 4:9] = True
    out = np.asarray(conv_output_mask(jnp.asarray(mask), 5))
    assert out.shape == (1, 16)
    np.testing.assert_array_equal(np.flatnonzero(out[0]), np.arange(9))  # windows 0..8 touch tokens 4..8


def _brute_force(mask, k, s, padding, d):
    n = mask.shape[1]
    lo, hi = ref.pads(n, k, s, d, padding)
    padded = np.pad(mask, [(0, 0), (lo, hi)])
    out = (n + lo + hi - d * (k - 1) - 1) // s + 1
    return np.stack([padded[:, [o * s + j * d for j in range(k)]].any(axis=1) for o in range(out)], axis=1)


@pytest.mark.parametrize("k,s,padding,d", list(itertools.product([1, 3], [1, 2], ["VALID", "SAME", "CAUSAL", (2, 1)],
                                                                  [1, 2])))
def test_conv_output_mask_matches_window_scan(k, s, padding, d):
    mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1, 1, 0, 0], [0] * 9, [1] * 9], bool)
    out = conv_output_mask(jnp.asarray(mask), k, strides=s, padding=padding, kernel_dilation=d)
    assert out.shape == (4, conv_output_size(9, k, s, padding, d))
    np.testing.assert_array_equal(out, _brute_force(mask, k, s, padding, d))


def test_conv_output_mask_2d_and_errors():
    mask = np.zeros((1, 4, 5), bool)
    mask[0, 0, 0] = True
    out = np.asarray(conv_output_mask(jnp.asarray(mask), (2, 2), padding="VALID"))
    assert out.shape == (1, 3, 4) and out.sum() == 1 and out[0, 0, 0]
    with pytest.raises(ConfigError, match=r"conv_output_mask: expected a mask \[batch, \*spatial\]"):
        conv_output_mask(jnp.ones((2, 5, 1), bool), 3)
    with pytest.raises(ConfigError, match=r"conv_output_mask: input size 2 along spatial dim 0 is shorter"):
        conv_output_mask(jnp.ones((2, 2), bool), 3)
