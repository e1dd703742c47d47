"""jaxcnn.layers: Flax Linen layers and pure functions for CNNs, channels-last, 1-D and 2-D.

Sequences are `[batch, length, channels]`, images `[batch, height, width, channels]`; a kernel's rank is
`len(kernel_size)` (an int means 1-D). Bad attributes or input shapes raise a one-line `jaxcnn.errors.ConfigError`
naming the layer. The table with every shape is `docs/layers.md`.

Contents
  conv        Conv, DepthwiseSeparableConv, ConvTranspose, PointwiseConv, MultiScaleConv (Kim's 3/4/5 bank), bank_taps,
              shifted_tap_sums
  pool        max_pool, max_unpool, avg_pool, global_max_pool, global_avg_pool, adaptive_max_pool,
              adaptive_avg_pool, masked_max_over_time, masked_mean_over_time, k_max_pool
  masking     sequence_mask, conv_output_mask
  norm        BatchNorm, LayerNorm, InstanceNorm, GroupNorm, MaskedBatchNorm, MaskedInstanceNorm
  regularize  Dropout, SpatialDropout, ACTIVATIONS, get_activation
  bf16_ffi    route, matmul: bfloat16 products through jaxcnn's XLA FFI kernel (AMX), used by mixed_matmul
  shapes      conv_output_size, pool_output_size, transposed_output_size, explicit_padding, transposed_cropping,
              receptive_field, ReceptiveField, conv_param_count, count_params
"""

from jaxcnn.layers import bf16_ffi
from jaxcnn.layers.conv import (Conv, ConvTranspose, DepthwiseSeparableConv, MultiScaleConv, PointwiseConv,
                                accumulates_in_float32, bank_taps, mixed_matmul,
                                shifted_tap_sums)
from jaxcnn.layers.masking import conv_output_mask, sequence_mask
from jaxcnn.layers.norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, MaskedBatchNorm, MaskedInstanceNorm
from jaxcnn.layers.pool import (adaptive_avg_pool, adaptive_max_pool, avg_pool, global_avg_pool, global_max_pool,
                                k_max_pool, masked_max_over_time, masked_mean_over_time, max_pool, max_unpool)
from jaxcnn.layers.regularize import ACTIVATIONS, Dropout, SpatialDropout, get_activation
from jaxcnn.layers.shapes import (ReceptiveField, conv_output_size, conv_param_count, count_params, explicit_padding,
                                  pool_output_size, receptive_field, transposed_cropping, transposed_output_size)

__all__ = [
    "Conv", "ConvTranspose", "DepthwiseSeparableConv", "MultiScaleConv", "PointwiseConv", "bank_taps", "shifted_tap_sums",
    "accumulates_in_float32", "mixed_matmul", "bf16_ffi",
    "max_pool", "max_unpool", "avg_pool", "global_max_pool", "global_avg_pool", "adaptive_max_pool", "adaptive_avg_pool",
    "masked_max_over_time", "masked_mean_over_time", "k_max_pool",
    "sequence_mask", "conv_output_mask",
    "BatchNorm", "LayerNorm", "InstanceNorm", "GroupNorm", "MaskedBatchNorm", "MaskedInstanceNorm",
    "Dropout", "SpatialDropout", "ACTIVATIONS", "get_activation",
    "conv_output_size", "pool_output_size", "transposed_output_size", "explicit_padding", "transposed_cropping",
    "receptive_field", "ReceptiveField", "conv_param_count", "count_params",
]
