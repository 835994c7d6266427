"""DDPM with a small DiT on shapes32 pixels: the pixel-space baseline of latent diffusion.

  python -m diffjax.main --config=configs/dit_shapes32.py --workdir=/tmp/dit_shapes32

A DiT-S narrowed to 6 blocks of width 192 (3 heads) on 8x8 patches of the 32x32x3 images, 16
tokens of 192 values: the same transformer, token count and training compute per step as
configs/latent_dit_shapes32.py on 8x8x4 latents in 2x2 patches (seed 002, "Latent Diffusion").
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.name = "shapes32"  # offline 32x32x3 shapes, 10 classes
    config.data.kwargs = ml_collections.ConfigDict(
        {
            "num_train": 20_000,  # training images drawn
            "num_test": 2_000,  # test images drawn
            "data_dir": placeholder(str),  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
        }
    )
    config.model.name = "DiT-S/8"  # 8x8 patches of 32x32x3: 16 tokens of 192 values
    # DiT-S (12 blocks, width 384, 6 heads) narrowed to what 2 CPU cores train in minutes.
    config.model.kwargs = ml_collections.ConfigDict(
        {"depth": 6, "hidden_size": 192, "num_heads": 3}
    )
    config.optim.learning_rate = 1e-3  # transformers want a lower peak rate than the UNet
    config.training.num_steps = 2000  # optimizer steps
    config.training.batch_size = 64  # global batch
    config.training.sample_every = 0  # samples only at the end
    config.sample.sampler = "ddim"  # deterministic DDIM (eta 0)
    config.sample.num_steps = 50  # DDIM steps
    config.eval.num_samples = 500  # generated samples for the Frechet distance
    return config
