"""Kim (2014) CNN for sentence classification, in Flax Linen.

    ids -> embed (one or two channels) -> conv bank (widths 3/4/5 x 100 maps, VALID) -> ReLU
        -> masked max-over-time per width -> concat -> dropout -> [dense hidden layers] -> dense head -> logits

Parameter names are stable (checkpoints depend on them): `embed/embedding` (trainable table), `embed_static/
embedding` (frozen table), `bank/conv_w{k}/{kernel,bias}`, `hidden_{i}`, `norm`, `head/{kernel,bias}`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn import layers

VARIANTS = ("rand", "static", "non-static", "multichannel")


def uniform_embedding_init(scale: float = 0.25, pad_id: int = 0):
    """U(-scale, scale) rows (Kim's init for random and unknown words) with the padding row zero."""

    def init(key, shape, dtype=jnp.float32):
        table = jax.random.uniform(key, shape, dtype, -scale, scale)
        return table.at[pad_id].set(0.0)

    return init


def kim_conv_init(length: int, activation: str):
    """Kim's conv-filter init (conv_net_classes.py `LeNetConvPoolLayer`): U(-0.01, 0.01) for ReLU or no
    non-linearity; otherwise Glorot-uniform with the fan-out divided by the pooling size (max over the whole
    output, `length - width + 1`). Kernel shape <width, in, maps>."""
    small = activation.lower() in ("relu", "identity", "linear", "none")

    def init(key, shape, dtype=jnp.float32):
        width, channels, maps = shape
        if small:
            bound = 0.01
        else:
            fan_in = width * channels
            fan_out = maps * width * channels / max(length - width + 1, 1)
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def per_example_dropout(x: jax.Array, rate: float | jax.Array, keys: jax.Array, rescale: bool = True) -> jax.Array:
    """Inverted dropout (or, with rescale False, Kim's: kept units unscaled) whose mask for example i depends only
    on keys[i].

    A batch-wide key would make the masks depend on the batch's size and layout, so padding a batch to a
    multiple of the device count, or sharding it, would change which units drop; per-example keys (the trainer
    derives them from the seed, the step and the example's index) make a step identical on 1 or 8 devices.

    Args:
      x: <float>[batch, ...]. rate: a number, or a traced <float32>[] (a vmapped search over rates).
      keys: <key>[batch] typed PRNG keys.
    Returns:
      <float>[batch, ...]
    """
    if _is_zero(rate):
        return x
    keep = 1.0 - rate
    masks = jax.vmap(lambda k: jax.random.bernoulli(k, keep, x.shape[1:]))(keys)
    return jnp.where(masks, x / keep if rescale else x, jnp.zeros_like(x))


def _is_zero(rate: float | jax.Array) -> bool:
    # A traced rate cannot be tested in Python; it takes the general path, which is exact at rate 0 too.
    return isinstance(rate, (int, float)) and rate == 0.0


def pool_over_time(h: jax.Array, mask: jax.Array, *, pooling: str = "max", k: int = 1) -> jax.Array:
    """<float>[batch, length, maps] -> <float>[batch, maps] (k * maps for kmax); padding never counts."""
    if pooling == "max":
        return layers.masked_max_over_time(h, mask)
    if pooling == "avg":
        return layers.masked_mean_over_time(h, mask)
    if pooling == "kmax":
        return layers.k_max_pool(h, k, mask=mask).reshape(h.shape[0], -1)
    raise ValueError(f"unknown pooling {pooling!r}")


class TextCNN(nn.Module):
    """Kim (2014)'s CNN.

    Attributes:
      vocab_size: rows of the embedding table(s); id 0 is padding and stays a zero vector.
      num_classes: outputs of the head.
      variant: rand | static | non-static | multichannel. static and multichannel hold a frozen table
        (`embed_static`, behind `stop_gradient`; the optimizer also leaves it alone); multichannel applies each
        filter to both channels and sums: by linearity that is one convolution of the summed embeddings, which
        halves the convolution cost.
      embed_dim: embedding size (pretrained tables overwrite the initial ones after `init`).
      windows: filter widths. maps: feature maps per width.
      activation: name from `jaxcnn.layers.ACTIVATIONS`.
      conv_init: "kim" (`kim_conv_init`: U(-0.01, 0.01) for ReLU, as in Kim's code) or "glorot" (Glorot-uniform).
      pooling: "max" (1-max over time), "kmax" (k-max, order kept), "avg"; all masked so padding never counts.
      k: k for kmax pooling.
      dropout: rate on the penultimate features (and after each hidden layer); a number, or a traced scalar
        (`jaxcnn.train.program` binds one per member to search over rates inside one program).
      dropout_scaling: "inverted" (x 1/(1-p) in training) or "kim" (x (1-p) at test time, as Kim's code).
      hidden: sizes of extra dense layers before the head.
      norm: "none", "layer" or "batch" normalisation of the pooled features.
      pad_id: the padding token id.
      dtype: the arithmetic of the filter bank and the head (None: float32). A 16-bit float (bfloat16) multiplies
        in it and accumulates in float32: the bank's outputs, the pooled features and the logits stay float32, as
        do the parameters (the usual mixed precision of GPU and TPU training).
    """

    vocab_size: int
    num_classes: int
    variant: str = "rand"
    embed_dim: int = 300
    windows: Sequence[int] = (3, 4, 5)
    maps: int = 100
    activation: str = "relu"
    conv_init: str = "kim"
    pooling: str = "max"
    k: int = 1
    dropout: float = 0.5
    dropout_scaling: str = "inverted"
    hidden: Sequence[int] = ()
    norm: str = "none"
    pad_id: int = 0
    dtype: Any = None

    @nn.compact
    def __call__(self, ids: jax.Array, *, train: bool = False, dropout_keys: jax.Array | None = None,
                 folded: jax.Array | None = None) -> jax.Array:
        """Args:
          ids: <int32>[batch, length] token ids, padded with `pad_id` (Kim: widest window - 1 on both sides).
          train: dropout on (needs `dropout_keys`) and batch norm in batch-statistics mode.
          dropout_keys: <key>[batch] one PRNG key per example (see `per_example_dropout`).
          folded: inference only: `fold_embeddings(params, windows)`, <float32>[vocab, sum(windows) * maps]; the
            embedding lookup and the convolution's matrix multiply then become one row lookup (same logits).
        Returns:
          <float32>[batch, num_classes] logits.
        """
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choices: {VARIANTS}")
        if self.dropout_scaling not in ("inverted", "kim"):
            raise ValueError(f"unknown dropout_scaling {self.dropout_scaling!r}; choices: inverted, kim")
        if folded is not None and train:
            raise ValueError("TextCNN: folded tables are for inference; they would not train the embeddings")
        token_mask = ids != self.pad_id
        init = uniform_embedding_init(0.25, self.pad_id)
        if folded is not None:
            x = jnp.take(folded, ids, axis=0)
        else:
            x = None
            if self.variant != "static":
                table = self.param_table("embed", init)
                x = jnp.take(table, ids, axis=0)
            if self.variant in ("static", "multichannel"):
                table = jax.lax.stop_gradient(self.param_table("embed_static", init))
                frozen = jnp.take(table, ids, axis=0)
                x = frozen if x is None else x + frozen
        # The padding row is zero at init; masking keeps it out of the gradient too, so no optimizer can move it.
        x = jnp.where(token_mask[..., None], x, 0.0)

        act = layers.get_activation(self.activation)
        kernel_init = (kim_conv_init(ids.shape[1], self.activation) if self.conv_init == "kim"
                       else nn.initializers.glorot_uniform())
        features = layers.MultiScaleConv(widths=tuple(self.windows), features=self.maps, activation=act,
                                         kernel_init=kernel_init, dtype=self.dtype,
                                         pool=functools.partial(pool_over_time, pooling=self.pooling, k=self.k),
                                         name="bank")(x, token_mask, projected=folded is not None)
        if self.norm == "layer":
            features = nn.LayerNorm(name="norm")(features)
        elif self.norm == "batch":
            features = nn.BatchNorm(use_running_average=not train, name="norm")(features)
        for i, size in enumerate(self.hidden):
            features = self.drop(features, train, dropout_keys, i)
            features = act(nn.Dense(size, name=f"hidden_{i}")(features))
        features = self.drop(features, train, dropout_keys, len(self.hidden))
        # Kim starts the softmax layer at zero.
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head",
                        dot_general=_dot_accumulating(self.dtype))(features)

    def param_table(self, name: str, init) -> jax.Array:
        return EmbeddingTable(self.vocab_size, self.embed_dim, init, name=name)()

    def drop(self, x: jax.Array, train: bool, keys: jax.Array | None, layer: int) -> jax.Array:
        kim = self.dropout_scaling == "kim"
        if _is_zero(self.dropout):
            return x
        if not train:
            return x * (1.0 - self.dropout) if kim else x
        if keys is None:
            raise ValueError("TextCNN(train=True) needs dropout_keys")
        return per_example_dropout(x, self.dropout, jax.vmap(functools.partial(jax.random.fold_in, data=layer))(keys),
                                   rescale=not kim)


def _dot_accumulating(dtype: Any):
    """The head's `dot_general`: `lax.dot_general`, or for a 16-bit `dtype` `layers.mixed_matmul` (products in
    `dtype`, float32 sums, forward and backward; float32 parameters and logits)."""
    if not layers.accumulates_in_float32(dtype):
        return jax.lax.dot_general

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
        (contract_lhs, contract_rhs), batch = dimension_numbers
        if tuple(contract_lhs) != (lhs.ndim - 1,) or tuple(contract_rhs) != (0,) or batch != ((), ()):
            raise ValueError(f"mixed precision head: unexpected dot dimensions {dimension_numbers}")
        return layers.mixed_matmul(lhs, rhs, dtype)

    return dot_general


class EmbeddingTable(nn.Module):
    """A <float32>[vocab_size, dim] table held as the parameter `embedding`.

    Attributes:
      vocab_size, dim: table shape. init: initializer.
    """

    vocab_size: int
    dim: int
    init: object

    @nn.compact
    def __call__(self) -> jax.Array:
        if self.has_variable("params", "embedding"):
            # Any number of rows: the engine's lazy embedding update passes only a batch's rows, re-indexed.
            return self.get_variable("params", "embedding")
        return self.param("embedding", self.init, (self.vocab_size, self.dim))


def fold_embeddings(params, windows: Sequence[int]) -> jax.Array:
    """<float32>[vocab, sum(windows) * maps]: the embedding table(s) times the conv bank's taps, for inference.

    Kim's convolution is linear in the embeddings, so `table[ids] @ taps == (table @ taps)[ids]`: precomputed once
    per set of parameters, it turns the bank's matrix multiply (about 44 MFLOP per 64-token sentence) into a row
    lookup. Multichannel sums its two tables first (each filter sees both channels, summed). The table is
    `sum(windows) * maps / embed_dim` times the embedding's size (4x for Kim's 3/4/5 x 100 on 300-d).
    """
    tables = [params[name]["embedding"] for name in ("embed", "embed_static") if name in params]
    table = functools.reduce(jnp.add, tables)
    taps = layers.bank_taps([params["bank"][f"conv_w{w}"]["kernel"] for w in windows])
    return jnp.dot(table, taps.astype(table.dtype), precision=jax.lax.Precision.HIGHEST)


def folded_size(vocab_size: int, windows: Sequence[int], maps: int) -> int:
    """Bytes of `fold_embeddings`' table (float32)."""
    return 4 * vocab_size * sum(windows) * maps


def trainable_mask(params) -> dict:
    """A bool pytree like `params`: False for the frozen (static) embedding table."""
    return {k: jax.tree.map(lambda _: k != "embed_static", v) for k, v in params.items()}

