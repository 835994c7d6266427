"""iDDPM (cosine schedule, learned variance, hybrid loss) on scikit-learn's digits.

  python -m diffjax.main --config=configs/iddpm_digits.py --workdir=/tmp/iddpm_digits

The network outputs 2 channels per data channel (eps and the variance interpolation v).
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "iddpm"  # diffjax.methods.iddpm.iddpm
    config.process.name = "ddpm_cosine"  # bar alpha_t = f(t) / f(0), offset s, beta <= 0.999
    config.process.kwargs = ml_collections.ConfigDict({"num_steps": 1000, "s": 0.008})
    config.loss = ml_collections.ConfigDict(
        {
            "vlb_weight": 1e-3,  # lambda in L_simple + lambda L_vlb
            "num_bins": 17,  # digits have 17 gray levels (the decoder's bins)
        }
    )
    return config
