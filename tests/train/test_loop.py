"""The training loop end to end: loss goes down, sharding does not change the numbers, a
SIGKILLed run resumes to the uninterrupted state, NaN stops the run, outputs are written."""

import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from configs import ddpm_digits_cond, ddpm_toy2d, default
from diffjax.train import checkpoint, experiment, generate, loop, runs, state, writer
from tests.train import toy_runs

ROOT = toy_runs.ROOT


def _toy_config(**training):
    """configs/ddpm_toy2d.py shortened: DDPM on 2-D moons with the MLP."""
    config = ddpm_toy2d.get_config()
    config.training.update(
        {"num_steps": 30, "log_every": 5, "checkpoint_every": 10, "batch_size": 64, **training}
    )
    config.sample.num_samples = 16
    config.eval.at_end = False
    return config


def _final_state(config, workdir):
    exp = experiment.build(config)
    _, _, create = runs.state_constructor(exp)
    abstract = jax.eval_shape(create, jax.random.PRNGKey(config.seed))
    manager = checkpoint.make_manager(str(workdir), config.training.keep_checkpoints)
    return checkpoint.restore(manager, abstract)


def test_train_step_lowers_the_loss_on_a_fixed_batch(tmp_path):
    config = _toy_config()
    config.data.kwargs.data_dir = str(tmp_path / "data")
    exp = experiment.build(config)
    optimizer, _, create = runs.state_constructor(exp)
    st = create(jax.random.PRNGKey(0))
    batch = exp.conditioning.train_batch(next(iter(exp.dataset.loader("train", 64, seed=0))))
    loss_fn = jax.jit(exp.make_loss())
    step = jax.jit(state.make_train_step(exp.make_loss(), optimizer, 0.99))
    key = jax.random.PRNGKey(1)
    before = float(loss_fn(st.params, batch, key)[0])
    for _ in range(20):
        st, metrics = step(st, batch)
    after = float(loss_fn(st.params, batch, key)[0])
    assert int(st.step) == 20
    assert np.isfinite(float(metrics["grad_norm"]))
    assert after < 0.8 * before


def test_eight_devices_give_the_same_losses_as_one(tmp_path):
    config = _toy_config(num_steps=20)
    histories = []
    for devices in (1, 8):
        workdir = tmp_path / f"run{devices}"
        proc = toy_runs.toy2d_cli(
            workdir, tmp_path / "data", config, devices=devices, stderr=subprocess.PIPE, text=True
        )
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        histories.append(writer.read_history(str(workdir)))
    losses = [[h["loss"] for h in hist] for hist in histories]
    assert len(losses[0]) == 4
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_sigkilled_run_resumes_to_the_uninterrupted_state(tmp_path):
    config = _toy_config(num_steps=1500, checkpoint_every=100, log_every=100)
    reference = tmp_path / "reference"
    proc = toy_runs.toy2d_cli(
        reference, tmp_path / "data", config, stderr=subprocess.PIPE, text=True
    )
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]

    killed = tmp_path / "killed"
    proc = toy_runs.toy2d_cli(killed, tmp_path / "data", config, stderr=subprocess.DEVNULL)
    ckpt_dir = killed / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline:
        done = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if ckpt_dir.exists() else []
        if done:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = checkpoint.make_manager(str(killed), 3).latest_step()
    assert interrupted_at is not None and interrupted_at < 1500, "the kill came too late"

    proc = toy_runs.toy2d_cli(killed, tmp_path / "data", config, stderr=subprocess.PIPE, text=True)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    config.data.kwargs.data_dir = str(tmp_path / "data")
    a, b = _final_state(config, reference), _final_state(config, killed)
    assert int(a.step) == int(b.step) == 1500
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    jax.tree.map(np.testing.assert_array_equal, a.ema_params, b.ema_params)
    steps = [h["step"] for h in writer.read_history(str(killed))]
    assert steps == sorted(set(steps)), "history repeats steps after resume"


def _kill_when(proc, ready, timeout=300):
    """SIGKILLs `proc` as soon as `ready()` holds; returns False if it exited first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
def test_chaos_repeated_sigkills_at_random_moments_end_in_the_uninterrupted_state(tmp_path):
    """Killed six times (three of them while a checkpoint is being written, three at random
    moments of training), resumed each time: the final state is bit-identical."""
    config = _toy_config(num_steps=800, checkpoint_every=20, log_every=20)
    reference = tmp_path / "reference"
    proc = toy_runs.toy2d_cli(
        reference, tmp_path / "data", config, stderr=subprocess.PIPE, text=True
    )
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]

    rng = np.random.default_rng(0)
    killed = tmp_path / "killed"
    ckpt_dir = killed / "checkpoints"

    def steps():
        return (
            sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if ckpt_dir.exists() else []
        )

    def saving():
        return ckpt_dir.exists() and any("tmp" in d for d in os.listdir(ckpt_dir))

    interrupted_saves = 0
    for attempt in range(6):
        before = steps()
        proc = toy_runs.toy2d_cli(killed, tmp_path / "data", config, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.0, 1.0)

        def ready(during_save=attempt % 2 == 0, before=before, delay=delay):
            if steps() == before:  # not yet past the resume point
                return False
            if during_save:  # while orbax writes a checkpoint
                return saving()
            time.sleep(delay)  # a random moment of training
            return True

        if not _kill_when(proc, ready):
            pytest.fail(f"launch {attempt} finished before it could be killed: use more steps")
        interrupted_saves += saving()  # a partial checkpoint left behind
    assert interrupted_saves >= 2, interrupted_saves
    assert steps() and steps()[-1] < 800

    proc = toy_runs.toy2d_cli(killed, tmp_path / "data", config, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "stale lock" in err  # the last kill left its lock behind
    config.data.kwargs.data_dir = str(tmp_path / "data")
    a, b = _final_state(config, reference), _final_state(config, killed)
    assert int(a.step) == int(b.step) == 800
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    jax.tree.map(np.testing.assert_array_equal, a.ema_params, b.ema_params)
    jax.tree.map(np.testing.assert_array_equal, a.opt_state, b.opt_state)
    history = writer.read_history(str(killed))
    assert [h["step"] for h in history] == list(range(20, 801, 20))
    np.testing.assert_array_equal(
        [h["loss"] for h in history], [h["loss"] for h in writer.read_history(str(reference))]
    )


def test_nan_loss_stops_the_run_naming_step_and_checkpoint(tmp_path):
    config = _toy_config(num_steps=200, checkpoint_every=1)
    config.data.kwargs.data_dir = str(tmp_path / "data")
    config.optim.learning_rate = 1e30
    config.optim.warmup_steps = 0
    config.optim.grad_clip = 0.0
    with pytest.raises(
        loop.NonFiniteLossError,
        match=r"at step \d+; the last complete checkpoint is step \d+ .*resumes from it",
    ):
        loop.train(config, str(tmp_path / "run"))


def test_batch_must_divide_over_devices(tmp_path):
    config = _toy_config(batch_size=60)
    proc = toy_runs.toy2d_cli(
        tmp_path / "run", tmp_path / "data", config, devices=8, stderr=subprocess.PIPE, text=True
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "training.batch_size=60 must be divisible by the devices it splits over (data=8" in err


def test_a_short_digits_run_writes_every_output(tmp_path):
    config = default.get_config()
    config.data.kwargs = {"data_dir": str(tmp_path / "data")}
    config.training.num_steps = 20
    config.training.log_every = 5
    config.training.checkpoint_every = 10
    config.training.sample_every = 10
    config.process.kwargs = {"num_steps": 50}
    config.sample.num_steps = 10
    config.sample.num_samples = 16
    config.eval.num_samples = 100
    workdir = tmp_path / "run"
    loop.train(config, str(workdir))
    for name in ("loss_curve.png", "metrics.json", "train_log.txt", "history.jsonl"):
        assert (workdir / name).exists(), name
    assert (workdir / "samples" / "samples_final.png").exists()
    assert (workdir / "samples" / "samples_step_0000010.png").exists()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))
    assert sorted(d for d in os.listdir(workdir / "checkpoints") if d.isdigit()) == ["10", "20"]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["step"] == 20
    assert metrics["frechet_floor_train_vs_test"] < metrics["frechet_ceiling_noise"]

    # eval_bpd on discrete data: the dequantized ODE bits/dim and DDPM's own VLB beside it, both
    # upper bounds on -log2 P(v) / D >= 0.
    config.eval.bpd_batch_size = 10
    config.eval.bpd_max_examples = 10
    config.eval.bpd_num_dequantizations = 1
    config.eval.bpd_rtol = config.eval.bpd_atol = 1e-3
    bpd = generate.eval_bpd(config, str(workdir))
    assert bpd["num_examples"] == 10 and bpd["dequantized"]
    assert 0 < bpd["bpd_mean"] < 100 and 0 < bpd["vlb_bpd_mean"] < 100
    assert bpd["vlb_bpd_stderr"] > 0


def test_sample_and_eval_bpd_modes_use_the_latest_checkpoint(tmp_path):
    config = _toy_config(num_steps=20)
    config.data.kwargs.data_dir = str(tmp_path / "data")
    workdir = str(tmp_path / "run")
    loop.train(config, workdir)

    config.sample.sampler = "ddim"
    config.sample.num_steps = 10
    report = generate.sample(config, workdir)
    samples = np.load(os.path.join(workdir, "samples", "sample_ddim_10.npz"))["samples"]
    assert samples.shape == (16, 2) and np.all(np.isfinite(samples))
    assert report["step"] == 20 and report["num_steps"] == 10 and report["nfe"] == 10
    assert os.path.exists(report["png"])

    config.eval.bpd_batch_size = 25
    config.eval.bpd_max_examples = 50
    config.eval.bpd_rtol = config.eval.bpd_atol = 1e-3
    bpd = generate.eval_bpd(config, workdir)
    written = json.loads((tmp_path / "run" / "bpd.json").read_text())
    assert written["num_examples"] == 50 and written["step"] == 20
    assert np.isfinite(written["bpd_mean"]) and written["bpd_stderr"] > 0
    assert written["nfe"] > 0 and bpd["bpd_mean"] == written["bpd_mean"]


def test_a_conditional_digits_run_samples_every_class_and_scores_them(tmp_path):
    config = ddpm_digits_cond.get_config()
    config.data.kwargs = {"data_dir": str(tmp_path / "data")}
    config.model.name = "unet_tiny"
    config.training.update({"num_steps": 10, "log_every": 5, "checkpoint_every": 10})
    config.process.kwargs = {"num_steps": 50}
    config.sample.num_steps = 5
    config.sample.num_samples = 20
    config.eval.num_samples = 100
    workdir = tmp_path / "run"
    loop.train(config, str(workdir))
    samples = np.load(workdir / "samples" / "samples_final.npz")["samples"]
    assert samples.shape == (20, 8, 8, 1) and np.all(np.isfinite(samples))
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert 0.0 <= metrics["classifier_accuracy_on_labels"] <= 1.0


def test_accumulating_run_trains_and_resumes_to_the_uninterrupted_state(tmp_path):
    """training.grad_accum_steps=2 through the trainer: the loss falls, stays finite, and a run
    stopped at a checkpoint continues to the uninterrupted run's params."""
    config = _toy_config(num_steps=40, log_every=1, checkpoint_every=20, grad_accum_steps=2)
    config.data.kwargs.data_dir = str(tmp_path / "data")
    config.optim.update({"schedule": "constant", "warmup_steps": 0})  # independent of num_steps
    straight = loop.train(config, str(tmp_path / "straight"))
    losses = [h["loss"] for h in writer.read_history(str(tmp_path / "straight"))]
    assert len(losses) == 40 and np.all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:3]), losses  # from ~1: eps^2

    loop.train(runs.derive(config, **{"training.num_steps": 20}), str(tmp_path / "resumed"))
    resumed = loop.train(config, str(tmp_path / "resumed"))
    assert int(resumed.step) == int(straight.step) == 40
    jax.tree.map(np.testing.assert_array_equal, straight.params, resumed.params)
    jax.tree.map(np.testing.assert_array_equal, straight.opt_state, resumed.opt_state)


def test_micro_batches_that_do_not_split_over_the_devices_are_a_one_line_error(tmp_path):
    config = _toy_config(batch_size=64, grad_accum_steps=16)  # micro-batches of 4, 8 devices
    proc = toy_runs.toy2d_cli(
        tmp_path / "run", tmp_path / "data", config, devices=8, stderr=subprocess.PIPE
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert b"training.batch_size / training.grad_accum_steps=4 must be divisible" in err, err


@pytest.mark.slow
def test_accumulation_on_eight_devices_gives_the_losses_of_one(tmp_path):
    """Strided micro-batches of a batch sharded over 8 devices: the same numbers as 1 device."""
    config = _toy_config(num_steps=20, grad_accum_steps=2)
    histories = []
    for devices in (1, 8):
        workdir = tmp_path / f"run{devices}"
        proc = toy_runs.toy2d_cli(
            workdir, tmp_path / "data", config, devices=devices, stderr=subprocess.PIPE, text=True
        )
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        histories.append([h["loss"] for h in writer.read_history(str(workdir))])
    assert len(histories[0]) == 4
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)
