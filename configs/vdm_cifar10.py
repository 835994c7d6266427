"""VDM on CIFAR-10 (Kingma et al. 2021): learned gamma_eta, continuous-time VLB in bits/dim.

  python -m diffjax.main --config=configs/vdm_cifar10.py --workdir=$WORKDIR

Paper: a 32-block UNet without downsampling and Fourier input features, batch 128, lr 2e-4,
AdamW (weight decay 0.01), EMA 0.9999, 10M steps; reported 2.65 bits/dim. Here the network is
the DDPM UNet preset (diffjax has no Fourier-feature input layer), so expect a looser bound.
"""

import ml_collections

from configs import ddpm_cifar10, vdm_digits


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_cifar10.get_config()
    digits = vdm_digits.get_config()
    config.method = digits.method  # vdm
    config.process = digits.process  # vdm_learned, gamma_max 5, width 1024
    config.process.kwargs.gamma_min = -13.3  # the paper's, for 8-bit data
    config.loss = digits.loss  # antithetic t, variance-reduced schedule gradient
    config.loss.num_bins = 256  # 8-bit data for the reconstruction term

    config.optim.optimizer = "adamw"
    config.optim.weight_decay = 0.01  # AdamW as VDM
    config.optim.learning_rate = 2e-4
    config.training.num_steps = 10_000_000
    config.sample.num_steps = 1000  # ancestral steps on a uniform grid
    return config
