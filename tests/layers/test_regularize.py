"""Dropout, spatial dropout and activations by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.errors import ConfigError
from jaxcnn.layers import ACTIVATIONS, Dropout, SpatialDropout, get_activation

from .util import rand

RNGS = {"dropout": jax.random.key(3)}


@pytest.mark.parametrize("module", [Dropout(0.5), SpatialDropout(0.5)])
def test_dropout_is_the_identity_when_deterministic(module):
    x = rand((4, 6, 5))
    np.testing.assert_array_equal(module.apply({}, x, deterministic=True), x)
    np.testing.assert_array_equal(module.clone(deterministic=True).apply({}, x), x)


@pytest.mark.parametrize("module", [Dropout(0.0), SpatialDropout(0.0)])
def test_rate_zero_is_the_identity_in_training(module):
    x = rand((2, 6, 5))
    np.testing.assert_array_equal(module.apply({}, x, deterministic=False, rngs=RNGS), x)


def test_dropout_zeroes_elements_and_rescales_the_rest():
    x = 1.0 + np.abs(rand((8, 20, 16)))
    y = np.asarray(Dropout(0.25).apply({}, x, deterministic=False, rngs=RNGS))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    assert abs(1 - kept.mean() - 0.25) < 0.03
    # Element-wise: some channel is partly dropped and partly kept along time.
    assert np.any(kept.any(axis=1) & ~kept.all(axis=1))


@pytest.mark.parametrize("shape", [(8, 20, 16), (4, 5, 6, 16)])
def test_spatial_dropout_drops_whole_channels_and_rescales(shape):
    x = 1.0 + np.abs(rand(shape))
    y = np.asarray(SpatialDropout(0.4).apply({}, x, deterministic=False, rngs=RNGS))
    kept = y != 0
    spatial = tuple(range(1, len(shape) - 1))
    # One draw per (example, channel): every spatial position agrees.
    np.testing.assert_array_equal(kept.all(axis=spatial), kept.any(axis=spatial))
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-6)
    per_channel = kept.all(axis=spatial)
    assert 0 < per_channel.mean() < 1
    assert abs(1 - per_channel.mean() - 0.4) < 0.2


def test_dropout_needs_an_rng_in_training_and_a_valid_rate():
    with pytest.raises(Exception, match="dropout"):
        SpatialDropout(0.5).apply({}, jnp.ones((2, 3, 4)), deterministic=False)
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"Dropout.rate: dropout rate must be in \[0, 1\]"):
            Dropout(bad)
        with pytest.raises(ConfigError, match=r"SpatialDropout.rate"):
            SpatialDropout(bad)
    with pytest.raises(ConfigError, match="SpatialDropout: expected input"):
        SpatialDropout(0.5).apply({}, jnp.ones((2, 3)), deterministic=True)


def test_activations_by_name():
    x = jnp.linspace(-3, 3, 13)
    expected = {
        "relu": np.maximum(x, 0), "tanh": np.tanh(x), "sigmoid": 1 / (1 + np.exp(-x)),
        "leaky_relu": np.where(x > 0, x, 0.01 * x), "elu": np.where(x > 0, x, np.expm1(x)),
        "selu": 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
        "swish": x / (1 + np.exp(-x)), "silu": x / (1 + np.exp(-x)), "softplus": np.log1p(np.exp(x)),
        "identity": x, "linear": x, "gelu": jax.nn.gelu(x),
    }
    assert set(ACTIVATIONS) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(get_activation(name)(x), values, atol=1e-5, err_msg=name)
    assert get_activation("ReLU") is ACTIVATIONS["relu"]


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ConfigError) as error:
        get_activation("rleu")
    message = str(error.value)
    assert "unknown 'rleu'" in message and "\n" not in message
    assert all(name in message for name in ACTIVATIONS)
    with pytest.raises(TypeError):
        ACTIVATIONS["mine"] = abs
