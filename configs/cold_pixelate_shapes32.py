"""Cold diffusion on shapes32 with pixelation (block averages of 2^(5 t) pixels), TACoS.

python -m diffjax.main --config=configs/cold_pixelate_shapes32.py --workdir=/tmp/cold_pixelate
"""

import ml_collections

from configs import cold_blur_shapes32


def get_config() -> ml_collections.ConfigDict:
    config = cold_blur_shapes32.get_config()
    config.loss.degradation = "pixelate"  # t = 1: one 32x32 block, the channel mean
    config.loss.degradation_kwargs = {"noise": 0.0}  # std of the noise on top at t = 1
    return config
