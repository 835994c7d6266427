"""The workdir's lock, resume compatibility and config history."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from configs import ddpm_toy2d, default
from diffjax.errors import WorkdirError
from diffjax.train import loop, runs, workdirs
from tests.train import toy_runs

ROOT = toy_runs.ROOT


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("method", "fixed"),
        ("model.name", "fixed"),
        ("model.kwargs.ch", "fixed"),
        ("model.num_classes", "fixed"),
        ("model.p_uncond", "guarded"),
        ("process.kwargs.num_steps", "fixed"),
        ("data.name", "fixed"),
        ("data.kwargs.distribution", "fixed"),
        ("data.kwargs.data_dir", "free"),
        ("loss.prediction", "fixed"),
        ("loss.weighting", "guarded"),
        ("optim.optimizer", "fixed"),
        ("optim.learning_rate", "free"),
        ("optim.ema_decay", "guarded"),
        ("training.num_steps", "free"),
        ("training.batch_size", "guarded"),
        ("training.brand_new_field", "fixed"),  # unclassified fields may not change
        ("seed", "guarded"),
        ("teacher.workdir", "guarded"),
        ("sample.options.eta", "free"),
        ("eval.num_samples", "free"),
        ("mode", "free"),
        ("model.dtype", "free"),
        ("training.grad_accum_steps", "guarded"),
        ("super_resolution.low_res_size", "fixed"),
        ("super_resolution.aug_max_level", "guarded"),
        ("super_resolution.sample_level", "free"),
        ("cascade.stages", "free"),
    ],
)
def test_every_field_has_a_kind(field, kind):
    assert workdirs.kind_of(field) == kind


def test_every_default_field_is_classified_on_purpose():
    """Each field of the default config falls under a listed prefix (none is fixed merely for
    being unknown), so a new config field forces a decision here."""
    listed = workdirs.FIXED + workdirs.GUARDED + workdirs.FREE
    for field in workdirs.flatten(default.get_config().to_dict()):
        assert any(field == p or field.startswith(p + ".") for p in listed), field


def test_changes_compare_a_config_with_its_json_and_older_configs():
    config = default.get_config()
    stored = runs.derive(config)  # as read back from config.json: tuples become lists
    assert workdirs.changes(stored.to_dict(), config.to_dict()) == {}
    old = config.to_dict()
    del old["model"]["num_classes"], old["model"]["p_uncond"]  # written before they existed
    del old["model"]["dtype"], old["training"]["grad_accum_steps"]
    assert workdirs.changes(old, config.to_dict()) == {}
    new = runs.derive(config, **{"training.num_steps": 7, "data.kwargs.data_dir": "/d"})
    assert workdirs.changes(config.to_dict(), new.to_dict()) == {
        "training.num_steps": (2000, 7),
        "data.kwargs.data_dir": ("<absent>", "/d"),
    }


def _toy(data_dir, **training):
    config = ddpm_toy2d.get_config()
    config.training.update(
        {"num_steps": 10, "log_every": 5, "checkpoint_every": 10, "batch_size": 64, **training}
    )
    config.sample.num_samples = 16
    config.eval.at_end = False
    config.data.kwargs.data_dir = str(data_dir)
    return config


@pytest.fixture
def finished(tmp_path):
    """A toy run of 10 steps with its checkpoint."""
    config = _toy(tmp_path / "data")
    workdir = str(tmp_path / "run")
    loop.train(config, workdir)
    return config, workdir


def test_resuming_with_another_model_names_the_fields(finished):
    config, workdir = finished
    changed = runs.derive(config, **{"model.kwargs.features": 64, "training.num_steps": 20})
    with pytest.raises(WorkdirError, match=r"another configuration \(model.kwargs.features: ") as e:
        loop.train(changed, workdir)
    assert "training.num_steps" not in str(e.value)  # allowed changes are not blamed
    assert "new --workdir" in str(e.value)
    # Nothing was written: the stored config is still the run's own.
    assert runs.load_config(workdir).model.to_dict() == config.model.to_dict()
    # Reading modes refuse it too.
    with pytest.raises(WorkdirError, match="model.kwargs.features"):
        runs.restore_latest(changed, workdir)


def test_guarded_changes_need_allow_config_change_and_are_recorded(finished):
    config, workdir = finished
    changed = runs.derive(config, **{"seed": 1, "training.num_steps": 20})
    with pytest.raises(WorkdirError, match=r"seed: 0 -> 1.*allow_config_change=True"):
        loop.train(changed, workdir)
    allowed = runs.derive(changed, **{"training.allow_config_change": True})
    state = loop.train(allowed, workdir)
    assert int(state.step) == 20
    history = workdirs.read_history(workdir)
    assert [h["step"] for h in history] == [0, 10]
    assert history[0]["changes"] == {}
    assert history[1]["changes"] == {
        "seed": {"old": 0, "new": 1},
        "training.num_steps": {"old": 10, "new": 20},
        "training.allow_config_change": {"old": False, "new": True},
    }
    assert runs.load_config(workdir).seed == 1


def test_free_changes_resume_without_a_flag(finished):
    config, workdir = finished
    longer = runs.derive(
        config, **{"training.num_steps": 15, "optim.learning_rate": 1e-4, "training.log_every": 3}
    )
    assert int(loop.train(longer, workdir).step) == 15
    assert set(workdirs.read_history(workdir)[-1]["changes"]) == {
        "training.num_steps",
        "optim.learning_rate",
        "training.log_every",
    }


_HOLD = textwrap.dedent(
    """
    import sys, time
    from diffjax.train import workdirs
    with workdirs.lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def _holder(workdir):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_on_a_locked_workdir_refuses_naming_the_first(tmp_path):
    proc = _holder(tmp_path)
    try:
        with (
            pytest.raises(WorkdirError, match=rf"in use by pid {proc.pid} on host "),
            workdirs.lock(str(tmp_path)),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    with workdirs.lock(str(tmp_path)):
        text = (tmp_path / workdirs.LOCK_FILE).read_text()
        assert text.startswith(f"pid {os.getpid()} on host ")
    assert any(f"stale lock of pid {proc.pid}" in r.getMessage() for r in caplog.records), (
        caplog.text
    )
    # Released cleanly: the next one takes it without a warning.
    caplog.clear()
    with workdirs.lock(str(tmp_path)):
        pass
    assert not any("stale" in r.getMessage() for r in caplog.records)


def _cli(workdir, data_dir, *overrides):
    """The CLI on configs/ddpm_toy2d.py with the `finished` run's fields, to the end."""
    config = ddpm_toy2d.get_config()
    config.training.update({"num_steps": 20, "log_every": 5, "checkpoint_every": 10})
    config.training.batch_size = 64
    config.sample.num_samples = 16
    config.eval.at_end = False
    return toy_runs.run_toy2d_cli(workdir, data_dir, config, *overrides, timeout=300)


def test_the_cli_says_in_one_line_that_a_workdir_is_taken_or_holds_another_run(finished):
    _, workdir = finished
    data_dir = os.path.join(os.path.dirname(workdir), "data")
    result = _cli(workdir, data_dir, "--config.model.name=unet_tiny")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "model.name: 'mlp' -> 'unet_tiny'" in last, last

    proc = _holder(workdir)
    try:
        result = _cli(workdir, data_dir)
    finally:
        proc.kill()
        proc.wait()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {workdir} is in use by pid {proc.pid}" in result.stderr.strip().splitlines()[-1]

    result = _cli(workdir, data_dir)  # free again: the run resumes and finishes
    assert result.returncode == 0, result.stderr[-3000:]
    assert [h["step"] for h in workdirs.read_history(workdir)] == [0, 10]
