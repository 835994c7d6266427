"""Latent diffusion's data: an autoencoder run's latents of a dataset, cached, scaled, decoded.

Seed 002, "Latent Diffusion": the diffusion model is trained on z = E(x) of a pretrained
autoencoder (L_LDM = E_{E(x), eps, t} ||eps - eps_theta(z_t, t)||^2) and its samples are decoded
by D; seed 003, "Stability AI". As in LDM (Rombach et al. 2022, appendix G, "scale factor"),
the latents are multiplied by one scale factor, 1 / std over the encoded training set, so the
diffusion model's data have unit variance whatever the autoencoder's KL weight made them.

A run names the autoencoder in `config.latent.autoencoder_workdir` (a trained
`method=autoencoder` run on the same data). `experiment.build` then swaps the dataset for a
`LatentDataset`: its `shape` is the latent's, `loader` a checkpointable grain pipeline over the
cached latents (`pipeline.array_loader`, so a resumed run continues the stream exactly), and
`decode` maps samples back to images (`Experiment.sample` applies it, so grids, `mode=sample`
and `metrics.json` see images, measured against the real image test split).

Cache: each split is encoded once (the posterior mean, with the EMA params of the autoencoder's
latest checkpoint) into `<autoencoder_workdir>/latents/<split>.npz` under a file lock, written
to a temporary file and renamed, so a reader sees a whole cache or none. It records the
autoencoder step it was encoded with (a further-trained autoencoder is encoded again), and the
train cache's scale factor is recorded in `latents/train.json`.
"""

import dataclasses
import functools
import os

import filelock
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from diffjax.data import pipeline
from diffjax.errors import ConfigError, WorkdirError
from diffjax.train import outputs, runs, sharding

FIELD = "latent.autoencoder_workdir"
CACHE_DIR = "latents"
ENCODE_BATCH = 500


@dataclasses.dataclass(frozen=True, eq=False)
class Autoencoder:
    """The EMA network of a trained autoencoder run.

    Attributes:
      workdir: the run's workdir.
      model: its Flax `KLAutoencoder`.
      params: its EMA network params.
      step: the checkpoint's step.
      data: its config's data section (name and kwargs, without where it is stored).
    """

    workdir: str
    model: object
    params: dict
    step: int
    data: dict

    @classmethod
    def load(cls, workdir: str) -> "Autoencoder":
        """The autoencoder of `workdir`'s latest checkpoint.

        Raises:
          ConfigError: naming `latent.autoencoder_workdir` if `workdir` is not a trained run or
            not a `method=autoencoder` one.
        """
        if not os.path.exists(os.path.join(workdir, runs.CONFIG_FILE)):
            raise ConfigError(
                f"{FIELD}={workdir!r}: no trained run there ({runs.CONFIG_FILE} not found); train "
                "the autoencoder first (configs/vae_shapes32.py)"
            )
        config = runs.load_config(workdir)
        if config.get("method") != "autoencoder":
            raise ConfigError(
                f"{FIELD}={workdir!r} holds a method={config.get('method')!r} run, not a "
                "method=autoencoder run"
            )
        try:
            exp, state = runs.restore_latest(config, workdir)
        except WorkdirError as e:
            raise ConfigError(f"{FIELD}={workdir!r}: {e}") from e
        data = runs.comparable(config, "data")  # one definition of "same data"
        return cls(workdir, exp.model, state.ema_params["model"], int(state.step), data)

    def encode(self, x: jax.Array) -> jax.Array:
        """The posterior mean E(x) [B, h, w, c] of images x [B, H, W, C] (jittable)."""
        mean, _ = self.model.apply({"params": self.params}, x, method="encode")
        return mean

    def decode(self, z: jax.Array) -> jax.Array:
        """D(z) [B, H, W, C] of latents z [B, h, w, c] (jittable)."""
        return self.model.apply({"params": self.params}, z, method="decode")

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The latent's per-example shape for images of `image_shape` (nothing computed)."""
        x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
        return tuple(jax.eval_shape(self.encode, x).shape[1:])


def _encode_split(autoencoder: Autoencoder, images, split: str) -> dict[str, np.ndarray]:
    """{"z": float32 [N, h, w, c] posterior means, "label": int32 [N]} of `split`, encoded in
    jitted batches of ENCODE_BATCH."""
    arrays = images.as_array(split)
    encode = jax.jit(autoencoder.encode)
    x = arrays["x"]
    z = [np.asarray(encode(x[i : i + ENCODE_BATCH])) for i in range(0, len(x), ENCODE_BATCH)]
    return {"z": np.concatenate(z).astype(np.float32), "label": arrays["label"].astype(np.int32)}


def _write_npz(path: str, **arrays) -> None:
    """np.savez to a temporary file in the same directory, then an atomic rename."""
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cached_latents(autoencoder: Autoencoder, images, split: str) -> dict[str, np.ndarray]:
    """The unscaled latents of `split` (`_encode_split`), read from the autoencoder's cache or
    encoded once and written there atomically (module docstring)."""
    directory = os.path.join(autoencoder.workdir, CACHE_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{split}.npz")
    with filelock.FileLock(path + ".lock"):
        if os.path.exists(path):
            with np.load(path) as f:
                cached = {k: f[k] for k in f.files}
            if int(cached["step"]) == autoencoder.step:
                return {"z": cached["z"], "label": cached["label"]}
            logging.warning(
                "re-encoding %s: cached at autoencoder step %d, the latest is %d",
                path, int(cached["step"]), autoencoder.step,
            )  # fmt: skip
        logging.warning("encoding %s with the autoencoder in %s", split, autoencoder.workdir)
        encoded = _encode_split(autoencoder, images, split)
        if jax.process_index() == 0:
            _write_npz(path, step=np.int64(autoencoder.step), **encoded)
        return encoded


def scale_factor(z: np.ndarray) -> float:
    """LDM's scale factor 1 / std of every value of the latents z [N, ...]."""
    std = float(np.std(z, dtype=np.float64))
    if not std > 0.0:
        raise ValueError(f"the latents have std {std}: the autoencoder collapsed")
    return 1.0 / std


@dataclasses.dataclass(frozen=True, eq=False)
class LatentDataset:
    """A dataset's latents under an autoencoder, as the trainer reads a dataset.

    Attributes:
      images: the image Dataset (`diffjax.data`) that is encoded and that samples are measured
        against.
      autoencoder: the trained autoencoder.
      shape: the latent's per-example shape, e.g. (8, 8, 4).
    """

    images: object
    autoencoder: Autoencoder
    shape: tuple[int, ...]

    num_bins = None  # latents are continuous (no x0 clipping, no dequantization)

    @classmethod
    def of(cls, autoencoder_workdir: str, images, data: dict) -> "LatentDataset":
        """The latents of `images` under the autoencoder of `autoencoder_workdir`.

        Args:
          autoencoder_workdir: a trained `method=autoencoder` run.
          images: the run's image Dataset.
          data: the run's data section as `runs.comparable` gives it, which must be the
            autoencoder's.

        Raises:
          ConfigError: naming `latent.autoencoder_workdir` for a missing or non-autoencoder run
            or one trained on other data.
        """
        autoencoder = Autoencoder.load(autoencoder_workdir)
        if autoencoder.data != data:
            raise ConfigError(
                f"{FIELD}={autoencoder_workdir!r} was trained on data {autoencoder.data}, this run "
                f"reads {data}; the autoencoder must encode the run's own data"
            )
        return cls(images, autoencoder, autoencoder.latent_shape(images.shape))

    @property
    def name(self) -> str:
        return f"{self.images.name}@latent"

    @property
    def num_classes(self) -> int | None:
        return self.images.num_classes

    @functools.cached_property
    def scale(self) -> float:
        """1 / std of the train split's latents (recorded in `latents/train.json`)."""
        z = self.latents("train")["z"]
        scale = scale_factor(z)
        if jax.process_index() == 0:
            outputs.write_json(
                os.path.join(self.autoencoder.workdir, CACHE_DIR, "train.json"),
                {"scale_factor": scale, "std": 1.0 / scale, "mean": float(z.mean()),
                 "num_examples": int(len(z)), "autoencoder_step": self.autoencoder.step},
            )  # fmt: skip
        return scale

    @functools.cache  # noqa: B019  (one cache per dataset; a few splits)
    def latents(self, split: str) -> dict[str, np.ndarray]:
        """Unscaled posterior means and labels of `split` (cached, `cached_latents`)."""
        return cached_latents(self.autoencoder, self.images, split)

    def as_array(self, split: str, max_examples: int | None = None) -> dict[str, np.ndarray]:
        """{"x": scaled latents float32 [n, *shape], "label": int32 [n]}, the first n."""
        cached = self.latents(split)
        n = len(cached["z"]) if max_examples is None else min(max_examples, len(cached["z"]))
        return {"x": cached["z"][:n] * np.float32(self.scale), "label": cached["label"][:n]}

    def num_examples(self, split: str) -> int:
        return self.images.num_examples(split)

    def loader(self, split: str, batch_size: int, *, seed: int, **kwargs):
        """`pipeline.array_loader` over `as_array(split)`: {"x", "label"} batches whose iterator
        state is checkpointed like the image loader's.

        Args:
          **kwargs: `shuffle`, `num_epochs`, `shard_index`, `shard_count`; `dequantize` and
            `num_threads` of the image loader are accepted if off (latents are continuous).

        Raises:
          ValueError: for `dequantize=True`.
        """
        if kwargs.pop("dequantize", False):
            raise ValueError(f"dequantize=True needs discrete data; {self.name} is continuous")
        kwargs.pop("num_threads", None)
        return pipeline.array_loader(self.as_array(split), batch_size, seed=seed, **kwargs)

    def decode(self, z: jax.Array) -> jax.Array:
        """Images [B, H, W, C] of scaled latents z [B, *shape]: D(z / scale) (jittable)."""
        return self.autoencoder.decode(z / jnp.float32(self.scale))


def evaluate_autoencoder(exp, state, workdir: str) -> dict:
    """An autoencoder run's test reconstruction (decoded posterior mean, clipped to [-1, 1]):
    RMSE, the mean KL per example, the latents' std, and the Frechet distance of the
    reconstructions to the test split next to the ruler's floor and ceiling
    (`outputs.quality_ruler`); written to `<workdir>/metrics.json`."""
    test = exp.dataset.as_array("test")
    mesh = sharding.make_mesh(exp.mesh)

    def reconstruct(params, x):
        x_hat, mean, logvar = exp.apply_fn(params["model"], x, jnp.zeros(x.shape[:1]))
        kl = 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=(1, 2, 3))
        return jnp.clip(x_hat, -1.0, 1.0), kl, mean

    reconstruct = sharding.jit_over_batch(reconstruct, mesh)
    parts = [
        reconstruct(state.ema_params, sharding.put_split(test["x"][i : i + ENCODE_BATCH], mesh))
        for i in range(0, len(test["x"]), ENCODE_BATCH)
    ]
    x_hat, kl, mean = (np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(3))
    quality = outputs.quality_ruler(exp, workdir)
    report = {
        "step": int(state.step),
        "reconstruction_rmse": float(np.sqrt(np.mean(np.square(x_hat - test["x"])))),
        "kl_per_example": float(kl.mean()),
        "latent_std": float(mean.std()),
        "latent_shape": list(mean.shape[1:]),
        "reconstruction_quality": quality.report(x_hat),
    }
    if jax.process_index() == 0:
        outputs.write_json(os.path.join(workdir, "metrics.json"), report)
    return report
