"""Two real processes on 127.0.0.1 (jax.distributed, gloo collectives, 4 simulated CPU devices
each) run the CLI: the same losses as one process with 8 devices, one set of logs and files, a
checkpoint both wrote, a resume in one process, SIGTERM stopping both at one step, and clear
errors when a process cannot join or the config is wrong."""

import json
import os
import signal
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

from diffjax.train import checkpoint, experiment, runs, writer
from tests.train import toy_runs
from tests.train.test_loop import _toy_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(workdir, data_dir, config, *, devices, process=None, extra=()):
    """`toy_runs.toy2d_cli` with output captured; `process` = (id, count, port)."""
    flags = list(extra)
    if process is not None:
        index, count, port = process
        flags += [
            f"--coordinator_address=127.0.0.1:{port}",
            f"--num_processes={count}",
            f"--process_id={index}",
        ]
    return toy_runs.toy2d_cli(
        workdir, data_dir, config, *flags, devices=devices,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _two_processes(workdir, data_dir, config, extra=()):
    port = _free_port()
    return [
        _launch(workdir, data_dir, config, devices=4, process=(i, 2, port), extra=extra)
        for i in (0, 1)
    ]


def _wait(procs, timeout=600):
    results = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        results.append((p.returncode, err))
    return results


def _final_state(config, workdir):
    """The newest checkpoint of `workdir` (written on 8 devices) restored onto this process's
    one device."""
    exp = experiment.build(config)
    _, _, create = runs.state_constructor(exp)
    abstract = checkpoint.abstract_like(
        jax.eval_shape(create, jax.random.PRNGKey(config.seed)),
        jax.sharding.SingleDeviceSharding(jax.devices()[0]),
    )
    manager = checkpoint.make_manager(str(workdir), config.training.keep_checkpoints)
    return checkpoint.restore(manager, abstract)


def _losses(workdir):
    return [h["loss"] for h in writer.read_history(str(workdir))]


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume_in_one(tmp_path):
    """2 processes x 4 devices == 1 process x 8 devices (float tolerance: the gradient's
    all-reduce crosses processes through gloo, which sums in another order), logs and files
    written once, a checkpoint both wrote; then one process with 8 devices resumes it."""
    data = tmp_path / "data"
    full = _toy_config(num_steps=30, log_every=5, checkpoint_every=10)
    reference = tmp_path / "reference"
    ((rc, err),) = _wait([_launch(reference, data, full, devices=8)])
    assert rc == 0, err[-3000:]

    short = _toy_config(num_steps=20, log_every=5, checkpoint_every=10)
    workdir = tmp_path / "two"
    (rc0, err0), (rc1, err1) = _wait(_two_processes(workdir, data, short))
    assert rc0 == 0 and rc1 == 0, (err0[-3000:], err1[-3000:])
    # The same losses at steps 5..20 as the single process (which never saw 2 processes).
    np.testing.assert_allclose(_losses(workdir), _losses(reference)[:4], rtol=1e-5)
    # One set of logs and files, written by process 0; the progress only on process 0.
    assert "train on cpu, 8 devices (4 per process), 2 processes" in err0
    assert "train:" in err0 and "train:" not in err1
    log = (workdir / "train_log.txt").read_text()
    assert log.count("start step 0 of 20") == 1 and log.count("finished step 20") == 1
    assert "running on cpu, 8 devices (4 per process), 2 processes" in log
    assert [h["step"] for h in writer.read_history(str(workdir))] == [5, 10, 15, 20]
    assert len((workdir / "config_history.jsonl").read_text().splitlines()) == 1
    assert len(os.listdir(workdir / "tensorboard")) == 1
    assert json.loads((workdir / "config.json").read_text())["training"]["num_steps"] == 20
    # Both processes wrote the checkpoint: the state (process 0, its arrays are replicated)
    # and each its data iterator position.
    for step in ("10", "20"):
        data_files = sorted(os.listdir(workdir / "checkpoints" / step / "data"))
        assert "process_0-of-2.json" in data_files and "process_1-of-2.json" in data_files

    # One process with 8 devices continues the 2-process run to step 30.
    ((rc, err),) = _wait([_launch(workdir, data, full, devices=8)])
    assert rc == 0, err[-3000:]
    assert "resuming from the checkpoint of step 20" in err
    history = writer.read_history(str(workdir))
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30]
    np.testing.assert_allclose(_losses(workdir), _losses(reference), rtol=1e-5)
    full.data.kwargs.data_dir = str(data)
    a, b = _final_state(full, reference), _final_state(full, workdir)
    assert int(a.step) == int(b.step) == 30
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), a, b)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
    config = _toy_config(num_steps=3000, log_every=20, checkpoint_every=1000)
    workdir = tmp_path / "run"
    procs = _two_processes(workdir, tmp_path / "data", config)
    deadline = time.time() + 300
    while not (workdir / "history.jsonl").exists() or not _losses(workdir):
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)  # a preemption notice on the second host only
    (rc0, err0), (rc1, err1) = _wait(procs)
    assert rc0 == 0 and rc1 == 0, (err0[-3000:], err1[-3000:])
    stopped = checkpoint.make_manager(str(workdir), 3).latest_step()
    assert stopped is not None and 20 <= stopped < 1000
    for index, err in enumerate((err0, err1)):
        assert (
            f"preempted (SIGTERM): saved the checkpoint of step {stopped} in {workdir}; run the "
            f"same command again to resume (process {index} of 2)"
        ) in err
    data_files = os.listdir(workdir / "checkpoints" / str(stopped) / "data")
    assert sorted(f for f in data_files if f.endswith(".json")) == [
        "process_0-of-2.json",
        "process_1-of-2.json",
    ]


@pytest.mark.slow
def test_a_config_error_is_one_line_on_every_process(tmp_path):
    config = _toy_config(batch_size=60)
    results = _wait(_two_processes(tmp_path / "run", tmp_path / "data", config))
    for index, (rc, err) in enumerate(results):
        assert rc == 1
        assert err.strip().splitlines()[-1] == (
            f"error (process {index} of 2): training.batch_size=60 must be divisible by the "
            "devices it splits over (data=8 x fsdp=1 = 8) and by the processes (2)"
        )


def test_a_process_that_cannot_reach_its_coordinator_says_so(tmp_path):
    config = _toy_config()
    port = _free_port()  # nobody listens there
    proc = _launch(
        tmp_path / "run",
        tmp_path / "data",
        config,
        devices=4,
        process=(1, 2, port),
        extra=["--startup_timeout=2"],
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(
            f"error: process 1 of 2 could not reach the coordinator 127.0.0.1:{port} (process 0) "
            "within 2 s (ConnectionRefusedError"
        )
    )


def test_a_partial_set_of_process_flags_is_a_one_line_error(tmp_path):
    proc = _launch(
        tmp_path / "run", tmp_path / "data", _toy_config(), devices=1, extra=["--num_processes=2"]
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == (
        "error: a multi-process run needs --coordinator_address (or "
        "DIFFJAX_COORDINATOR_ADDRESS), --process_id (or DIFFJAX_PROCESS_ID) as well"
    )


class _Iterator:
    state = None

    def set_state(self, state):
        self.state = state


def test_a_data_position_written_by_other_processes_is_restored_when_they_agree(tmp_path):
    for i in (0, 1):
        (tmp_path / f"process_{i}-of-2.json").write_text(json.dumps({"next_index": 20}))
    it = _Iterator()
    checkpoint._restore_data_across_topologies(str(tmp_path), it)
    assert it.state == {"next_index": 20}
    (tmp_path / "process_1-of-2.json").write_text(json.dumps({"next_index": 19}))
    with pytest.raises(ValueError, match="differ between the processes.*same number"):
        checkpoint._restore_data_across_topologies(str(tmp_path), _Iterator())
    with pytest.raises(ValueError, match="no data iterator state"):
        checkpoint._restore_data_across_topologies(str(tmp_path / "missing"), _Iterator())
