"""The one sharding policy: a mesh of all devices over `data` x `fsdp`, logical axis names
mapped to mesh axes.

The batch's leading axis splits over both mesh axes. Models name the axes of their kernels
logically (`diffjax.models.layers.logical`); `LOGICAL_AXIS_RULES` says which mesh axis each name
splits over, and `state_shardings` applies it to every leaf of a TrainState whose path ends in
an annotated parameter's path (the params, the EMA, Adam's moments, a teacher), so that
parameters, EMA and optimizer state are split over `fsdp` (ZeRO-3 style: XLA gathers each
weight where it is used). A dimension that does not divide by its mesh axis stays replicated,
decided per leaf. There is no tensor axis: the models here are at most DiT-XL (675M params),
whose state fits on one accelerator once split over `fsdp`; tensor parallelism would only add
collectives inside every block.
"""

import math
from collections.abc import Mapping

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffjax.errors import ConfigError
from diffjax.train.settings import MeshConfig

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
MESH_AXES = (DATA_AXIS, FSDP_AXIS)
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # the batch splits over every device

# Logical axis name -> mesh axis (None: replicated), the single table the models refer to.
LOGICAL_AXIS_RULES = (
    ("batch", BATCH_AXES),
    ("embed", FSDP_AXIS),  # token / conditioning width (DiT's D, a UNet's time embedding)
    ("mlp", None),  # a width expanded from embed (MLP hidden, fused qkv, adaLN modulations)
    ("heads", None),  # heads x head channels, the input of attention's output projection
    ("conv_in", None),  # a convolution's input channels
    ("conv_out", FSDP_AXIS),  # a convolution's output channels (the larger, or as large)
    ("classes", None),  # rows of a label table (num_classes + 1: rarely divisible)
)


def make_mesh(config: MeshConfig | None = None, devices=None) -> Mesh:
    """The mesh of `config` (default: every device on `data`) over all (global) devices.

    Raises:
      ConfigError: naming `mesh` if its shape does not match the device count.
    """
    devices = jax.devices() if devices is None else devices
    shape = (config or MeshConfig()).shape(len(devices))
    grid = mesh_utils.create_device_mesh(
        tuple(shape[a] for a in MESH_AXES), devices, allow_split_physical_axes=True
    )
    return Mesh(grid, MESH_AXES)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over data x fsdp, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def sample_sharding(mesh: Mesh, num_samples: int) -> NamedSharding:
    """Where `num_samples` draws live: split over data x fsdp when they divide (each device
    samples its share; XLA propagates the split back through the sampler's scan), else
    replicated."""
    return replicated(mesh) if num_samples % batch_size_of(mesh) else batch_sharding(mesh)


def put_split(x, mesh: Mesh) -> jax.Array:
    """A host array (the same on every process) placed on `mesh` as `sample_sharding` says:
    split over data x fsdp when its leading axis divides, else replicated."""
    return jax.device_put(x, sample_sharding(mesh, len(x)))


def jit_over_batch(fn, mesh: Mesh, **jit_kwargs):
    """`jax.jit` of an evaluation `fn(params, *args)` whose work splits over the batch of its
    args (placed by `global_batch` or `put_split`). The params enter replicated (one all-gather
    of fsdp-split weights per call): with fsdp-split weights XLA would otherwise split the
    activations over fsdp's features instead of the batch."""

    def with_replicated_params(params, *args):
        return fn(replicate(params, mesh), *args)

    return jax.jit(with_replicated_params, **jit_kwargs)


def replicate(tree, mesh: Mesh):
    """Inside a jit: `tree` constrained onto every device of `mesh` (see `jit_over_batch`)."""
    return jax.lax.with_sharding_constraint(tree, replicated(mesh))


def gather(x: jax.Array, mesh: Mesh) -> jax.Array:
    """`x` replicated on every device of `mesh` (an all-gather of a split array), so that every
    host can read all of it."""
    return jax.jit(_identity, out_shardings=replicated(mesh))(x)


def _identity(x):  # one function, so that jit's caches hold one compilation per shape
    return x


def batch_size_of(mesh: Mesh) -> int:
    """How many ways a batch splits: data x fsdp."""
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str) -> None:
    """Raises a ConfigError naming the config `field` (e.g. "training.batch_size") if the global
    batch does not divide over data x fsdp and over the processes."""
    n = batch_size_of(mesh)
    if global_batch_size % n or global_batch_size % jax.process_count():
        split = " x ".join(f"{a}={mesh.shape[a]}" for a in BATCH_AXES)
        raise ConfigError(
            f"{field}={global_batch_size} must be divisible by the devices it splits over "
            f"({split} = {n}) and by the processes ({jax.process_count()})"
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each host's local batch [b, ...] into one global array split over data x fsdp."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def mesh_spec(shape, logical: PartitionSpec, mesh: Mesh, where: str = "") -> PartitionSpec:
    """The mesh PartitionSpec of one array from the logical names of its axes.

    A name maps by `LOGICAL_AXIS_RULES`; the dimension stays replicated when its size does not
    divide by the mesh axis, when that axis has one device, or when an earlier dimension took
    it.

    Raises:
      ValueError: for a logical name the table does not hold (naming `where`, the parameter).
    """
    rules = dict(LOGICAL_AXIS_RULES)
    axes, used = [], set()
    for size, name in zip(shape, logical, strict=True):
        if name is None:
            axes.append(None)
            continue
        if name not in rules:
            raise ValueError(
                f"parameter {where} names the logical axis {name!r}, which "
                f"sharding.LOGICAL_AXIS_RULES does not map (it maps {', '.join(rules)})"
            )
        axis = rules[name]
        members = () if axis is None else axis if isinstance(axis, tuple) else (axis,)
        n = math.prod(mesh.shape[a] for a in members)
        if n == 1 or size % n or used & set(members):
            axes.append(None)
        else:
            axes.append(axis)
            used |= set(members)
    return PartitionSpec(*axes)


def _names(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


def state_shardings(abstract_state, logical_params: Mapping, mesh: Mesh):
    """A NamedSharding per leaf of `abstract_state` (a pytree of arrays or ShapeDtypeStructs).

    Args:
      abstract_state: e.g. `jax.eval_shape(create, key)` of a TrainState.
      logical_params: the network's params tree with a logical PartitionSpec per leaf
        (`nn.get_partition_spec` of the boxed init; `PartitionSpec()` for unannotated leaves).
      mesh: the mesh.

    Returns:
      The tree of `abstract_state` with a NamedSharding per leaf: a leaf whose path ends in an
      annotated parameter's path, with that parameter's rank, is split as `mesh_spec` says (so
      params, EMA, Adam's moments and a teacher share their parameter's layout); every other
      leaf (step, key, counts, biases, norms) is replicated.

    Raises:
      ValueError: for a logical name `LOGICAL_AXIS_RULES` does not hold.
    """
    flat = jax.tree_util.tree_flatten_with_path(
        logical_params, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )[0]
    table = {_names(path): spec for path, spec in flat if any(n is not None for n in spec)}

    def leaf(path, x):
        names = _names(path)
        for i in range(len(names)):
            spec = table.get(names[i:])
            if spec is not None and len(spec) == len(x.shape):
                where = "/".join(map(str, names[i:]))
                return NamedSharding(mesh, mesh_spec(x.shape, spec, mesh, where))
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(leaf, abstract_state)
