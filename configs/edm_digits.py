"""EDM (preconditioned denoiser, log-normal sigma, Heun sampler) on scikit-learn's digits.

python -m diffjax.main --config=configs/edm_digits.py --workdir=/tmp/edm_digits
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "edm"  # diffjax.methods.edm.edm
    config.process.name = "edm"  # alpha = 1, sigma = sigma_min + t (sigma_max - sigma_min)
    config.process.kwargs = ml_collections.ConfigDict({"sigma_min": 0.002, "sigma_max": 80.0})
    config.loss = ml_collections.ConfigDict(
        {
            "sigma_data": 0.5,  # data standard deviation sigma_d
            "p_mean": -1.2,  # ln sigma ~ N(p_mean, p_std^2) during training
            "p_std": 1.2,
        }
    )
    config.sample.num_steps = 18  # Heun steps on the rho = 7 grid (35 NFE)
    return config
