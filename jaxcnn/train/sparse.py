"""Row-sparse, lazily updated embedding tables.

A batch of 50 sentences touches at most 50 x length rows of an embedding table (MR: 3,200 of 18,765), yet a
dense gradient and a dense optimizer update read and write every row each step. For optimizers whose step is
proportional to the current gradient, a row whose gradient is zero for k steps only has its accumulators decayed
(Adadelta: by rho^k; Adagrad: not at all), and that decay can be applied when the row is next touched. This module
does exactly that:

1. `gather`: the batch's distinct ids `rows` (<int32>[U], U = batch * length + 1, sorted, row 0 first) and the
   batch re-indexed into them; each table is replaced by its rows <float32>[U, dim] before the forward pass, so
   the gradient is <float32>[U, dim], never [vocab, dim].
2. `update`: catches the rows' accumulators up on the steps they missed, applies the optimizer's step to them and
   scatters the rows back.

It is used only where it is exact (to float rounding: rho^k is one power, not k products): Adadelta and Adagrad,
without gradient clipping (which needs the whole gradient's norm); weight decay acts on kernels only, never on a
table. Momentum and Adam keep moving untouched rows, so there it would change the maths, and the engine keeps
the dense update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any
LAZY_OPTIMIZERS = ("adadelta", "adagrad")


@dataclasses.dataclass(frozen=True)
class SparseTables:
    """Which params are embedding tables indexed by which batch key, and how trainable ones are updated.

    Attributes:
      trainable: top-level param names of tables updated lazily (e.g. ("embed",)); each holds `embedding`.
      frozen: names of tables that are only read (static embeddings); they are gathered the same way.
      ids_key: the batch entry holding the token ids.
      rule: "adadelta" or "adagrad". rho/eps/initial: the rule's constants (optax's defaults and meanings).
      learning_rate: the optimizer's schedule, called with the step count.
    """

    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    rule: str
    learning_rate: Callable[[jax.Array], jax.Array]
    rho: float = 0.95
    eps: float = 1e-6
    initial: float = 0.1
    ids_key: str = "ids"

    @property
    def tables(self) -> tuple[str, ...]:
        return self.trainable + self.frozen

    def init(self, params: PyTree) -> dict[str, dict[str, jax.Array]]:
        """Per trainable table: accumulators <float32>[vocab, dim] and `last` <int32>[vocab], the step count up to
        which each row's accumulators are current."""
        state = {}
        for name in self.trainable:
            table = params[name]["embedding"]
            last = jnp.zeros(table.shape[:1], jnp.int32)
            if self.rule == "adadelta":
                state[name] = {"e_g": jnp.zeros_like(table), "e_x": jnp.zeros_like(table), "last": last}
            else:
                state[name] = {"sum_sq": jnp.full_like(table, self.initial), "last": last}
        return state

    def gather(self, params: PyTree, batch: dict[str, jax.Array]):
        """(params with each table cut to the batch's rows, batch with ids re-indexed, rows)."""
        ids = batch[self.ids_key]
        flat = jnp.concatenate([jnp.zeros((1,), ids.dtype), ids.reshape(-1)])
        # Row 0 (padding) always comes first, so a re-indexed 0 still means padding; the fill entries repeat a
        # real row and are never indexed, so they get a zero gradient and write back an unchanged row.
        rows, inverse = jnp.unique(flat, size=flat.size, fill_value=0, return_inverse=True)
        sub = dict(params)
        for name in self.tables:
            sub[name] = {"embedding": jnp.take(params[name]["embedding"], rows, axis=0)}
        return sub, {**batch, self.ids_key: inverse[1:].reshape(ids.shape).astype(ids.dtype)}, rows

    def update(self, params: PyTree, state: dict, grads: dict[str, jax.Array], rows: jax.Array,
               step: jax.Array, apply: jax.Array | bool = True) -> tuple[PyTree, dict]:
        """Applies the lazy rule to the touched rows of every trainable table.

        Args:
          params: full params. state: from `init`. grads: {name: <float32>[U, dim]} gradients of the rows.
          rows: <int32>[U] from `gather`. step: the optimizer step count before this update.
          apply: <bool>[]: False writes the rows back unchanged (a skipped step).
        """
        params, state = dict(params), dict(state)
        lr = self.learning_rate(step)
        for name in self.trainable:
            table, s, g = params[name]["embedding"], state[name], grads[name]
            keep = jax.tree.map(lambda a: jnp.take(a, rows, axis=0), s)
            missed = (step - jnp.take(s["last"], rows)).astype(jnp.float32)[:, None]
            if self.rule == "adadelta":
                decay = jnp.power(jnp.float32(self.rho), missed)
                e_g = decay * jnp.take(s["e_g"], rows, axis=0)
                e_x = decay * jnp.take(s["e_x"], rows, axis=0)
                e_g = (1 - self.rho) * g * g + self.rho * e_g
                delta = jnp.sqrt(e_x + self.eps) / jnp.sqrt(e_g + self.eps) * g
                e_x = (1 - self.rho) * delta * delta + self.rho * e_x
                new_rows = jnp.take(table, rows, axis=0) - lr * delta
                new = {"e_g": e_g, "e_x": e_x}
            else:
                sum_sq = jnp.take(s["sum_sq"], rows, axis=0) + g * g
                delta = jnp.where(sum_sq > 0, jax.lax.rsqrt(sum_sq + self.eps), 0.0) * g
                new_rows = jnp.take(table, rows, axis=0) - lr * delta
                new = {"sum_sq": sum_sq}
            new["last"] = jnp.broadcast_to(step + 1, rows.shape).astype(jnp.int32)
            new = jax.tree.map(lambda n, k: jnp.where(apply, n, k), new, keep)
            state[name] = {k: s[k].at[rows].set(v) for k, v in new.items()}
            new_rows = jnp.where(apply, new_rows, jnp.take(table, rows, axis=0))
            params[name] = {"embedding": table.at[rows].set(new_rows)}
        return params, state


def split(params: PyTree, names: tuple[str, ...]) -> tuple[PyTree, PyTree]:
    """(params without the named top-level entries, those entries)."""
    return ({k: v for k, v in params.items() if k not in names}, {k: params[k] for k in names if k in params})


def make(optimizer: str, *, rho: float, eps: float, learning_rate: optax.Schedule, trainable: tuple[str, ...],
         frozen: tuple[str, ...]) -> SparseTables | None:
    """The lazy update for `optimizer`, or None where it would not be exact."""
    if optimizer not in LAZY_OPTIMIZERS or not (trainable or frozen):
        return None
    if optimizer == "adagrad":
        return SparseTables(trainable, frozen, "adagrad", learning_rate, eps=1e-7, initial=0.1)
    return SparseTables(trainable, frozen, "adadelta", learning_rate, rho=rho, eps=eps)
