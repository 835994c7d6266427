"""Cold diffusion (Bansal et al. 2022) on shapes32: Gaussian blur, L1 restoration, TACoS.

  python -m diffjax.main --config=configs/cold_blur_shapes32.py --workdir=/tmp/cold_blur

A small UNet that trains on 2 CPU cores; the other degradations are
configs/cold_{pixelate,mask,noise}_shapes32.py. Sample with the naive rule (Algorithm 1):
`--config.mode=sample --config.sample.options.rule=naive`.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "cold_diffusion"  # diffjax.methods.cold
    config.data.name = "shapes32"  # offline 32x32x3 shapes, 10 classes
    config.data.kwargs = ml_collections.ConfigDict(
        {
            "num_train": 20_000,  # training images drawn
            "num_test": 2_000,  # test images drawn
            "data_dir": placeholder(str),  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
        }
    )
    config.model.name = "unet_digits"  # ch 16, 1 block per level, dropout 0.1
    config.model.kwargs = ml_collections.ConfigDict(
        {
            "ch_mult": (1, 2, 2),  # 32 -> 16 -> 8 pixels
            "attn_resolutions": (8,),  # self-attention at 8x8
        }
    )
    # The cosine process: the noise the generative start is drawn from, N(0, I), and the
    # schedule of the "noise" degradation.
    config.process.name = "cosine"
    config.process.kwargs = ml_collections.ConfigDict()
    config.loss = ml_collections.ConfigDict(
        {
            "degradation": "blur",  # blur | pixelate | mask | noise (diffjax.degradations)
            # blur std sigma_max pixels at t = 1 (the image is its channel mean there); noise:
            # std of the Gaussian noise on top at t = 1
            "degradation_kwargs": {"sigma_max": 20.0, "noise": 0.0},
            "norm": "l1",  # the paper's L1 restoration loss (l1 | l2)
            "sampler_options": {
                "rule": "tacos",  # Algorithm 2 (tacos) | Algorithm 1 (naive)
                "from_noise": True,  # generate: a fully degraded start drawn from noise
                # std of the start's random colour: the RMS per-channel mean of shapes32 images
                "channel_std": 0.32,
                "perturbation": 0.02,  # pixel noise on the start, breaks the symmetry
                # the start's colour: "mixture", the paper's Gaussian mixture fitted to the
                # per-channel means of the fully blurred train images (at each build) |
                # "gaussian", N(0, channel_std^2) per channel
                "colours": "mixture",
                "mixture_components": 10,  # components of that mixture
            },
        }
    )
    config.optim.learning_rate = 1e-3  # peak learning rate after warm-up
    config.training.num_steps = 3000  # optimizer steps
    config.training.batch_size = 64  # global batch
    config.training.sample_every = 0  # samples only at the end
    config.sample.num_steps = 50  # cold sampling steps on the uniform grid
    config.eval.num_samples = 500  # generated samples for the Frechet distance
    return config
