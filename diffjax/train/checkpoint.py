"""Atomic, resumable checkpoints with orbax: the TrainState plus the data iterator's position.

orbax writes each step into a temporary directory and renames it when complete, so a process
killed mid-save leaves a `*.orbax-checkpoint-tmp*` directory that `latest_step()` ignores: a
resumed run loses at most the steps since the last complete checkpoint.
"""

import os

import grain.checkpoint
import jax
import orbax.checkpoint as ocp

from diffjax.train.state import TrainState


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """A CheckpointManager over `<workdir>/checkpoints` keeping the `keep` most recent steps."""
    if keep < 1:
        raise ValueError(f"training.keep_checkpoints={keep} must be >= 1")
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, state: TrainState, data_iterator=None) -> None:
    """Saves `state` (and the iterator position, if given) under its step, asynchronously."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    manager.save(int(state.step), args=ocp.args.Composite(**items))


def abstract_like(state: TrainState, sharding) -> TrainState:
    """Shape/dtype structs of `state` carrying the target `sharding`, to restore into."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def restore(
    manager: ocp.CheckpointManager, abstract_state: TrainState, data_iterator=None, step=None
) -> TrainState:
    """Restores the state of `step` (default: the latest complete one) and the iterator in place.

    Raises:
      FileNotFoundError: if the manager holds no complete checkpoint.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint in {manager.directory}")
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    return manager.restore(step, args=ocp.args.Composite(**items))["state"]
