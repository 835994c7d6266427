"""NCSN++ (continuous VE SDE) on CIFAR-10 (Song et al. 2021).

  python -m diffjax.main --config=configs/ncsnpp_cifar10.py --workdir=$WORKDIR

Paper: NCSN++ cont. (VE, sigma 0.01 .. 50), Fourier time features, batch 128, lr 2e-4, 1.3M
steps, EMA 0.999; reported FID 2.38 (PC sampler, snr 0.16).
"""

import ml_collections

from configs import ddpmpp_cifar10


def get_config() -> ml_collections.ConfigDict:
    config = ddpmpp_cifar10.get_config()
    config.process.name = "ve"  # sigma(t) = sigma_min (sigma_max / sigma_min)^t
    config.process.kwargs = ml_collections.ConfigDict({"sigma_min": 0.01, "sigma_max": 50.0})
    config.model.name = "ncsn++"  # DDPM++ layout with Fourier time features
    config.optim.ema_decay = 0.999  # NCSN++ uses a shorter EMA
    return config
