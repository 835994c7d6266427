"""Atomic, resumable checkpoints with orbax: the TrainState plus the data iterator's position.

orbax writes each step into a temporary directory and renames it when complete, so a process
killed mid-save leaves a `*.orbax-checkpoint-tmp*` directory that `latest_step()` ignores: a
resumed run loses at most the steps since the last complete checkpoint.

A complete checkpoint can still be unreadable later (bit rot, an interrupted copy of the
workdir, a disk that filled up under it). `restore` then falls back to the newest checkpoint
that reads, says so in one warning per damaged step and, when asked (a training run, which
will write those step numbers again), moves the damaged ones into
`<workdir>/unreadable_checkpoints/` instead of deleting them.
"""

import json
import os
import shutil
import time

import grain.checkpoint
import jax
import orbax.checkpoint as ocp
from absl import logging

from diffjax.errors import WorkdirError
from diffjax.train.state import TrainState

CHECKPOINTS = "checkpoints"
UNREADABLE = "unreadable_checkpoints"


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """A CheckpointManager over `<workdir>/checkpoints` keeping the `keep` most recent steps."""
    if keep < 1:
        raise ValueError(f"training.keep_checkpoints={keep} must be >= 1")
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, state: TrainState, data_iterator=None) -> None:
    """Saves `state` (and the iterator position, if given) under its step, asynchronously.

    Raises:
      WorkdirError: if the disk has no room for the checkpoint (checked before writing, so a
        full disk stops the run cleanly instead of failing inside orbax's writer threads).
    """
    check_space(manager, state)
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    manager.save(int(state.step), args=ocp.args.Composite(**items))


def check_space(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Raises a WorkdirError unless the checkpoint directory's disk has room for one more
    checkpoint of `state` (its arrays' bytes plus 10%: orbax deletes the oldest only after the
    new one is complete). Waits for the previous save first, which is still writing."""
    manager.wait_until_finished()
    need = int(1.1 * sum(x.nbytes for x in jax.tree.leaves(state))) + 2**20
    free = shutil.disk_usage(manager.directory).free
    if free < need:
        last = manager.latest_step()
        raise WorkdirError(
            f"no space left for the checkpoint of step {int(state.step)} in {manager.directory}"
            f" ({free / 2**20:.1f} MiB free, about {need / 2**20:.1f} MiB needed); the last "
            f"complete checkpoint is step {last}; free space (or lower "
            "training.keep_checkpoints) and rerun the same command to resume"
        )


def abstract_like(state: TrainState, shardings) -> TrainState:
    """Shape/dtype structs of `state` carrying the target shardings, to restore into: orbax
    reads each leaf straight into its sharding, whatever mesh wrote it.

    Args:
      state: a TrainState of arrays or ShapeDtypeStructs.
      shardings: one sharding for every leaf, or a tree of them (`sharding.state_shardings`).
    """
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, state)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )


def _restore_step(manager, step, abstract_state, data_iterator):
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    data_dir = os.path.join(os.fspath(manager.directory), str(step), "data")
    own = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    same_topology = os.path.exists(os.path.join(data_dir, own))
    if data_iterator is not None and same_topology:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    state = manager.restore(step, args=ocp.args.Composite(**items))["state"]
    if data_iterator is not None and not same_topology:
        _restore_data_across_topologies(data_dir, data_iterator)
    return state


def _restore_data_across_topologies(data_dir: str, data_iterator) -> None:
    """Restores the iterator from a checkpoint written by another number of processes.

    grain names each host's file `process_<i>-of-<n>.json`. The per-host pipelines read the
    same global batches (each its block of them, `pipeline.index_batches`), so their positions
    are equal and any host's position is every host's position in the new topology.

    Raises:
      ValueError: no iterator file, or files that disagree (a pipeline whose hosts' positions
        are not interchangeable).
    """
    names = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
    names = [n for n in names if n.startswith("process_") and n.endswith(".json")]
    if not names:
        raise ValueError(f"no data iterator state in {data_dir}")
    states = []
    for name in names:
        with open(os.path.join(data_dir, name)) as f:
            states.append(json.load(f))
    if any(s != states[0] for s in states):
        raise ValueError(
            f"the data iterator states in {data_dir} differ between the processes that wrote "
            "them; resume with the same number of processes"
        )
    data_iterator.set_state(states[0])


def _first_line(error: Exception, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    text = text[0] if text else ""
    return f"{type(error).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def set_aside(manager: ocp.CheckpointManager, step: int) -> str:
    """Moves the checkpoint of `step` into `<workdir>/unreadable_checkpoints/` (never deletes
    it) and returns where it went; only process 0 moves files."""
    workdir = os.path.dirname(os.fspath(manager.directory))
    target = os.path.join(workdir, UNREADABLE, str(step))
    if os.path.exists(target):  # the same step was set aside before: keep both
        target += time.strftime("_%Y%m%d-%H%M%S")
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(os.path.join(os.fspath(manager.directory), str(step)), target)
    manager.reload()
    return target


def restore(
    manager: ocp.CheckpointManager,
    abstract_state: TrainState,
    data_iterator=None,
    step: int | None = None,
    *,
    set_aside_unreadable: bool = False,
) -> TrainState:
    """Restores the state of `step`, by default of the newest checkpoint that can be read, and
    the iterator in place.

    A newer checkpoint that cannot be read is skipped with one warning naming it; with
    `set_aside_unreadable` it is also moved aside (`set_aside`) once an older one has been
    restored, so that the run can write its step again. Nothing is moved when no checkpoint
    reads: the damage may be in the caller's template (a changed config), not the files.

    Raises:
      FileNotFoundError: if the manager holds no complete checkpoint.
      WorkdirError: if no candidate checkpoint can be read (each step's error named).
    """
    steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
    if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {manager.directory}")
    failures = []
    for candidate in steps:
        try:
            state = _restore_step(manager, candidate, abstract_state, data_iterator)
        except Exception as error:  # noqa: BLE001  (orbax and tensorstore raise many kinds)
            failures.append((candidate, error))
            continue
        for bad, error in failures:
            where = f"kept in {manager.directory}"
            if set_aside_unreadable:
                where = f"moved to {set_aside(manager, bad)}"
            logging.warning(
                "the checkpoint of step %d cannot be read (%s); %s; using step %d instead",
                bad, _first_line(error), where, candidate,
            )  # fmt: skip
        return state
    errors = "; ".join(f"step {s}: {_first_line(e)}" for s, e in failures)
    raise WorkdirError(
        f"no checkpoint in {manager.directory} can be read ({errors}). If the files are intact, "
        "the config may not match the one they were written with (the workdir's config.json)"
    )
