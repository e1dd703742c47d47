"""Many models as one program: `jax.vmap` of the engine's `train_steps` over a leading member axis.

K members (CV folds, seeds, bootstrap resamples, boosting rounds, values of optimizer hyper-parameters or of the
dropout rate) train as ONE jit-compiled program. Their TrainStates are stacked along a leading axis of size K;
the encoded examples live once on the device in a shared pool, and each member owns index sets into it (its
train, dev and test rows). Each member keeps its own data order, dropout stream, model selection (test score at
its best dev epoch) and early stopping: a stopped member's index rows become -1, which the engine's step treats
as "no update".

How a member's batch is built. The engine's `train_steps` gathers rows of `data` by index and derives the
per-example dropout keys from each example's index. Here member k indexes its own training LIST (positions
0..n_k-1, in the order of the train split `jaxcnn train` would build), so its data order, dropout keys and
updates are exactly those of a normal run on the same seed and data (`Member.data`). `train_steps` runs with an
empty `data` dict (its gather then only builds the mask and the positions); `member_step` maps the positions to
pool rows through the member's table, and adds the member's example weights (boosting) as a float mask, which
`train_step` already treats as loss weights (sum(w * loss) / sum(w)). The table, weights, dropout rate and PRNG
key travel as the `rng` argument of `train_steps`, which hands it unchanged to the step.

Vmapped hyper-parameters. `OPTIMIZER_HPARAMS` become per-member arrays through `optax.inject_hyperparams`;
`dropout` is a per-member traced rate (the model is re-bound to it inside the step). Everything else (shapes:
windows, maps, embed_dim; static choices: optimizer, max_norm, batch size) must be equal across members: run
other values as separate programs.

Devices. A 2-D mesh ('members', 'data'): the members axis takes the largest divisor of K that divides the device
count, the rest of the devices split each member's batch (data parallelism, as in `jaxcnn.train.parallel`).
Arrays are placed with `jax.make_array_from_callback`, so the same code runs over every process of a multi-host
job (`initialize_distributed`), each process supplying its own shards.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxcnn import tasks
from jaxcnn.configs import Config, OptimConfig
from jaxcnn.errors import ConfigError, TrainingError
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train.checkpoint import CheckpointManager
from jaxcnn.train.losses import get_loss
from jaxcnn.train.optim import learning_rate, make_optimizer
from jaxcnn.train.parallel import DATA_AXIS
from jaxcnn.train.state import TrainState
from jaxcnn.train.steps import bind, evaluate_steps, predict_logits, train_steps
from jaxcnn.train.trainer import create_state, epoch_indices
from jaxcnn.train.workdir import WorkdirLock, atomic_write_json, check_config
from jaxcnn.train.writers import MetricWriter

log = logging.getLogger("jaxcnn")

MEMBERS_AXIS = "members"
OPTIMIZER_HPARAMS = ("lr", "rho", "eps", "momentum", "b1", "b2")
VMAPPED_HPARAMS = (*OPTIMIZER_HPARAMS, "dropout")
PyTree = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Member:
    """One model of a multi-member program.

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

    def config(self, cfg: Config) -> Config:
        """The `jaxcnn train` config this member trains like (on `Pool.member_data(...)` as its data)."""
        fold = {} if self.fold is None else {"fold": self.fold}
        return cfg.replace(seed=self.seed, **fold, **self.hparams)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "fold": self.fold, "hparams": dict(self.hparams),
                "weighted": self.weights is not None, "train_examples": len(self.train),
                "dev_examples": len(self.dev), "test_examples": len(self.test)}


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int,
                           local_device_ids: Sequence[int] | None = None) -> None:
    """Joins a multi-process JAX job (call before any other JAX call). Each process then feeds its own shards."""
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids)


def make_member_mesh(num_members: int, devices: int | None = None) -> Mesh:
    """A ('members', 'data') mesh over the first `devices` devices of the job (all by default).

    The members axis gets the largest divisor of `num_members` that divides the device count, so no member is
    split across members-shards; the remaining factor of devices splits each member's batch.
    """
    available = jax.devices()
    n = len(available) if devices is None else devices
    if not 1 <= n <= len(available):
        raise ConfigError(f"--devices: asked for {n} devices, {len(available)} available")
    m = max(d for d in range(1, n + 1) if n % d == 0 and num_members % d == 0)
    return jax.make_mesh((m, n // m), (MEMBERS_AXIS, DATA_AXIS), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=available[:n])


def put(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Host arrays -> global arrays with `sharding`; each process supplies only its addressable shards."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)


def to_host(tree: PyTree) -> PyTree:
    """Global arrays -> numpy, also when some shards live in other processes."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


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


def over_members(fn: Callable, *, chunk: int | None, spmd: bool, ctx_axes: Mapping[str, Any] | None = None,
                 skip_idle: bool = False) -> Callable:
    """`fn(state, data, idx[, ctx])` over a leading member axis of state, idx and ctx (data is shared; the
    entries of ctx whose `ctx_axes` is None too), as one program.

    chunk None: `jax.vmap` over every member. chunk c: `jax.lax.map` over the members, c at a time (each chunk
    vmapped), so only c members' activations are alive at once. `skip_idle` (for `train_steps`, which returns
    (state, sums, first_bad_step)) with c = 1: a `fori_loop` over the members that updates the stacked state in
    place, and skips a member whose block is all padding (stopped early) by a `lax.cond` that returns what its
    no-op steps would: its state unchanged, zero sums, -1.
    """
    with_ctx = ctx_axes is not None
    in_axes = (0, None, 0, dict(ctx_axes)) if with_ctx else (0, None, 0)
    if chunk is None:
        return jax.vmap(fn, in_axes=in_axes, spmd_axis_name=MEMBERS_AXIS if spmd else None)

    def split(ctx):
        return ({k: v for k, v in ctx.items() if ctx_axes[k] is not None},
                {k: v for k, v in ctx.items() if ctx_axes[k] is None})

    def call(s, data, i, own, shared):
        return fn(s, data, i, {**own, **shared}) if with_ctx else fn(s, data, i)

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
        k = idx.shape[0]
        sums0 = jax.tree.map(lambda a: jnp.zeros((k, *a.shape), a.dtype), sums_shape)
        bad0 = jnp.full((k, *bad_shape.shape), -1, bad_shape.dtype)

        def body(m, carry):
            states, sums, bad = carry
            s, i = member(states, m), member(idx, m)

            out = jax.lax.cond(jnp.any(i >= 0), lambda: call(s, data, i, member(own, m), shared),
                               lambda: (s, member(sums0, m), member(bad0, m)))
            return jax.tree.map(lambda whole, one: jax.lax.dynamic_update_index_in_dim(whole, one, m, 0),
                                (states, sums, bad), out)

        return jax.lax.fori_loop(0, k, body, (state, sums0, bad0))

    if chunk == 1 and skip_idle:
        return looped
    return mapped


def _select(best: PyTree, params: PyTree, improved: jax.Array) -> PyTree:
    def pick(b, p):
        return jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b)

    return jax.tree.map(pick, best, params)


def _stack_rows(rows: Sequence[np.ndarray], fill: int | float, dtype) -> np.ndarray:
    width = max(max((len(r) for r in rows), default=0), 1)
    out = np.full((len(rows), width), fill, dtype)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out


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


def member_initializer(cfg: Config, task, data: Any, steps_per_epoch: int, hparam_names: Sequence[str]
                       ) -> Callable[..., TrainState]:
    """`init_one(key_data, table, hp_values) -> TrainState`: one member's initial state, as `Run` creates it
    (`create_state`), from its init key data <uint32>[2], its pretrained table (None for CNN-rand) and its
    injected optimizer values {name: <float32>[]}. Vmap it over members."""
    opt_names = [n for n in hparam_names if n in OPTIMIZER_HPARAMS]
    if opt_names:
        # Lazy embedding rows carry their own constants, which injected hyper-parameters would not reach.
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lazy_embeddings=False))

    def init_one(key_data: jax.Array, table: jax.Array | None, hp_values: dict[str, jax.Array]) -> TrainState:
        d = data if table is None else dataclasses.replace(data, embeddings=table)
        forward, params, model_state, trainable = task.build(cfg, d, jax.random.wrap_key_data(key_data))
        state = create_state(cfg, task, forward, params, model_state, trainable, steps_per_epoch)
        if not opt_names:
            return state
        tx = injected_optimizer(cfg.optim, steps_per_epoch=steps_per_epoch,
                                total_steps=steps_per_epoch * cfg.train.epochs, trainable=trainable)
        opt_state = tx.init(params)
        return state.replace(tx=tx, opt_state=opt_state._replace(hyperparams={**opt_state.hyperparams,
                                                                              **hp_values}))

    return init_one


def abstract_saveable(cfg: Config, data: Any, members: Sequence[Mapping[str, Any]],
                      embed_dim: int | None) -> dict[str, Any]:
    """The shapes of a `MultiRun` checkpoint (a restore target), from its meta alone.

    Args:
      data: the task's data (its encoder and labels; no examples needed). members: `Member.describe()` dicts.
      embed_dim: the pretrained table's width, or None for CNN-rand.
    """
    k = len(members)
    hparam_names = sorted(members[0]["hparams"])
    init_one = member_initializer(cfg, tasks.get(cfg.data.task), data, 1, hparam_names)
    table = None
    if embed_dim is not None:
        table = jax.ShapeDtypeStruct((len(data.encoder.vocab), embed_dim), jnp.float32)
    hp = {n: jax.ShapeDtypeStruct((k,), jnp.float32) for n in hparam_names if n in OPTIMIZER_HPARAMS}
    state = jax.eval_shape(jax.vmap(init_one, in_axes=(0, None, 0)), jax.ShapeDtypeStruct((k, 2), jnp.uint32),
                           table, hp)
    return {"train": state.saveable(), "best_params": state.params, "epoch": jax.ShapeDtypeStruct((), jnp.int32)}


class MemberProgram:
    """K members' stacked state and the jit-compiled functions that train, evaluate and select them.

    Holds no files: `MultiRun` adds the workdir (checkpoints, metrics, results) around it; the multi-host test
    drives it directly.

    Attributes:
      cfg: the shared config (seed, fold and `VMAPPED_HPARAMS` come from each member).
      members: the K members. data: the task's data whose `splits["pool"]` the rows index.
      mesh: the ('members', 'data') mesh. state: the stacked TrainState. best_params: each member's params at
      its best dev epoch so far. batch: the padded global batch of each member's step.
    """

    def __init__(self, cfg: Config, members: Sequence[Member], data: Any, *, tables: Mapping[int, np.ndarray] |
                 None = None, mesh: Mesh | None = None, chunk: int | None | str = "auto"):
        if not members:
            raise ConfigError("a multi-member run needs at least one member")
        self.cfg, self.members, self.data = cfg, list(members), data
        self._check_hparams()
        self.mesh = mesh or make_member_mesh(len(members), cfg.train.devices)
        self.k = len(members)
        t = cfg.train
        data_devices = self.mesh.shape[DATA_AXIS]
        self.batch = int(math.ceil(t.batch_size / data_devices) * data_devices)
        self.eval_batch = int(math.ceil(t.eval_batch_size / data_devices) * data_devices)
        self.steps_per_epoch = max(math.ceil(len(m.train) / t.batch_size) for m in members)
        self.by_member = NamedSharding(self.mesh, P(MEMBERS_AXIS))
        self.replicated = NamedSharding(self.mesh, P())
        self.index_sharding = NamedSharding(self.mesh, P(MEMBERS_AXIS, None, DATA_AXIS))
        self.pool = put(dict(data.splits["pool"]), self.replicated)
        task = tasks.get(cfg.data.task)
        self.state, self.best_params = self._init_state(task, tables)
        rebind = self._rebind()
        self.ctx = self._context()
        step_fn, eval_fn = bind(get_loss(t.loss), label_smoothing=t.label_smoothing, l1=cfg.optim.l1,
                                l2=cfg.optim.l2)
        spmd = self.mesh.devices.size > 1
        batch_sharding = NamedSharding(self.mesh, P(DATA_AXIS)) if spmd else None
        step = functools.partial(member_step, step_fn=step_fn, sharding=batch_sharding, rebind=rebind)
        ctx_axes = {k: (None if k == "pool" else 0) for k in self.ctx}
        self.chunk = member_chunk(self.mesh) if chunk == "auto" else chunk
        over = functools.partial(over_members, chunk=self.chunk, spmd=spmd)
        train = functools.partial(train_steps, step_fn=step, num_classes=data.num_classes, sharding=batch_sharding)
        self.train_fn = jax.jit(over(train, ctx_axes=ctx_axes, skip_idle=True), donate_argnums=0)
        self.eval_fn = jax.jit(over(functools.partial(evaluate_steps, eval_fn=eval_fn, num_classes=data.num_classes,
                                                      sharding=batch_sharding)))
        self.logits_fn = jax.jit(over(functools.partial(predict_logits, sharding=batch_sharding)))
        self.select_fn = jax.jit(_select, donate_argnums=0)

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

    def _rebind(self) -> Callable | None:
        """For a vmapped dropout rate: rate -> the forward function of the model with that rate."""
        if "dropout" not in self.hparam_names:
            return None
        from jaxcnn.tasks import text as text_task

        d = self.data
        embed_dim = None if d.embeddings is None else d.embeddings.shape[1]
        model = text_task.build_model(self.cfg, len(d.encoder.vocab), d.num_classes, embed_dim)
        return lambda rate: text_task.make_forward(model.clone(dropout=rate))

    def _member_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Key data of each member's init key and run key: `split(key(seed))`, as `Run` draws them."""
        pairs = [jax.random.key_data(jax.random.split(jax.random.key(m.seed))) for m in self.members]
        return np.stack([np.asarray(p[0]) for p in pairs]), np.stack([np.asarray(p[1]) for p in pairs])

    def _hparam_values(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        return {n: np.asarray([m.hparams[n] for m in self.members], np.float32) for n in names}

    def _init_state(self, task, tables: Mapping[int, np.ndarray] | None) -> tuple[TrainState, PyTree]:
        """The stacked initial state (each member as `Run` would create it) and a copy of its params."""
        init_keys, _ = self._member_keys()
        hp = self._hparam_values([n for n in self.hparam_names if n in OPTIMIZER_HPARAMS])
        if tables is None and self.data.embeddings is not None:
            tables = {m.seed: self.data.embeddings for m in self.members}
        # A pretrained table enters as an argument (a captured one would be a constant baked into the program);
        # one copy when every member has the same table.
        shared_table = tables is None or len({id(tables[m.seed]) for m in self.members}) == 1
        table_arg = None
        if tables is not None:
            table_arg = (np.asarray(tables[self.members[0].seed]) if shared_table
                         else np.stack([tables[m.seed] for m in self.members]))
        init_one = member_initializer(self.cfg, task, self.data, self.steps_per_epoch, self.hparam_names)
        init = jax.jit(jax.vmap(init_one, in_axes=(0, None if shared_table else 0, 0)),
                       out_shardings=self.by_member)
        table_sharding = self.replicated if shared_table else self.by_member
        state = init(put(init_keys, self.by_member), None if table_arg is None else put(table_arg, table_sharding),
                     put(hp, self.by_member))
        return state, jax.tree.map(jnp.copy, state.params)  # distinct buffers: both are donated

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
        per = [epoch_indices(len(m.train), t.batch_size, self.batch, m.seed, epoch, t.steps_per_dispatch)
               for m in self.members]
        blocks = max(p.shape[0] for p in per)
        out = np.full((blocks, self.k, t.steps_per_dispatch, self.batch), -1, np.int32)
        for k, p in enumerate(per):
            if active[k]:
                out[: p.shape[0], k] = p
        return out

    def train_epoch(self, epoch: int, active: Sequence[bool]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Trains every active member one epoch. Returns (summed metrics with a leading K axis, first bad step
        per member: the optimizer step whose loss or gradient was not finite, -1 if none)."""
        totals, bad = None, np.full(self.k, -1, np.int64)
        for block in self.epoch_blocks(epoch, active):
            self.state, sums, block_bad = self.train_fn(self.state, {}, put(block, self.index_sharding), self.ctx)
            sums, block_bad = to_host((sums, block_bad))
            bad = np.where((bad < 0) & (block_bad >= 0), block_bad, bad)
            totals = sums if totals is None else metrics_lib.add(totals, sums)
            # A member that went non-finite stops here: the engine already refuses its further updates.
            active = [a and b < 0 for a, b in zip(active, bad)]
        return totals, bad

    def eval_rows(self, split: str) -> np.ndarray:
        """<int32>[K, batches, eval_batch] pool rows of each member's `split` ("dev" or "test"), -1 padded."""
        per = [getattr(m, split) for m in self.members]
        batches = max(math.ceil(len(r) / self.eval_batch) for r in per) or 1
        out = np.full((self.k, batches * self.eval_batch), -1, np.int32)
        for k, r in enumerate(per):
            out[k, : len(r)] = r
        return out.reshape(self.k, batches, self.eval_batch)

    def evaluate(self, split: str, params: PyTree | None = None) -> list[dict[str, Any]]:
        """Per-member metrics on `split` (with the current params, or the given stacked ones)."""
        state = self.state if params is None else self.state.replace(params=params)
        rows = put(self.eval_rows(split), self.index_sharding)
        sums = to_host(self.eval_fn(state, self.pool, rows))
        return [metrics_lib.summarize(jax.tree.map(lambda x: x[k], sums), self.data.label_names)
                for k in range(self.k)]

    def probabilities(self, rows: np.ndarray, params: PyTree | None = None) -> np.ndarray:
        """<float32>[K, n, classes] every member's class probabilities on the same pool `rows` (<int32>[n])."""
        state = self.state if params is None else self.state.replace(params=params)
        n = len(rows)
        batches = max(math.ceil(n / self.eval_batch), 1)
        flat = np.full(batches * self.eval_batch, -1, np.int32)
        flat[:n] = rows
        idx = np.broadcast_to(flat.reshape(1, batches, self.eval_batch), (self.k, batches, self.eval_batch))
        logits = to_host(self.logits_fn(state, self.pool, put(np.ascontiguousarray(idx), self.index_sharding)))
        logits = logits.reshape(self.k, batches * self.eval_batch, -1)[:, :n]
        return np.asarray(jax.nn.softmax(logits, axis=-1))

    def select(self, improved: Sequence[bool]) -> None:
        """Copies the current params of the `improved` members into `best_params`."""
        if any(improved):
            self.best_params = self.select_fn(self.best_params, self.state.params,
                                              put(np.asarray(improved, bool), self.by_member))

    def memory_analysis(self) -> Any:
        """XLA's memory analysis of one compiled training block (arguments, outputs, temporaries in bytes)."""
        t = self.cfg.train
        block = np.full((self.k, t.steps_per_dispatch, self.batch), -1, np.int32)
        lowered = self.train_fn.lower(self.state, {}, put(block, self.index_sharding), self.ctx)
        return lowered.compile().memory_analysis()

    # -- checkpoint content ---------------------------------------------------------------------------------
    def saveable(self, epoch: int) -> dict[str, Any]:
        return {"train": self.state.saveable(), "best_params": self.best_params,
                "epoch": jnp.asarray(epoch, jnp.int32)}

    def restore(self, saved: dict[str, Any]) -> None:
        self.state = self.state.restore(saved["train"])
        self.best_params = saved["best_params"]


@dataclasses.dataclass
class MemberProgress:
    """One member's model selection, carried across resumes."""

    best_epoch: int = 0
    best_dev: float = -1.0
    best_dev_metrics: dict | None = None
    best_test_metrics: dict | None = None
    stopped_early: bool = False
    failed: str | None = None

    @property
    def active(self) -> bool:
        return not (self.stopped_early or self.failed)


@dataclasses.dataclass
class Progress:
    epoch: int = 0
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    examples_trained: int = 0
    members: list[MemberProgress] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**{**d, "members": [MemberProgress(**m) for m in d["members"]]})


# Fields that may change when resuming a multi-member workdir (they do not change the numbers).
RESULT_NEUTRAL = ("train.epochs", "train.patience", "train.progress", "train.tensorboard", "train.plots",
                  "train.steps_per_dispatch", "train.devices", "train.eval_batch_size", "data.data_dir",
                  "train.checkpoint_every")


class MultiRun:
    """A `MemberProgram` in a workdir: resumable, with per-member Kim selection and early stopping.

    Workdir layout:
        config.json      the shared config and the members (a different one on the same workdir is refused)
        checkpoints/     Orbax: the latest epoch (stacked state + each member's best params + JSON meta)
        metrics.jsonl    one line per epoch, split and member ("member": k)
        members.json     the result: one summary per member (test accuracy at its best dev epoch)
    """

    def __init__(self, cfg: Config, members: Sequence[Member], data: Any, workdir: str | pathlib.Path, *,
                 tables: Mapping[int, np.ndarray] | None = None, mesh: Mesh | None = None):
        self.cfg = cfg
        self.workdir = pathlib.Path(workdir)
        self.program = MemberProgram(cfg, members, data, tables=tables, mesh=mesh)
        self.members = self.program.members
        self.progress = Progress(members=[MemberProgress() for _ in members])

    def meta(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict(), **self.program.data.meta(),
                "members": [m.describe() for m in self.members],
                "progress": dataclasses.asdict(self.progress)}

    def run(self) -> list[dict[str, Any]]:
        """Trains (or resumes) to the end; writes and returns one summary per member."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with WorkdirLock(self.workdir):
            check_config(self.workdir, {**self.cfg.to_dict(), "members": [m.describe() for m in self.members]},
                         ignore=RESULT_NEUTRAL)
            return self._run()

    def _restore(self, ckpt: CheckpointManager) -> bool:
        restored = ckpt.restore_latest(self.program.saveable(0))
        if restored is None:
            return False
        _, saved, meta = restored
        self.program.restore(saved)
        self.progress = Progress.from_dict(meta["progress"])
        log.info("resumed %s at epoch %d", self.workdir, self.progress.epoch)
        return True

    def _run(self) -> list[dict[str, Any]]:
        t = self.cfg.train
        started = time.perf_counter()
        with CheckpointManager(self.workdir / "checkpoints", best_metric=None) as ckpt, \
                MetricWriter(self.workdir, tensorboard=t.tensorboard) as writer:
            if self._restore(ckpt) and jax.process_index() == 0:
                done = self.progress.epoch
                writer.truncate(lambda r: r.get("epoch", 0) <= done)
            wall_before = self.progress.wall_seconds
            log.info("%d members as one program on a %s mesh | %s", len(self.members), dict(self.program.mesh.shape),
                     self.program.data.describe().splitlines()[0])
            while self.progress.epoch < t.epochs and any(m.active for m in self.progress.members):
                epoch = self.progress.epoch + 1
                self._epoch(epoch, writer)
                self.progress.epoch = epoch
                self.progress.wall_seconds = wall_before + time.perf_counter() - started
                last = epoch == t.epochs or not any(m.active for m in self.progress.members)
                if last or epoch % t.checkpoint_every == 0:
                    ckpt.save(epoch, self.program.saveable(epoch), self.meta())
            ckpt.wait()
        summaries = self.summaries()
        if jax.process_index() == 0:
            atomic_write_json(self.workdir / "members.json", summaries)
        return summaries

    def _epoch(self, epoch: int, writer: MetricWriter) -> None:
        active = [m.active for m in self.progress.members]
        start = time.perf_counter()
        sums, bad = self.program.train_epoch(epoch, active)
        seconds = time.perf_counter() - start
        dev, test = self.program.evaluate("dev"), self.program.evaluate("test")
        improved = []
        step = to_host(self.program.state.step)
        examples = 0
        for k, (p, was_active) in enumerate(zip(self.progress.members, active)):
            if not was_active:
                improved.append(False)
                continue
            train_m = metrics_lib.summarize(jax.tree.map(lambda x: x[k], sums), self.program.data.label_names)
            examples += train_m["examples"]
            if bad[k] >= 0:
                p.failed = f"non-finite loss or gradient at step {int(bad[k])} (epoch {epoch})"
                log.warning("member %s: %s; it stops, the others go on", self.members[k].name, p.failed)
            better = dev[k]["accuracy"] >= p.best_dev  # ties go to the later epoch, as in Kim's code
            if better:
                p.best_dev, p.best_epoch = dev[k]["accuracy"], epoch
                p.best_dev_metrics, p.best_test_metrics = dev[k], test[k]
            improved.append(better)
            patience = self.cfg.train.patience
            if patience is not None and epoch - p.best_epoch >= patience:
                p.stopped_early = True
            for kind, m in (("train", train_m), ("dev", dev[k]), ("test", test[k])):
                if jax.process_index() == 0:  # one writer in a multi-host job
                    writer.write({"kind": kind, "epoch": epoch, "step": int(step[k]), "member": k, **m})
        self.program.select(improved)
        self.progress.train_seconds += seconds
        self.progress.examples_trained += examples
        accs = [d["accuracy"] for d, a in zip(dev, active) if a]
        tests = [d["accuracy"] for d, a in zip(test, active) if a]
        log.info("epoch %d: %d members | dev acc mean %.4f | test acc mean %.4f | %.0f ex/s", epoch, sum(active),
                 float(np.mean(accs)), float(np.mean(tests)), examples / max(seconds, 1e-9))
        if all(p.failed for p in self.progress.members):
            raise TrainingError(f"every member hit a non-finite loss or gradient by epoch {epoch}; see "
                                f"{self.workdir / 'metrics.jsonl'}")

    def summaries(self) -> list[dict[str, Any]]:
        out = []
        for m, p in zip(self.members, self.progress.members):
            dev, test = p.best_dev_metrics or {}, p.best_test_metrics or {}
            out.append({**m.describe(), "epochs": self.progress.epoch, "best_epoch": p.best_epoch,
                        "stopped_early": p.stopped_early, "failed": p.failed,
                        "dev_accuracy": dev.get("accuracy"), "test_accuracy": test.get("accuracy"),
                        "test_macro_f1": test.get("macro_f1"), "test_confusion": test.get("confusion"),
                        "wall_seconds": self.progress.wall_seconds,
                        "program_examples_per_second": (self.progress.examples_trained / self.progress.train_seconds
                                                        if self.progress.train_seconds else None)})
        return out

