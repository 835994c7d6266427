"""Variational diffusion models (Kingma et al. 2021): learned schedule, continuous-time VLB.

Seed 001, "LEARNED NOISE SCHEDULE", "GENERAL FORMULATIONS", "CONTINUOUS-TIME", "EQUIVALENCE OF
DIFFUSION MODELS": sigma_t^2 = sigmoid(gamma_eta(t)) with gamma_eta a monotone network
(`diffjax.models.vdm_schedule`, gamma_0 < gamma_1 by construction), the loss the VLB in
bits/dim = prior + reconstruction + L_inf = 1/2 E_t gamma'(t) ||eps - eps_hat||^2, with
low-discrepancy t, and gamma_eta's shape trained to minimise the variance of the estimate. The
network is conditioned on the normalised gamma(t) = -log SNR(t), not on t
(`preconditioning.LogSNRConditioning`, Kingma et al. 2021, appendix B): the model is then a
function of the SNR, so the continuous VLB depends on gamma only through its ends (seed 001,
"EQUIVALENCE OF DIFFUSION MODELS"). The schedule's params are `params["schedule"]`
(`Recipe.init_aux`), bound into the process by `Recipe.bind_process`; weight decay stays off its
ends (`Recipe.weight_decay_mask`).
"""

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from diffjax import losses
from diffjax.losses import vdm as vdm_loss
from diffjax.methods.base import Recipe
from diffjax.preconditioning import LogSNRConditioning
from diffjax.processes import Process, VDMLearned

# VDM's CIFAR-10 schedule starts at gamma_min = -13.3 for 8-bit data (Kingma et al. 2021).
PAPER_GAMMA_MIN = -13.3
PAPER_NUM_BINS = 256


def gamma_min_for(num_bins: int) -> float:
    """VDM's initial gamma_min for data of `num_bins` levels in [-1, 1]: the paper's -13.3 for
    8-bit data, moved so that sigma_0 stays the same fraction of the spacing 2 / (num_bins - 1)
    between levels (sigma_0 = 0.0013 = 0.165 spacings at 256 bins).

    gamma = log(sigma^2 / alpha^2), so scaling sigma_0 by c adds 2 log c. Below a fraction of
    a spacing, the reconstruction term is already ~0 and every further unit of log-SNR only adds
    diffusion loss where the data is discrete and the network has to be exact: on 17-level
    digits -13.3 put 5.5 units of gamma there, and the VLB was 3.80 bits/dim instead of 1.88
    (`experiments/likelihood_benchmark.py`). The ends are learned from there.

    Raises:
      ValueError: for num_bins < 2.
    """
    if num_bins < 2:
        raise ValueError(f"gamma_min_for needs num_bins >= 2, got {num_bins=}")
    return PAPER_GAMMA_MIN + 2.0 * math.log((PAPER_NUM_BINS - 1) / (num_bins - 1))


def vdm(
    process: Process,
    num_bins: int = 256,
    time_distribution: str = "antithetic",
    variance_reduction: bool = True,
    sampler: str = "ddpm",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The VDM recipe.

    Args:
      process: `vdm_learned` (or any variance-preserving process with finite log-SNR at both ends,
        kept fixed).
      num_bins: data levels in [-1, 1] for the reconstruction term (256 for 8-bit images).
      time_distribution: a name in `losses.TIME_DISTRIBUTIONS`.
      variance_reduction: train gamma's shape on the variance of the VLB estimate.
      sampler: default sampler (ancestral sampling on a uniform grid, as VDM).
      sampler_options: its options.

    Raises:
      ValueError: for a discrete process or invalid options.
    """
    learned = isinstance(process, VDMLearned)
    # The network input is gamma normalised by the schedule's initial ends (VDM's gamma_min/max;
    # for a fixed schedule, its own ends).
    if learned:
        ends = (process.gamma_min, process.gamma_max)
    else:
        ends = tuple(float(-process.log_snr(jnp.float32(t))) for t in (0.0, 1.0))
    prediction = LogSNRConditioning(*ends)
    objective = losses.VDMLoss(process, prediction, num_bins, time_distribution, variance_reduction)
    return Recipe(
        name="vdm",
        process=process,
        prediction=prediction,
        objective=objective,
        sampler=sampler,
        sampler_options=dict(sampler_options or {}),
        init_aux=(lambda key: {"schedule": process.init(key)}) if learned else (lambda key: {}),
        bind_process=(lambda params: process.bind(params["schedule"])) if learned else None,
        vlb=_vlb,
        weight_decay_mask=vdm_loss.decayed_params_mask if learned else None,
    )


def _vlb(denoiser, x0, key, num_bins):
    """One-sample estimate of the VLB (diffusion + prior + reconstruction), nats per example."""
    t_key, key = jax.random.split(key)
    t = jax.random.uniform(t_key, x0.shape[:1])
    return sum(losses.vdm_terms(denoiser.eps, denoiser.process, x0, t, key, num_bins))
