"""DDPM (eps prediction, linear betas, T = 1000) with a small DiT on scikit-learn's digits.

  python -m diffjax.main --config=configs/dit_digits.py --workdir=/tmp/dit_digits

The network is `dit_digits` (diffjax/models/dit.py): 2x2 patches of the 8x8x1 images (16
tokens), width 64, 6 adaLN-Zero blocks, 4 heads. Everything else is configs/default.py; e.g.
`--config.model.kwargs.remat=True`, or another DiT with `--config.model.name=DiT-S/2`.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.name = "dit_digits"  # diffjax.models.dit.PRESETS["dit_digits"]
    config.model.kwargs = ml_collections.ConfigDict()  # e.g. {"remat": True, "depth": 8}
    config.optim.learning_rate = 1e-3  # transformers want a lower peak rate than the UNet
    return config
