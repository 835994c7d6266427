"""Cold diffusion on shapes32: naive (Algorithm 1) vs TACoS (Algorithm 2) for each degradation.

For each of configs/cold_{blur,pixelate,mask,noise}_shapes32.py, a restorer is trained through
the trainer (`loop.train`, the CLI's path) for --steps steps, then on --num_images test images:
- restoration RMSE (on [-1, 1]) from x_t = D(x0, t, eps) at each t in T_STARTS down to 0 in
  RESTORE_STEPS steps, naive and TACoS, next to the degraded input's RMSE and the restorer's
  one-step estimate R(x_t, t);
- generation: the Frechet distance (the offline ruler of metrics.json) of --num_images samples
  drawn from the generative start (`from_noise`), naive and TACoS, with its floor and ceiling.
  python experiments/cold_diffusion.py --out experiments/results/cold_diffusion.json
writes the JSON and a PNG of the trajectories beside it (per degradation: D(x0, t) from t = 0
to 1, then TACoS and naive from D(x0, 1) back to t = 0); the runs stay in --workdir.
"""

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
from diffjax.train import loop, outputs, runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/cold_diffusion.json", "JSON output.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/diffjax_cold_diffusion", "Where runs live.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir of shapes32 (None: default).")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps of each restorer.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_IMAGES = flags.DEFINE_integer("num_images", 200, "Test images restored / samples drawn.")

CONFIGS = {
    "blur": cold_blur_shapes32,
    "pixelate": cold_pixelate_shapes32,
    "mask": cold_mask_shapes32,
    "noise": cold_noise_shapes32,
}
T_STARTS = (0.25, 0.5, 1.0)
RESTORE_STEPS = 20
PLOT_POINTS = 9  # columns of the trajectory figure


def _train(module, workdir: str):
    config = module.get_config()
    config.data.kwargs.data_dir = _DATA_DIR.value
    config.training.num_steps = _STEPS.value
    config.training.batch_size = _BATCH.value
    config.eval.at_end = False  # generation is scored below, with both rules
    loop.train(config, workdir)  # resumes a run already in workdir
    return runs.restore_latest(config, workdir)


def _rmse(x, x0) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.square(jnp.clip(x, -1.0, 1.0) - x0))))


def main(argv):
    del argv
    started = time.time()
    results = {"config": {"steps": _STEPS.value, "batch_size": _BATCH.value,
                          "num_images": _IMAGES.value, "restore_steps": RESTORE_STEPS}}  # fmt: skip
    figure_rows = []
    ruler = None
    for name, module in CONFIGS.items():
        workdir = os.path.join(_WORKDIR.value, name)
        exp, state = _train(module, workdir)
        ruler = ruler or outputs.quality_ruler(exp, workdir)
        params = state.ema_params
        restorer = exp.denoiser(params, None)  # x0 clipped to [-1, 1]
        d = exp.sampler.degradation
        x0 = jnp.asarray(exp.dataset.as_array("test", _IMAGES.value)["x"])
        eps = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
        rules = {rule: exp.with_sampling(options={"rule": rule, "from_noise": False}).sampler
                 for rule in ("tacos", "naive")}  # fmt: skip
        entry = {"restoration_rmse": {}, "generation_frechet": {}}
        for t in T_STARTS:
            x_t = d(x0, t, eps)
            ts = jnp.linspace(t, 0.0, RESTORE_STEPS + 1)
            row = {"degraded": _rmse(x_t, x0), "one_step": _rmse(restorer.x0(x_t, t), x0)}
            for rule, sampler in rules.items():
                run = jax.jit(lambda k, den, x, s=sampler, ts=ts: s(k, den, x, timesteps=ts))
                row[rule] = _rmse(run(jax.random.PRNGKey(1), restorer, x_t), x0)
            entry["restoration_rmse"][str(t)] = row
        for rule in ("tacos", "naive"):
            generating = exp.with_sampling(options={"rule": rule})
            x = jax.jit(lambda p, g=generating: g.sample(p, jax.random.PRNGKey(2), _IMAGES.value))(
                params
            )
            entry["generation_frechet"][rule] = ruler.frechet(np.asarray(x))
        results[name] = entry
        logging.warning("%s: %s", name, entry)

        grid = jnp.linspace(1.0, 0.0, PLOT_POINTS)
        image, noise = x0[:1], eps[:1]
        forward = [d(image, t, noise)[0] for t in grid[::-1]]
        backward = {}
        for rule, sampler in rules.items():
            run = jax.jit(lambda k, den, x, s=sampler, g=grid: s(k, den, x, timesteps=g,
                                                         return_trajectory=True))  # fmt: skip
            trajectory = run(jax.random.PRNGKey(1), restorer, d(image, 1.0, noise))[1][:, 0]
            backward[rule] = trajectory[::-1]  # columns from t = 0 to 1, as the first row
        figure_rows += [(f"{name}: D(x0, t)", forward), (f"{name}: TACoS", backward["tacos"]),
                        (f"{name}: naive", backward["naive"])]  # fmt: skip

    floor = ruler.report(np.asarray(exp.dataset.as_array("train", _IMAGES.value)["x"]))
    results["frechet_floor_train_vs_test"] = floor["frechet_floor_train_vs_test"]
    results["frechet_ceiling_noise"] = floor["frechet_ceiling_noise"]
    results["eval_classifier_test_accuracy"] = ruler.classifier_test_accuracy
    results["seconds"] = time.time() - started
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)

    fig, axes = plt.subplots(len(figure_rows), PLOT_POINTS, figsize=(PLOT_POINTS, len(figure_rows)))
    for r, (label, images) in enumerate(figure_rows):
        for c in range(PLOT_POINTS):
            ax = axes[r, c]
            ax.imshow(np.clip((np.asarray(images[c]) + 1.0) / 2.0, 0.0, 1.0))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=6, rotation=0, ha="right")
    for c in range(PLOT_POINTS):
        axes[0, c].set_title(f"t={c / (PLOT_POINTS - 1):.2f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.splitext(_OUT.value)[0] + ".png", dpi=100)
    logging.warning("wrote %s (%.0f s)", _OUT.value, results["seconds"])


if __name__ == "__main__":
    app.run(main)
