"""The base stage of a cascade on shapes32: DDPM of the 8x8 images (area-downsampled).

  python -m diffjax.main --config=configs/cascade_base_shapes32.py --workdir=/tmp/cascade_base

Then train configs/cascade_sr16_shapes32.py (8 -> 16) and configs/cascade_sr32_shapes32.py
(16 -> 32) and sample the chain with configs/cascade_shapes32.py (`mode=cascade`). Seed 000,
"Super Resolution: Cascaded Diffusion Models (CDM)". A small UNet that trains on 2 CPU cores.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "ddpm"  # eps prediction, L_simple (diffjax.methods.ddpm)
    config.data.name = "shapes32"  # offline 32x32x3 shapes, 10 classes
    config.data.kwargs = ml_collections.ConfigDict(
        {
            "num_train": 20_000,  # training images drawn
            "num_test": 2_000,  # test images drawn
            "image_size": 8,  # served area-downsampled to 8x8 (the base resolution)
            "data_dir": placeholder(str),  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
        }
    )
    config.model.name = "unet_digits"  # ch 16, mults (1, 2), 1 block, attention at 4x4
    config.optim.learning_rate = 1e-3  # peak learning rate after warm-up
    config.training.num_steps = 2000  # optimizer steps
    config.training.batch_size = 64  # global batch
    config.training.sample_every = 0  # samples only at the end
    config.sample.sampler = "ddim"  # deterministic DDIM (eta 0)
    config.sample.num_steps = 50  # DDIM steps
    config.sample.options = ml_collections.ConfigDict({"eta": 0.0})  # DDIM's eta
    config.eval.num_samples = 500  # generated samples for the Frechet distance
    return config
