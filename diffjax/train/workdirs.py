"""Who may use a workdir, and with which config: the run lock, resume compatibility and the
config history.

- **Lock.** A training run holds `<workdir>/run.lock` (an advisory `flock`, so the kernel
  releases it when the process dies however it dies); a second run on the same workdir
  refuses, naming the first one's host and pid. A lock left by a process that is gone is taken
  over with a warning.
- **Compatibility.** A run that resumes compares its config with the workdir's config.json
  field by field (`changes`). Fields are of three kinds (`kind_of`):
    fixed     the structure or meaning of the saved state (method, model, process, data, the
              network's prediction, the optimizer): a changed one is an error, start a new
              workdir;
    guarded   legitimate changes that alter what the rest of the run computes (loss options,
              batch size, gradient accumulation, seed, Adam's betas, weight decay, EMA decay,
              the teacher): an error unless `--config.training.allow_config_change=True`;
    free      bookkeeping and what is done with the state (number of steps, learning rate and
              schedule, compute precision, logging, sampling, evaluation, the mode): always
              allowed.
  Every launch appends what changed to `<workdir>/config_history.jsonl`.
"""

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections
from absl import logging

from diffjax.errors import WorkdirError

LOCK_FILE = "run.lock"
HISTORY_FILE = "config_history.jsonl"

# Prefixes of dotted config fields (a prefix covers the fields under it); the longest match
# wins, and a field matched by none is fixed (a new field must be classified to be changeable).
FREE = (
    "mode",
    "training.num_steps",
    "training.log_every",
    "training.checkpoint_every",
    "training.keep_checkpoints",
    "training.sample_every",
    "training.allow_config_change",
    "optim.learning_rate",
    "optim.schedule",
    "optim.warmup_steps",
    "optim.grad_clip",
    "mesh",  # a checkpoint restores onto any mesh (orbax reshards it)
    "data.kwargs.data_dir",  # where the same prepared dataset lives on this machine
    "data.kwargs.manual_dir",  # where its downloads were copied by hand
    # Compute precision only: the saved params and optimizer state are float32 either way.
    "model.dtype",
    "sample",
    "eval",
    "guidance",
    "edit",
    "distill",
    "reflow",
    "cascade",  # mode=cascade reads it; the stages are runs of their own
    "super_resolution.sample_level",  # sampling only
)
GUARDED = (
    "seed",
    "loss",
    "training.batch_size",
    # Equal to the big batch only in expectation: each micro-batch draws its own noise (the
    # continued run is no longer the uninterrupted one), and losses that couple the examples
    # of a batch (OT-CFM's minibatch pairing) then couple fewer of them. Guarded, not fixed:
    # a run moved to machines with less memory continues with allow_config_change.
    "training.grad_accum_steps",
    "optim.b1",
    "optim.b2",
    "optim.weight_decay",
    "optim.ema_decay",
    "model.p_uncond",
    "teacher",
    "super_resolution.aug_max_level",  # the augmentation the network learns
)
# latent: the autoencoder run whose latents are the data.
FIXED = ("method", "model", "process", "data", "latent", "optim.optimizer", "loss.prediction",
         "super_resolution.low_res_size")  # fmt: skip
# Values of fields a config.json written before they existed had implicitly.
_IMPLIED = {
    "model.num_classes": 0,
    "model.p_uncond": 0.0,
    "model.dtype": "float32",
    "training.grad_accum_steps": 1,
    "super_resolution.low_res_size": 0,
    "super_resolution.aug_max_level": 0.0,
    "super_resolution.sample_level": 0.0,
    "latent.autoencoder_workdir": "",
}
_ABSENT = "<absent>"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": leaf} of a nested mapping (a ConfigDict's `to_dict()`); tuples become lists,
    as in config.json, so a config and its JSON compare equal."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):  # an empty section adds no field
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = json.loads(json.dumps(value))
    return flat


def kind_of(field: str) -> str:
    """ "fixed", "guarded" or "free": the longest prefix of `field` in the tables above."""
    best, kind = -1, "fixed"
    for table, name in ((FIXED, "fixed"), (GUARDED, "guarded"), (FREE, "free")):
        for prefix in table:
            if (field == prefix or field.startswith(prefix + ".")) and len(prefix) > best:
                best, kind = len(prefix), name
    return kind


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """field -> (old value, new value) of every field that differs between two configs (as
    dicts); a field only one of them has is `"<absent>"` in the other."""
    a, b = ({**_IMPLIED, **flatten(c)} for c in (old, new))
    return {
        field: (a.get(field, _ABSENT), b.get(field, _ABSENT))
        for field in sorted(set(a) | set(b))
        if a.get(field, _ABSENT) != b.get(field, _ABSENT)
    }


def _describe(diff: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{f}: {old!r} -> {new!r}" for f, (old, new) in diff.items())


def check_compatible(
    stored: ml_collections.ConfigDict,
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    resuming: bool,
) -> dict[str, tuple[Any, Any]]:
    """Returns the changes from the workdir's config `stored` to `config` if they are allowed.

    Args:
      stored: the config.json of `workdir`.
      config: the config of this launch.
      workdir: for the messages.
      resuming: a training run continuing from a checkpoint (fixed and guarded fields are
        checked); False for a mode that only reads the state (sample, evaluate, ...: only fixed
        fields are checked, the rest is this launch's business).

    Raises:
      WorkdirError: naming every differing fixed field (and, when resuming without
        `training.allow_config_change`, every guarded one) and what to do instead.
    """
    diff = changes(stored.to_dict(), config.to_dict())
    fixed = {f: v for f, v in diff.items() if kind_of(f) == "fixed"}
    guarded = {f: v for f, v in diff.items() if kind_of(f) == "guarded"}
    if fixed:
        raise WorkdirError(
            f"{workdir} holds a run of another configuration ({_describe(fixed)}); these fields "
            "fix what its checkpoints mean: use a new --workdir, or the run's own config "
            f"({os.path.join(workdir, 'config.json')})"
        )
    allowed = bool(config.training.get("allow_config_change", False))
    if resuming and guarded and not allowed:
        raise WorkdirError(
            f"resuming {workdir} with a changed config ({_describe(guarded)}); to continue the "
            "run with these values pass --config.training.allow_config_change=True, or start a "
            "new --workdir"
        )
    return diff


def record(workdir: str, step: int, diff: Mapping[str, tuple[Any, Any]]) -> None:
    """Appends this launch (time, host, pid, start step and the changed fields) to
    `<workdir>/config_history.jsonl` (process 0 only)."""
    if jax.process_index() != 0:
        return
    entry = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "step": step,
        "changes": {f: {"old": old, "new": new} for f, (old, new) in diff.items()},
    }
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, HISTORY_FILE), "a") as f:
        f.write(json.dumps(entry) + "\n")


def read_history(workdir: str) -> list[dict]:
    """The launches recorded in `<workdir>/config_history.jsonl`, oldest first."""
    path = os.path.join(workdir, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """Holds `<workdir>/run.lock` for the duration (process 0 only; others share its lock).

    Raises:
      WorkdirError: if another live process holds it, naming that process.
    """
    if jax.process_index() != 0:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise WorkdirError(
                f"{workdir} is in use by {holder}; wait for that run to finish or stop it, or "
                "use another --workdir"
            ) from None
        f.seek(0)
        previous = f.read().strip()
        if previous:  # a run that held it died without releasing it cleanly
            logging.warning("taking over the stale lock of %s on %s (gone)", previous, workdir)
        f.seek(0)
        f.truncate()
        f.write(
            f"pid {os.getpid()} on host {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # empty: released cleanly
            f.flush()
