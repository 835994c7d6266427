"""iDDPM on CIFAR-10 (Nichol & Dhariwal 2021): cosine T = 4000, learned sigma, L_hybrid.

  python -m diffjax.main --config=configs/iddpm_cifar10.py --workdir=$WORKDIR

Paper: 3 residual blocks per resolution, dropout 0.3, lr 1e-4, batch 128, 500k steps;
reported NLL 2.94 bits/dim and FID 2.90 (L_hybrid).
"""

import ml_collections

from configs import ddpm_cifar10, iddpm_digits


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_cifar10.get_config()
    digits = iddpm_digits.get_config()
    config.method = digits.method  # iddpm
    config.process = digits.process  # ddpm_cosine
    config.process.kwargs.num_steps = 4000  # T
    config.loss = digits.loss  # L_simple + lambda L_vlb
    config.loss.num_bins = 256  # 8-bit data for the discretised decoder

    config.model.kwargs = ml_collections.ConfigDict(
        {"num_res_blocks": 3, "dropout": 0.3, "attn_resolutions": (16, 8)}  # iDDPM CIFAR-10
    )
    config.optim.learning_rate = 1e-4  # constant
    config.training.num_steps = 500_000
    config.sample.num_steps = 4000  # ancestral steps over the full table
    return config
