"""Image CNNs in Flax Linen, channels-last: LeNet-5 (LeCun et al. 1998) and a small modern CNN.

Both take `<float32>[batch, height, width, channels]` images and return `<float32>[batch, classes]` logits, and
share one call signature, `model(images, *, train, mask=None, dropout_keys=None)`:
- `mask` <bool>[batch] marks the real examples of a padded batch; batch norm leaves the others out of its
  statistics, so a batch padded for 8 devices trains exactly like the unpadded one on 1.
- `dropout_keys` <key>[batch], one PRNG key per example, as in the text CNN (masks independent of batch layout).

Parameter names are stable (checkpoints depend on them): LeNet-5 `conv1`, `conv2`, `fc1`, `fc2`, `head`;
SmallCNN `conv{i}` + `bn{i}` per block, `separable/{depthwise,pointwise}` + `bn_separable`, `head`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn import layers
from jaxcnn.errors import ConfigError
from jaxcnn.models.text_cnn import per_example_dropout

Array = jax.Array

LENET_VARIANTS = ("classic", "modern")


def lenet_paddings(size: int, kernel: int = 5) -> tuple[str, str]:
    """LeNet-5's paddings for an input of `size` x `size` (padding="auto").

    LeCun et al. (1998) fed 32x32 fields: MNIST's 28x28 digits centred with 2 blank pixels each side, then two
    VALID 5x5 convolutions (32 -> 28 -> pool 14 -> 10 -> pool 5). So:
    - conv1 is VALID from 32x32 up, and SAME below (on 28x28 that is exactly LeCun's 2-pixel border);
    - conv2 is VALID when its input is at least 2 * kernel (the map stays >= 6 wide, 5x5x16 on 28x28 and 32x32),
      else SAME, which keeps small inputs such as scikit-learn's 8x8 digits working (8 -> 8 -> 4 -> 4 -> 2).
    """
    first = "VALID" if size >= 32 else "SAME"
    after = (size - kernel + 1 if first == "VALID" else size) // 2
    return first, "VALID" if after >= 2 * kernel else "SAME"


def resolve_impl(impl: str) -> str:
    """"auto" -> "matmul" on CPU, "xla" elsewhere. XLA's CPU convolution runs several times slower inside the
    engine's `lax.scan` than outside it (LeNet-5 on 28x28: 90 against 32 ms per step as a matmul), while on
    GPU/TPU the native convolution is the fast one."""
    if impl not in ("auto", "xla", "matmul"):
        raise ConfigError(f"conv_impl: {impl!r} is not one of auto, xla, matmul")
    if impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return impl


class MatmulConv(nn.Module):
    """A stride-1 2-D convolution computed as one matrix multiply over im2col patches.

    Parameters are exactly `layers.Conv`'s (`kernel` [kh, kw, in / groups, features], `bias` [features]), so the
    two are interchangeable under one name and checkpoints move between CPU and accelerators. Groups: 1 or
    depthwise (`feature_group_count` = in channels), the two kinds these models use.

    Attributes:
      features, kernel_size, padding, feature_group_count, use_bias, kernel_init: as in `layers.Conv`.
    """

    features: int
    kernel_size: tuple[int, int]
    padding: str = "SAME"
    feature_group_count: int = 1
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Args: inputs <float32>[batch, height, width, channels]. Returns: <float32>[batch, h', w', features]."""
        batch, height, width, channels = inputs.shape
        groups = self.feature_group_count
        if groups not in (1, channels) or self.features % groups:
            raise ConfigError(f"MatmulConv.feature_group_count: {groups} must be 1 or the {channels} input channels "
                              f"and divide features {self.features}")
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, channels // groups, self.features), jnp.float32)
        pads = [layers.explicit_padding(n, k, 1, self.padding) for n, k in ((height, kh), (width, kw))]
        x = jnp.pad(inputs, ((0, 0), pads[0], pads[1], (0, 0)))
        out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
        patches = jnp.stack([x[:, i:i + out_h, j:j + out_w] for i in range(kh) for j in range(kw)], axis=3)
        if groups == 1:
            y = patches.reshape(batch, out_h, out_w, -1) @ kernel.reshape(-1, self.features)
        else:
            # Output channel o belongs to input channel o // multiplier, as in XLA's grouped convolution.
            taps = kernel.reshape(kh * kw, channels, self.features // channels)
            y = jnp.einsum("bhwkc,kcm->bhwcm", patches, taps).reshape(batch, out_h, out_w, self.features)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return y


class MatmulSeparableConv(nn.Module):
    """`layers.DepthwiseSeparableConv` (stride 1, multiplier 1) with a `MatmulConv` depthwise half; same
    parameters (`depthwise/kernel`, `pointwise/kernel`, `pointwise/bias`)."""

    features: int
    kernel_size: tuple[int, int]
    padding: str = "SAME"
    use_bias: bool = True

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Args: inputs <float32>[batch, height, width, channels]. Returns: <float32>[batch, h', w', features]."""
        y = MatmulConv(inputs.shape[-1], self.kernel_size, self.padding, feature_group_count=inputs.shape[-1],
                       use_bias=False, name="depthwise")(inputs)
        return layers.PointwiseConv(self.features, use_bias=self.use_bias, name="pointwise")(y)


def conv(impl: str, features: int, kernel: int, padding: str, *, name: str, use_bias: bool = True) -> nn.Module:
    """A k x k stride-1 convolution named `name`: `layers.Conv` ("xla") or `MatmulConv` ("matmul")."""
    if resolve_impl(impl) == "matmul":
        return MatmulConv(features, (kernel, kernel), padding, use_bias=use_bias, name=name)
    return layers.Conv(features, (kernel, kernel), padding=padding, use_bias=use_bias, name=name)


def separable_conv(impl: str, features: int, kernel: int, *, name: str, use_bias: bool = True) -> nn.Module:
    """A k x k SAME depthwise-separable convolution: `layers.DepthwiseSeparableConv` or its matmul twin."""
    if resolve_impl(impl) == "matmul":
        return MatmulSeparableConv(features, (kernel, kernel), "SAME", use_bias=use_bias, name=name)
    return layers.DepthwiseSeparableConv(features, (kernel, kernel), padding="SAME", use_bias=use_bias, name=name)


class LeNet5(nn.Module):
    """LeNet-5: conv 5x5 -> subsample -> conv 5x5 -> subsample -> dense 120 -> dense 84 -> classes.

    "classic" is LeCun et al. (1998) with tanh and 2x2 average pooling, simplified as most ports do: plain tanh
    (not 1.7159 tanh(2a/3)), subsampling without its trainable coefficient and bias, C3 connected to all 6 maps
    (not the paper's partial table), and a linear output with softmax cross-entropy instead of RBF units. That
    is 61,706 parameters on a 32x32 (or 28x28) grey input with 10 classes, against the paper's 60,000.
    "modern" swaps in ReLU and max pooling.

    Attributes:
      num_classes: outputs of the head.
      variant: "classic" (tanh, average pooling) or "modern" (ReLU, max pooling).
      features: feature maps of the two convolutions (6, 16).
      hidden: sizes of the two dense layers (120, 84).
      kernel_size: of both convolutions (5).
      padding: "auto" (see `lenet_paddings`), or "SAME"/"VALID" for both convolutions.
      dropout: rate before the head (0: none, as in the paper).
      conv_impl: "auto" (matmul on CPU, XLA's convolution elsewhere), "xla" or "matmul"; same parameters.
    """

    num_classes: int
    variant: str = "modern"
    features: Sequence[int] = (6, 16)
    hidden: Sequence[int] = (120, 84)
    kernel_size: int = 5
    padding: str = "auto"
    dropout: float = 0.0
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False, mask: Array | None = None,
                 dropout_keys: Array | None = None) -> Array:
        """Args:
          images: <float32>[batch, height, width, channels].
          train: dropout on (needs `dropout_keys` when dropout > 0).
          mask: unused (LeNet-5 has no batch statistics); accepted for a common signature.
          dropout_keys: <key>[batch].
        Returns:
          <float32>[batch, num_classes] logits.
        """
        if self.variant not in LENET_VARIANTS:
            raise ConfigError(f"LeNet5.variant: {self.variant!r} is not one of {', '.join(LENET_VARIANTS)}")
        act = jnp.tanh if self.variant == "classic" else nn.relu
        pool = layers.avg_pool if self.variant == "classic" else layers.max_pool
        pads = (lenet_paddings(min(images.shape[1:3]), self.kernel_size) if self.padding == "auto"
                else (self.padding, self.padding))
        x = images
        for i, (features, pad) in enumerate(zip(self.features, pads), start=1):
            x = conv(self.conv_impl, features, self.kernel_size, pad, name=f"conv{i}")(x)
            x = pool(act(x), (2, 2))
        x = x.reshape(x.shape[0], -1)
        for i, size in enumerate(self.hidden, start=1):
            x = act(nn.Dense(size, name=f"fc{i}")(x))
        x = _dropout(x, self.dropout, train, dropout_keys)
        return nn.Dense(self.num_classes, name="head")(x)


class SmallCNN(nn.Module):
    """A small modern CNN: `depth` blocks of conv 3x3 -> batch norm -> ReLU -> 2x2 max pool (channels `width`,
    doubling per block), a depthwise-separable 3x3 stage -> batch norm -> ReLU, global average pooling, dropout,
    and a dense head.

    Pooling stops once a side would drop below 1 pixel, so any depth works on small images (8x8 digits: 8 -> 4
    -> 2 with depth 2). Batch norm: per-batch statistics over the real examples (`mask`) in training, running
    averages (the `batch_stats` collection, which the train state carries and the checkpoint saves) in eval. Under
    `jit` over a ('data',) mesh the batch is sharded but the statistics are reduced over the whole global batch
    (XLA inserts the cross-device sums), so they equal the 1-device statistics: no `axis_name` is needed.

    Attributes:
      num_classes: outputs of the head.
      width: channels of the first block (doubled per block).
      depth: number of conv blocks (>= 1).
      dropout: rate on the pooled features.
      momentum: batch-norm running-average decay (PyTorch's 0.1 is 0.9 here; small data sets converge faster
        than with Flax's 0.99).
      conv_impl: as in `LeNet5`.
    """

    num_classes: int
    width: int = 32
    depth: int = 2
    dropout: float = 0.0
    momentum: float = 0.9
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False, mask: Array | None = None,
                 dropout_keys: Array | None = None) -> Array:
        """Args:
          images: <float32>[batch, height, width, channels].
          train: batch statistics (and running-average updates: apply with `mutable=["batch_stats"]`), dropout.
          mask: <bool>[batch], True for real examples (None: all).
          dropout_keys: <key>[batch].
        Returns:
          <float32>[batch, num_classes] logits.
        """
        if self.depth < 1 or self.width < 1:
            raise ConfigError(f"SmallCNN: depth and width must be >= 1, got depth {self.depth}, width {self.width}")
        mask = jnp.ones(images.shape[:1], bool) if mask is None else mask
        norm = functools.partial(layers.MaskedBatchNorm, use_running_average=not train, momentum=self.momentum)
        x = images
        for i in range(1, self.depth + 1):
            x = conv(self.conv_impl, self.width * 2 ** (i - 1), 3, "SAME", use_bias=False, name=f"conv{i}")(x)
            x = nn.relu(norm(name=f"bn{i}")(x, _spatial_mask(mask, x)))
            if min(x.shape[1:3]) >= 2:
                x = layers.max_pool(x, (2, 2))
        x = separable_conv(self.conv_impl, self.width * 2 ** self.depth, 3, use_bias=False, name="separable")(x)
        x = nn.relu(norm(name="bn_separable")(x, _spatial_mask(mask, x)))
        x = _dropout(layers.global_avg_pool(x), self.dropout, train, dropout_keys)
        return nn.Dense(self.num_classes, name="head")(x)


def _spatial_mask(mask: Array, x: Array) -> Array:
    """<bool>[batch] -> <bool>[batch, height, width]: every position of a real example counts."""
    return jnp.broadcast_to(mask[:, None, None], x.shape[:3])


def _dropout(x: Array, rate: float, train: bool, keys: Array | None) -> Array:
    if not train or rate == 0.0:
        return x
    if keys is None:
        raise ValueError("dropout in training needs dropout_keys (one PRNG key per example)")
    return per_example_dropout(x, rate, keys)


IMAGE_MODELS = {
    "lenet5": functools.partial(LeNet5, variant="modern"),
    "lenet5_classic": functools.partial(LeNet5, variant="classic"),
    "small_cnn": SmallCNN,
}
"""`--model` name -> constructor taking `num_classes` (and the model's other attributes)."""
