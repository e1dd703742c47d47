"""Dropout, spatial (channel) dropout, and activations by name.

Dropout draws from the "dropout" RNG stream: `model.apply(variables, x, rngs={"dropout": key})`. Kept values
are scaled by 1 / (1 - rate), so `deterministic=True` (evaluation) is the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import flax.linen as nn
import jax

from jaxcnn.errors import ConfigError

Array = jax.Array


def _identity(x: Array) -> Array:
    return x


ACTIVATIONS: MappingProxyType[str, Callable[[Array], Array]] = MappingProxyType({
    "relu": nn.relu,
    "gelu": nn.gelu,  # JAX's default tanh approximation, not PyTorch's exact erf form
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "leaky_relu": nn.leaky_relu,  # negative slope 0.01
    "elu": nn.elu,
    "selu": nn.selu,
    "swish": nn.swish,
    "silu": nn.silu,
    "softplus": nn.softplus,
    "identity": _identity,
    "linear": _identity,
})
"""Activation functions by name (read-only); "swish"/"silu" and "identity"/"linear" are synonyms."""


def get_activation(name: str) -> Callable[[Array], Array]:
    """The activation called `name` (case-insensitive) in `ACTIVATIONS`.

    Raises:
      ConfigError: unknown name; the message lists the choices.
    """
    fn = ACTIVATIONS.get(name.lower()) if isinstance(name, str) else None
    if fn is None:
        raise ConfigError(f"activation: unknown {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return fn


def _check_rate(owner: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{owner}.rate: dropout rate must be in [0, 1], got {rate!r}")


class Dropout(nn.Dropout):
    """Element-wise dropout: `flax.linen.Dropout` with its rate checked.

    Attributes:
      rate: probability of zeroing each element, in [0, 1].
      broadcast_dims: axes sharing one mask (e.g. `(1,)` drops whole channels of a sequence; see `SpatialDropout`).
      deterministic: identity if True; may instead be passed to `__call__`.
      rng_collection: RNG stream (default "dropout").
    `__call__(x, deterministic=None, rng=None)`: x <float>[...] -> same shape.
    """

    def __post_init__(self) -> None:
        _check_rate(type(self).__name__, self.rate)
        super().__post_init__()


class SpatialDropout(nn.Module):
    """Drops whole channels: one keep/drop draw per (example, channel), shared by every spatial position.

    Neighbouring positions of a convolutional feature map are strongly correlated, so element-wise dropout barely
    regularizes them (Tompson et al. 2015); dropping a channel everywhere does.

    Attributes:
      rate: probability of zeroing each channel of each example, in [0, 1].
      deterministic: identity if True; may instead be passed to `__call__`.
      rng_collection: RNG stream (default "dropout").
    """

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    def __post_init__(self) -> None:
        _check_rate(type(self).__name__, self.rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, deterministic: bool | None = None, rng: Array | None = None) -> Array:
        """Args: x <float>[batch, *spatial, channels]; deterministic overrides the attribute; rng replaces the stream.

        Returns:
          <float>[batch, *spatial, channels]: each channel of each example either all 0 or all x / (1 - rate).
        """
        if x.ndim < 3:
            raise ConfigError(f"SpatialDropout: expected input [batch, *spatial, channels], got shape {tuple(x.shape)}")
        return nn.Dropout(self.rate, broadcast_dims=tuple(range(1, x.ndim - 1)), deterministic=self.deterministic,
                          rng_collection=self.rng_collection, name="dropout")(x, deterministic, rng)
