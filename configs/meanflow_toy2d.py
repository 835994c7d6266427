"""MeanFlow on two moons: the average velocity u(z, r, t), sampled in 1 step (or more with
`sample.num_steps`). The paper's ImageNet settings except the network's time input, scaled by
0.001 (experiments/meanflow_ablation.py measured every choice; README, "MeanFlow at one step"):

  python -m diffjax.main --config=configs/meanflow_toy2d.py --workdir=/tmp/meanflow_toy2d
"""

import ml_collections

from configs import flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = flow_matching_toy2d.get_config()
    config.method = "meanflow"  # diffjax.methods.meanflow.meanflow
    config.loss = ml_collections.ConfigDict(
        {
            "prediction": "velocity",  # u(z, t, t) is the instantaneous velocity
            "time_distribution": "logit_normal",  # each of the two draws of (r, t)
            "time_distribution_kwargs": {"mean": -0.4, "std": 1.0},  # the paper's logit-normal
            "equal_fraction": 0.75,  # fraction of r = t (plain flow matching)
            "adaptive_power": 1.0,  # adaptive loss weight 1 / (||D||^2 + c)^p
            "adaptive_eps": 1e-3,  # c
            # CFG target omega (1: none); > 1 needs model.num_classes, model.p_uncond > 0 and
            # null_cond = model.num_classes (the null class).
            "guidance_scale": 1.0,
            "null_cond": -1,  # the null label (-1: none, an unconditional model)
            "network_times": "t_gap",  # the network sees (t, t - r) (the paper's) | r_t: (r, t)
            # ... times time_scale: the jvp target differentiates the MLP's sinusoidal embedding
            # of 1000 t; 0.001 takes 1-NFE sliced W1 from 0.256 to 0.048 (seed 0;
            # experiments/meanflow_ablation.py), the best of 1, 0.01, 0.001 and 0.0001.
            "time_scale": 0.001,
        }
    )
    config.sample.sampler = ""  # the method's "meanflow" sampler
    config.sample.num_steps = 1  # one-step generation
    return config
