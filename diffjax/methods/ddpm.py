"""DDPM (Ho et al. 2020): a discrete VP table, an eps-predicting network, L_simple.

Seed 000, "DDPM": q(x_t | x_0) = N(sqrt(bar alpha_t) x_0, (1 - bar alpha_t) I), the network
predicts the noise and is trained with E_{t ~ U{1..T}, eps} ||eps - eps_theta(x_t, t)||^2;
ancestral sampling with p(x_{t-1} | x_t) = N(mu_theta, beta~_t I) or beta_t I. Every option of
`diffjax.losses.DenoisingLoss` (x0 / v prediction and target, weighting, time distribution)
is a keyword here.
"""

from collections.abc import Mapping
from typing import Any

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.processes import DiscreteProcess, Process


def ddpm(
    process: Process,
    prediction: str = "eps",
    target: str = "eps",
    weighting: str = "uniform",
    weighting_kwargs: Mapping[str, Any] | None = None,
    time_distribution: str = "uniform",
    time_distribution_kwargs: Mapping[str, Any] | None = None,
    sampler: str = "ddpm",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The DDPM recipe.

    Args:
      process: the forward process (DDPM: `ddpm_linear`, T = 1000).
      prediction: what the network outputs ("eps" in DDPM; "x0", "v", ...).
      target: the space the regression is computed in.
      weighting, weighting_kwargs: a name in `losses.WEIGHTINGS` ("uniform" is L_simple).
      time_distribution, time_distribution_kwargs: a name in `losses.TIME_DISTRIBUTIONS`.
      sampler: the default sampler ("ddpm" ancestral; "ddim" for fewer steps).
      sampler_options: its options (e.g. {"variance": "beta"}).

    Raises:
      ValueError: for unknown names or invalid options (checked here, not at the first step).
    """
    objective = losses.DenoisingLoss(
        process,
        prediction,
        target,
        weighting,
        weighting_kwargs,
        time_distribution,
        time_distribution_kwargs,
    )
    return Recipe(
        name="ddpm",
        process=process,
        prediction=prediction,
        objective=objective,
        sampler=sampler,
        sampler_options=dict(sampler_options or {}),
        vlb=_vlb if isinstance(process, DiscreteProcess) else None,
    )


def _vlb(denoiser, x0, key, num_bins):
    """The full discrete VLB (L_T + sum L_{t-1} + L_0), nats per example."""
    return losses.ddpm_vlb(denoiser, x0, key, num_bins=num_bins)
