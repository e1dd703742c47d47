"""A program of K models: their stacked states and the jit-compiled functions that train, evaluate and select
them. `jaxcnn train` is a program of one member; `cv`, `search`, `ensemble` and `reproduce` are programs of K.

K members (CV folds, seeds, bootstrap resamples, boosting rounds, values of optimizer hyper-parameters or of the
dropout rate) train as ONE jit-compiled program: `jax.vmap` of the engine's `train_steps` over a leading member
axis (for one member, the same function on the state with that axis squeezed away). The task's encoded examples
live once on the device in a shared pool, and each member owns index sets into it (its train, dev and test
rows). Each member keeps its own data order, dropout stream, model selection (test score at its best dev epoch)
and early stopping: a stopped member's index rows become -1, which the step treats as "no update".

How a member's batch is built. `train_steps` gathers rows of `data` by index and derives the per-example
randomness from each example's index. Here member k indexes its own training LIST (positions 0..n_k-1, in the
order the protocol gives its train rows), so its data order, dropout keys and updates depend only on its seed and
its data. `train_steps` runs with an empty `data` dict (its gather then only builds the mask and the positions);
`member_step` maps the positions to pool rows through the member's table, and adds the member's example weights
(boosting) as a float mask, which `train_step` treats as loss weights (sum(w * loss) / sum(w)). The table,
weights, dropout rate and PRNG key travel as the `rng` argument of `train_steps`, which hands it to the step.

Vmapped hyper-parameters. `OPTIMIZER_HPARAMS` become per-member arrays through `optax.inject_hyperparams`;
`dropout` is a per-member traced rate (the task's forward is rebuilt with it inside the step). Everything else
(shapes: windows, maps, embed_dim; static choices: optimizer, max_norm, batch size) must be equal across members:
run other values as separate programs.

Devices: `jaxcnn.train.parallel.make_mesh`. Arrays are placed with `parallel.put`, so the same code runs over
every process of a multi-host job (`parallel.initialize_distributed`), each process supplying its own shards.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.configs import Config, OptimConfig
from jaxcnn.errors import ConfigError
from jaxcnn.tasks.api import Task, TaskData
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train import parallel, sparse as sparse_lib
from jaxcnn.train.losses import get_loss
from jaxcnn.train.optim import learning_rate, make_constraint, make_optimizer, make_schedule
from jaxcnn.train.parallel import DATA_AXIS, MEMBERS_AXIS, put, to_host
from jaxcnn.train.state import TrainState
from jaxcnn.train.steps import bind, evaluate_steps, predict_logits, train_steps

log = logging.getLogger("jaxcnn")
OPTIMIZER_HPARAMS = ("lr", "rho", "eps", "momentum", "b1", "b2")
VMAPPED_HPARAMS = (*OPTIMIZER_HPARAMS, "dropout")
PyTree = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Member:
    """One model of a program.

    Attributes:
      name: its label in tables and logs ("fold 3 seed 1").
      seed: the init key, the data order and the dropout stream, as `jaxcnn train --seed`.
      train, dev, test: <int32>[n] rows of the shared pool. `train` may repeat rows (bootstrap); its order is the
        order of the member's training list, which its data order permutes.
      fold: the CV fold it tests on, or None.
      weights: <float32>[len(train)] loss weight of each training example (boosting), or None for all 1.
      hparams: values of `VMAPPED_HPARAMS` for this member, e.g. {"lr": 0.5, "dropout": 0.3}.
    """

    name: str
    seed: int
    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray
    fold: int | None = None
    weights: np.ndarray | None = None
    hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def rows(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "dev": self.dev, "test": self.test}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "fold": self.fold, "hparams": dict(self.hparams),
                "weighted": self.weights is not None, "train_examples": len(self.train),
                "dev_examples": len(self.dev), "test_examples": len(self.test)}


def epoch_indices(n: int, batch_size: int, padded_batch: int, seed: int, epoch: int,
                  steps_per_dispatch: int) -> np.ndarray:
    """Example positions of one epoch as <int32>[blocks, steps_per_dispatch, padded_batch].

    A seeded permutation of all n examples cut into batches of `batch_size`; the last batch, the slots that pad a
    batch to a multiple of the device count, and the rows that fill the last block are -1 (masked, no update).
    Depends only on (seed, epoch), which is what makes resuming exact.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
    steps = math.ceil(n / batch_size)
    blocks = math.ceil(steps / steps_per_dispatch)
    out = np.full((blocks * steps_per_dispatch, padded_batch), -1, np.int32)
    flat = np.full(steps * batch_size, -1, np.int32)
    flat[:n] = perm
    out[:steps, :batch_size] = flat.reshape(steps, batch_size)
    return out.reshape(blocks, steps_per_dispatch, padded_batch)


def create_state(cfg: Config, task: Task, forward: Callable, params: PyTree, model_state: PyTree,
                 steps_per_epoch: int) -> TrainState:
    """One member's initial TrainState: the optimizer from the config, Kim's max-norm, and lazy embedding rows
    where that is exact (`jaxcnn.train.sparse`)."""
    o = cfg.optim
    total = steps_per_epoch * cfg.train.epochs
    trainable = task.trainable(cfg, params)
    sparse = None
    # Weight decay acts on kernels only, so it leaves the rows' update exact; clipping needs the whole gradient.
    if o.lazy_embeddings and o.clip_norm is None:
        tables = task.embedding_tables(cfg, params)
        sparse = sparse_lib.make(o.optimizer, rho=o.rho, eps=o.eps, trainable=tables[0], frozen=tables[1],
                                 learning_rate=make_schedule(o, steps_per_epoch, total))
    if sparse is not None:
        trainable = {k: v for k, v in trainable.items() if k not in sparse.tables}
    tx = make_optimizer(o, steps_per_epoch=steps_per_epoch, total_steps=total, trainable=trainable)
    return TrainState.create(apply_fn=forward, params=params, tx=tx, model_state=model_state,
                             constraint=make_constraint(o), sparse=sparse)


def injected_optimizer(cfg: OptimConfig, *, steps_per_epoch: int, total_steps: int,
                       trainable: PyTree) -> optax.GradientTransformation:
    """The config's optimizer with `OPTIMIZER_HPARAMS` as state entries (`optax.inject_hyperparams`), so that
    each member of a stacked state carries its own values."""

    def factory(lr, rho, eps, momentum, b1, b2):
        # dataclasses.replace, not Config.replace: these are traced values, which the type checks refuse.
        return make_optimizer(dataclasses.replace(cfg, lr=lr, rho=rho, eps=eps, momentum=momentum, b1=b1, b2=b2),
                              steps_per_epoch=steps_per_epoch, total_steps=total_steps, trainable=trainable)

    return optax.inject_hyperparams(factory)(lr=learning_rate(cfg), rho=cfg.rho, eps=cfg.eps,
                                             momentum=cfg.momentum, b1=cfg.b1, b2=cfg.b2)


def member_initializer(cfg: Config, task: Task, data: TaskData, steps_per_epoch: int,
                       hparam_names: Sequence[str]) -> Callable[..., TrainState]:
    """`init_one(key_data, pretrained, hp_values) -> TrainState`: one member's initial state from its init key
    data <uint32>[2], its pretrained arrays (`TaskData.pretrained`, or None) and its injected optimizer values
    {name: <float32>[]}. Vmap it over members."""
    opt_names = [n for n in hparam_names if n in OPTIMIZER_HPARAMS]
    if opt_names:
        # Lazy embedding rows carry their own constants, which injected hyper-parameters would not reach.
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lazy_embeddings=False))
    forward = task.forward(cfg, data)

    def init_one(key_data: jax.Array, pretrained: PyTree | None, hp_values: dict[str, jax.Array]) -> TrainState:
        params, model_state = task.init(cfg, data, jax.random.wrap_key_data(key_data), pretrained)
        state = create_state(cfg, task, forward, params, model_state, steps_per_epoch)
        if not opt_names:
            return state
        tx = injected_optimizer(cfg.optim, steps_per_epoch=steps_per_epoch,
                                total_steps=steps_per_epoch * cfg.train.epochs,
                                trainable=task.trainable(cfg, params))
        opt_state = tx.init(params)
        return state.replace(tx=tx, opt_state=opt_state._replace(hyperparams={**opt_state.hyperparams,
                                                                              **hp_values}))

    return init_one


def abstract_state(cfg: Config, task: Task, data: TaskData, members: Sequence[Mapping[str, Any]]
                   ) -> tuple[TrainState, dict[str, Any]]:
    """(the stacked TrainState's shapes, the checkpoint's shapes) of a saved program, from its data (restored
    without examples) and its members' `Member.describe()` dicts: a restore target that allocates nothing."""
    k = len(members)
    hparam_names = sorted(members[0]["hparams"])
    init_one = member_initializer(cfg, task, data, 1, hparam_names)
    hp = {n: jax.ShapeDtypeStruct((k,), jnp.float32) for n in hparam_names if n in OPTIMIZER_HPARAMS}
    state = jax.eval_shape(jax.vmap(init_one, in_axes=(0, None, 0)), jax.ShapeDtypeStruct((k, 2), jnp.uint32),
                           None, hp)
    return state, saveable(state, state.params, state.model_state, jax.ShapeDtypeStruct((), jnp.int32))


def saveable(state: TrainState, best_params: PyTree, best_model_state: PyTree, epoch: Any) -> dict[str, Any]:
    """What a checkpoint holds: the stacked state, each member's best variables so far, the epoch."""
    return {"train": state.saveable(), "best": {"params": best_params, "model_state": best_model_state},
            "epoch": epoch}


def member_step(state: TrainState, batch: dict[str, jax.Array], ctx: dict[str, Any], *, step_fn: Callable,
                sharding: NamedSharding | None, rebind: Callable | None) -> tuple[TrainState, dict]:
    """The engine's step on a member's batch (see the module docstring).

    Args:
      batch: {"mask": <bool>[batch], "index": <int32>[batch]} positions in the member's training list.
      ctx: {"rng": <key>[], "rows": <int32>[n_max] pool row of each position, "pool": shared arrays, optional
        "weights": <float32>[n_max], optional "dropout": <float32>[]}.
      rebind: for a vmapped dropout rate, `rebind(rate)` -> the forward function with that rate.
    """
    positions = batch["index"]
    rows = jnp.take(ctx["rows"], positions)
    full = {k: jnp.take(v, rows, axis=0) for k, v in ctx["pool"].items()}
    full["index"] = positions
    full["mask"] = batch["mask"]
    if "weights" in ctx:
        full["mask"] = jnp.where(batch["mask"], jnp.take(ctx["weights"], positions), 0.0)
    if sharding is not None:
        full = jax.lax.with_sharding_constraint(full, sharding)
    if rebind is None:
        return step_fn(state, full, ctx["rng"])
    # apply_fn is a static field: swap in the rate-bound forward for this step and back, so the scan's carry
    # keeps one structure.
    new_state, out = step_fn(state.replace(apply_fn=rebind(ctx["dropout"])), full, ctx["rng"])
    return new_state.replace(apply_fn=state.apply_fn), out


def member_chunk(mesh: Mesh) -> int | None:
    """How many members to vmap at once: None (all of them) except on a CPU with the members on one device,
    where one member at a time runs fastest. Why: a vmapped step's activations are K times larger (MR, K=10:
    [10, 3200, 1200] floats, 154 MB per tensor) and fall out of the CPU caches; measured on Kim's MR step
    (2 cores), the all-vmapped program ran at 0.92x of ten sequential runs, the looped one at 0.98x (medians of
    6 interleaved pairs; scripts/benchmark.py, "multi")."""
    if mesh.shape[MEMBERS_AXIS] == 1 and mesh.devices.flat[0].platform == "cpu":
        return 1
    return None


def over_members(fn: Callable, *, k: int, chunk: int | None, spmd: bool,
                 ctx_axes: Mapping[str, Any] | None = None, skip_idle: bool = False) -> Callable:
    """`fn(state, data, idx[, ctx])` over a leading member axis of state, idx and ctx (data is shared; the
    entries of ctx whose `ctx_axes` is None too), as one program.

    k == 1: `fn` itself on the member axis squeezed away (a reshape, free under jit). chunk None: `jax.vmap` over
    every member. chunk c: `jax.lax.map` over the members, c at a time (each chunk vmapped), so only c members'
    activations are alive at once. `skip_idle` (for `train_steps`, which returns (state, sums, first_bad_step))
    with c = 1: a `fori_loop` over the members that updates the stacked state in place, and skips a member whose
    block is all padding (stopped early) by a `lax.cond` that returns what its no-op steps would: its state
    unchanged, zero sums, -1.
    """
    with_ctx = ctx_axes is not None

    def split(ctx):
        return ({k: v for k, v in ctx.items() if ctx_axes[k] is not None},
                {k: v for k, v in ctx.items() if ctx_axes[k] is None})

    def call(s, data, i, own, shared):
        return fn(s, data, i, {**own, **shared}) if with_ctx else fn(s, data, i)

    if k == 1:
        def single(state, data, idx, *rest):
            own, shared = split(rest[0]) if with_ctx else ({}, {})
            first = functools.partial(jax.tree.map, lambda x: x[0])
            out = call(first(state), data, idx[0], first(own), shared)
            return jax.tree.map(lambda x: x[None], out)

        return single

    in_axes = (0, None, 0, dict(ctx_axes)) if with_ctx else (0, None, 0)
    if chunk is None:
        return jax.vmap(fn, in_axes=in_axes, spmd_axis_name=MEMBERS_AXIS if spmd else None)

    def mapped(state, data, idx, *rest):
        own, shared = split(rest[0]) if with_ctx else ({}, {})
        return jax.lax.map(lambda a: call(a[0], data, a[1], a[2], shared), (state, idx, own),
                           batch_size=None if chunk == 1 else chunk)

    def looped(state, data, idx, *rest):
        # One member at a time, its new state written back into the stacked carry in place (a map would stack
        # the new states into a second buffer as large as all of them).
        own, shared = split(rest[0]) if with_ctx else ({}, {})

        def member(tree, m):
            return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, m, keepdims=False), tree)

        _, sums_shape, bad_shape = jax.eval_shape(lambda: call(member(state, 0), data, idx[0], member(own, 0),
                                                               shared))
        n = idx.shape[0]
        sums0 = jax.tree.map(lambda a: jnp.zeros((n, *a.shape), a.dtype), sums_shape)
        bad0 = jnp.full((n, *bad_shape.shape), -1, bad_shape.dtype)

        def body(m, carry):
            states, sums, bad = carry
            s, i = member(states, m), member(idx, m)
            out = jax.lax.cond(jnp.any(i >= 0), lambda: call(s, data, i, member(own, m), shared),
                               lambda: (s, member(sums0, m), member(bad0, m)))
            return jax.tree.map(lambda whole, one: jax.lax.dynamic_update_index_in_dim(whole, one, m, 0),
                                (states, sums, bad), out)

        return jax.lax.fori_loop(0, n, body, (state, sums0, bad0))

    if chunk == 1 and skip_idle:
        return looped
    return mapped


def _select(best: PyTree, current: PyTree, improved: jax.Array) -> PyTree:
    def pick(b, c):
        return jnp.where(improved.reshape((-1,) + (1,) * (c.ndim - 1)), c, b)

    return jax.tree.map(pick, best, current)


def _stack_rows(rows: Sequence[np.ndarray], fill: int | float, dtype) -> np.ndarray:
    width = max(max((len(r) for r in rows), default=0), 1)
    out = np.full((len(rows), width), fill, dtype)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out


def _copy(tree: PyTree) -> PyTree:
    return jax.tree.map(jnp.copy, tree)  # distinct buffers: the state and the best variables are both donated


class Program:
    """K members' stacked state and the jit-compiled functions that train, evaluate and select them.

    Holds no files: `jaxcnn.train.trainer.Run` adds the workdir (checkpoints, metrics, summary) around it; the
    multi-host test drives it directly.

    Attributes:
      cfg: the shared config (seed, fold and `VMAPPED_HPARAMS` come from each member). task: the `Task`.
      members: the K members. data: the task's prepared data, whose `arrays` the members' rows index.
      mesh: the ('members', 'data') mesh. state: the stacked TrainState. best_params, best_model_state: each
      member's variables at its best dev epoch so far. batch_size: examples per step (the config's, or all of
      the largest training list when that is smaller). batch, eval_batch: each member's padded global batch.
    """

    def __init__(self, cfg: Config, task: Task, data: TaskData, members: Sequence[Member], *,
                 mesh: Mesh | None = None, chunk: int | None | str = "auto"):
        if not members:
            raise ConfigError("a program needs at least one member")
        self.cfg, self.task, self.data, self.members = cfg, task, data, list(members)
        self._check_hparams()
        self.mesh = mesh or parallel.make_mesh(len(members), cfg.train.devices)
        self.k = len(members)
        t = cfg.train
        # A batch larger than the data holds the data: the same single step per epoch, without the memory of
        # padding slots that never hold an example (--batch-size 100000 on 162 examples).
        largest = max(len(m.train) for m in members)
        self.batch_size = max(min(t.batch_size, largest), 1)
        if self.batch_size < t.batch_size:
            log.info("--batch-size %d is more than the %d training examples: one batch of %d per epoch",
                     t.batch_size, largest, self.batch_size)
        self.batch = parallel.padded_batch_size(self.batch_size, self.mesh)
        split = max(max(len(m.train), len(m.dev), len(m.test)) for m in members)
        self.eval_batch = parallel.padded_batch_size(max(min(t.eval_batch_size, split), 1), self.mesh)
        self.steps_per_epoch = max(math.ceil(len(m.train) / self.batch_size) for m in members)
        self.by_member = parallel.by_member(self.mesh)
        self.replicated = parallel.replicated(self.mesh)
        self.index_sharding = NamedSharding(self.mesh, P(MEMBERS_AXIS, None, DATA_AXIS))
        self.pool = put(dict(data.arrays), self.replicated)
        self.state = self._init_state()
        self.best_params, self.best_model_state = _copy(self.state.params), _copy(self.state.model_state)
        self.ctx = self._context()
        step_fn, eval_fn = bind(get_loss(t.loss), label_smoothing=t.label_smoothing, l1=cfg.optim.l1,
                                l2=cfg.optim.l2)
        spmd = self.mesh.devices.size > 1
        batch_sharding = NamedSharding(self.mesh, P(DATA_AXIS)) if spmd else None
        rebind = None
        if "dropout" in self.hparam_names:
            rebind = functools.partial(self._forward_with_dropout, cfg, task, data)
        step = functools.partial(member_step, step_fn=step_fn, sharding=batch_sharding, rebind=rebind)
        ctx_axes = {k: (None if k == "pool" else 0) for k in self.ctx}
        self.chunk = member_chunk(self.mesh) if chunk == "auto" else chunk
        over = functools.partial(over_members, k=self.k, chunk=self.chunk, spmd=spmd)
        classes = data.num_classes
        # Every output has a leading member axis, placed as the inputs are: a state that went through one block
        # is the same kind of argument as the initial one (no second compilation).
        self.train_fn = jax.jit(over(functools.partial(train_steps, step_fn=step, num_classes=classes,
                                                       sharding=batch_sharding), ctx_axes=ctx_axes, skip_idle=True),
                                donate_argnums=0, out_shardings=self.by_member)
        self.eval_fn = jax.jit(over(functools.partial(evaluate_steps, eval_fn=eval_fn, num_classes=classes,
                                                      sharding=batch_sharding)), out_shardings=self.by_member)
        self.logits_fn = jax.jit(over(functools.partial(predict_logits, sharding=batch_sharding)),
                                 out_shardings=self.by_member)
        self.select_fn = jax.jit(_select, donate_argnums=0, out_shardings=self.by_member)

    @staticmethod
    def _forward_with_dropout(cfg, task, data, rate):
        return task.forward(cfg, data, dropout=rate)

    # -- construction ---------------------------------------------------------------------------------------
    def _check_hparams(self) -> None:
        names = set(self.members[0].hparams)
        for m in self.members:
            unknown = set(m.hparams) - set(VMAPPED_HPARAMS)
            if unknown:
                raise ConfigError(f"--{sorted(unknown)[0]}: cannot vary inside one program (vmapped: "
                                  f"{', '.join(VMAPPED_HPARAMS)}); run its values as separate programs")
            if set(m.hparams) != names:
                raise ConfigError(f"member {m.name!r} sets {sorted(m.hparams)}, member {self.members[0].name!r} "
                                  f"sets {sorted(names)}: all members must set the same hyper-parameters")
        self.hparam_names = sorted(names)
        if "dropout" in names and self.cfg.model.dropout_scaling == "kim":
            # Kim's scaling needs each member's rate at evaluation too, which reads the config's one.
            raise ConfigError("--dropout-scaling kim: cannot vary --dropout inside one program; use the default "
                              "inverted scaling, or run each rate as its own program")

    def _member_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Key data of each member's init key and run key: `split(key(seed))`."""
        pairs = [jax.random.key_data(jax.random.split(jax.random.key(m.seed))) for m in self.members]
        return np.stack([np.asarray(p[0]) for p in pairs]), np.stack([np.asarray(p[1]) for p in pairs])

    def _hparam_values(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        return {n: np.asarray([m.hparams[n] for m in self.members], np.float32) for n in names}

    def _init_state(self) -> TrainState:
        """The stacked initial state: each member's `create_state` from its seed's init key."""
        init_keys, _ = self._member_keys()
        hp = self._hparam_values([n for n in self.hparam_names if n in OPTIMIZER_HPARAMS])
        tables = [self.data.pretrained(m.seed) for m in self.members]
        # Pretrained arrays enter as arguments (captured ones would be constants baked into the program); one
        # copy when every member has the same.
        shared = len({id(t) for t in tables}) == 1
        table_arg = tables[0] if shared else jax.tree.map(lambda *t: np.stack(t), *tables)
        init_one = member_initializer(self.cfg, self.task, self.data, self.steps_per_epoch, self.hparam_names)
        init = jax.jit(jax.vmap(init_one, in_axes=(0, None if shared else 0, 0)), out_shardings=self.by_member)
        table_sharding = self.replicated if shared else self.by_member
        return init(put(init_keys, self.by_member), None if table_arg is None else put(table_arg, table_sharding),
                    put(hp, self.by_member))

    def _context(self) -> dict[str, Any]:
        _, run_keys = self._member_keys()
        ctx: dict[str, Any] = {
            "rng": jax.random.wrap_key_data(put(run_keys, self.by_member)),
            "rows": put(_stack_rows([m.train for m in self.members], 0, np.int32), self.by_member),
            "pool": self.pool,
        }
        if any(m.weights is not None for m in self.members):
            weights = [np.ones(len(m.train), np.float32) if m.weights is None else m.weights for m in self.members]
            ctx["weights"] = put(_stack_rows(weights, 0.0, np.float32), self.by_member)
        if "dropout" in self.hparam_names:
            ctx["dropout"] = put(self._hparam_values(["dropout"])["dropout"], self.by_member)
        return ctx

    # -- training -------------------------------------------------------------------------------------------
    def epoch_blocks(self, epoch: int, active: Sequence[bool]) -> np.ndarray:
        """<int32>[blocks, K, steps_per_dispatch, batch] positions of every member's epoch; -1 for inactive ones."""
        t = self.cfg.train
        per = [epoch_indices(len(m.train), self.batch_size, self.batch, m.seed, epoch, t.steps_per_dispatch)
               for m in self.members]
        blocks = max(p.shape[0] for p in per)
        out = np.full((blocks, self.k, t.steps_per_dispatch, self.batch), -1, np.int32)
        for k, p in enumerate(per):
            if active[k]:
                out[: p.shape[0], k] = p
        return out

    def train_block(self, block: np.ndarray) -> tuple[dict[str, jax.Array], jax.Array]:
        """Dispatches one block of steps (<int32>[K, steps_per_dispatch, batch] positions) and returns its device
        results without waiting: (summed metrics with a leading K axis, first bad step per member)."""
        self.state, sums, bad = self.train_fn(self.state, {}, put(block, self.index_sharding), self.ctx)
        return sums, bad

    def train_epoch(self, epoch: int, active: Sequence[bool], observer: BlockObserver | None = None
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Trains every active member one epoch. Returns (summed metrics with a leading K axis, first bad step
        per member: the optimizer step whose loss or gradient was not finite, -1 if none). `observer` hears of
        every block (see `BlockObserver`)."""
        c = self.data.num_classes
        totals = {"loss_sum": np.zeros(self.k, np.float32), "count": np.zeros(self.k, np.float32),
                  "confusion": np.zeros((self.k, c, c), np.float32), "grad_norm_sum": np.zeros(self.k, np.float32)}
        bad = np.full(self.k, -1, np.int64)
        active = np.asarray(active, bool)
        for block in self.epoch_blocks(epoch, active):
            if not active.any():
                break
            block[~active] = -1
            if observer is not None:
                observer.block_start(self)
            results = self.train_block(block)
            if observer is not None:
                observer.block_dispatched(self)
            sums, block_bad = to_host(results)
            bad = np.where((bad < 0) & (block_bad >= 0), block_bad, bad)
            totals = metrics_lib.add(totals, sums)
            # A member that went non-finite stops: the step refused its update, and it takes no further block.
            active &= bad < 0
            if observer is not None:
                observer.block_done(self, totals, int((block >= 0).any(-1).sum(-1).max()))
        return totals, bad

    # -- evaluation -----------------------------------------------------------------------------------------
    def eval_rows(self, split: str) -> np.ndarray:
        """<int32>[K, batches, eval_batch] pool rows of each member's `split`, -1 padded."""
        per = [getattr(m, split) for m in self.members]
        batches = max(max(math.ceil(len(r) / self.eval_batch) for r in per), 1)
        out = np.full((self.k, batches * self.eval_batch), -1, np.int32)
        for k, r in enumerate(per):
            out[k, : len(r)] = r
        return out.reshape(self.k, batches, self.eval_batch)

    def evaluate(self, split: str, best: bool = False, dispatched: Callable[[], None] | None = None
                 ) -> list[dict[str, Any]]:
        """Per-member metrics on `split` ("train", "dev" or "test") with the current variables (or, `best`, each
        member's best so far). `dispatched` is called once the computation is in flight."""
        sums = self.eval_fn(self._variables(best), self.pool, put(self.eval_rows(split), self.index_sharding))
        if dispatched is not None:
            dispatched()
        sums = to_host(sums)
        return [metrics_lib.summarize(jax.tree.map(lambda x: x[k], sums), self.data.label_names)
                for k in range(self.k)]

    def probabilities(self, rows: np.ndarray, best: bool = True) -> np.ndarray:
        """<float32>[K, n, classes] every member's class probabilities on the same pool `rows` (<int32>[n])."""
        n = len(rows)
        batches = max(math.ceil(n / self.eval_batch), 1)
        flat = np.full(batches * self.eval_batch, -1, np.int32)
        flat[:n] = rows
        idx = np.broadcast_to(flat.reshape(1, batches, self.eval_batch), (self.k, batches, self.eval_batch))
        logits = to_host(self.logits_fn(self._variables(best), self.pool,
                                        put(np.ascontiguousarray(idx), self.index_sharding)))
        logits = logits.reshape(self.k, batches * self.eval_batch, -1)[:, :n]
        return np.asarray(jax.nn.softmax(logits, axis=-1))

    def _variables(self, best: bool) -> TrainState:
        if not best:
            return self.state
        return self.state.replace(params=self.best_params, model_state=self.best_model_state)

    def select(self, improved: Sequence[bool]) -> None:
        """Copies the current variables of the `improved` members into the best ones."""
        if any(improved):
            flags = put(np.asarray(improved, bool), self.by_member)
            self.best_params, self.best_model_state = self.select_fn(
                (self.best_params, self.best_model_state), (self.state.params, self.state.model_state), flags)

    def memory_analysis(self) -> Any:
        """XLA's memory analysis of one compiled training block (arguments, outputs, temporaries in bytes)."""
        t = self.cfg.train
        block = np.full((self.k, t.steps_per_dispatch, self.batch), -1, np.int32)
        lowered = self.train_fn.lower(self.state, {}, put(block, self.index_sharding), self.ctx)
        return lowered.compile().memory_analysis()

    # -- checkpoint content ---------------------------------------------------------------------------------
    def saveable(self, epoch: int) -> dict[str, Any]:
        return saveable(self.state, self.best_params, self.best_model_state, jnp.asarray(epoch, jnp.int32))

    def restore(self, saved: dict[str, Any]) -> None:
        self.state = self.state.restore(saved["train"])
        self.best_params, self.best_model_state = saved["best"]["params"], saved["best"]["model_state"]


class BlockObserver:
    """Hears of each block of training steps in `Program.train_epoch` (the trainer's progress bar and callbacks).
    Every method does nothing unless overridden."""

    def block_start(self, program: Program) -> None:
        """Before a block is dispatched (`program.state` may be replaced here)."""

    def block_dispatched(self, program: Program) -> None:
        """Right after a block is dispatched, while it runs."""

    def block_done(self, program: Program, totals: dict[str, np.ndarray], steps: int) -> None:
        """After a block's results are read: the epoch's running sums (leading K axis), the block's steps."""
