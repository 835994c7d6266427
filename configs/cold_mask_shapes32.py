"""Cold diffusion on shapes32 with a square mask growing from the centre, TACoS.

  python -m diffjax.main --config=configs/cold_mask_shapes32.py --workdir=/tmp/cold_mask

Everything is masked at t = 1, so generation starts from the perturbation alone.
"""

import ml_collections

from configs import cold_blur_shapes32


def get_config() -> ml_collections.ConfigDict:
    config = cold_blur_shapes32.get_config()
    config.loss.degradation = "mask"  # the hole's half-width grows as 17 t pixels
    config.loss.degradation_kwargs = {"noise": 0.0}  # std of the noise on top at t = 1
    config.loss.sampler_options.perturbation = 0.1  # the start is this noise alone
    config.loss.sampler_options.colours = "gaussian"  # nothing left at t = 1: no colour to fit
    return config
