"""Class-conditional flow matching on eight_gaussians (label k = the mode at angle 2 pi k / 8):
the MLP reads the label, trained with label dropout (p_uncond = 0.1) so the one network is also
the unconditional model.

  python -m diffjax.main --config=configs/flow_matching_toy2d_cond.py --workdir=/tmp/fm_cond

Samples cycle through the 8 classes (sample i is drawn for class i mod 8).
"""

import ml_collections

from configs import flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = flow_matching_toy2d.get_config()
    config.data.kwargs = ml_collections.ConfigDict({"distribution": "eight_gaussians"})  # 8 modes
    config.model.num_classes = 8  # one class per mode (row 8 of the label table: null)
    config.model.p_uncond = 0.1  # label dropout: also learn the unconditional model (CFG)
    return config
