"""The KL-regularised autoencoder of latent diffusion on shapes32: 32x32x3 -> 8x8x4.

  python -m diffjax.main --config=configs/vae_shapes32.py --workdir=/tmp/vae_shapes32

LDM's first stage (seed 002, "Latent Diffusion"): L1 reconstruction (summed per image) + beta
KL(q(z | x) || N(0, I)) with a small beta, `kl_vae_shapes32` (diffjax/models/autoencoder.py).
When it finishes, metrics.json holds the test reconstruction RMSE and the Frechet distance of the
reconstructions. Then train a diffusion model on its latents:

  python -m diffjax.main --config=configs/latent_dit_shapes32.py --workdir=/tmp/latent_dit \
    --config.latent.autoencoder_workdir=/tmp/vae_shapes32
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "autoencoder"  # diffjax.methods.autoencoder
    config.data.name = "shapes32"  # offline 32x32x3 shapes, 10 classes
    config.data.kwargs = ml_collections.ConfigDict(
        {
            "num_train": 20_000,  # training images drawn
            "num_test": 2_000,  # test images drawn
            "data_dir": placeholder(str),  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
        }
    )
    config.model.name = "kl_vae_shapes32"  # widths 16, 32, 32; 2 halvings; 4 latent channels
    config.model.kwargs = ml_collections.ConfigDict()  # e.g. {"ch": 32}
    config.loss = ml_collections.ConfigDict(
        {
            "reconstruction": "l1",  # LDM's choice (l1 | l2), summed per image
            "beta": 1e-4,  # KL weight per image: a slight pull of the latents towards N(0, I)
        }
    )
    config.optim.learning_rate = 1e-3  # peak learning rate after warm-up
    config.optim.ema_decay = 0.99  # EMA of the params that encode and decode
    config.training.num_steps = 1000  # optimizer steps (about 17 minutes on 2 busy CPU cores)
    config.training.batch_size = 64  # global batch
    config.training.sample_every = 0  # an autoencoder draws no samples
    return config
