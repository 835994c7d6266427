"""SIGTERM (a preemption notice) mid-run: a checkpoint of the step it stopped at, exit 0, and
the same command resumes to the uninterrupted final state, bit for bit."""

import signal
import subprocess
import time

import jax
import numpy as np

from diffjax.train import checkpoint, preemption, writer
from tests.train import toy_runs
from tests.train.test_loop import _final_state, _toy_config


def test_sigterm_saves_the_step_it_stopped_at_exits_0_and_resumes_exactly(tmp_path):
    config = _toy_config(num_steps=600, checkpoint_every=500, log_every=50)
    reference = tmp_path / "reference"
    proc = toy_runs.toy2d_cli(
        reference, tmp_path / "data", config, stderr=subprocess.PIPE, text=True
    )
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]

    workdir = tmp_path / "preempted"
    proc = toy_runs.toy2d_cli(workdir, tmp_path / "data", config, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not writer.read_history(str(workdir)):  # training is under way
        assert time.time() < deadline and proc.poll() is None, "the run ended too early"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    stopped = checkpoint.make_manager(str(workdir), 3).latest_step()
    assert stopped is not None and 50 <= stopped < 500, stopped  # not a periodic checkpoint
    assert err.strip().splitlines()[-1] == (
        f"preempted (SIGTERM): saved the checkpoint of step {stopped} in {workdir}; run the "
        "same command again to resume"
    )
    assert f"preempted (SIGTERM) at step {stopped}" in (workdir / "train_log.txt").read_text()
    assert not (workdir / "samples").exists()  # no final samples of an unfinished run

    proc = toy_runs.toy2d_cli(workdir, tmp_path / "data", config, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert f"resuming from the checkpoint of step {stopped}" in err
    config.data.kwargs.data_dir = str(tmp_path / "data")
    a, b = _final_state(config, reference), _final_state(config, workdir)
    assert int(a.step) == int(b.step) == 600
    jax.tree.map(np.testing.assert_array_equal, a, b)
    np.testing.assert_array_equal(
        [h["loss"] for h in writer.read_history(str(workdir))],
        [h["loss"] for h in writer.read_history(str(reference))],
    )


def test_the_sigterm_handler_is_installed_only_for_the_loop():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.Preemption() as preempt:
        assert signal.getsignal(signal.SIGTERM) != before
        assert not preempt.reached(1)
        signal.raise_signal(signal.SIGTERM)
        assert preempt.reached(2)
    assert signal.getsignal(signal.SIGTERM) == before
