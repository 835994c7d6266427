"""Consistency training (improved CT: pseudo-Huber, log-normal noise, doubling curriculum) on two
moons with the linear interpolant, sampled in 1 step (or more with `sample.num_steps`):

  python -m diffjax.main --config=configs/consistency_toy2d.py --workdir=/tmp/ct_toy2d

Consistency distillation from a trained flow: configs/consistency_distillation_toy2d.py.
"""

import ml_collections

from configs import flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = flow_matching_toy2d.get_config()
    config.method = "consistency"  # diffjax.methods.consistency.consistency

    config.loss = ml_collections.ConfigDict(
        {
            "prediction": "x0",  # f(x, t): the trajectory's point at t_min
            "mode": "ct",  # consistency training, no teacher
            "sigma_min": 0.002,  # boundary noise level sigma / alpha, f(x, sigma_min) = x
            "sigma_max": 49.0,  # largest level (t = 0.98: the linear interpolant's is t / (1 - t))
            "sigma_data": 0.5,  # data scale in c_skip / c_out
            "metric": "pseudo_huber",  # iCT
            "weighting": "inverse_gap",  # lambda = 1 / (s_{n+1} - s_n) (iCT)
            "time_distribution": "lognormal",  # log-normal mass of each pair (iCT)
            "schedule": "ict",  # N(k) doubling from s0 to s1
            "s0": 10,  # initial discretisation
            "s1": 320,  # final discretisation
            "mu0": 0.0,  # no EMA target (iCT)
        }
    )
    # K of the curriculum: a reference to training.num_steps, so overriding one moves both.
    config.loss.total_steps = config.training.get_ref("num_steps")
    config.sample.sampler = ""  # the method's "consistency" sampler
    config.sample.num_steps = 1  # one-step generation
    return config
