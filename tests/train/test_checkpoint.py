"""Checkpoints that survive damage: a truncated or partly deleted newest checkpoint is skipped
with one warning, kept aside, and the run resumes from the newest readable one to exactly the
state of an undamaged run; with no readable checkpoint, one clear error and nothing moved. A
disk without room for the next checkpoint stops the run cleanly; it resumes once there is."""

import glob
import logging
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest

from configs import ddpm_toy2d
from diffjax.errors import WorkdirError
from diffjax.train import checkpoint, experiment, loop, runs


def _config(data_dir, num_steps=30):
    config = ddpm_toy2d.get_config()
    config.training.update(
        {"num_steps": num_steps, "log_every": 5, "checkpoint_every": 10, "batch_size": 64}
    )
    config.sample.num_samples = 16
    config.eval.at_end = False
    config.data.kwargs.data_dir = str(data_dir)
    return config


def _read(config, workdir, step=None):
    exp = experiment.build(config)
    _, _, create = runs.state_constructor(exp)
    abstract = jax.eval_shape(create, jax.random.PRNGKey(config.seed))
    manager = checkpoint.make_manager(str(workdir), 3)
    try:
        return checkpoint.restore(manager, abstract, step=step)
    finally:
        manager.close()


def _assert_same(a, b):
    assert int(a.step) == int(b.step)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    jax.tree.map(np.testing.assert_array_equal, a.ema_params, b.ema_params)
    jax.tree.map(np.testing.assert_array_equal, a.opt_state, b.opt_state)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An undamaged 30-step run with checkpoints at steps 10, 20 and 30."""
    root = tmp_path_factory.mktemp("ckpt")
    config = _config(root / "data")
    loop.train(config, str(root / "run"))
    return config, root / "run"


def _largest_array_file(step_dir):
    return max(glob.glob(f"{step_dir}/state/ocdbt.process_0/d/*"), key=os.path.getsize)


def _truncate(path, size=100):
    with open(path, "r+b") as f:
        f.truncate(size)


DAMAGES = {
    "truncated array file": lambda d: _truncate(_largest_array_file(d)),
    "deleted array file": lambda d: os.remove(_largest_array_file(d)),
    "deleted state metadata": lambda d: os.remove(f"{d}/state/_METADATA"),
    "truncated state metadata": lambda d: _truncate(f"{d}/state/_METADATA"),
    "deleted data iterator state": lambda d: os.remove(f"{d}/data/process_0-of-1.json"),
    "deleted state directory": lambda d: shutil.rmtree(f"{d}/state"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes(
    trained, tmp_path, caplog, damage
):
    config, reference = trained
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    DAMAGES[damage](workdir / "checkpoints" / "30")
    with caplog.at_level(logging.WARNING):
        state = loop.train(config, str(workdir))
    # Resumed from step 20 and retrained to exactly the undamaged step 30.
    _assert_same(state, _read(config, reference))
    warnings = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "step 30" in warnings[0] and "unreadable_checkpoints" in warnings[0]
    assert "using step 20" in warnings[0]
    # The damaged files were kept, not deleted.
    assert (workdir / "unreadable_checkpoints" / "30").is_dir()
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20", "30"]


def test_reading_modes_skip_a_damaged_checkpoint_without_moving_it(trained, tmp_path):
    config, reference = trained
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    DAMAGES["truncated array file"](workdir / "checkpoints" / "30")
    _, state = runs.restore_latest(config, str(workdir))
    _assert_same(state, _read(config, reference, step=20))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20", "30"]
    assert not (workdir / "unreadable_checkpoints").exists()


def test_no_readable_checkpoint_is_one_clear_error_and_nothing_moves(trained, tmp_path):
    config, reference = trained
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    for step in ("10", "20", "30"):
        DAMAGES["deleted state metadata"](workdir / "checkpoints" / step)
    with pytest.raises(WorkdirError, match=r"no checkpoint in .* can be read \(step 30: .*step 10"):
        loop.train(config, str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20", "30"]
    assert not (workdir / "unreadable_checkpoints").exists()


def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_once_there_is_space(trained, tmp_path):
    config, reference = trained
    disk = tmp_path / "disk"
    # A real size-limited filesystem: room for two checkpoints of this run (~11 MiB each), not
    # three. Needs mount rights (root, as on the CI machine).
    if not _mount_tmpfs(disk, "25m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        workdir = disk / "run"
        with pytest.raises(WorkdirError, match=r"no space left.*step 30.*last complete .* 20"):
            loop.train(config, str(workdir))
        assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20"]
        subprocess.run(["mount", "-o", "remount,size=100m", str(disk)], check=True)
        state = loop.train(config, str(workdir))
        _assert_same(state, _read(config, reference))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
