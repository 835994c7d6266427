"""The KL-VAE objective of latent diffusion's first stage: reconstruction + beta KL.

Seed 002, "VAE" and "Latent Diffusion" (an autoencoder compresses the image, the diffusion model
is trained on its latents); LDM's KL-regularised autoencoder (Rombach et al. 2022, sec. 3.1)
puts a slight KL penalty towards N(0, I) on the learned latent, like a VAE, with a small weight
so that the latent keeps the detail of the image:

  L = E_x [ sum_pixels rec(x, D(z)) + beta * KL(q(z | x) || N(0, I)) ],   z ~ q(z | x),
  KL = sum_latents 1/2 (mu^2 + sigma^2 - 1 - log sigma^2)   (closed form, diagonal Gaussian),

rec = |x - x_hat| (l1, LDM's choice) or (x - x_hat)^2 (l2), both summed per example as LDM sums
them, so beta weighs one image's KL against one image's reconstruction.
"""

import dataclasses

import jax.numpy as jnp
from jax import Array

from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective

RECONSTRUCTIONS = ("l1", "l2")


def kl_to_standard_normal(mean: Array, logvar: Array) -> Array:
    """KL(N(mean, e^logvar) || N(0, I)) per example [B] (nats), summed over the latent:
    1/2 sum (mean^2 + e^logvar - 1 - logvar)."""
    zeros = jnp.zeros_like(mean)
    return vocabulary.sum_per_example(vocabulary.gaussian_kl(mean, logvar, zeros, zeros))


@dataclasses.dataclass(frozen=True)
class AutoencoderLoss(Objective):
    """E_x [rec_sum(x, x_hat) + beta KL(q(z | x) || N(0, I))] (module docstring).

    The network (`diffjax.models.autoencoder.KLAutoencoder`) returns (x_hat, mean, logvar) and
    samples z from q(z | x) with the loss's key (its training-mode "dropout" rng). Reads
    batch["x"] [B, H, W, C]. Metrics: "loss"; "reconstruction" (rec per value); "kl" (nats per
    example); "rmse" (root mean squared error of x_hat per value).

    Attributes:
      reconstruction: "l1" | "l2".
      beta: the KL weight (>= 0).
    """

    reconstruction: str = "l1"
    beta: float = 1e-4

    def __post_init__(self):
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(
                f"unknown reconstruction {self.reconstruction!r}; valid reconstructions: "
                f"{', '.join(RECONSTRUCTIONS)}"
            )
        if not self.beta >= 0.0:
            raise ValueError(f"beta={self.beta} must be >= 0")

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        def loss(params, batch, key):
            x = batch["x"]
            t = jnp.zeros(x.shape[:1], jnp.float32)  # the autoencoder has no time
            x_hat, mean, logvar = apply_fn(params["model"], x, t, None, key)
            err = x - x_hat
            rec = jnp.abs(err) if self.reconstruction == "l1" else jnp.square(err)
            rec_sum = vocabulary.sum_per_example(rec)  # [B]
            kl = kl_to_standard_normal(mean, logvar)  # [B]
            value = jnp.mean(rec_sum + self.beta * kl)
            return value, {
                "loss": value,
                "reconstruction": jnp.mean(rec),
                "kl": jnp.mean(kl),
                "rmse": jnp.sqrt(jnp.mean(jnp.square(err))),
            }

        return loss
