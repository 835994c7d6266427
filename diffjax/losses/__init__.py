"""Training objectives, one file per family, sharing one vocabulary.

- `vocabulary`: weightings (eps space), time distributions, rho-spacing, per-example reductions,
  bits/dim, Gaussian KL.
- `base`: the `Objective` interface (a validated frozen dataclass; called on the network it
  returns `loss(params, batch, key) -> (scalar, metrics)`).
- `denoising`: denoising regression in any prediction space (DDPM, NCSN, score SDE, EDM).
- `discrete_vlb`: the discrete VLB (DDPM) and iDDPM's hybrid objective.
- `vdm`: VDM's continuous-time VLB with the variance-minimising learned schedule.
- `flow`: conditional flow matching (couplings, reflow pairs) and MeanFlow.
- `consistency`: consistency distillation and training.
- `classification`: the noisy classifier of classifier guidance.
- `distillation`: progressive distillation.
"""

from diffjax.losses.base import ApplyFn, Batch, LossFn, Objective, Params
from diffjax.losses.classification import NoisyClassifierLoss
from diffjax.losses.consistency import ConsistencyLoss
from diffjax.losses.denoising import DenoisingLoss, regression_error, snap_time
from diffjax.losses.discrete_vlb import (
    IDDPMLoss,
    ddpm_vlb,
    discretized_gaussian_log_likelihood,
    prior_kl,
    vlb_term,
)
from diffjax.losses.distillation import ProgressiveDistillationLoss, distillation_target
from diffjax.losses.flow import FlowMatchingLoss, MeanFlowLoss, meanflow_target
from diffjax.losses.vdm import VDMLoss, vdm_reconstruction_nll, vdm_terms
from diffjax.losses.vocabulary import (
    TIME_DISTRIBUTIONS,
    WEIGHTINGS,
    bits_per_dim,
    gaussian_kl,
    time_distribution,
    weighting,
)

__all__ = [
    "TIME_DISTRIBUTIONS",
    "WEIGHTINGS",
    "ApplyFn",
    "Batch",
    "ConsistencyLoss",
    "DenoisingLoss",
    "FlowMatchingLoss",
    "IDDPMLoss",
    "LossFn",
    "MeanFlowLoss",
    "NoisyClassifierLoss",
    "Objective",
    "Params",
    "ProgressiveDistillationLoss",
    "VDMLoss",
    "bits_per_dim",
    "ddpm_vlb",
    "discretized_gaussian_log_likelihood",
    "distillation_target",
    "gaussian_kl",
    "meanflow_target",
    "prior_kl",
    "regression_error",
    "snap_time",
    "time_distribution",
    "vdm_reconstruction_nll",
    "vdm_terms",
    "vlb_term",
    "weighting",
]
