"""Latent diffusion on shapes32: the KL-VAE's reconstructions, then latent DiT vs pixel DiT.

Seed 002, "Latent Diffusion" (and seed 003, "Stability AI"): a KL-regularised autoencoder
(configs/vae_shapes32.py, 32x32x3 -> 8x8x4) is trained through the trainer (`loop.train`, the
CLI's path); a DiT is trained on its cached, unit-variance latents
(configs/latent_dit_shapes32.py, 2x2 patches) and the same DiT on pixels
(configs/dit_shapes32.py, 8x8 patches): both see 16 tokens through the same 6 blocks of width
192, so a training step costs about the same; only the patch embedding and the output layer
differ (and the latent model's samples pass through the decoder).

  python experiments/latent_diffusion.py --out experiments/results/latent_diffusion.json

writes the JSON (each run's metrics.json, parameters, seconds per training step) and a PNG
beside it (rows: test images, their reconstructions, latent DiT samples, pixel DiT samples).
The runs stay in --workdir (rerunning resumes them, a finished one is only read).
"""

import json
import os
import time

import jax
import matplotlib
import numpy as np
from absl import app, flags, logging

from configs import dit_shapes32, latent_dit_shapes32, vae_shapes32
from diffjax import compile_cache
from diffjax.train import loop, outputs, runs, writer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/latent_diffusion.json", "JSON output.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/ld", "Where the runs live.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir of shapes32 (None: default).")
_VAE_STEPS = flags.DEFINE_integer("vae_steps", 1000, "Training steps of the autoencoder.")
_DIT_STEPS = flags.DEFINE_integer("dit_steps", 800, "Training steps of each DiT.")
_SAMPLES = flags.DEFINE_integer("num_samples", 500, "Samples / test images for the Frechet.")
_SHOW = 10  # images per row of the PNG


def _run(module, name: str, steps: int, **fields):
    """Trains (or resumes, or only reads) one run; returns (exp, state, metrics, entry)."""
    config = module.get_config()
    config.data.kwargs.data_dir = _DATA_DIR.value
    config.training.num_steps = steps
    config.eval.num_samples = _SAMPLES.value
    for dotted, value in fields.items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    workdir = os.path.join(_WORKDIR.value, name)
    metrics_path = os.path.join(workdir, "metrics.json")
    finished = os.path.exists(metrics_path) and outputs.read_json(metrics_path)["step"] == steps
    if not finished:
        loop.train(config, workdir)
    exp, state = runs.restore_latest(config, workdir)
    history = writer.read_history(workdir)
    rates = [h["steps_per_sec"] for h in history if "steps_per_sec" in h]
    entry = {
        "workdir": workdir,
        "steps": steps,
        "batch_size": exp.training.batch_size,
        "model": config.model.name,
        "model_kwargs": config.model.kwargs.to_dict(),
        "params": int(sum(x.size for x in jax.tree.leaves(state.ema_params["model"]))),
        "data_shape": list(exp.dataset.shape),
        # The median over the logged windows (the machine is shared: the mean is noisier).
        "seconds_per_step": float(1.0 / np.median(rates)) if rates else None,
        "metrics": outputs.read_json(metrics_path),
    }
    return exp, state, entry


def _figure(rows: list[tuple[str, np.ndarray]], path: str) -> None:
    fig, axes = plt.subplots(len(rows), _SHOW, figsize=(_SHOW, len(rows) * 1.1))
    for r, (label, images) in enumerate(rows):
        for c in range(_SHOW):
            ax = axes[r, c]
            ax.imshow(np.clip((np.asarray(images[c]) + 1.0) / 2.0, 0.0, 1.0))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    del argv
    started = time.time()
    compile_cache.enable(compile_cache.default_dir())
    vae_dir = os.path.join(_WORKDIR.value, "vae")
    vae_exp, vae_state, vae = _run(vae_shapes32, "vae", _VAE_STEPS.value)
    latent_exp, _, latent = _run(
        latent_dit_shapes32, "latent_dit", _DIT_STEPS.value,
        **{"latent.autoencoder_workdir": vae_dir},
    )  # fmt: skip
    _, _, pixel = _run(dit_shapes32, "pixel_dit", _DIT_STEPS.value)
    results = {
        "autoencoder": vae,
        "latent_dit": latent,
        "pixel_dit": pixel,
        "latent_scale_factor": latent_exp.latent.scale,
        "seconds": time.time() - started,
    }
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)

    test = vae_exp.dataset.as_array("test", _SHOW)["x"]
    x_hat = vae_exp.apply_fn(vae_state.ema_params["model"], test, np.zeros(_SHOW, np.float32))[0]
    grids = {
        name: np.load(os.path.join(_WORKDIR.value, name, "samples", "samples_final.npz"))["samples"]
        for name in ("latent_dit", "pixel_dit")
    }
    _figure(
        [
            ("test images", test),
            ("VAE reconstructions", x_hat),
            ("latent DiT samples", grids["latent_dit"]),
            ("pixel DiT samples", grids["pixel_dit"]),
        ],
        os.path.splitext(_OUT.value)[0] + ".png",
    )
    logging.warning("wrote %s (%.0f s)", _OUT.value, results["seconds"])


if __name__ == "__main__":
    app.run(main)
