"""OT-CFM: flow matching with exact minibatch optimal-transport pairing of noise and data.

Straighter learned paths than independent pairing, so fewer ODE steps for the same quality:

  python -m diffjax.main --config=configs/ot_cfm_toy2d.py --workdir=/tmp/ot_cfm_toy2d
"""

import ml_collections

from configs import flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = flow_matching_toy2d.get_config()
    config.method = "ot_cfm"  # flow_matching with an OT coupling
    config.loss.coupling = "exact"  # optimal assignment per batch (host, O(B^3)); or sinkhorn
    return config
