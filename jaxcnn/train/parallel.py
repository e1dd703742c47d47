"""Data parallelism as `jax.jit` over a 1-D `('data',)` device mesh.

The state is replicated, each batch is split along its first axis, and XLA inserts the gradient all-reduce
(stack.md §2: the mesh must be Auto, not the Explicit default of `jax.make_mesh`). A global batch that does not
divide by the device count is padded with masked examples (weight 0), so the result is the same as on one device.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    devices = jax.local_devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ConfigError(f"--devices: asked for {n} devices, {len(devices)} available")
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """The smallest multiple of the device count that holds `batch_size` examples."""
    n = mesh.devices.size
    return int(math.ceil(batch_size / n) * n)


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))


def shard_batch(tree, mesh: Mesh):
    """Puts host arrays with a leading batch axis onto the mesh, split along that axis."""
    n = mesh.devices.size
    for leaf in jax.tree.leaves(tree):
        if np.shape(leaf)[0] % n:
            raise ConfigError(f"batch of {np.shape(leaf)[0]} does not divide over {n} devices")
    return jax.device_put(tree, batch_sharded(mesh))
