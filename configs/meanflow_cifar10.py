"""MeanFlow on CIFAR-10 (Geng et al. 2025, unconditional, 1-NFE FID 2.92) with the DDPM++ U-Net.

  python -m diffjax.main --config=configs/meanflow_cifar10.py --workdir=$WORKDIR

Paper (CIFAR-10 setting, different from their ImageNet one): linear path, (r, t) from a
logit-normal with location -2 and scale 2, r != t for 75% of the examples, adaptive weight power
p = 0.75, batch 1024, ~800k iterations. The network takes (t, t - r) through two summed time
embeddings. Learning rate, warm-up and EMA decay are this library's choice.
"""

import ml_collections

from configs import ddpmpp_cifar10, meanflow_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = ddpmpp_cifar10.get_config()  # cifar10, ddpm++_cifar10
    config.method = "meanflow"
    config.process.name = "rectified_flow"  # z_t = (1 - t) x + t eps
    config.process.kwargs = ml_collections.ConfigDict()
    config.loss = meanflow_toy2d.get_config().loss
    config.loss.time_distribution_kwargs.mean = -2.0  # logit-normal location (CIFAR-10)
    config.loss.time_distribution_kwargs.std = 2.0  # logit-normal scale (CIFAR-10)
    config.loss.equal_fraction = 0.25  # r = t for 25%: r != t for 75%
    config.loss.adaptive_power = 0.75  # p
    config.loss.time_scale = 1.0  # times as the U-Net embeds them (the toy's 0.001 is 2-D only)

    config.optim.learning_rate = 6e-4
    config.optim.warmup_steps = 10_000
    config.optim.ema_decay = 0.9999
    config.training.batch_size = 1024
    config.training.num_steps = 800_000
    config.sample.sampler = ""  # "meanflow"
    config.sample.num_steps = 1  # one network call
    return config
