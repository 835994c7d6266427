"""The training loop: resumable, mesh-sharded, logged, with periodic samples and a final report.

Running the same command again continues from the last complete checkpoint in the workdir,
with the data stream and the per-step noise exactly where they were.
"""

import errno
import math
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from diffjax import distributed, progress
from diffjax.data import pipeline
from diffjax.errors import UserError, WorkdirError, causes
from diffjax.train import (
    checkpoint,
    experiment,
    latents,
    outputs,
    preemption,
    runs,
    sharding,
    workdirs,
)
from diffjax.train.state import TrainState, make_train_step
from diffjax.train.writer import MetricWriter


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss or gradient became NaN / inf; the message says where to resume from."""


def train(
    config: ml_collections.ConfigDict, workdir: str, train_arrays: dict | None = None
) -> TrainState:
    """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the final state.

    The run holds the workdir's lock throughout; resuming checks the config against the
    workdir's config.json and falls back past unreadable checkpoints (`workdirs`, `checkpoint`).

    Args:
      config: the run's config, read once into an Experiment and written to the workdir's
        config.json; `config.teacher.workdir` names a trained run whose EMA network is the
        teacher (methods that distil) and/or the initialisation (`config.teacher.init_student`).
      workdir: where checkpoints, logs, samples and metrics go.
      train_arrays: train on these in-memory arrays (name -> [N, ...], e.g. reflow's
        {"x": Z_0, "noise": Z_1}) instead of the dataset's train split.

    Raises:
      WorkdirError: another run holds the workdir, its config is incompatible, no checkpoint
        can be read, or the disk filled up (the message says from where to resume).
      NonFiniteLossError: the loss became NaN or infinite.
    """
    exp = experiment.build(config)
    with workdirs.lock(workdir):
        manager = checkpoint.make_manager(workdir, exp.training.keep_checkpoints)
        try:
            return _train(exp, config, workdir, manager, train_arrays)
        except Exception as error:
            if _disk_full(error):
                raise _disk_full_error(workdir, manager, error) from error
            raise
        finally:
            manager.close()


def _train(exp, config, workdir, manager, train_arrays) -> TrainState:
    tc = exp.training
    mesh = sharding.make_mesh(exp.mesh)
    sharding.check_batch_size(tc.batch_size, mesh, "training.batch_size")
    if tc.grad_accum_steps > 1:  # each micro-batch, not only the whole batch, spans the devices
        field = "training.batch_size / training.grad_accum_steps"
        sharding.check_batch_size(tc.micro_batch_size, mesh, field)
    replicated = sharding.replicated(mesh)
    resuming = bool(manager.all_steps())
    stored_path = os.path.join(workdir, runs.CONFIG_FILE)
    if os.path.exists(stored_path):
        stored = runs.load_config(workdir)
        diff = workdirs.check_compatible(stored, config, workdir, resuming=resuming)
    else:
        diff = {}
    runs.save_config(config, workdir)

    optimizer, lr, create = runs.state_constructor(exp, runs.load_teacher(config, exp))
    loss_fn = exp.make_loss()
    abstract, state_shardings = runs.state_shardings(exp, create, mesh)
    train_step = jax.jit(
        make_train_step(
            loss_fn, optimizer, exp.optim.ema_decay, exp.recipe.update_frozen, tc.grad_accum_steps
        ),
        in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
        out_shardings=(state_shardings, replicated),
        donate_argnums=0,
    )
    seed_key = jax.random.PRNGKey(exp.seed)

    if train_arrays is None:
        loader = exp.dataset.loader("train", tc.batch_size, seed=exp.seed, shuffle=True)
    else:
        loader = pipeline.array_loader(train_arrays, tc.batch_size, seed=exp.seed)
    data_iterator = iter(loader)
    if resuming:
        abstract = checkpoint.abstract_like(abstract, state_shardings)
        state = checkpoint.restore(manager, abstract, data_iterator, set_aside_unreadable=True)
        start = int(state.step)
        logging.warning("resuming from the checkpoint of step %d in %s", start, workdir)
    else:
        state = jax.jit(create, out_shardings=state_shardings)(seed_key)  # born sharded
        start = 0
    workdirs.record(workdir, start, diff)

    writer = MetricWriter(workdir, start)
    writer.text(f"{'resume at' if start else 'start'} step {start} of {tc.num_steps}")
    if exp.recipe.generative:
        sample = outputs.sampler(exp, exp.sampling.num_samples)

        def on_sample(step, st):
            x = np.asarray(sample(st.ema_params, jax.random.fold_in(seed_key, step)))
            outputs.save_samples(workdir, f"samples_step_{step:07d}", x, outputs.grid_columns(exp))
    else:

        def on_sample(step, st):  # a classifier draws no samples
            del step, st

    if exp.recipe.generative:
        next_batch = lambda: exp.conditioning.train_batch(next(data_iterator))  # noqa: E731
    else:  # a classifier trains on the labels whatever model.num_classes says
        next_batch = lambda: dict(next(data_iterator))  # noqa: E731
    bar = progress.bar(
        total=tc.num_steps, initial=start, desc="train", every=tc.log_every,
        note=f"train on {distributed.describe()}",
    )  # fmt: skip
    try:
        state = _run_steps(
            state,
            start,
            tc,
            next_batch,
            train_step,
            data_iterator,
            mesh,
            manager,
            writer,
            bar,
            lr,
            on_sample,
        )
    finally:
        bar.close()
        writer.close()
        manager.wait_until_finished()
    outputs.save_loss_curve(workdir)
    if not exp.recipe.generative:
        if exp.eval.at_end and exp.recipe.reconstructs:
            latents.evaluate_autoencoder(exp, state, workdir)
        elif exp.eval.at_end:
            outputs.evaluate_classifier(exp, state, workdir)
        return state
    x = sample(state.ema_params, jax.random.fold_in(seed_key, tc.num_steps))
    outputs.save_samples(workdir, "samples_final", np.asarray(x), outputs.grid_columns(exp))
    if exp.eval.at_end:
        outputs.evaluate_sample_quality(exp, state, workdir, exp.eval.num_samples)
    return state


def _run_steps(
    state, start, tc, next_batch, train_step, data_iterator, mesh, manager, writer, bar, lr,
    on_sample,
):  # fmt: skip
    """Steps `start + 1 .. tc.num_steps`: log, check for NaN, checkpoint, sample; `next_batch()`
    is the host's next batch as the loss takes it (`ConditioningConfig.train_batch`).

    Raises:
      preemption.Preempted: after SIGTERM, once the checkpoint of the step every process
        stopped at is saved.
    """
    writer.text(f"running on {distributed.describe()}")
    warning = distributed.cpu_warning(sum(x.size for x in jax.tree.leaves(state.params)))
    if warning:
        writer.text(warning)
        logging.warning(warning)
    # Simulated CPU devices abort when many steps with collectives are in flight; on CPU each
    # step is awaited (cheap: it also gives the progress bar and the NaN check every step).
    await_every_step = jax.devices()[0].platform == "cpu"
    window_start, window_steps = time.perf_counter(), 0
    with preemption.Preemption() as preempt:
        for step in range(start + 1, tc.num_steps + 1):
            batch = sharding.global_batch(next_batch(), mesh)
            state, metrics = train_step(state, batch)
            window_steps += 1
            is_log = step % tc.log_every == 0 or step == tc.num_steps
            preempted = preempt.reached(step)
            is_ckpt = step % tc.checkpoint_every == 0 or step == tc.num_steps or preempted
            if await_every_step or is_log or is_ckpt:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                _check_finite(values, step, manager)
                bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
            if is_log:
                now = time.perf_counter()
                values["steps_per_sec"] = window_steps / (now - window_start)
                values["learning_rate"] = float(lr(step))
                window_start, window_steps = now, 0
                writer.write(step, values)
            if is_ckpt:
                checkpoint.save(manager, state, data_iterator)
            bar.update(1)
            if preempted:
                manager.wait_until_finished()
                writer.text(f"preempted (SIGTERM) at step {step}: checkpoint saved")
                raise preemption.Preempted(step, os.path.dirname(os.fspath(manager.directory)))
            if tc.sample_every and step % tc.sample_every == 0:
                on_sample(step, state)
    writer.text(f"finished step {int(state.step)}")
    return state


def _check_finite(values: dict[str, float], step: int, manager) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        last = manager.latest_step()
        where = (
            f"the last complete checkpoint is step {last} in {manager.directory}; rerunning the "
            "same command resumes from it"
            if last is not None
            else "no checkpoint was saved yet"
        )
        raise NonFiniteLossError(
            f"non-finite {bad} at step {step}; {where}. Lower optim.learning_rate or check the "
            "data before resuming."
        )


def _disk_full(error: BaseException) -> bool:
    """Whether `error` (or an exception it was raised from) is a full disk: an OSError with
    ENOSPC, or tensorstore's message of one inside an orbax error."""
    return any(
        (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e)
        for e in causes(error)
    )


def _disk_full_error(workdir: str, manager, error: BaseException) -> WorkdirError:
    try:
        manager.reload()
        last = manager.latest_step()
    except Exception:  # noqa: BLE001  (the disk is full: describe what we know)
        last = None
    where = f"the last complete checkpoint is step {last}" if last is not None else "no checkpoint"
    return WorkdirError(
        f"no space left on the device of {workdir} ({type(error).__name__}); {where}; free "
        "space (or lower training.keep_checkpoints) and rerun the same command to resume"
    )
