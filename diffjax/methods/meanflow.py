"""MeanFlow: one-step generation by learning the average velocity (Geng et al. 2025).

Seed 004, "Mean Flow". The network u_theta(z, r, t) is the average velocity over [r, t], trained
on the jvp target of the MeanFlow identity (`losses.MeanFlowLoss`, which holds the derivation).
It is called on times [B, 2] = (t, t - r), t first, and a model embeds each column (the paper
conditions on (t, t - r); `network_times="r_t"` feeds (r, t) instead, for the ablation). As a
Denoiser (prediction `preconditioning.AverageVelocity`), a call with times [B] is the
instantaneous velocity u(z, t, t), so every ODE sampler and the likelihood work on it, and the
"meanflow" sampler takes 1 or a few steps
z_{t_{i+1}} = z_{t_i} - (t_i - t_{i+1}) u(z_{t_i}, t_{i+1}, t_i) from z_1 ~ N(0, I).
"""

from collections.abc import Mapping
from typing import Any

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.preconditioning import AverageVelocity
from diffjax.processes import Process

# The paper's (r, t) distribution: logit-normal with mean -0.4, std 1.0 for each draw.
PAPER_TIME_DISTRIBUTION = {"mean": -0.4, "std": 1.0}


def meanflow(
    process: Process,
    prediction: str = "velocity",
    time_distribution: str = "logit_normal",
    time_distribution_kwargs: Mapping[str, Any] | None = None,
    equal_fraction: float = 0.75,
    adaptive_power: float = 1.0,
    adaptive_eps: float = 1e-3,
    guidance_scale: float = 1.0,
    null_cond: int = -1,
    network_times: str = "t_gap",
    time_scale: float = 1.0,
) -> Recipe:
    """MeanFlow: the average-velocity network trained with the jvp target.

    Args:
      process: the path z_t = alpha x + sigma eps (the paper's is `rectified_flow`).
      prediction: must be "velocity" (the network's u(z, t, t) is the instantaneous velocity).
      time_distribution, time_distribution_kwargs: each of the two draws of (r, t); None
        kwargs give the paper's logit-normal (mean -0.4, std 1.0).
      equal_fraction: fraction of examples with r = t (paper: 0.75).
      adaptive_power: p of the adaptive weight (paper: 1).
      adaptive_eps: c of the adaptive weight.
      guidance_scale: omega of the CFG target (1 = no guidance); needs a class-conditional
        model (`model.num_classes`) trained with label dropout (`model.p_uncond` > 0).
      null_cond: the null label, i.e. `model.num_classes` (required when omega != 1).
      network_times: what the network sees: "t_gap" (t, t - r), the paper's, or "r_t" (r, t).
      time_scale: the network sees time_scale x those times (< 1: a smoother d/dt u).

    Raises:
      ValueError: for out-of-range options.
    """
    if prediction != "velocity":
        raise ValueError(f"meanflow trains a velocity field, got {prediction=}")
    if time_distribution_kwargs is None and time_distribution == "logit_normal":
        time_distribution_kwargs = PAPER_TIME_DISTRIBUTION
    objective = losses.MeanFlowLoss(
        process,
        time_distribution,
        time_distribution_kwargs,
        equal_fraction,
        adaptive_power,
        adaptive_eps,
        guidance_scale,
        null_cond,
        network_times,
        time_scale,
    )
    return Recipe(
        name="meanflow",
        process=process,
        prediction=AverageVelocity(network_times, time_scale),
        objective=objective,
        sampler="meanflow",
        num_times=2,
    )
