"""DDPM (linear betas, T = 1000, eps prediction, L_simple) on scikit-learn's digits.

  python -m diffjax.main --config=configs/ddpm_digits.py --workdir=/tmp/ddpm_digits

The offline quickstart (configs/default.py) is exactly this run; variants:
`--config.loss.prediction=v --config.loss.target=v`, `--config.loss.weighting=min_snr`,
`--config.process.name=ddpm_cosine`, `--config.sample.sampler=ddim --config.sample.num_steps=50`.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "ddpm"  # diffjax.methods.ddpm.ddpm
    config.process.name = "ddpm_linear"  # beta_1 = 1e-4 .. beta_T = 0.02
    config.process.kwargs = ml_collections.ConfigDict({"num_steps": 1000})  # T
    config.loss = ml_collections.ConfigDict(
        {
            "prediction": "eps",  # eps | x0 | v | score | velocity
            "target": "eps",  # space of the regression (same objective, other arithmetic)
            "weighting": "uniform",  # uniform (L_simple) | snr | min_snr | truncated_snr | ...
            "time_distribution": "uniform",  # t = i / T, i ~ U{1..T}
        }
    )
    return config
