"""The one sharding policy: a mesh of all devices, logical axis names mapped to mesh axes.

Data parallelism over the `data` mesh axis; parameters are replicated (the `fsdp` axis for large
DiTs maps the logical `embed` axis in `LOGICAL_AXIS_RULES` once models name their axes).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffjax.errors import ConfigError

DATA_AXIS = "data"

# Logical axis name -> mesh axis (None = replicated), the single table models refer to.
LOGICAL_AXIS_RULES = (
    ("batch", DATA_AXIS),
    ("embed", None),
    ("mlp", None),
    ("heads", None),
)


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all (global) devices with axis `data`."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over `data`, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str) -> None:
    """Raises a ConfigError naming the config `field` (e.g. "training.batch_size") if the global
    batch does not divide over the devices and processes."""
    n = mesh.shape[DATA_AXIS]
    if global_batch_size % n or global_batch_size % jax.process_count():
        raise ConfigError(
            f"{field}={global_batch_size} must be divisible by the number of devices "
            f"({n}) and of processes ({jax.process_count()})"
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each host's local batch [b, ...] into one global array sharded over `data`."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )
