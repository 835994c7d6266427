"""Conditional flow matching (CFM) with OT and diffusion paths, and minibatch-OT coupling.

Seed 004, "Conditional Flow Matching": the marginal field is learned by regressing on the
conditional one (`losses.FlowMatchingLoss`). Seed 004, "Experiments": the OT path (mu_t = t x_1,
sigma_t = 1 - (1 - sigma_min) t) and the diffusion path (VP). Seed 004, "Coupling": pairing noise
and data by minibatch optimal transport (Tong et al. 2023, "OT-CFM"). Seed 004, "Logit-Normal
Sampling" (SD3). Seed 000, "Flow Matching": the interpolant view.

A path is a `Process` (x_t = alpha x_0 + sigma x_1, diffjax time from data at 0 to noise at 1):
the OT path with sigma_min is the process `ot_path`, the diffusion path `vp`, and sigma_min = 0
the linear interpolant of rectified flow. The network predicts the velocity, so the PF-ODE
samplers integrate dx/dt = v(x, t) from t = 1 to t = 0.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.processes import Process


def flow_matching(
    process: Process,
    prediction: str = "velocity",
    time_distribution: str = "uniform",
    time_distribution_kwargs: Mapping[str, Any] | None = None,
    t_min: float = 0.0,
    coupling: str = "independent",
    sinkhorn_epsilon: float = 0.05,
) -> Recipe:
    """Conditional flow matching on the path `process`; reflow rounds feed batches with "noise".

    Args:
      process: the probability path (OTPath, VP, RectifiedFlow, ...).
      prediction: must be "velocity": the network predicts the PF-ODE drift.
      time_distribution, time_distribution_kwargs: a name in `losses.TIME_DISTRIBUTIONS`
        ("uniform"; "logit_normal" with {"mean", "std"} as SD3), mapped onto [t_min, 1].
      t_min: smallest training time.
      coupling: "independent", "exact" (optimal assignment, O(B^3) on the host) or "sinkhorn".
      sinkhorn_epsilon: entropic regularisation, relative to the mean cost of the batch.

    Raises:
      ValueError: for an unsupported prediction, coupling or time distribution.
    """
    if prediction != "velocity":
        raise ValueError(f"flow matching trains a velocity field, got {prediction=}")
    objective = losses.FlowMatchingLoss(
        process, time_distribution, time_distribution_kwargs, t_min, coupling, sinkhorn_epsilon
    )
    return Recipe(
        name="flow_matching",
        process=process,
        prediction="velocity",
        objective=objective,
        sampler="euler",
        chain_modes=frozenset({"reflow"}),
    )


def ot_cfm(process: Process, coupling: str = "exact", **kwargs) -> Recipe:
    """Flow matching with minibatch optimal-transport coupling (OT-CFM); see `flow_matching`."""
    if coupling == "independent":
        raise ValueError("ot_cfm needs an OT coupling: 'exact' or 'sinkhorn'")
    return dataclasses.replace(flow_matching(process, coupling=coupling, **kwargs), name="ot_cfm")
