"""Pure step functions, and the scans that run many of them per dispatch.

`train_step(state, batch, rng)` and `eval_step(state, batch)` are plain functions of arrays: jit them, vmap them
over members, or call them eagerly in a test. `train_steps` and `evaluate_steps` run a block of steps as one
`lax.scan` over rows of example indices into data that already lives on the device, so the host only sends a
small index array per block (no Python in the hot loop, one compilation per shape).

Batches are dicts: "ids" <int32>[batch, length] (or "image" <float32>[batch, h, w, c]), "label" <int32>[batch],
"mask" <bool>[batch] (False for padding examples, which weigh nothing), "index" <int32>[batch] (the example's
row in the dataset; per-example dropout keys derive from it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding

from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train.optim import penalty
from jaxcnn.train.state import TrainState

PyTree = Any
LossFn = Callable[..., jax.Array]


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *, loss_fn: LossFn,
               label_smoothing: float = 0.0, l1: float = 0.0, l2: float = 0.0) -> tuple[TrainState, dict]:
    """One optimizer step on the masked mean loss of a batch.

    The update is skipped (the state returned unchanged, `step` included) when the batch has no real example or
    when the loss or a gradient is not finite; `metrics["nonfinite"]` then reports the latter.

    Args:
      state: the train state. batch: see the module docstring. rng: the run's PRNG key; the step's key is
        `fold_in(rng, state.step)`, so a resumed run draws the same dropout masks.
    Returns:
      (new state, metrics) with metrics = batch sums {"loss_sum", "count", "confusion"} plus "nonfinite" (0/1),
      and "grad_norm" (zero for a skipped step).
    """
    step_rng = jax.random.fold_in(rng, state.step)
    mask = batch["mask"]
    weights = mask.astype(jnp.float32)
    count = jnp.sum(weights)
    mutable = list(state.model_state)
    sparse = state.sparse
    if sparse is None:
        fwd_batch, frozen, diff = batch, {}, state.params
    else:
        # Embedding tables enter as their batch rows only; the gradient is then <float32>[rows, dim].
        sub, fwd_batch, rows = sparse.gather(state.params, batch)
        diff = {k: v for k, v in sub.items() if k not in sparse.frozen}
        frozen = {k: sub[k] for k in sparse.frozen}

    def loss_and_aux(params):
        variables = {"params": {**params, **frozen}, **state.model_state}
        out = state.apply_fn(variables, fwd_batch, train=True, rng=step_rng, mutable=mutable or False)
        logits, new_model_state = out if mutable else (out, state.model_state)
        per_example = loss_fn(logits, batch["label"], label_smoothing)
        loss = jnp.sum(per_example * weights) / jnp.maximum(count, 1.0) + penalty(params, l1, l2)
        return loss, (logits, per_example, new_model_state)

    (loss, (logits, per_example, new_model_state)), grads = jax.value_and_grad(loss_and_aux, has_aux=True)(diff)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    apply = finite & (count > 0)

    def update(s: TrainState) -> TrainState:
        if sparse is None:
            updates, opt_state = s.tx.update(grads, s.opt_state, s.params)
            params = optax.apply_updates(s.params, updates)
        else:
            dense_grads = {k: v for k, v in grads.items() if k not in sparse.trainable}
            dense_params = {k: v for k, v in s.params.items() if k not in sparse.tables}
            updates, dense_state = s.tx.update(dense_grads, s.opt_state["dense"], dense_params)
            params = {**s.params, **optax.apply_updates(dense_params, updates)}
            opt_state = {"dense": dense_state, "sparse": s.opt_state["sparse"]}
        params = s.constraint(params)
        return s.replace(step=s.step + 1, params=params, opt_state=opt_state, model_state=new_model_state)

    new_state = jax.lax.cond(apply, update, lambda s: s, state)
    if sparse is not None:
        # Rows are written outside the cond, with `apply` folded into them: under jax.vmap (many models in one
        # program) a cond becomes a select over every leaf, which for a table would copy all of it each step.
        params, sparse_state = sparse.update(
            new_state.params, state.opt_state["sparse"], {k: grads[k]["embedding"] for k in sparse.trainable}, rows,
            state.step, apply)
        new_state = new_state.replace(params=params, opt_state={**new_state.opt_state, "sparse": sparse_state})
    out = metrics_lib.batch_counts(logits, batch["label"], mask, per_example)
    out["nonfinite"] = ((~finite) & (count > 0)).astype(jnp.int32)
    out["grad_norm"] = jnp.where(apply, grad_norm, 0.0)
    return new_state, out


def eval_step(state: TrainState, batch: dict[str, jax.Array], *, loss_fn: LossFn,
              aux: Any = None) -> dict[str, jax.Array]:
    """Metric sums of one batch in inference mode; padding examples (mask False) count for nothing."""
    logits = predict_step(state, batch, aux)
    return metrics_lib.batch_counts(logits, batch["label"], batch["mask"], loss_fn(logits, batch["label"], 0.0))


def predict_step(state: TrainState, batch: dict[str, jax.Array], aux: Any = None) -> jax.Array:
    """<float32>[batch, classes] logits in inference mode; `aux`: what the task's `inference_aux` precomputed
    (Kim's CNN: the embedding folded into the conv taps: same logits, a row lookup in place of a matmul)."""
    variables = {"params": state.params, **state.model_state}
    return state.apply_fn(variables, batch, train=False, rng=None, mutable=False, aux=aux)


def gather_batch(data: dict[str, jax.Array], idx: jax.Array,
                 sharding: NamedSharding | None = None) -> dict[str, jax.Array]:
    """Rows `idx` (<int32>[batch], -1 = padding) of on-device data, as a batch split over the mesh."""
    mask = idx >= 0
    safe = jnp.where(mask, idx, 0)
    batch = {k: jnp.take(v, safe, axis=0) for k, v in data.items()}
    batch["mask"] = mask
    batch["index"] = safe
    if sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, sharding)
    return batch


def empty_counts(num_classes: int) -> dict[str, jax.Array]:
    return {"loss_sum": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32),
            "confusion": jnp.zeros((num_classes, num_classes), jnp.float32)}


def train_steps(state: TrainState, data: dict[str, jax.Array], idx: jax.Array, rng: jax.Array, *,
                step_fn: Callable, num_classes: int, sharding: NamedSharding | None = None):
    """Runs one train step per row of `idx` (<int32>[steps, batch]; rows of -1 are no-ops) in a `lax.scan`.

    After a non-finite loss or gradient no further step updates the state, so the returned state is the last good
    one. Returns (state, summed metrics, first_bad_step) where first_bad_step is the optimizer step whose update
    was refused (-1 when all were finite).
    """

    def body(carry, row):
        state, sums, bad = carry
        row = jnp.where(bad >= 0, -1, row)
        new_state, m = step_fn(state, gather_batch(data, row, sharding), rng)
        bad = jnp.where((bad < 0) & (m["nonfinite"] > 0), state.step, bad)
        m["grad_norm_sum"] = m.pop("grad_norm")
        del m["nonfinite"]
        return (new_state, metrics_lib.add(sums, m), bad), None

    sums = empty_counts(num_classes) | {"grad_norm_sum": jnp.zeros((), jnp.float32)}
    (state, sums, bad), _ = jax.lax.scan(body, (state, sums, jnp.full((), -1, jnp.int32)), idx)
    return state, sums, bad


def evaluate_steps(state: TrainState, data: dict[str, jax.Array], idx: jax.Array, *, eval_fn: Callable,
                   num_classes: int, sharding: NamedSharding | None = None) -> dict[str, jax.Array]:
    """Summed eval metrics over every row of `idx` (<int32>[steps, batch], -1 = padding)."""

    def body(sums, row):
        return metrics_lib.add(sums, eval_fn(state, gather_batch(data, row, sharding))), None

    sums, _ = jax.lax.scan(body, empty_counts(num_classes), idx)
    return sums


def predict_logits(state: TrainState, data: dict[str, jax.Array], idx: jax.Array,
                   sharding: NamedSharding | None = None) -> jax.Array:
    """<float32>[steps, batch, classes] logits for each row of `idx`."""

    def body(_, row):
        return None, predict_step(state, gather_batch(data, row, sharding))

    _, logits = jax.lax.scan(body, None, idx)
    return logits


def bind(loss_fn: LossFn, *, label_smoothing: float = 0.0, l1: float = 0.0, l2: float = 0.0):
    """The step functions with the run's collaborators baked in (ready for `jax.jit` or `jax.vmap`)."""
    step = functools.partial(train_step, loss_fn=loss_fn, label_smoothing=label_smoothing, l1=l1, l2=l2)
    return step, functools.partial(eval_step, loss_fn=loss_fn)
