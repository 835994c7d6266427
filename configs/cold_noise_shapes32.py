"""Cold diffusion on shapes32 with Gaussian noise (the cosine process): TACoS is DDIM.

  python -m diffjax.main --config=configs/cold_noise_shapes32.py --workdir=/tmp/cold_noise

An x0-predicting network trained with the L1 loss; the special case that ties cold diffusion
to the Gaussian methods.
"""

import ml_collections

from configs import cold_blur_shapes32


def get_config() -> ml_collections.ConfigDict:
    config = cold_blur_shapes32.get_config()
    config.loss.degradation = "noise"  # x_t = cos(pi t / 2) x0 + sin(pi t / 2) eps
    config.loss.degradation_kwargs = {}  # the process is the schedule
    config.loss.sampler_options.perturbation = 0.0  # the start is already N(0, I)
    config.loss.sampler_options.colours = "gaussian"  # the start is the Gaussian prior
    return config
