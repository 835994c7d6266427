"""Conditional flow matching (linear path) on scikit-learn's digits with the small UNet.

  python -m diffjax.main --config=configs/flow_matching_digits.py --workdir=/tmp/fm_digits

Few-step sampling of the same run: `--config.mode=sample --config.sample.num_steps=4`;
variants: `--config.loss.time_distribution=logit_normal` (SD3), `--config.loss.coupling=sinkhorn`
(OT-CFM on 64-dim images; `exact` runs the assignment on the host every step).
"""

import ml_collections

from configs import default, flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()  # digits, unet_digits, optimizer and training of the quickstart
    config.method = "flow_matching"  # diffjax.methods.flow_matching.flow_matching
    config.process.name = "rectified_flow"  # x_t = (1 - t) x_0 + t eps
    config.process.kwargs = ml_collections.ConfigDict()  # no parameters
    config.loss = flow_matching_toy2d.get_config().loss  # velocity, uniform t, no coupling
    config.sample.sampler = "euler"  # fixed-step PF-ODE from t = 1 to 0
    config.sample.num_steps = 50  # Euler steps (NFE)
    return config
