"""The effective receptive field of a denoiser against t, and the ELS patch schedule it gives.

Seed 000, "Analytic Theory" / "Locally Consistent Patch Mosaic Models", Detail 1: the receptive
field of a trained network changes with t, measured from the absolute gradient of its output
at a pixel with respect to the input. Here the output is the x0 prediction at the centre pixel
p (summed over channels), its gradient |d x0_hat_p / d x| [H, W] (one `jax.vjp`), and the
effective patch size the smallest odd P whose P x P window around p holds `fraction` of the
gradient's mass (Kamb & Ganguli 2024 calibrate the ELS machine's P per t from the trained
network; this gradient-mass rule is our reading of the seed's "measured by the absolute values
of the gradient").
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffjax.denoisers import Denoiser


def gradient_mass(denoiser: Denoiser, x: Array, t: Array) -> Array:
    """|d x0_hat(x, t)_p / d x| summed over channels [B, H, W], p the centre pixel (H//2, W//2)
    of each image x [B, H, W, C]; t a scalar. Each image's output depends only on itself."""
    h, w = x.shape[1:3]
    x0, pullback = jax.vjp(lambda x: denoiser.x0(x, t), x)
    probe = jnp.zeros_like(x0).at[:, h // 2, w // 2, :].set(1.0)
    (grad,) = pullback(probe)
    return jnp.sum(jnp.abs(grad), -1)


def patch_size_of(mass: Array, fraction: float) -> Array:
    """The smallest odd P whose window around the centre holds `fraction` of each image's
    gradient mass [B, H, W]: [B] int32, at most 2 max(H, W) - 1 (the whole image).

    Raises:
      ValueError: for a fraction outside (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{fraction=} must be in (0, 1]")
    h, w = mass.shape[1:]
    rows, cols = np.abs(np.arange(h) - h // 2), np.abs(np.arange(w) - w // 2)
    radius = np.maximum(rows[:, None], cols[None, :])  # [H, W] Chebyshev distance to the centre
    radii = np.arange(max(h, w))
    inside = jnp.asarray(radius[None] <= radii[:, None, None], jnp.float32)  # [R, H, W]
    held = jnp.einsum("bhw,rhw->br", mass, inside)  # [B, R]
    total = jnp.sum(mass, (1, 2))[:, None]
    # The float tolerance keeps fraction = 1 from asking for more than the whole mass.
    enough = held >= fraction * total * (1.0 - 1e-6)
    return 2 * jnp.argmax(enough, -1).astype(jnp.int32) + 1


def calibrate(
    denoiser: Denoiser, x0: Array, key: Array, ts: Array, fraction: float = 0.9
) -> np.ndarray:
    """The median effective patch size over images at each t: [T] odd ints.

    Args:
      denoiser: the model to measure.
      x0: [B, H, W, C] data images, noised to x_t at each t.
      key: the noise.
      ts: [T] times.
      fraction: share of the gradient mass the window must hold.
    """
    eps = jax.random.normal(key, x0.shape)

    def at(t):
        x = denoiser.process.x_t(x0, eps, t)
        return patch_size_of(gradient_mass(denoiser, x, t), fraction)

    sizes = np.asarray(jax.lax.map(at, jnp.asarray(ts, jnp.float32)))  # [T, B]
    median = np.median(sizes, axis=1)
    return (2 * np.floor(median / 2) + 1).astype(int)  # an even median rounds down to odd


def schedule(ts: np.ndarray, patch_sizes: np.ndarray) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(patch_sizes, t_edges) of `score_machines.scheduled` from P measured at increasing ts:
    runs of equal P merged, the edges halfway between the last t of one run and the next."""
    ts, patch_sizes = np.asarray(ts), np.asarray(patch_sizes)
    change = np.flatnonzero(np.diff(patch_sizes)) + 1
    sizes = tuple(int(p) for p in patch_sizes[np.concatenate([[0], change])])
    edges = tuple(float(0.5 * (ts[i - 1] + ts[i])) for i in change)
    return sizes, edges
