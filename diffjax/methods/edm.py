"""EDM (Karras et al. 2022, "Elucidating the design space"): the modern baseline.

Preconditioned denoiser D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) (`preconditioning.
EDMPreconditioning`), trained with E_{ln sigma ~ N(P_mean, P_std^2)} lambda(sigma)
||D(x + sigma n; sigma) - x||^2, lambda = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2, which gives
F an effective unit weight; sampled with Heun's 2nd-order method on the rho = 7 sigma grid.
The process is `edm` (alpha = 1, sigma = t rescaled to [sigma_min, sigma_max]).
"""

from collections.abc import Mapping
from typing import Any

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.preconditioning import EDMPreconditioning
from diffjax.processes import Process


def edm(
    process: Process,
    sigma_data: float = 0.5,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sampler: str = "edm_heun",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The EDM recipe.

    Args:
      process: the `edm` process (any process works: sigma is sigma_t / alpha_t).
      sigma_data: the data standard deviation sigma_d (0.5 for images in [-1, 1]).
      p_mean, p_std: the log-normal training distribution of sigma.
      sampler: default sampler.
      sampler_options: its options (default t_min = 1e-6: the grid ends at sigma(t) ~ sigma_min).

    Raises:
      ValueError: for invalid options.
    """
    precond = EDMPreconditioning(sigma_data=sigma_data)
    objective = losses.DenoisingLoss(
        process,
        precond,
        target="x0",
        weighting="edm",
        weighting_kwargs={"sigma_data": sigma_data},
        time_distribution="lognormal",
        time_distribution_kwargs={"mean": p_mean, "std": p_std},
        t_min=0.0,
    )
    return Recipe(
        name="edm",
        process=process,
        prediction=precond,
        objective=objective,
        sampler=sampler,
        sampler_options=dict(sampler_options or {"t_min": 1e-6}),
    )
