"""Preemption: SIGTERM stops training at a step every process agrees on, after a checkpoint.

A preemptible TPU VM or a spot GPU instance gets SIGTERM some seconds before it is taken away.
The training loop asks `Preemption.reached(step)` after every step:

- in a multi-process run, JAX's distributed runtime catches the signal and
  `multihost_utils.reached_preemption_sync_point(step)` is True on every process at the same
  step (the first one after any process was signalled), so all of them save that step;
- in a single process, a SIGTERM handler sets a flag that the next step boundary reads.

The loop then saves a checkpoint of that step and raises `Preempted`; `python -m diffjax.main`
exits 0, and running the same command again resumes from the checkpoint.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):  # noqa: N818  (an outcome, not a failure: the CLI exits 0)
    """Training stopped on SIGTERM after saving the checkpoint of `step`."""

    def __init__(self, step: int, workdir: str):
        self.step, self.workdir = step, workdir
        super().__init__(
            f"preempted (SIGTERM): saved the checkpoint of step {step} in {workdir}; run the same "
            "command again to resume"
        )


class Preemption:
    """Whether a preemption notice has arrived, answered identically on every process.

    Use as a context manager around the loop: in a single process it installs the SIGTERM
    handler on entry and restores the previous one on exit.
    """

    def __init__(self):
        self.multi_process = jax.process_count() > 1
        self._signalled = False
        self._previous = None

    def __enter__(self) -> "Preemption":
        # signal.signal works only in the main thread; elsewhere SIGTERM keeps its handler.
        if not self.multi_process and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        del signum, frame
        self._signalled = True

    def reached(self, step: int) -> bool:
        """True at the first step boundary after SIGTERM; every process must call it at every
        step (with the same `step`) in a multi-process run."""
        if self.multi_process:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._signalled
