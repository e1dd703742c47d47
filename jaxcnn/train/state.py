"""The training state: one pytree that the steps thread through and Orbax saves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

PyTree = Any


class TrainState(flax.struct.PyTreeNode):
    """Everything a step reads and writes.

    Attributes:
      step: <int32>[] optimizer steps taken.
      params: the model's parameters.
      opt_state: the optimizer's state.
      model_state: non-parameter collections (e.g. {"batch_stats": ...}); empty for the Kim CNN.
      apply_fn, tx, constraint: static: the model's apply, the Optax transformation, and the projection applied
        to the params after every update (Kim's max-norm).
      sparse: static: embedding tables updated lazily by rows (`jaxcnn.train.sparse`), or None. With it, `tx`
        covers the other params only and `opt_state` is {"dense": tx state, "sparse": per-table row state}.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    model_state: PyTree
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    constraint: Callable = flax.struct.field(pytree_node=False, default=lambda p: p)
    sparse: Any = flax.struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, *, apply_fn, params, tx, model_state=None, constraint=None, sparse=None) -> TrainState:
        if sparse is None:
            opt_state = tx.init(params)
        else:
            dense = {k: v for k, v in params.items() if k not in sparse.tables}
            opt_state = {"dense": tx.init(dense), "sparse": sparse.init(params)}
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                   model_state=model_state or {}, apply_fn=apply_fn, tx=tx,
                   constraint=constraint or (lambda p: p), sparse=sparse)

    def saveable(self) -> dict[str, PyTree]:
        """The arrays Orbax writes (static fields are rebuilt from the config)."""
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state,
                "model_state": self.model_state}

    def restore(self, saved: dict[str, PyTree]) -> TrainState:
        return self.replace(step=saved["step"], params=saved["params"], opt_state=saved["opt_state"],
                            model_state=saved["model_state"])
