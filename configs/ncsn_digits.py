"""NCSN (10 geometric noise levels, annealed Langevin dynamics) on scikit-learn's digits.

  python -m diffjax.main --config=configs/ncsn_digits.py --workdir=/tmp/ncsn_digits

The network predicts eps = -sigma score (NCSNv2's output scaling); the objective is NCSN's
lambda(sigma) = sigma^2 score matching either way (`--config.loss.prediction=score`).
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "ncsn"  # diffjax.methods.ncsn.ncsn
    config.process.name = "ve"  # sigma(t) = sigma_min (sigma_max / sigma_min)^t, geometric
    config.process.kwargs = ml_collections.ConfigDict({"sigma_min": 0.01, "sigma_max": 5.0})
    config.loss = ml_collections.ConfigDict(
        {
            "num_levels": 10,  # L noise levels sigma_1 = sigma_max > ... > sigma_L = sigma_min
            "prediction": "eps",  # eps (scaled score) | score
        }
    )
    config.sample.num_steps = 9  # the L - 1 levels below sigma_1 (x_init ~ N(0, sigma_1^2))
    config.sample.options = ml_collections.ConfigDict(
        {"step_size": 2e-5, "steps_per_level": 100}  # epsilon at sigma_L, T per level
    )
    return config
