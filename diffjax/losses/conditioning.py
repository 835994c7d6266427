"""Class labels in training: label dropout for classifier-free guidance, shared by every objective.

Classifier-free guidance (Ho & Salimans 2022) trains one network as both the conditional model
and the unconditional one by replacing each training label with the null class with
probability p_uncond. A class-conditional network built with `num_classes = N` (see
`diffjax.models.layers.LabelEmbedding`) reads labels in [0, N], row N being the null class.

The dropout lives here, once: `with_label_dropout(loss, dropout)` wraps any
`loss(params, batch, key)` so the objective sees `batch["label"]` already dropped, with a key
split off the loss key. An objective that needs to know which labels were dropped (MeanFlow's
guided target) compares them with the null class.

Cascaded super-resolution (seed 000, "Super Resolution: Cascaded Diffusion Models (CDM)"; seed
003, "Upscaling") conditions the same way: `with_super_resolution(loss, sr, process_of)` puts
the noise-augmented low-resolution image of `batch["x"]` and its augmentation level into the
network's `cond` (`SuperResolution`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.losses.base import LossFn


@dataclasses.dataclass(frozen=True)
class LabelDropout:
    """Replaces each label by the null class `num_classes` with probability `p_uncond`.

    Attributes:
      num_classes: number of real classes N (>= 1); the null class is N.
      p_uncond: probability in [0, 1) that a label becomes the null class.
    """

    num_classes: int
    p_uncond: float = 0.0

    def __post_init__(self):
        if self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes} must be >= 1")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond={self.p_uncond} must lie in [0, 1)")

    @property
    def null_class(self) -> int:
        """The label of the unconditional model: `num_classes`."""
        return self.num_classes

    def apply(self, key: Array, labels: Array) -> Array:
        """labels: int [B] in [0, N) -> [B], each replaced by N with probability p_uncond."""
        if self.p_uncond == 0.0:
            return labels
        dropped = jax.random.uniform(key, labels.shape) < self.p_uncond  # [B]
        return jnp.where(dropped, jnp.asarray(self.null_class, labels.dtype), labels)


def with_label_dropout(loss_fn: LossFn, dropout: LabelDropout | None) -> LossFn:
    """`loss_fn` with `batch["label"]` passed through `dropout` first.

    The dropout key is split off the loss key; the objective receives the other half. `None`
    (an unconditional model) returns `loss_fn` itself, so its keys and values are unchanged.

    Args:
      loss_fn: `loss(params, batch, key) -> (scalar, metrics)` reading `batch.get("label")`.
      dropout: the label dropout, or None.

    Returns:
      `loss(params, batch, key)`; it raises a KeyError if a batch carries no "label".
    """
    if dropout is None:
        return loss_fn

    def loss(params, batch, key):
        key, drop_key = jax.random.split(key)
        batch = {**batch, "label": dropout.apply(drop_key, batch["label"])}
        return loss_fn(params, batch, key)

    return loss


# --- Cascaded super-resolution: the low-resolution image as conditioning ---------------------
#
# Seed 000, "Super Resolution: Cascaded Diffusion Models (CDM)" (Ho et al. 2022): a
# super-resolution model eps_theta(z_t, t, x_s, s) sees the low-resolution image x noised to an
# augmentation level s, x_s = alpha(s) x + sigma(s) eps (Gaussian noise-conditioning
# augmentation, with the run's own process), and s itself. Training draws s ~ U[0, s_max];
# sampling uses one fixed s_0 ("the model is stronger at s = s_0 than at s = 0" because the
# previous stage's output is never exactly a downsampled real image). Seed 003, "Upscaling":
# the stages of a cascade, each a diffusion model of its own resolution.


def area_downsample(x: Array, size: int) -> Array:
    """Block means: x [B, H, W, C] -> [B, size, size, C], each output pixel the mean of its
    (H / size) x (W / size) block (area / box downsampling, as PIL's BOX filter for integer
    factors).

    Raises:
      ValueError: H or W not a multiple of `size`.
    """
    b, h, w, c = x.shape
    if size < 1 or h % size or w % size:
        raise ValueError(f"low_res_size={size} must divide the image size {h}x{w}")
    fh, fw = h // size, w // size
    return x.reshape(b, size, fh, size, fw, c).mean(axis=(2, 4))


@dataclasses.dataclass(frozen=True)
class SuperResolution:
    """A super-resolution model's conditioning: the area-downsampled image, noise-augmented.

    Attributes:
      low_res_size: side of the low-resolution image (>= 1; it must divide the image side and
        be smaller than it, `check_image`).
      aug_max_level: training draws the augmentation time s ~ U[0, aug_max_level] of the run's
        process, in [0, 1]; 0 trains without augmentation (s = 0: x_s = alpha(0) x).
      sample_level: the fixed s_0 in [0, 1] at which sampling augments its low-res input.
    """

    low_res_size: int
    aug_max_level: float = 0.0
    sample_level: float = 0.0

    def __post_init__(self):
        if self.low_res_size < 1:
            raise ValueError(f"low_res_size={self.low_res_size} must be >= 1")
        for name in ("aug_max_level", "sample_level"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")

    def check_image(self, shape: tuple[int, ...]) -> None:
        """Raises a ValueError unless `shape` is an image [H, W, C] of square side H that
        `low_res_size` divides and is smaller than."""
        if len(shape) != 3 or shape[0] != shape[1]:
            raise ValueError(f"super-resolution needs square images [H, H, C], got {shape}")
        side = shape[0]
        if self.low_res_size >= side or side % self.low_res_size:
            raise ValueError(
                f"low_res_size={self.low_res_size} must divide the data's image size {side} "
                f"and be smaller than it (e.g. {side // 2})"
            )

    def low_res_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """[h, h, C] of the low-res image of images of `shape` [H, H, C]."""
        return (self.low_res_size, self.low_res_size, shape[-1])

    def low_res(self, x: Array) -> Array:
        """x [B, H, W, C] -> its low-resolution image [B, h, h, C] (`area_downsample`)."""
        return area_downsample(x, self.low_res_size)

    @staticmethod
    def augment(key: Array, low_res: Array, level: Array, process) -> Array:
        """x_s = alpha(s) low_res + sigma(s) eps, eps ~ N(0, I) from `key`; level s [B]."""
        eps = jax.random.normal(key, low_res.shape, low_res.dtype)
        scale = lambda v: v.reshape(-1, *(1,) * (low_res.ndim - 1))  # noqa: E731  [B, 1, 1, 1]
        return scale(process.alpha(level)) * low_res + scale(process.sigma(level)) * eps

    def cond(self, low_res: Array, level: Array, labels: Array | None) -> dict[str, Array]:
        """The network's `cond` mapping: "low_res" [B, h, h, C], "low_res_t" [B] (+ "label")."""
        cond = {"low_res": low_res, "low_res_t": level}
        if labels is not None:
            cond["label"] = labels
        return cond

    def train_cond(self, key: Array, x: Array, process, labels: Array | None = None) -> dict:
        """The conditioning of a training batch x [B, H, W, C]: its low-res image noised at
        s ~ U[0, aug_max_level] (one s per example). Nothing is differentiated through it."""
        level_key, noise_key = jax.random.split(key)
        level = self.aug_max_level * jax.random.uniform(level_key, x.shape[:1])  # [B]
        low = self.augment(noise_key, self.low_res(x), level, process)
        return self.cond(jax.lax.stop_gradient(low), level, labels)

    def sample_cond(self, key: Array, low_res: Array, process, labels: Array | None = None):
        """The conditioning of sampling from low_res [B, h, h, C]: noised at `sample_level`."""
        level = jnp.full(low_res.shape[:1], self.sample_level, jnp.float32)  # [B]
        return self.cond(self.augment(key, low_res, level, process), level, labels)


def with_super_resolution(
    loss_fn: LossFn, sr: SuperResolution | None, process_of: Callable[[Any], Any]
) -> LossFn:
    """`loss_fn` of a super-resolution model: `batch["label"]` becomes the `cond` mapping of
    `SuperResolution.train_cond` (the batch's own labels, already dropped, go inside it).

    Every objective hands `batch.get("label")` to the network as its `cond`, so any objective
    trains a super-resolution model through this wrapper. The augmentation key is split off the
    loss key; `None` returns `loss_fn` itself.

    Args:
      loss_fn: `loss(params, batch, key) -> (scalar, metrics)`.
      sr: the super-resolution conditioning, or None.
      process_of: params -> the run's process (`Recipe.process_for`), which noises x.
    """
    if sr is None:
        return loss_fn

    def loss(params, batch, key):
        key, aug_key = jax.random.split(key)
        cond = sr.train_cond(aug_key, batch["x"], process_of(params), batch.get("label"))
        return loss_fn(params, {**batch, "label": cond}, key)

    return loss
