"""Consistency models: distillation (CD) and training (CT), with the improved-CT options.

Seed 000, "Consistency Models"; seed 001 and seed 002, "Consistency Models" (Algorithm 1
multistep sampling, Algorithm 2 CD, Algorithm 3 CT); Song et al. 2023 (arXiv 2303.01469),
Song & Dhariwal 2023 (iCT). The objective, its grid and schedules are
`losses.consistency`; the consistency function f(x, t) = c_skip x~ + c_out F(c_in x~, c_noise)
with the boundary f(x, sigma_min) = x is `preconditioning.ConsistencyPreconditioning`.

Every option that places the model in noise is a noise level s = sigma / alpha, as in the papers
(for the VE / EDM process s = sigma; for others the VE-equivalent level of x_t / alpha):
sigma_min = 0.002 and sigma_max = 80 are Song et al.'s and iCT's. The times they fall at,
t_min = t(sigma_min) and t_max = t(sigma_max), follow from the process, so the boundary is at
the paper's sigma_min for every process (for `edm`, sigma(t) = 0.002 + 79.998 t, t_min = 0).
"""

from diffjax import losses
from diffjax.losses import consistency as objective_lib
from diffjax.methods.base import Params, Recipe
from diffjax.preconditioning import ConsistencyPreconditioning
from diffjax.processes import Process


def consistency(
    process: Process,
    prediction: str = "x0",
    mode: str = "ct",
    teacher_prediction: str = "eps",
    teacher_solver: str = "heun",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    sigma_data: float = 0.5,
    metric: str = "pseudo_huber",
    weighting: str = "inverse_gap",
    time_distribution: str = "lognormal",
    p_mean: float = -1.1,
    p_std: float = 2.0,
    schedule: str = "ict",
    total_steps: int = 10000,
    s0: int = 10,
    s1: int = 1280,
    mu0: float = 0.0,
    rho_sample: float = 7.0,
) -> Recipe:
    """Consistency distillation ("cd") or training ("ct").

    Defaults are the improved-CT recipe (pseudo-Huber, lambda = 1 / (s_{n+1} - s_n), log-normal
    noise sampling, exponential curriculum s0 = 10 -> s1 = 1280, mu = 0). The original CT of Song
    et al. 2023: metric="l2" (they use LPIPS), weighting="uniform", time_distribution="uniform",
    schedule="ct", s0=2, s1=150, mu0=0.9. CD: mode="cd", schedule="constant", s1=18.

    With mu0 > 0 the recipe keeps the frozen EMA target: it starts at the model and after every
    step becomes `ema_update(target, model, mu(k))` with mu(k) = `target_decay(N(k), s0, mu0)`.

    Args:
      process: the forward process of the model (EDM/VE, VP, the linear interpolant, ...).
      prediction: must be "x0": f(x, t) estimates the trajectory's origin.
      mode: "cd" or "ct".
      teacher_prediction: the kind the CD teacher network outputs.
      teacher_solver: "euler" or "heun" for the teacher's ODE step.
      sigma_min: the boundary noise level, where f(x, sigma_min) = x (paper: 0.002).
      sigma_max: the largest noise level (paper: 80).
      rho: exponent of the training grid, rho-spaced in the noise level.
      sigma_data: data standard deviation in c_skip / c_out / c_in.
      metric: "l2", "l1" or "pseudo_huber".
      weighting: lambda(s_n): "uniform" or "inverse_gap" 1 / (s_{n+1} - s_n).
      time_distribution: "uniform" over the grid's pairs or "lognormal" in s (iCT).
      p_mean: log-normal mean of log s.
      p_std: log-normal std of log s.
      schedule: N(k): "constant", "ct" or "ict".
      total_steps: K of the schedule.
      s0: initial N (CT, iCT).
      s1: final (or constant) N.
      mu0: EMA decay at k = 0 (0 for no EMA target).
      rho_sample: exponent of the multistep sampling grid (sampler "consistency").

    Raises:
      ValueError: for unknown or inconsistent options, or noise levels the process does not
        reach on [0, 1].
    """
    if prediction != "x0":
        raise ValueError(f"a consistency model predicts x0, got {prediction=}")
    if not 0.0 <= mu0 < 1.0:
        raise ValueError(f"need 0 <= {mu0=} < 1")
    t_min, t_max = objective_lib.boundary(process, sigma_min, sigma_max)
    precond = ConsistencyPreconditioning(sigma_min, t_min, sigma_data)
    objective = losses.ConsistencyLoss(
        process,
        precond,
        mode,
        teacher_prediction,
        teacher_solver,
        sigma_max,
        rho,
        metric,
        weighting,
        time_distribution,
        p_mean,
        p_std,
        schedule,
        total_steps,
        s0,
        s1,
    )

    def init_target(params: Params) -> dict:
        return {"target": params["model"]} if mu0 > 0.0 else {}

    def update_target(frozen: Params, params: Params, step) -> Params:
        mu = objective_lib.target_decay(objective.num_scales(step), s0, mu0)
        return {**frozen, "target": objective_lib.ema_update(frozen["target"], params["model"], mu)}

    return Recipe(
        name="consistency",
        process=process,
        prediction=precond,
        objective=objective,
        sampler="consistency",
        sampler_options={"t_min": t_min, "t_max": t_max, "rho": rho_sample},
        teacher_prediction=teacher_prediction if mode == "cd" else None,
        init_frozen=init_target,
        update_frozen=update_target if mu0 > 0.0 else None,
    )
