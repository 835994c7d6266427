"""Score SDE (VP SDE, continuous-time denoising score matching) on scikit-learn's digits.

  python -m diffjax.main --config=configs/sde_digits.py --workdir=/tmp/sde_digits

Variants: `--config.process.name=subvp`, `--config.process.name=ve
--config.process.kwargs='{"sigma_min": 0.01, "sigma_max": 10.0}'` (drop beta_*),
`--config.loss.likelihood_weighting=True`, `--config.sample.sampler=euler_maruyama`.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "score_sde"  # diffjax.methods.score_sde.score_sde
    config.process.name = "vp"  # vp | subvp | ve
    config.process.kwargs = ml_collections.ConfigDict({"beta_min": 0.1, "beta_max": 20.0})
    config.loss = ml_collections.ConfigDict(
        {
            "prediction": "eps",  # the score model s = -eps / sigma (scale_by_sigma)
            "likelihood_weighting": False,  # lambda = g^2 (ELBO) instead of sigma^2
            "t_min": 1e-5,  # smallest training time
        }
    )
    config.sample.num_steps = 500  # predictor-corrector steps (2 NFE each)
    return config
