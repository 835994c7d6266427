"""Latent diffusion on shapes32: DDPM with a small DiT on the 8x8x4 latents of a KL-VAE run.

  python -m diffjax.main --config=configs/vae_shapes32.py --workdir=/tmp/vae_shapes32
  python -m diffjax.main --config=configs/latent_dit_shapes32.py --workdir=/tmp/latent_dit \
    --config.latent.autoencoder_workdir=/tmp/vae_shapes32

Seed 002, "Latent Diffusion" and seed 003, "Stability AI": the train split is encoded once (the
autoencoder's `latents/` cache), scaled to unit variance (LDM's scale factor), and the DiT
(2x2 patches: 16 tokens, as configs/dit_shapes32.py's pixel DiT with 8x8 patches) learns eps on
them; samples are decoded, and metrics.json measures the decoded images against the test split.
"""

import ml_collections

from configs import dit_shapes32


def get_config() -> ml_collections.ConfigDict:
    config = dit_shapes32.get_config()
    # A trained method=autoencoder run on the same data (set it on the command line).
    config.latent.autoencoder_workdir = "/tmp/vae_shapes32"
    config.model.name = "DiT-S/2"  # 8x8x4 latents in 2x2 patches: 16 tokens of 16 values
    return config
