"""Improved consistency training (iCT, Song & Dhariwal 2023) on CIFAR-10 with the NCSN++ network.

  python -m diffjax.main --config=configs/consistency_cifar10.py --workdir=$WORKDIR

Paper: EDM's VE process (sigma 0.002 .. 80), pseudo-Huber metric with c = 0.00054 sqrt(d),
lambda = 1 / (sigma_{n+1} - sigma_n), log-normal noise sampling (P_mean -1.1, P_std 2.0), the
exponential curriculum s0 = 10 -> s1 = 1280, no EMA in the target (mu = 0), dropout 0.3,
batch 1024, 400k iterations; reported 1-step FID 2.83 and 2-step FID 2.46. The learning rate
and EMA decay below are this library's choice for that batch (Adam, 1e-4, EMA 0.99993).
"""

import ml_collections

from configs import consistency_toy2d, ncsnpp_cifar10


def get_config() -> ml_collections.ConfigDict:
    config = ncsnpp_cifar10.get_config()  # cifar10, ncsn++, Adam
    config.method = "consistency"
    config.process.name = "edm"  # alpha = 1, sigma(t) = 0.002 + t (80 - 0.002)
    config.process.kwargs = ml_collections.ConfigDict({"sigma_min": 0.002, "sigma_max": 80.0})
    config.loss = consistency_toy2d.get_config().loss  # iCT: pseudo-Huber, lognormal, ict, mu 0
    config.loss.sigma_min = 0.002  # the boundary, at t = 0 of this process
    config.loss.sigma_max = 80.0  # at t = 1
    config.loss.s1 = 1280  # final discretisation
    config.model.kwargs = ml_collections.ConfigDict({"dropout": 0.3})

    config.optim.learning_rate = 1e-4
    config.optim.warmup_steps = 0
    config.optim.schedule = "constant"
    config.optim.ema_decay = 0.99993
    config.training.batch_size = 1024
    config.training.num_steps = 400_000
    config.loss.total_steps = config.training.get_ref("num_steps")  # K of the curriculum
    config.sample.sampler = ""  # "consistency"
    config.sample.num_steps = 1  # one-step generation (2 for the 2-step figure)
    return config
