"""NCSN (Song & Ermon 2019): a noise-conditional score network at geometric noise levels.

Seed 000, "NCSN": sigma_1 > ... > sigma_L geometric, the objective
  1/L sum_i lambda(sigma_i) E ||s_theta(x + sigma_i z, sigma_i) + z / sigma_i||^2,
  lambda(sigma) = sigma^2, i.e. 1/L sum_i E ||sigma_i s_theta + z||^2 (eps-space, uniform),
sampled by annealed Langevin dynamics. The levels are those of the `ve` process at t = k / (L - 1)
(sigma(t) = sigma_min (sigma_max / sigma_min)^t is geometric in t), so sigma_1 = sigma_max at
t = 1 and sigma_L = sigma_min at t = 0; the annealed Langevin sampler's default grid with
num_steps = L - 1 visits the levels below sigma_1 (its start, drawn from N(0, sigma_1^2 I)).
"""

from collections.abc import Mapping
from typing import Any

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.processes import VE, Process


def ncsn(
    process: Process,
    num_levels: int = 10,
    prediction: str = "score",
    sampler: str = "annealed_langevin",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The NCSN recipe.

    Args:
      process: a `ve` process (NCSN: sigma_min = 0.01, sigma_max = 1, L = 10).
      num_levels: L, the number of noise levels trained on.
      prediction: what the network outputs ("score" as in NCSN; "eps" = -sigma score is the
        same objective with a better-scaled output).
      sampler: default sampler.
      sampler_options: its options (default: the grid reaches sigma_min, t_min = 1e-6).

    Raises:
      ValueError: for a non-VE process or invalid options.
    """
    if not isinstance(process, VE):
        raise ValueError(f"ncsn perturbs x + sigma z: it needs a `ve` process, got {process}")
    objective = losses.DenoisingLoss(process, prediction, target="eps", num_levels=num_levels)
    return Recipe(
        name="ncsn",
        process=process,
        prediction=prediction,
        objective=objective,
        sampler=sampler,
        sampler_options=dict(sampler_options or {"t_min": 1e-6}),
    )
