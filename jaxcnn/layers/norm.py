"""Normalization layers, channels-last: thin, documented subclasses of Flax's, plus masked variants.

Statistics are always reduced in float32 (Flax's `force_float32_reductions`). Parameters are `scale` and `bias`
<param_dtype>[channels]; `BatchNorm` also keeps `mean` and `var` [channels] in the `batch_stats` collection, which
must be mutable in training: `model.apply(variables, x, mutable=["batch_stats"])`.
The masked variants zero their output at padded positions, so that a following convolution sees the same zero
padding it would see without the norm.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.errors import ConfigError
from jaxcnn.layers._checks import check_mask, check_spatial

Array = jax.Array


class BatchNorm(nn.BatchNorm):
    """Batch normalization (Ioffe & Szegedy 2015): `flax.linen.BatchNorm`.

    Training (`use_running_average=False`) normalizes with the mean and (biased) variance over every axis but the
    channels, and updates `batch_stats`: `ra = momentum * ra + (1 - momentum) * batch_stat`. Evaluation
    (`use_running_average=True`) uses the running averages, which start at mean 0 and var 1.

    Attributes:
      use_running_average: eval mode if True; may instead be passed to `__call__` (one of the two must be set).
      momentum: running-average decay (Flax's default 0.99; PyTorch's momentum=0.1 is 0.9 here).
      epsilon: added to the variance (default 1e-5).
      axis: channel axis (default -1).
      use_bias, use_scale: learn `bias` / `scale` (default True).
      dtype, param_dtype: computation and parameter dtypes.
      axis_name: a `pmap`/`shard_map` axis to average statistics over; unnecessary under `jit` with sharding.
    `__call__(x, use_running_average=None, *, mask=None)`: x <float>[batch, *spatial, channels] -> same shape.
    """


class LayerNorm(nn.LayerNorm):
    """Layer normalization (Ba et al. 2016) over the channels of each position: `flax.linen.LayerNorm`.

    Attributes:
      epsilon: added to the variance (Flax's default 1e-6).
      use_bias, use_scale: learn `bias` / `scale` [channels] (default True).
      reduction_axes, feature_axes: axes normalized over / carrying parameters (default -1).
      dtype, param_dtype: computation and parameter dtypes.
    `__call__(x)`: x <float>[batch, *spatial, channels] -> same shape.
    """


class InstanceNorm(nn.InstanceNorm):
    """Instance normalization (Ulyanov et al. 2016): per example and channel, over the spatial positions.

    Attributes:
      epsilon: added to the variance (Flax's default 1e-6).
      use_bias, use_scale: learn `bias` / `scale` [channels] (default True).
      dtype, param_dtype: computation and parameter dtypes.
    `__call__(x)`: x <float>[batch, *spatial, channels] -> same shape.
    """


class GroupNorm(nn.GroupNorm):
    """Group normalization (Wu & He 2018): per example, over the spatial positions and the channels of each group.

    Attributes:
      num_groups: channel groups (Flax's default 32; must divide the channels). 1 is a layer norm over positions
        and channels; `num_groups == channels` is an instance norm.
      group_size: channels per group, instead of `num_groups`.
      epsilon: added to the variance (Flax's default 1e-6).
      use_bias, use_scale: learn `bias` / `scale` [channels] (default True).
      dtype, param_dtype: computation and parameter dtypes.
    `__call__(x)`: x <float>[batch, *spatial, channels] -> same shape.
    """

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Args: x <float>[batch, *spatial, channels]; mask (optional) as Flax's, broadcastable to x.

        Returns:
          <float>[batch, *spatial, channels].
        """
        attr, value = ("group_size", self.group_size) if self.group_size is not None else ("num_groups",
                                                                                            self.num_groups)
        if not value or value < 1 or x.shape[-1] % value:
            raise ConfigError(f"GroupNorm.{attr}: {value} does not divide the input's {x.shape[-1]} channels")
        return super().__call__(x, mask=mask)


def _stats_mask(mask: Array, axes: tuple[int, ...]) -> Array:
    # Where no position over `axes` is real, statistics fall back to all positions: the output there is zeroed
    # anyway, and a mean over nothing would be NaN, whose gradient poisons everything upstream even through `where`.
    mask = jnp.asarray(mask, bool)
    return (mask | ~jnp.any(mask, axis=axes, keepdims=True))[..., None]


class MaskedBatchNorm(nn.BatchNorm):
    """Batch normalization whose statistics, and running-average updates, use only the real positions.

    Same attributes, parameters and `batch_stats` as `BatchNorm`; call it as `MaskedBatchNorm(...)(x, mask)`.
    If no position in the batch is real, the statistics fall back to all positions (the output is all zeros).
    """

    def __call__(self, x: Array, mask: Array, use_running_average: bool | None = None) -> Array:
        """Normalizes the real positions and zeroes the padded ones.

        Args:
          x: <float>[batch, *spatial, channels].
          mask: <bool>[batch, *spatial], True at real positions.
          use_running_average: eval mode; overrides the attribute.

        Returns:
          <float>[batch, *spatial, channels], 0 at padded positions.
        """
        check_spatial(x, "MaskedBatchNorm")
        check_mask(mask, x.shape[:-1], "MaskedBatchNorm")
        y = super().__call__(x, use_running_average, mask=_stats_mask(mask, tuple(range(mask.ndim))))
        return jnp.where(jnp.asarray(mask, bool)[..., None], y, 0).astype(y.dtype)


class MaskedInstanceNorm(nn.InstanceNorm):
    """Instance normalization over time whose per-example statistics use only the real positions.

    Same attributes and parameters as `InstanceNorm`; call it as `MaskedInstanceNorm(...)(x, mask)`. An example
    with no real position comes out all zeros.
    """

    def __call__(self, x: Array, mask: Array) -> Array:
        """Normalizes each example over its real positions and zeroes the padded ones.

        Args:
          x: <float>[batch, *spatial, channels].
          mask: <bool>[batch, *spatial], True at real positions.

        Returns:
          <float>[batch, *spatial, channels], 0 at padded positions.
        """
        check_spatial(x, "MaskedInstanceNorm")
        check_mask(mask, x.shape[:-1], "MaskedInstanceNorm")
        y = super().__call__(x, mask=_stats_mask(mask, tuple(range(1, mask.ndim))))
        return jnp.where(jnp.asarray(mask, bool)[..., None], y, 0).astype(y.dtype)
