"""Rectified flow (1-rectified flow) on two moons; reflow rounds train on its (noise, sample) pairs.

  python -m diffjax.main --config=configs/rectified_flow_toy2d.py --workdir=/tmp/rf_toy2d

One-step samples of the same model: `--config.mode=sample --config.sample.num_steps=1`.
"""

import ml_collections

from configs import flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = flow_matching_toy2d.get_config()
    config.method = "rectified_flow"  # flow matching on the linear interpolant
    return config
