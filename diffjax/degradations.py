"""Cold-diffusion degradations D(x0, t): deterministic image transforms, t = 0 data, t = 1 fully
degraded, next to the Gaussian processes of `processes.py`.

Seed 000, "Cold Diffusion" (Bansal et al. 2022, "Cold Diffusion: Inverting Arbitrary Image
Transforms Without Noise", section 3): any degradation D(x0, t) with D(x0, 0) = x0 and a
restoration network R(x_t, t) ~ x0 trained to invert it gives a generative model. Every
degradation here has the form

  D(x0, t, eps) = A_t x0 + noise_std(t) eps,   eps ~ N(0, I) [B, H, W, C],

with A_t a linear operator (A_0 = I), so the samplers (`diffjax.samplers.cold`) can split
x_t = A_t x0_hat + noise_std(t) eps_hat. The kinds:

- `blur` (GaussianBlur): a Gaussian blur of variance sigma_max^2 t (pixels^2). Blurring T times
  with one fixed Gaussian kernel of variance sigma_max^2 / T, the paper's growing kernel, gives
  exactly this at t = k / T (Gaussian variances add under convolution). Computed in the Fourier
  domain with periodic boundaries: A_t multiplies mode f (cycles per pixel) by
  exp(-2 pi^2 sigma_max^2 t |f|^2). The default sigma_max = 20 damps every non-constant mode of
  a 32-pixel image at t = 1 by exp(-2 pi^2 400 / 32^2) < 5e-4: x_1 is the per-channel mean.
- `pixelate` (Pixelate): averages over blocks of 2^l pixels, l = t log2(H) (H = W a power of
  two), linearly interpolated between the integer levels: t = 0 the image, t = 1 one block,
  the per-channel mean (the paper's "super-resolution" degradation on a continuous t).
- `mask` (Mask): pixels at Chebyshev distance d from the image centre are multiplied by
  clip(d + 1 - r(t), 0, 1) with r(t) = t (H / 2 + 1) (a square hole growing from the centre
  with a one-pixel ramp; the paper's "inpainting" degradation): t = 0 keeps every pixel, t = 1
  zeroes them all (0 is mid-gray in [-1, 1]).
- `noise` (GaussianNoise): A_t = alpha(t), noise_std = sigma(t) of a `Process`: the Gaussian
  forward process, for which the improved sampler is exactly DDIM (eta = 0).

`blur`, `pixelate` and `mask` take `noise` >= 0: noise_std(t) = noise * t adds a small Gaussian
noise on top (0: deterministic).
"""

import abc
import dataclasses
import math

import jax.numpy as jnp
from jax import Array

from diffjax import _registry
from diffjax.processes import Process, expand


class Degradation(abc.ABC):
    """D(x0, t, eps) = A_t x0 + noise_std(t) eps for images x0 [B, H, W, C] and t [B] or scalar.

    Subclasses are frozen dataclasses that define `operator` (A_t, linear in x0, A_0 = I) and
    may define `noise_std`.
    """

    @abc.abstractmethod
    def operator(self, x0: Array, t: Array) -> Array:
        """A_t x0 [B, H, W, C]; linear in x0 for every t, identity at t = 0."""

    def noise_std(self, t: Array) -> Array:
        """The std of the noise on top, same shape as t (0: deterministic)."""
        return jnp.zeros_like(jnp.asarray(t, jnp.float32))

    def __call__(self, x0: Array, t: Array, eps: Array | None = None) -> Array:
        """D(x0, t, eps) [B, H, W, C]; eps [B, H, W, C] (None: zero noise)."""
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x0.shape[:1])
        out = self.operator(x0, t)
        if eps is None:
            return out
        return out + expand(self.noise_std(t), x0) * eps


@dataclasses.dataclass(frozen=True)
class _SmallNoise(Degradation):
    """noise_std(t) = noise * t."""

    noise: float = 0.0

    def __post_init__(self):
        if not self.noise >= 0.0:
            raise ValueError(f"{type(self).__name__}: noise={self.noise} must be >= 0")

    def noise_std(self, t: Array) -> Array:
        return self.noise * jnp.asarray(t, jnp.float32)


@dataclasses.dataclass(frozen=True)
class GaussianBlur(_SmallNoise):
    """Gaussian blur of variance sigma_max^2 t pixels^2, periodic boundaries (module docstring).

    Attributes:
      sigma_max: the blur's std in pixels at t = 1 (> 0).
      noise: std of the noise on top at t = 1 (>= 0).
    """

    sigma_max: float = 20.0

    def __post_init__(self):
        super().__post_init__()
        if not self.sigma_max > 0.0:
            raise ValueError(f"blur: sigma_max={self.sigma_max} must be > 0")

    def operator(self, x0: Array, t: Array) -> Array:
        fy = jnp.fft.fftfreq(x0.shape[1])[:, None]  # [H, 1] cycles per pixel
        fx = jnp.fft.fftfreq(x0.shape[2])[None, :]  # [1, W]
        f2 = jnp.square(fy) + jnp.square(fx)  # [H, W]
        rate = 2.0 * math.pi**2 * self.sigma_max**2
        gain = jnp.exp(-rate * t[:, None, None] * f2[None])  # [B, H, W]
        spectrum = jnp.fft.fft2(x0, axes=(1, 2)) * gain[..., None]
        return jnp.real(jnp.fft.ifft2(spectrum, axes=(1, 2))).astype(x0.dtype)


def _block_mean(x: Array, block: int) -> Array:
    """x [B, H, W, C] with each block x block tile replaced by its mean."""
    b, h, w, c = x.shape
    tiles = x.reshape(b, h // block, block, w // block, block, c).mean(axis=(2, 4), keepdims=True)
    return jnp.broadcast_to(tiles, (b, h // block, block, w // block, block, c)).reshape(x.shape)


@dataclasses.dataclass(frozen=True)
class Pixelate(_SmallNoise):
    """Block averages over 2^(t log2 H) pixels, interpolated between levels (module docstring).

    Attributes:
      noise: std of the noise on top at t = 1 (>= 0).
    """

    def operator(self, x0: Array, t: Array) -> Array:
        h, w = x0.shape[1:3]
        if h != w or h & (h - 1):
            raise ValueError(f"pixelate needs square images with a power-of-two side, got {h}x{w}")
        num_levels = int(math.log2(h))
        levels = jnp.stack([_block_mean(x0, 2**k) for k in range(num_levels + 1)])  # [L+1, B, ...]
        position = t * num_levels  # [B] in [0, L]
        lower = jnp.clip(jnp.floor(position), 0, num_levels - 1).astype(jnp.int32)
        frac = expand(position - lower, x0)
        batch = jnp.arange(x0.shape[0])
        return (1.0 - frac) * levels[lower, batch] + frac * levels[lower + 1, batch]


@dataclasses.dataclass(frozen=True)
class Mask(_SmallNoise):
    """A centred square hole of half-width r(t) = t (H / 2 + 1), one-pixel ramp (module docstring).

    Attributes:
      noise: std of the noise on top at t = 1 (>= 0).
    """

    def operator(self, x0: Array, t: Array) -> Array:
        h, w = x0.shape[1:3]
        dy = jnp.abs(jnp.arange(h) + 0.5 - h / 2)[:, None]  # [H, 1] distance of pixel centres
        dx = jnp.abs(jnp.arange(w) + 0.5 - w / 2)[None, :]
        d = jnp.maximum(dy, dx)  # [H, W] Chebyshev distance, in [0.5, max(H, W) / 2)
        radius = t * (max(h, w) / 2 + 1.0)  # [B]; at t = 1 beyond every pixel's d + 1
        keep = jnp.clip(d[None] + 1.0 - radius[:, None, None], 0.0, 1.0)  # [B, H, W]
        return x0 * keep[..., None]


@dataclasses.dataclass(frozen=True)
class GaussianNoise(Degradation):
    """x_t = alpha(t) x0 + sigma(t) eps of a Gaussian process: cold diffusion's noise case.

    Attributes:
      process: the forward process.
    """

    process: Process

    def operator(self, x0: Array, t: Array) -> Array:
        return expand(self.process.alpha(t), x0) * x0

    def noise_std(self, t: Array) -> Array:
        return self.process.sigma(jnp.asarray(t, jnp.float32))


# name -> constructor; `noise` takes the forward process (the method's `process`)
_DEGRADATIONS = {
    "blur": GaussianBlur,
    "pixelate": Pixelate,
    "mask": Mask,
    "noise": GaussianNoise,
}


def get(name: str, process: Process | None = None, **kwargs) -> Degradation:
    """The degradation `name` ("blur", "pixelate", "mask", "noise") with its options.

    Args:
      name: the kind.
      process: the Gaussian process of "noise" (ignored by the others).
      **kwargs: the dataclass fields (`sigma_max`, `noise`).

    Raises:
      ValueError: for an unknown name (listing the valid ones), an unknown option (listing the
        valid ones) or a bad value.
    """
    cls = _registry.lookup("degradation", _DEGRADATIONS, name)
    valid = [f.name for f in dataclasses.fields(cls) if f.name != "process"]
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} of degradation {name!r}; valid options: "
            f"{', '.join(valid) or 'none'}"
        )
    if cls is GaussianNoise:
        if process is None:
            raise ValueError("degradation 'noise' needs the forward process")
        return GaussianNoise(process)
    return cls(**kwargs)


def names() -> list[str]:
    return sorted(_DEGRADATIONS)
