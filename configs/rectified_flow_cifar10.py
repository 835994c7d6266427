"""1-rectified flow on CIFAR-10 (Liu et al. 2023): the DDPM++ network on the linear interpolant.

  python -m diffjax.main --config=configs/rectified_flow_cifar10.py --workdir=$WORKDIR

Seed 002, reflow table: 1-rectified flow sampled with adaptive RK45 (~127 NFE) reaches FID 2.58;
one Euler step of the 2-/3-rectified flow (after reflow) 12.21 / 8.15, and 4.85 / 5.21 after
distillation. Network and optimizer follow the score_sde DDPM++ setup the paper builds on
(configs/ddpmpp_cifar10.py: batch 128, lr 2e-4, EMA 0.9999). One-step samples of a run:
`--config.mode=sample --config.sample.sampler=euler --config.sample.num_steps=1`.
"""

import ml_collections

from configs import ddpmpp_cifar10, flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = ddpmpp_cifar10.get_config()  # cifar10, ddpm++_cifar10, optimizer, 1.3M steps
    config.method = "rectified_flow"  # diffjax.methods.rectified_flow.rectified_flow
    config.process.name = "rectified_flow"  # x_t = (1 - t) x_0 + t eps
    config.process.kwargs = ml_collections.ConfigDict()  # no parameters
    config.loss = flow_matching_toy2d.get_config().loss  # velocity, uniform t, no coupling
    config.sample.sampler = "dopri5"  # adaptive Dormand-Prince 5(4), scipy's RK45
    config.sample.num_steps = 0  # adaptive: the sampler's tolerances decide
    return config
