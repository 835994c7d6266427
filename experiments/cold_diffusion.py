"""Cold diffusion on shapes32: naive (Algorithm 1) vs TACoS (Algorithm 2) for each degradation.

For each of configs/cold_{blur,pixelate,mask,noise}_shapes32.py, a restorer is trained through
the trainer (`loop.train`, the CLI's path) for --steps steps, then on --num_images test images:
- restoration RMSE (on [-1, 1]) from x_t = D(x0, t, eps) at each t in T_STARTS down to 0 in
  RESTORE_STEPS steps, naive and TACoS, next to the degraded input's RMSE and the restorer's
  one-step estimate R(x_t, t); and the eval classifier's accuracy on the same images (the
  convolutional ruler of `features`; on clean test images: `eval_classifier_test_accuracy`);
- generation: the Frechet distance (the offline ruler of metrics.json) of --num_images samples
  drawn from the generative start (`from_noise`; the config's colours: the fitted Gaussian
  mixture for blur and pixelate), naive and TACoS, with its floor and ceiling; for the mixture
  starts also from the one-Gaussian colour start ("gaussian_start"), for comparison.
  python experiments/cold_diffusion.py --out experiments/results/cold_diffusion.json
writes the JSON and a PNG of the trajectories beside it (per degradation: D(x0, t) from t = 0
to 1, then TACoS and naive from D(x0, 1) back to t = 0), rewritten after each degradation
(--degradations chooses them); the runs stay in --workdir (rerunning resumes them).
"""

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags, logging

from configs import (
    cold_blur_shapes32,
    cold_mask_shapes32,
    cold_noise_shapes32,
    cold_pixelate_shapes32,
)
from diffjax import compile_cache
from diffjax.train import loop, outputs, runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/cold_diffusion.json", "JSON output.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/diffjax_cold_diffusion", "Where runs live.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir of shapes32 (None: default).")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps of each restorer.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_IMAGES = flags.DEFINE_integer("num_images", 200, "Test images restored / samples drawn.")
_DEGRADATIONS = flags.DEFINE_list("degradations", "blur,noise,pixelate,mask", "Which to run.")

CONFIGS = {
    "blur": cold_blur_shapes32,
    "noise": cold_noise_shapes32,
    "pixelate": cold_pixelate_shapes32,
    "mask": cold_mask_shapes32,
}
T_STARTS = (0.25, 0.5, 1.0)
RESTORE_STEPS = 16  # sampler steps from every start t down to 0
PLOT_EVERY = 2  # the figure shows every 2nd point of the t = 1 trajectory
COLUMNS = RESTORE_STEPS // PLOT_EVERY + 1


def _train(module, workdir: str):
    config = module.get_config()
    config.data.kwargs.data_dir = _DATA_DIR.value
    config.training.num_steps = _STEPS.value
    config.training.batch_size = _BATCH.value
    config.eval.at_end = False  # generation is scored below, with both rules
    loop.train(config, workdir)  # resumes a run already in workdir
    return runs.restore_latest(config, workdir)


def _restore_function(exp, rule: str):
    """(restorer, x [B, ...] at ts[0], ts [N + 1]) -> (x at ts[-1], trajectory [N + 1, B, ...])
    of the cold sampler with `rule`, jitted once: the grid is an argument, so every start
    reuses the program."""
    sampler = exp.with_sampling(options={"rule": rule, "from_noise": False}).sampler
    key = jax.random.PRNGKey(1)
    return jax.jit(lambda den, x, ts: sampler.integrate(key, den, x, ts, return_trajectory=True))


def _rmse(x, x0) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.square(jnp.clip(x, -1.0, 1.0) - x0))))


def _write(results: dict, figure_rows: list, ruler, exp, started: float) -> None:
    """Writes the JSON (with the ruler's floor and ceiling) and the trajectory PNG so far."""
    floor = ruler.report(np.asarray(exp.dataset.as_array("train", _IMAGES.value)["x"]))
    results["frechet_floor_train_vs_test"] = floor["frechet_floor_train_vs_test"]
    results["frechet_ceiling_noise"] = floor["frechet_ceiling_noise"]
    results["eval_classifier_test_accuracy"] = ruler.classifier_test_accuracy
    results["seconds"] = time.time() - started
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)

    fig, axes = plt.subplots(len(figure_rows), COLUMNS, figsize=(COLUMNS, len(figure_rows)))
    for r, (label, images) in enumerate(figure_rows):
        for c in range(COLUMNS):
            ax = axes[r, c]
            ax.imshow(np.clip((np.asarray(images[c]) + 1.0) / 2.0, 0.0, 1.0))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=6, rotation=0, ha="right")
    for c in range(COLUMNS):
        axes[0, c].set_title(f"t={c / (COLUMNS - 1):.2f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.splitext(_OUT.value)[0] + ".png", dpi=100)
    plt.close(fig)
    logging.warning("wrote %s (%.0f s)", _OUT.value, results["seconds"])


def main(argv):
    del argv
    started = time.time()
    compile_cache.enable(compile_cache.default_dir())
    results = {"config": {"steps": _STEPS.value, "batch_size": _BATCH.value,
                          "num_images": _IMAGES.value, "restore_steps": RESTORE_STEPS}}  # fmt: skip
    figure_rows = []
    ruler = None
    for name in _DEGRADATIONS.value:
        module = CONFIGS[name]
        workdir = os.path.join(_WORKDIR.value, name)
        exp, state = _train(module, workdir)
        ruler = ruler or outputs.quality_ruler(exp, workdir)
        restorer = exp.denoiser(state.ema_params, None)  # x0 clipped to [-1, 1]
        d = exp.sampler.degradation
        x0 = jnp.asarray(exp.dataset.as_array("test", _IMAGES.value)["x"])
        eps = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
        one_step = jax.jit(lambda den, x, t: den.x0(x, t))
        runs_of = {rule: _restore_function(exp, rule) for rule in ("tacos", "naive")}
        entry = {"restoration_rmse": {}, "restoration_accuracy": {}, "generation_frechet": {}}
        labels = np.asarray(exp.dataset.as_array("test", _IMAGES.value)["label"])

        def accuracy(x, labels=labels, classifier=ruler.classifier):
            x = np.clip(np.asarray(x), -1.0, 1.0)
            return float(np.mean(classifier.predict_batched(x) == labels))

        trajectories = {}
        for t in T_STARTS:
            x_t = d(x0, t, eps)
            ts = jnp.linspace(t, 0.0, RESTORE_STEPS + 1)
            x_one = one_step(restorer, x_t, t)
            row = {"degraded": _rmse(x_t, x0), "one_step": _rmse(x_one, x0)}
            acc = {"degraded": accuracy(x_t), "one_step": accuracy(x_one)}
            for rule, run in runs_of.items():
                x, trajectory = run(restorer, x_t, ts)
                row[rule], acc[rule] = _rmse(x, x0), accuracy(x)
                trajectories[rule] = trajectory  # kept from the last start, t = 1
            entry["restoration_rmse"][str(t)] = row
            entry["restoration_accuracy"][str(t)] = acc
        # Generation: the sampler's own start from noise, then the same programs from t = 1.
        z = jax.random.normal(jax.random.PRNGKey(3), x0.shape)
        sampler = exp.with_sampling(options={}).sampler
        starts = {"": sampler.start}
        if sampler.colours == "mixture":
            entry["start_mixture"] = dataclasses.asdict(sampler.mixture)
            gaussian = dataclasses.replace(sampler, colours="gaussian", mixture=None)
            starts["gaussian_start_"] = gaussian.start
        ts = jnp.linspace(1.0, 0.0, RESTORE_STEPS + 1)
        for prefix, start in starts.items():
            x1 = jax.jit(start)(jax.random.PRNGKey(2), z)
            for rule, run in runs_of.items():
                x = np.asarray(run(restorer, x1, ts)[0])
                entry["generation_frechet"][prefix + rule] = ruler.frechet(x)
        results[name] = entry
        logging.warning("%s: %s", name, entry)

        grid = ts[::PLOT_EVERY]  # from 1 to 0
        forward = [d(x0[:1], t, eps[:1])[0] for t in grid[::-1]]
        backward = {rule: traj[::PLOT_EVERY, 0][::-1] for rule, traj in trajectories.items()}
        figure_rows += [(f"{name}: D(x0, t)", forward), (f"{name}: TACoS", backward["tacos"]),
                        (f"{name}: naive", backward["naive"])]  # fmt: skip

        _write(results, figure_rows, ruler, exp, started)  # after each: partial results stay


if __name__ == "__main__":
    app.run(main)
