"""Variational diffusion models (Kingma et al. 2021): learned schedule, continuous-time VLB.

Seed 001, "LEARNED NOISE SCHEDULE", "GENERAL FORMULATIONS", "CONTINUOUS-TIME", "EQUIVALENCE OF
DIFFUSION MODELS": sigma_t^2 = sigmoid(gamma_eta(t)) with gamma_eta a monotone network
(`diffjax.models.vdm_schedule`), the loss the VLB in bits/dim = prior + reconstruction +
L_inf = 1/2 E_t gamma'(t) ||eps - eps_hat||^2, with low-discrepancy t, and gamma_eta's shape
trained to minimise the variance of the estimate (the VLB depends only on its ends). The
schedule's params are `params["schedule"]` (`Recipe.init_aux`), bound into the process by
`Recipe.bind_process`.
"""

from collections.abc import Mapping
from typing import Any

import jax

from diffjax import losses
from diffjax.methods.base import ApplyFn, Recipe
from diffjax.processes import DiscreteProcess, Process, VDMLearned


def vdm(
    process: Process,
    num_bins: int = 256,
    time_sampling: str = "antithetic",
    variance_reduction: bool = True,
    sampler: str = "ddpm",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The VDM recipe.

    Args:
      process: `vdm_learned` (or any variance-preserving process with finite log-SNR at both ends,
        kept fixed).
      num_bins: data levels in [-1, 1] for the reconstruction term (256 for 8-bit images).
      time_sampling: a name in `losses.TIME_SAMPLERS`.
      variance_reduction: train gamma's shape on the variance of the VLB estimate.
      sampler: default sampler (ancestral sampling on a uniform grid, as VDM).
      sampler_options: its options.

    Raises:
      ValueError: for a discrete process or invalid options.
    """
    if isinstance(process, DiscreteProcess):
        raise ValueError(f"vdm is continuous-time; got the discrete process {process}")

    def make_loss(apply_fn: ApplyFn) -> losses.LossFn:
        return losses.vdm_loss(
            apply_fn,
            process,
            num_bins=num_bins,
            time_sampling=time_sampling,
            variance_reduction=variance_reduction,
        )

    make_loss(None)  # validates the options now, not at the first step
    learned = isinstance(process, VDMLearned)
    return Recipe(
        name="vdm",
        process=process,
        prediction="eps",
        make_loss=make_loss,
        sampler=sampler,
        sampler_options=dict(sampler_options or {}),
        init_aux=(lambda key: {"schedule": process.init(key)}) if learned else (lambda key: {}),
        bind_process=(lambda params: process.bind(params["schedule"])) if learned else None,
        vlb=_vlb,
    )


def _vlb(denoiser, x0, key, num_bins):
    """One-sample estimate of the VLB (diffusion + prior + reconstruction), nats per example."""
    t_key, key = jax.random.split(key)
    t = jax.random.uniform(t_key, x0.shape[:1])
    return sum(losses.vdm_terms(denoiser.eps, denoiser.process, x0, t, key, num_bins))
