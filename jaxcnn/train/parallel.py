"""Devices: one 2-D mesh ('members', 'data') for every program, and host <-> device transfers that also work
across the processes of a multi-host job.

A program of K models (one for `jaxcnn train`) stacks their states along a leading member axis. The members axis
of the mesh takes the largest divisor of K that divides the device count, so no member is split across
member-shards; the remaining devices split each member's batch: data parallelism as `jax.jit` over the 'data'
axis, with the state replicated along it and XLA inserting the gradient all-reduce (stack.md §2: the mesh must be
Auto, not the Explicit default of `jax.make_mesh`). A global batch that does not divide by the 'data' devices is
padded with masked examples (weight 0), so the result is the same as on one device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.errors import ConfigError

MEMBERS_AXIS = "members"
DATA_AXIS = "data"
PyTree = Any


def make_mesh(num_members: int = 1, devices: int | None = None) -> Mesh:
    """A ('members', 'data') mesh over the first `devices` devices of the job (all by default)."""
    available = jax.devices()
    n = len(available) if devices is None else devices
    if not 1 <= n <= len(available):
        raise ConfigError(f"--devices: asked for {n} devices, {len(available)} available")
    m = max(d for d in range(1, n + 1) if n % d == 0 and num_members % d == 0)
    return jax.make_mesh((m, n // m), (MEMBERS_AXIS, DATA_AXIS), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=available[:n])


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """The smallest multiple of the mesh's 'data' devices that holds `batch_size` examples."""
    n = mesh.shape[DATA_AXIS]
    return int(math.ceil(batch_size / n) * n)


def by_member(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(MEMBERS_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int,
                           local_device_ids: Sequence[int] | None = None) -> None:
    """Joins a multi-process JAX job (call before any other JAX call). Each process then feeds its own shards."""
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids)


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
