"""DDPM on CIFAR-10 as published (Ho et al. 2020): 35.7M UNet, T = 1000, L_simple, 800k steps.

  pip install -e ".[prepare]"  # TensorFlow, to prepare CIFAR-10 on first use (README "Datasets")
  python -m diffjax.main --config=configs/ddpm_cifar10.py --workdir=$WORKDIR

Reported FID 3.17 (Inception features; diffjax's Frechet distance is a proxy). Sampling:
1000 ancestral steps, or `--config.sample.sampler=ddim --config.sample.num_steps=100`.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs import ddpm_digits


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_digits.get_config()
    config.data.name = "cifar10"  # tfds cifar10, 32x32x3
    # pipeline.from_tfds keywords; None: tfds' defaults ($TFDS_DATA_DIR or ~/tensorflow_datasets,
    # and <data_dir>/downloads/manual for a manually copied cifar-10-binary.tar.gz)
    config.data.kwargs = ml_collections.ConfigDict(
        {"data_dir": placeholder(str), "manual_dir": placeholder(str)}
    )
    config.model.name = "ddpm_cifar10"  # ch 128, mults (1, 2, 2, 2), attention at 16, 35.7M
    config.model.kwargs = ml_collections.ConfigDict({"dropout": 0.1})  # CIFAR-10 dropout

    config.optim.optimizer = "adam"  # Adam, no weight decay
    config.optim.learning_rate = 2e-4  # constant after warm-up
    config.optim.schedule = "constant"
    config.optim.warmup_steps = 5000  # linear warm-up
    config.optim.grad_clip = 1.0  # global-norm clipping
    config.optim.ema_decay = 0.9999  # EMA for sampling

    config.training.num_steps = 800_000  # optimizer steps
    config.training.batch_size = 128  # global batch
    config.training.log_every = 1000
    config.training.checkpoint_every = 10_000
    config.training.sample_every = 50_000

    config.sample.num_steps = 1000  # ancestral steps (0: the sampler's default)
    config.eval.num_samples = 50_000  # samples for the Frechet distance
    return config
