"""Optax optimizers from `OptimConfig`, frozen parameters, penalties and Kim's max-norm constraint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxcnn.configs import DEFAULT_LR, OptimConfig
from jaxcnn.errors import ConfigError

PyTree = Any


def learning_rate(cfg: OptimConfig) -> float:
    return cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]


def make_schedule(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """constant; step (x decay_rate every decay_epochs); cosine to 0 over the run; warmup_cosine (linear warmup
    over warmup_epochs, then cosine)."""
    lr = learning_rate(cfg)
    total_steps = max(total_steps, 1)
    if cfg.schedule == "constant":
        return optax.constant_schedule(lr)
    if cfg.schedule == "step":
        every = max(int(round(cfg.decay_epochs * steps_per_epoch)), 1)
        return optax.exponential_decay(lr, transition_steps=every, decay_rate=cfg.decay_rate, staircase=True)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=total_steps)
    if cfg.schedule == "warmup_cosine":
        warmup = min(max(int(round(cfg.warmup_epochs * steps_per_epoch)), 1), total_steps - 1)
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=max(warmup, 0),
                                                  decay_steps=max(total_steps, warmup + 1))
    raise ConfigError(f"--schedule: unknown schedule {cfg.schedule!r}")


def base_optimizer(cfg: OptimConfig, lr: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    o = cfg.optimizer
    if o == "sgd":
        return optax.sgd(lr)
    if o == "momentum":
        return optax.sgd(lr, momentum=cfg.momentum)
    if o == "nesterov":
        return optax.sgd(lr, momentum=cfg.momentum, nesterov=True)
    if o == "adam":
        return optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    if o == "adamw":
        return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=_decay_mask)
    if o == "adagrad":
        return optax.adagrad(lr)
    if o == "rmsprop":
        return optax.rmsprop(lr)
    if o == "adadelta":
        return optax.adadelta(lr, rho=cfg.rho, eps=cfg.eps)
    raise ConfigError(f"--optimizer: unknown optimizer {o!r}")


def make_optimizer(cfg: OptimConfig, *, steps_per_epoch: int, total_steps: int,
                   trainable: PyTree | None = None) -> optax.GradientTransformation:
    """The full update rule: optional global-norm clipping, the optimizer with its schedule, decoupled weight
    decay on the kernels (built into adamw; `decoupled_weight_decay` after the others when weight_decay > 0).

    Args:
      trainable: a pytree of bools shaped like the params; False leaves (a static embedding) get no update and
        no optimizer state.
    """
    lr = make_schedule(cfg, steps_per_epoch, total_steps)
    parts = []
    if cfg.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts.append(base_optimizer(cfg, lr))
    if cfg.weight_decay and cfg.optimizer != "adamw":
        parts.append(decoupled_weight_decay(cfg.weight_decay, lr))
    tx = optax.chain(*parts) if len(parts) > 1 else parts[0]
    if trainable is not None and not all(jax.tree.leaves(trainable)):
        labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx


def decoupled_weight_decay(rate: float, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Adds -schedule(step) * rate * w to the optimizer's update of every kernel (Loshchilov & Hutter's decoupled
    decay, as adamw does it). Unlike an L2 penalty (`--l2`) or optax.add_decayed_weights placed before an adaptive
    optimizer, the decay is not rescaled by the optimizer's per-coordinate statistics."""

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        if params is None:
            raise ValueError("decoupled_weight_decay needs the params")
        step_size = schedule(state.count) * rate
        decayed = jax.tree.map(lambda u, p, m: u - step_size * p if m else u, updates, params, _decay_mask(params))
        return decayed, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def _is_weight(path: tuple, leaf: jax.Array) -> bool:
    """Kernels of dense and conv layers: the leaves that penalties and weight decay act on (not biases, norm
    scales or embeddings)."""
    return _leaf_name(path) == "kernel" and leaf.ndim >= 2


def _leaf_name(path: tuple) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def _decay_mask(params: PyTree) -> PyTree:
    return jax.tree_util.tree_map_with_path(_is_weight, params)


def penalty(params: PyTree, l1: float, l2: float) -> jax.Array:
    """l1 * sum|w| + l2/2 * sum w^2 over dense and conv kernels."""
    total = jnp.zeros((), jnp.float32)
    if not (l1 or l2):
        return total
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if _is_weight(path, leaf):
            if l1:
                total += l1 * jnp.sum(jnp.abs(leaf))
            if l2:
                total += 0.5 * l2 * jnp.sum(jnp.square(leaf))
    return total


def max_norm_constraint(params: PyTree, max_norm: float | None) -> PyTree:
    """Kim's constraint: every 2-D (dense) kernel <in, out> has each output unit's weight vector (a column)
    rescaled to L2 norm <= max_norm, with Kim's formula scale = min(norm, c) / (1e-7 + norm)."""
    if max_norm is None:
        return params

    def project(path, leaf):
        if _leaf_name(path) != "kernel" or leaf.ndim != 2:
            return leaf
        norms = jnp.sqrt(jnp.sum(jnp.square(leaf), axis=0, keepdims=True))
        return leaf * (jnp.clip(norms, 0.0, max_norm) / (1e-7 + norms))

    return jax.tree_util.tree_map_with_path(project, params)


def make_constraint(cfg: OptimConfig) -> Callable[[PyTree], PyTree]:
    return lambda params: max_norm_constraint(params, cfg.max_norm)
