"""The last super-resolution stage of a cascade on shapes32: 16x16 -> 32x32, noise-augmented.

  python -m diffjax.main --config=configs/cascade_sr32_shapes32.py --workdir=/tmp/cascade_sr32

As configs/cascade_sr16_shapes32.py, at full resolution. Seed 000, "Super Resolution: Cascaded
Diffusion Models (CDM)".
"""

import ml_collections

from configs import cascade_sr16_shapes32


def get_config() -> ml_collections.ConfigDict:
    config = cascade_sr16_shapes32.get_config()
    del config.data.kwargs["image_size"]  # the stored 32x32 images
    config.model.kwargs = ml_collections.ConfigDict(
        {
            "ch_mult": (1, 2, 2),  # 32 -> 16 -> 8 pixels
            "attn_resolutions": (8,),  # self-attention at 8x8
        }
    )
    config.super_resolution.low_res_size = 16  # conditioned on the 16x16 image
    return config
