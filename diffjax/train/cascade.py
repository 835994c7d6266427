"""`mode=cascade`: sample a cascade of trained runs, a base model then super-resolution stages.

Seed 000, "Super Resolution: Cascaded Diffusion Models (CDM)" (Ho et al. 2022) and seed 003,
"Upscaling": the first stage is an ordinary diffusion model of small images, every later stage
a super-resolution model (`config.super_resolution`) conditioned on the previous stage's
output, noise-augmented at the stage's fixed `super_resolution.sample_level`. Each stage is a
normal `mode=train` run in its own workdir (resumable, scored by its own metrics.json);
`config.cascade.stages` lists them in order, and this mode restores their EMA params, draws
`cascade.num_samples` images through the whole chain (each stage with its own sampler
settings), and writes into `--workdir`:

  cascade.png   a few images at every stage (rows), nearest-upsampled to the final size;
  samples.npz   the final images ("samples") and the PNG's rows ("stage_<i>");
  metrics.json  the Frechet distance of the final images with the final stage's dataset ruler
                (`outputs.quality_ruler`, so a single-stage run of that data is measured alike),
                the floor and ceiling, the stages and their resolutions.

A class-conditional cascade draws the base stage's labels (`Experiment.sample_labels`) and
hands them to every later stage.
"""

import dataclasses
import os
from typing import ClassVar

import jax
import ml_collections
import numpy as np

from diffjax.errors import ConfigError
from diffjax.evaluation import plots
from diffjax.train import experiment, outputs, runs, settings, sharding

PNG_COLUMNS = 8  # images per stage in cascade.png


@dataclasses.dataclass(frozen=True)
class CascadeConfig:
    """`config.cascade`.

    Attributes:
      stages: workdirs of trained runs, the base model first, then each super-resolution stage
        (at least two).
      num_samples: images drawn through the cascade and scored (>= 1).
    """

    section: ClassVar[str] = "cascade"

    stages: tuple[str, ...]
    num_samples: int

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        if len(self.stages) < 2:
            raise ConfigError(
                f"cascade.stages={self.stages} must list at least two workdirs: a base run, "
                "then super-resolution runs"
            )
        if self.num_samples < 1:
            raise ConfigError(f"cascade.num_samples={self.num_samples} must be >= 1")


def check_chain(exps: list[experiment.Experiment], stages: tuple[str, ...]) -> None:
    """Raises a ConfigError naming the stage unless the base is an ordinary generative image
    model and each later stage super-resolves exactly the previous stage's images."""
    base = exps[0]
    if base.super_resolution is not None or not base.recipe.generative:
        raise ConfigError(
            f"cascade.stages[0]={stages[0]} must be an ordinary generative run (its "
            "super_resolution.low_res_size is 0)"
        )
    for i in range(1, len(exps)):
        sr, previous = exps[i].super_resolution, exps[i - 1].dataset.shape
        if sr is None:
            raise ConfigError(
                f"cascade.stages[{i}]={stages[i]} is not a super-resolution run "
                "(super_resolution.low_res_size is 0)"
            )
        if sr.low_res_shape(exps[i].dataset.shape) != tuple(previous):
            raise ConfigError(
                f"cascade.stages[{i}]={stages[i]} super-resolves "
                f"{sr.low_res_shape(exps[i].dataset.shape)} images, but stage {i - 1} makes "
                f"{tuple(previous)}"
            )
        if exps[i].conditioning.num_classes != base.conditioning.num_classes:
            raise ConfigError(
                f"cascade.stages[{i}]={stages[i]} has model.num_classes="
                f"{exps[i].conditioning.num_classes}, the base "
                f"{base.conditioning.num_classes}: every stage must take the same labels"
            )


def _stage_sampler(exp: experiment.Experiment, mesh, num_samples: int):
    """`(params, key, low_res, labels) -> x` of one SR stage, jitted over the batch."""
    fn = sharding.jit_over_batch(
        lambda params, key, low_res, labels: exp.super_resolve(params, key, low_res, labels),
        mesh,
        out_shardings=sharding.sample_sharding(mesh, num_samples),
    )

    def sample(params, key, low_res, labels):
        low_res = sharding.put_split(low_res, mesh)
        labels = None if labels is None else sharding.put_split(labels, mesh)
        return sharding.gather(fn(params, key, low_res, labels), mesh)

    return sample


def upsample_nearest(x: np.ndarray, size: int) -> np.ndarray:
    """x [n, h, h, C] -> [n, size, size, C], each pixel repeated (size / h)^2 times."""
    factor = size // x.shape[1]
    return np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)


def cascade(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Samples every stage of `config.cascade.stages` in turn; writes cascade.png,
    samples.npz and metrics.json into `workdir` and returns the metrics.

    Raises:
      ConfigError: bad `config.cascade`, or stages that do not chain (`check_chain`).
      WorkdirError: a stage without config.json or checkpoint (train it first).
    """
    cc = settings.read(CascadeConfig, config.cascade)
    restored = [runs.restore_latest(runs.load_config(w), w) for w in cc.stages]
    exps = [exp for exp, _ in restored]
    check_chain(exps, cc.stages)
    n = cc.num_samples
    key = jax.random.PRNGKey(config.seed)
    base, base_state = restored[0]
    x = np.asarray(outputs.sampler(base, n)(base_state.ema_params, jax.random.fold_in(key, 0)))
    labels = base.sample_labels(n)
    images = [x]
    for i, (exp, state) in enumerate(restored[1:], start=1):
        sample = _stage_sampler(exp, sharding.make_mesh(exp.mesh), n)
        stage_labels = labels if exp.conditioning.conditional else None
        # Each stage's input is the previous stage's output as the data range holds it.
        low_res = np.clip(x, -1.0, 1.0)
        x = np.asarray(sample(state.ema_params, jax.random.fold_in(key, i), low_res, stage_labels))
        images.append(x)
    final = exps[-1]
    quality = outputs.quality_ruler(final, workdir)
    report = {
        **quality.report(x),
        "num_samples": n,
        "stages": [
            {
                "workdir": w,
                "step": int(state.step),
                "shape": list(exp.dataset.shape),
                "sample_level": None
                if exp.super_resolution is None
                else exp.super_resolution.sample_level,
            }  # fmt: skip
            for w, (exp, state) in zip(cc.stages, restored, strict=True)
        ],
    }
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        size = final.dataset.shape[0]
        k = min(PNG_COLUMNS, n)
        firsts = {f"stage_{i}": s[:k] for i, s in enumerate(images)}  # the PNG's rows
        np.savez(os.path.join(workdir, "samples.npz"), samples=x, **firsts)
        rows = np.concatenate([upsample_nearest(s[:k], size) for s in images])
        plots.save_image_grid(os.path.join(workdir, "cascade.png"), rows, k)
        outputs.write_json(os.path.join(workdir, "metrics.json"), report)
    return report
