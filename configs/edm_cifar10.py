"""EDM on CIFAR-10 (Karras et al. 2022, config F without augmentation): DDPM++ backbone.

  python -m diffjax.main --config=configs/edm_cifar10.py --workdir=$WORKDIR

Paper: batch 512, lr 1e-3 with a 10M-image ramp, 200M images (~390k steps), dropout 0.13,
EMA half-life 0.5M images (decay 0.5^(512 / 5e5) per step), 18 Heun steps (35 NFE); reported
FID 1.97 (unconditional, VP architecture, with augmentation).
"""

import ml_collections

from configs import ddpm_cifar10, edm_digits


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_cifar10.get_config()
    digits = edm_digits.get_config()
    config.method = digits.method  # edm
    config.process = digits.process  # alpha = 1, sigma in [0.002, 80]
    config.loss = digits.loss  # sigma_data 0.5, ln sigma ~ N(-1.2, 1.2^2)
    config.model.name = "ddpm++_cifar10"
    config.model.kwargs = ml_collections.ConfigDict({"dropout": 0.13})

    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 19_531  # 10M images / 512
    config.optim.grad_clip = 0.0  # EDM does not clip
    config.optim.ema_decay = 0.99929  # half-life of 0.5M images at batch 512
    config.training.batch_size = 512
    config.training.num_steps = 390_625  # 200M images
    config.sample.sampler = "edm_heun"
    config.sample.num_steps = 18
    return config
