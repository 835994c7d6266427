"""Improved DDPM (Nichol & Dhariwal 2021): learned variance, hybrid loss, cosine schedule.

Seed 000, "iDDPM": Sigma_theta(x_t, t) = exp(v log beta_t + (1 - v) log beta~_t) with the
network's extra output channels giving v, trained by L_simple + lambda L_vlb (lambda = 1e-3,
stop-gradient on the mean in L_vlb) on the cosine schedule bar alpha_t = f(t) / f(0).
The network outputs 2C channels ([eps, v]); `preconditioning.LearnedVariance` hands samplers
the eps half.
"""

from collections.abc import Mapping
from typing import Any

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.preconditioning import LearnedVariance
from diffjax.processes import Process


def iddpm(
    process: Process,
    vlb_weight: float = 1e-3,
    num_bins: int = 256,
    sampler: str = "ddpm",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The iDDPM recipe.

    Args:
      process: a discrete process (iDDPM: `ddpm_cosine`, T = 4000).
      vlb_weight: lambda of the hybrid loss.
      num_bins: data levels for the discretised decoder in L_vlb (256 for 8-bit images).
      sampler: default sampler ("ddpm", with the learned variance unless `sampler_options`
        say otherwise).
      sampler_options: its options (default for "ddpm": {"variance": "learned"}).

    Raises:
      ValueError: for a continuous process or invalid options.
    """

    objective = losses.IDDPMLoss(process, vlb_weight=vlb_weight, num_bins=num_bins)
    return Recipe(
        name="iddpm",
        process=process,
        prediction=LearnedVariance("eps"),
        objective=objective,
        sampler=sampler,
        sampler_options=dict(
            sampler_options or ({"variance": "learned"} if sampler == "ddpm" else {})
        ),
        out_channels_factor=2,
        vlb=_vlb,
    )


def _vlb(denoiser, x0, key, num_bins):
    """The full discrete VLB with the learned variance, nats per example."""
    return losses.ddpm_vlb(denoiser, x0, key, num_bins=num_bins, variance="learned")
