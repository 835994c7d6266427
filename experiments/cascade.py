"""Cascaded diffusion on shapes32: the cascade vs one 32x32 model, with and without augmentation.

Seed 000, "Super Resolution: Cascaded Diffusion Models (CDM)" (Ho et al. 2022, whose main
ablation is that noise-conditioning augmentation matters). Every run trains through the
trainer (`loop.train`, the CLI's path; rerunning reuses finished runs):

  base        configs/cascade_base_shapes32.py, 8x8 DDPM, --steps_base steps
  sr16, sr32  configs/cascade_sr{16,32}_shapes32.py, 8 -> 16 -> 32 with augmentation
              (s ~ U[0, 0.2] in training, s_0 = 0.05 when sampling), --steps_sr16 / --steps_sr32
  *_noaug     the same SR stages without augmentation (aug_max_level = sample_level = 0)
  single      the sr32 network as an ordinary 32x32 DDPM (no low-res input), trained for as
              much wall time as the three stages of the cascade together (its steps are set
              from the measured steps/s of every run: a first --probe_steps, then resumed)

and each cascade is sampled by `mode=cascade` (`diffjax.train.cascade`), the single model by
its own sampler (DDIM, 50 steps, as every stage), --num_samples images each, scored by the same
Frechet ruler (`outputs.quality_ruler` of shapes32 at 32x32, fixed key).

  nice -n 10 python experiments/cascade.py --out experiments/results/cascade.json

writes the JSON and a PNG (rows: base 8x8, SR 16, SR 32 with augmentation, SR 16, SR 32
without, single-stage samples) beside it, rewritten after each part.
"""

import json
import os
import time

import jax
import numpy as np
from absl import app, flags, logging

from configs import (
    cascade_base_shapes32,
    cascade_shapes32,
    cascade_sr16_shapes32,
    cascade_sr32_shapes32,
)
from diffjax import compile_cache
from diffjax.evaluation import plots
from diffjax.train import cascade, loop, outputs, runs, writer

FLAGS = flags.FLAGS
PNG_COLUMNS = 8


def _config(module, name: str, **overrides):
    config = module.get_config()
    updates = {
        "data.kwargs.data_dir": FLAGS.data_dir,
        "training.batch_size": FLAGS.batch_size,
        "training.sample_every": 0,
        "training.log_every": 25,
        "training.checkpoint_every": 250,
        "eval.at_end": False,  # every model is scored below, by one ruler
        **overrides,
    }
    config = runs.derive(config, **updates)
    return config, os.path.join(FLAGS.workdir, name)


def _train(config, workdir: str) -> dict:
    """Trains (or resumes / reuses) one run; returns its steps and measured training steps/s."""
    started = time.time()
    loop.train(config, workdir)
    history = [h for h in writer.read_history(workdir) if "steps_per_sec" in h]
    # The first logged interval holds the compilation.
    rates = [h["steps_per_sec"] for h in history[1:]] or [h["steps_per_sec"] for h in history]
    sps = float(np.median(rates))
    steps = int(config.training.num_steps)
    logging.info("%s: %d steps, %.2f steps/s", workdir, steps, sps)
    return {
        "workdir": workdir,
        "steps": steps,
        "steps_per_sec": sps,
        "train_seconds_estimate": steps / sps,
        "wall_seconds_this_call": time.time() - started,
    }


def _cascade(name: str, stages: list[str]) -> tuple[dict, list[np.ndarray]]:
    """mode=cascade of `stages`; its report and the first images of each stage, 32x32."""
    config = cascade_shapes32.get_config()
    config = runs.derive(
        config, **{"cascade.stages": tuple(stages), "cascade.num_samples": FLAGS.num_samples}
    )
    workdir = os.path.join(FLAGS.workdir, name)
    report = cascade.cascade(config, workdir)
    saved = np.load(os.path.join(workdir, "samples.npz"))
    firsts = [saved[f"stage_{i}"] for i in range(len(stages))]
    return report, [cascade.upsample_nearest(f, 32) for f in firsts]


def _write(result: dict, rows: list[np.ndarray]) -> None:
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    if rows:
        plots.save_image_grid(FLAGS.out.replace(".json", ".png"), np.concatenate(rows), PNG_COLUMNS)


def _single(total_seconds: float) -> tuple[dict, dict, np.ndarray]:
    """The single-stage 32x32 model trained for about `total_seconds`, and its samples' score."""
    overrides = {"super_resolution.low_res_size": 0, "training.num_steps": FLAGS.probe_steps}
    config, workdir = _config(cascade_sr32_shapes32, "single", **overrides)
    probe = _train(config, workdir)
    steps = max(FLAGS.probe_steps, int(round(total_seconds * probe["steps_per_sec"])))
    overrides["training.num_steps"] = steps
    config, _ = _config(cascade_sr32_shapes32, "single", **overrides)
    run = _train(config, workdir)
    exp, state = runs.restore_latest(config, workdir)
    x = np.asarray(outputs.sampler(exp, FLAGS.num_samples)(state.ema_params, jax.random.PRNGKey(0)))
    quality = outputs.quality_ruler(exp, os.path.join(FLAGS.workdir, "single_eval"))
    return run, {**quality.report(x), "num_samples": FLAGS.num_samples}, x


def main(argv):
    del argv
    compile_cache.enable(compile_cache.default_dir())
    started = time.time()
    noaug = {"super_resolution.aug_max_level": 0.0, "super_resolution.sample_level": 0.0}
    steps = {"base": FLAGS.steps_base, "sr16": FLAGS.steps_sr16, "sr32": FLAGS.steps_sr32}
    modules = {"base": cascade_base_shapes32, "sr16": cascade_sr16_shapes32,
               "sr32": cascade_sr32_shapes32}  # fmt: skip
    names = ("steps_base", "steps_sr16", "steps_sr32", "batch_size", "num_samples", "probe_steps")
    result = {"settings": {k: FLAGS[k].value for k in names}}
    result["runs"], rows = {}, []
    for name in ("base", "sr16", "sr32"):
        config, workdir = _config(modules[name], name, **{"training.num_steps": steps[name]})
        result["runs"][name] = _train(config, workdir)
    stages = [result["runs"][n]["workdir"] for n in ("base", "sr16", "sr32")]
    result["cascade_aug"], aug_rows = _cascade("cascade_aug", stages)
    rows.extend(aug_rows)
    _write(result, rows)

    total = sum(result["runs"][n]["train_seconds_estimate"] for n in ("base", "sr16", "sr32"))
    result["cascade_train_seconds_estimate"] = total
    result["runs"]["single"], result["single"], x = _single(total)
    rows.append(x[:PNG_COLUMNS])
    _write(result, rows)

    for name in ("sr16", "sr32"):
        config, workdir = _config(
            modules[name], f"{name}_noaug", **{"training.num_steps": steps[name]}, **noaug
        )
        result["runs"][f"{name}_noaug"] = _train(config, workdir)
    stages = [result["runs"][n]["workdir"] for n in ("base", "sr16_noaug", "sr32_noaug")]
    result["cascade_noaug"], noaug_rows = _cascade("cascade_noaug", stages)
    rows[3:3] = noaug_rows[1:]  # its base row is the augmented cascade's (same key)
    result["seconds"] = time.time() - started
    _write(result, rows)
    logging.info("%s", json.dumps(result, indent=2))


def _define_flags() -> None:
    # Defined only when run as a script (tests import modules that define the same names).
    flags.DEFINE_string("out", "experiments/results/cascade.json", "JSON output.")
    flags.DEFINE_string("workdir", "/tmp/diffjax_cascade", "Where the runs live.")
    flags.DEFINE_string("data_dir", None, "tfds data_dir of shapes32 (None: default).")
    flags.DEFINE_integer("steps_base", 1500, "Training steps of the 8x8 base model.")
    flags.DEFINE_integer("steps_sr16", 600, "Training steps of each 8 -> 16 SR model.")
    flags.DEFINE_integer("steps_sr32", 400, "Training steps of each 16 -> 32 SR model.")
    flags.DEFINE_integer("batch_size", 32, "Training batch of every run.")
    flags.DEFINE_integer("num_samples", 500, "Images drawn and scored per model.")
    flags.DEFINE_integer("probe_steps", 50, "Steps of the single model before its budget is set.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
