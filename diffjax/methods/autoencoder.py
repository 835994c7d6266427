"""The KL-regularised autoencoder of latent diffusion, trained as a method.

Seed 002, "Latent Diffusion" (a KL-VAE compresses images to a latent space, the diffusion model
trains there); seed 003, "Stability AI". The objective is `losses.autoencoder.AutoencoderLoss`
(reconstruction + beta KL to N(0, I)); the network is `models.get("kl_vae_shapes32")`
(`diffjax.models.autoencoder`). Like the noisy classifier it is not generative
(`Recipe.generative` False, no sampler); `Recipe.reconstructs` tells the trainer to give the
network the data's channels and to report reconstruction quality (test RMSE and the Frechet
distance of reconstructions, `diffjax.train.latents.evaluate_autoencoder`). Another run trains
a diffusion model on its latents by naming it in `config.latent.autoencoder_workdir`.
"""

from diffjax.losses.autoencoder import AutoencoderLoss
from diffjax.methods.base import Recipe
from diffjax.processes import Process


def autoencoder(process: Process, reconstruction: str = "l1", beta: float = 1e-4) -> Recipe:
    """The KL-autoencoder recipe.

    Args:
      process: unused by the objective (every recipe carries one; the config's default).
      reconstruction: "l1" | "l2", summed per example.
      beta: the weight of KL(q(z | x) || N(0, I)) per example (>= 0).

    Raises:
      ValueError: for an unknown reconstruction or a negative beta.
    """
    return Recipe(
        name="autoencoder",
        process=process,
        prediction=None,
        objective=AutoencoderLoss(reconstruction, beta),
        sampler="",
        generative=False,
        reconstructs=True,
    )
