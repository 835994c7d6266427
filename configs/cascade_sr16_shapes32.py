"""A super-resolution stage of a cascade on shapes32: 8x8 -> 16x16, noise-augmented.

  python -m diffjax.main --config=configs/cascade_sr16_shapes32.py --workdir=/tmp/cascade_sr16

The UNet sees the 8x8 image (bilinearly upsampled, channel-concatenated) noised to a time
s ~ U[0, aug_max_level] of the DDPM process and s itself; sampling (`mode=sample`
super-resolves the test images) augments at the fixed sample_level. Seed 000, "Super
Resolution: Cascaded Diffusion Models (CDM)". Without augmentation (the paper's ablation):
`--config.super_resolution.aug_max_level=0.0 --config.super_resolution.sample_level=0.0`.
"""

import ml_collections

from configs import cascade_base_shapes32


def get_config() -> ml_collections.ConfigDict:
    config = cascade_base_shapes32.get_config()
    config.data.kwargs.image_size = 16  # served area-downsampled to 16x16
    config.model.kwargs = ml_collections.ConfigDict(
        {"attn_resolutions": (8,)}  # mults (1, 2): 16 -> 8 pixels, self-attention at 8x8
    )
    config.super_resolution.low_res_size = 8  # conditioned on the 8x8 image
    # Training augmentation s ~ U[0, 0.2]: sigma(s) up to 0.58 under ddpm_linear.
    config.super_resolution.aug_max_level = 0.2
    config.super_resolution.sample_level = 0.05  # s_0 = 0.05: sigma 0.17 (alpha 0.99)
    return config
