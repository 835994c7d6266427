"""Score-based generative modelling through SDEs (Song et al. 2021): continuous-time DSM.

Seed 000, "SDE Models"; seed 004, "SDEs (VP/VE/sub-VP)" and denoising score matching:
  E_{t ~ U[t_min, 1]} lambda(t) E ||s_theta(x_t, t) - grad log p_t(x_t | x_0)||^2,
  grad log p_t(x_t | x_0) = -eps / sigma_t,
with lambda(t) = sigma_t^2 (eps-space uniform weighting) or the likelihood weighting
lambda = g^2(t) that makes the objective the ELBO. The process (`vp`, `subvp`, `ve`) is chosen
by the config; sampling by predictor-corrector or the probability-flow ODE.
"""

from collections.abc import Mapping
from typing import Any

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.processes import DiscreteProcess, Process


def score_sde(
    process: Process,
    prediction: str = "eps",
    likelihood_weighting: bool = False,
    t_min: float = 1e-5,
    time_distribution: str = "uniform",
    sampler: str = "predictor_corrector",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The score-SDE recipe.

    Args:
      process: a continuous process, `vp`, `subvp` or `ve`.
      prediction: the network's output; "eps" is Song et al.'s score model with its output
        divided by sigma_t (their `scale_by_sigma`), "score" a raw score network.
      likelihood_weighting: lambda = g^2 (ELBO) instead of sigma^2.
      t_min: the smallest training time (Song et al.: 1e-5).
      time_distribution: a name in `losses.TIME_DISTRIBUTIONS`.
      sampler: default sampler.
      sampler_options: its options.

    Raises:
      ValueError: for a discrete process or invalid options.
    """
    if isinstance(process, DiscreteProcess):
        raise ValueError(f"score_sde needs a continuous process (vp, subvp, ve), got {process}")
    objective = losses.DenoisingLoss(
        process,
        prediction,
        target="eps",
        weighting="likelihood" if likelihood_weighting else "uniform",
        time_distribution=time_distribution,
        t_min=t_min,
    )
    return Recipe(
        name="score_sde",
        process=process,
        prediction=prediction,
        objective=objective,
        sampler=sampler,
        sampler_options=dict(sampler_options or {}),
    )
