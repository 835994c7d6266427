"""`mode=edit`: edit test examples with the latest checkpoint's EMA model.

`edit.kind` picks the operation of `diffjax.editing` (seed 000, "RePaint", "DDIM"; SDEdit,
Meng et al. 2022), applied to the first `edit.num_images` examples of the test split:

- inpaint: RePaint fills `edit.mask` (the lower half, or a random 1 - known_fraction of the
  values) with `edit.jump_length`, `edit.resamplings`;
- sdedit: noise to `edit.t0` and denoise with the configured sampler;
- invert: DDIM inversion to t = 1 and decoding back, `edit.num_steps` steps each way;
- interpolate: invert consecutive pairs, slerp their noises, decode `edit.num_points` points.

Writes `<workdir>/samples/edit_<kind>.png` (one row per example: input, what the model saw,
result; a path per row for interpolate) and `<workdir>/edit_<kind>.json` with the numbers:
the error on the known values (0 for RePaint), the RMSE to the inputs, and, for labelled image
data, the eval classifier's accuracy (the ruler of metrics.json) on the inputs, on the results
and on the baseline that fills the masked values with noise.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffjax import denoisers, editing
from diffjax.errors import ConfigError
from diffjax.train import outputs, runs, settings, sharding


def _mask(ec: settings.EditConfig, shape: tuple[int, ...], key: jax.Array) -> np.ndarray:
    """1 on known values, [1, *shape]: the upper half of an image, or a random subset."""
    if ec.mask == "lower_half":
        if len(shape) != 3:
            raise ConfigError(f"edit.mask='lower_half' needs images [H, W, C], got shape {shape}")
        known = np.zeros(shape, np.float32)
        known[: shape[0] // 2] = 1.0
    else:
        known = np.asarray(jax.random.uniform(key, shape) < ec.known_fraction, np.float32)
    return known[None]


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a - b))))


def edit(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs `config.edit` on the test split; returns and writes `edit_<kind>.json`."""
    exp, state = runs.restore_latest(config, workdir)
    ec = settings.read(settings.EditConfig, config.edit)
    test = exp.dataset.as_array("test")
    per_path = 2 if ec.kind == "interpolate" else 1
    x = np.asarray(test["x"][: ec.num_images * per_path])
    mesh = sharding.make_mesh(exp.mesh)

    def on_mesh(operation):
        """`operation(denoiser, *inputs)` jitted over the mesh: the examples split over data x
        fsdp, the EMA weights gathered; returns a host array."""

        def run(params, *inputs):
            denoiser = exp.recipe.denoiser(exp.apply_fn, params)
            return operation(denoisers.clip_x0(denoiser) if exp.clip_x0 else denoiser, *inputs)

        run = sharding.jit_over_batch(run, mesh)

        def on_host(*inputs):
            out = run(state.ema_params, *(sharding.put_split(i, mesh) for i in inputs))
            return np.asarray(sharding.gather(out, mesh))

        return on_host

    mask_key, edit_key = jax.random.split(jax.random.PRNGKey(exp.seed))
    report: dict = {"step": int(state.step), "kind": ec.kind, "num_images": int(x.shape[0])}
    if ec.kind == "inpaint":
        mask = _mask(ec, x.shape[1:], mask_key)
        out = on_mesh(
            lambda d, xs: editing.repaint(
                edit_key, d, xs, mask, ec.num_steps, ec.jump_length, ec.resamplings
            )
        )(x)
        noise = np.asarray(jax.random.normal(jax.random.fold_in(mask_key, 1), x.shape))
        seen = mask * x + (1.0 - mask) * np.clip(noise, -1.0, 1.0)
        unknown = np.broadcast_to(mask, x.shape) == 0
        report |= {
            "mask": ec.mask,
            "jump_length": ec.jump_length,
            "resamplings": ec.resamplings,
            "known_max_error": float(np.max(np.abs(out - x)[~unknown], initial=0.0)),
            "unknown_rmse": _rmse(out[unknown], x[unknown]),
        }
        rows, judged = [x, seen, out], {"input": x, "noise_filled": seen, "result": out}
    elif ec.kind == "sdedit":
        out = on_mesh(
            lambda d, xs: editing.sdedit(edit_key, d, exp.sampler, xs, ec.t0, ec.num_steps)
        )(x)
        report |= {"t0": ec.t0, "rmse_to_input": _rmse(out, x)}
        rows, judged = [x, out], {"input": x, "result": out}
    elif ec.kind == "invert":
        z = on_mesh(lambda d, xs: editing.ddim_invert(d, xs, ec.num_steps))(x)
        out = on_mesh(lambda d, zs: editing.ddim_decode(d, zs, ec.num_steps))(z)
        report |= {
            "num_steps": ec.num_steps,
            "reconstruction_rmse": _rmse(out, x),
            "latent_std": float(np.std(z)),
        }
        rows, judged = [x, z, out], {"input": x, "result": out}
    else:
        a, b = x[0::2], x[1::2]
        path = on_mesh(
            lambda d, xa, xb: editing.interpolate(d, xa, xb, ec.num_points, ec.num_steps)
        )(a, b)  # [P, B, ...]
        report |= {"num_points": ec.num_points, "num_steps": ec.num_steps}
        rows, judged = list(path), {}
    if x.ndim == 4 and test["label"] is not None and np.all(test["label"] >= 0):
        classifier = outputs.quality_ruler(exp, workdir).classifier
        labels = np.asarray(test["label"][: x.shape[0]])
        for name, images in judged.items():
            report[f"accuracy_{name}"] = float(classifier.accuracy(jnp.clip(images, -1, 1), labels))
    grid = np.stack(rows, axis=1)  # [B, rows, ...]: one row per example
    cells = grid.reshape(-1, *grid.shape[2:])
    if cells.ndim == 4:  # images: the latents of `invert` are shown clipped like the rest
        cells = np.clip(cells, -1.0, 1.0)
    report["png"] = outputs.save_samples(workdir, f"edit_{ec.kind}", cells, num_cols=len(rows))
    if jax.process_index() == 0:
        outputs.write_json(os.path.join(workdir, f"edit_{ec.kind}.json"), report)
    return report
