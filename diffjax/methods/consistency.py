"""Consistency models: distillation (CD) and training (CT), with the improved-CT options.

Seed 000, "Consistency Models"; seed 001 and seed 002, "Consistency Models" (Algorithm 1
multistep sampling, Algorithm 2 CD, Algorithm 3 CT); Song et al. 2023 (arXiv 2303.01469) for
the parameterisation and schedules, Song & Dhariwal 2023 ("Improved techniques for training
consistency models", seed 000's TODO reference) for pseudo-Huber, log-normal noise sampling,
the exponential curriculum and mu = 0.

The consistency function f(x_t, t) maps every point of a PF-ODE trajectory to its origin at
t_min. In diffjax time (t_min -> data, t_max -> noise) and for any process, with the noise level
s(t) = sigma(t) / alpha(t) (the VE-equivalent sigma; s = t for EDM / VE):

  f(x, t) = c_skip(t) x + c_out(t) F_theta(x, t),
  c_skip = s_d^2 / ((s - s_min)^2 + s_d^2),  c_out = s_d (s - s_min) / sqrt(s_d^2 + s^2),

so c_skip(t_min) = 1, c_out(t_min) = 0 and f(x, t_min) = x exactly (the boundary condition).

Discretisation: t_min = t_1 < ... < t_N = t_max, t_i = (t_min^(1/rho) + (i-1)/(N-1)
(t_max^(1/rho) - t_min^(1/rho)))^rho. With n uniform on {1..N-1} (or log-normal in s, iCT),
  CD: x_{n+1} = alpha x + sigma z; x_hat_n = one Euler/Heun step of the teacher's PF-ODE from
      t_{n+1} to t_n; loss lambda(t_n) d(f_theta(x_{n+1}, t_{n+1}), f_target(x_hat_n, t_n)).
  CT: the same with x_hat_n = alpha_n x + sigma_n z (same z): no teacher.
The target network theta^- is `params["target"]` (an EMA with decay mu(k), kept by the trainer
with `ema_update`) or, absent, stop_gradient(theta) (iCT's mu = 0). The teacher of CD is
`params["teacher"]`, called with the same apply_fn and predicting `teacher_prediction`.
Schedules (k the training step, K the total): N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2)
- 1) + 1 and mu(k) = exp(s0 log mu0 / N(k)) (CT); N(k) = min(s0 2^floor(k/K'), s1) + 1 with
K' = floor(K / (log2 floor(s1/s0) + 1)) (iCT).
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.methods.base import ApplyFn, Batch, LossFn, Params, Recipe
from diffjax.predictions import Denoiser, ModelFn, Preconditioning, consistency_coefficients
from diffjax.processes import Process, expand

METRICS = ("l2", "l1", "pseudo_huber")
WEIGHTINGS = ("uniform", "inverse_gap")
NOISE_SAMPLINGS = ("uniform", "lognormal")
SCHEDULES = ("constant", "ct", "ict")
TEACHER_SOLVERS = ("euler", "heun")

ConsistencyFn = Callable[[Array, Array], Array]


def noise_level(process: Process, t: Array) -> Array:
    """s(t) = sigma(t) / alpha(t), the VE-equivalent noise level."""
    return process.sigma(t) / process.alpha(t)


def boundary_coefs(process: Process, t: Array, t_min: float, sigma_data: float):
    """(c_skip(t), c_out(t)) with c_skip(t_min) = 1, c_out(t_min) = 0; t: [B] -> [B] each.

    `predictions.consistency_coefficients` of the noise level s(t), with s pinned to s_min at
    t <= t_min so the gap is exactly 0 there (separately rounded s(t_min) and s_min may differ
    by an ulp).
    """
    s_min = noise_level(process, jnp.float32(t_min))
    s = jnp.where(t <= t_min, s_min, noise_level(process, t))
    return consistency_coefficients(s, sigma_data, s_min)


@dataclasses.dataclass(frozen=True)
class ConsistencyBoundary(Preconditioning):
    """f(x, t) = c_skip(t) x + c_out(t) F(x, t): the network as a consistency function, read as
    the x0 prediction (its value is the trajectory's point at t_min)."""

    t_min: float = 0.002
    sigma_data: float = 0.5
    kind: str = dataclasses.field(default="x0", init=False)

    def wrap(self, net: ModelFn, process: Process) -> ModelFn:
        def f(x: Array, t: Array) -> Array:
            c_skip, c_out = boundary_coefs(process, t, self.t_min, self.sigma_data)
            return expand(c_skip, x) * x + expand(c_out, x) * net(x, t)

        return f


def consistency_fn(
    apply_fn: ApplyFn,
    model_params: Params,
    process: Process,
    t_min: float,
    sigma_data: float,
    cond: Array | None = None,
    key: Array | None = None,
) -> ConsistencyFn:
    """f(x [B, ...], t [B]) = c_skip(t) x + c_out(t) F_theta(x, t)."""
    net = lambda x, t: apply_fn(model_params, x, t, cond, key)  # noqa: E731
    return ConsistencyBoundary(t_min, sigma_data).wrap(net, process)


def time_grid(num_scales: Array, t_min: float, t_max: float, rho: float, i: Array) -> Array:
    """t_i (0-based i in [0, N-1]) of the rho-spaced N-point grid on [t_min, t_max]; N traced."""
    a, b = t_min ** (1.0 / rho), t_max ** (1.0 / rho)
    return jnp.power(a + i / (num_scales - 1.0) * (b - a), rho)


def num_scales_schedule(kind: str, total_steps: int, s0: int, s1: int) -> Callable[[Array], Array]:
    """N(k) as a jittable function of the step k (float32 result).

    Args:
      kind: "constant" (N = s1), "ct" (Song et al. 2023) or "ict" (Song & Dhariwal 2023); see
        the module docstring.
      total_steps: K, the length of training.
      s0: initial discretisation (CT: 2, iCT: 10).
      s1: final discretisation (CT: 150, iCT: 1280); "constant" uses N = s1.

    Raises:
      ValueError: for an unknown kind or inconsistent sizes.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown N(k) schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
    if not 2 <= s0 <= s1 or total_steps < 1:
        raise ValueError(f"need 2 <= {s0=} <= {s1=} and {total_steps=} >= 1")
    if kind == "constant":
        return lambda k: jnp.float32(s1)
    if kind == "ct":

        def n_ct(k):
            frac = jnp.asarray(k, jnp.float32) / total_steps
            return jnp.ceil(jnp.sqrt(frac * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1.0) + 1.0

        return n_ct
    k_prime = math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1))

    def n_ict(k):
        doublings = jnp.floor(jnp.asarray(k, jnp.float32) / max(k_prime, 1))
        return jnp.minimum(s0 * jnp.power(2.0, doublings), s1) + 1.0

    return n_ict


def target_decay(num_scales: Array, s0: int, mu0: float) -> Array:
    """mu(k) = exp(s0 log mu0 / N(k)) (Song et al. 2023, CT); mu0 = 0 gives 0 (iCT)."""
    if mu0 == 0.0:
        return jnp.float32(0.0)
    return jnp.exp(s0 * math.log(mu0) / num_scales)


def ema_update(target: Params, model: Params, mu: Array) -> Params:
    """theta^- <- stop_gradient(mu theta^- + (1 - mu) theta), leafwise."""
    return jax.tree.map(lambda a, b: jax.lax.stop_gradient(mu * a + (1.0 - mu) * b), target, model)


def distance(metric: str, a: Array, b: Array) -> Array:
    """d(a, b) per example [B]: "l2" mean square, "l1" mean abs, "pseudo_huber"
    sqrt(||a - b||^2 + c^2) - c with c = 0.00054 sqrt(dim) (iCT)."""
    diff = (a - b).reshape(a.shape[0], -1)
    if metric == "l2":
        return jnp.mean(jnp.square(diff), axis=-1)
    if metric == "l1":
        return jnp.mean(jnp.abs(diff), axis=-1)
    c = 0.00054 * math.sqrt(diff.shape[-1])
    return jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1) + c**2) - c


def teacher_step(solver: str, teacher: Denoiser, x: Array, t: Array, t_next: Array) -> Array:
    """One PF-ODE step x(t) -> x(t_next) with the teacher's velocity (Euler, or Heun's
    trapezoid which falls back to Euler when t_next hits t = 0); t, t_next: [B]."""
    h = expand(t_next - t, x)
    v = teacher.velocity(x, t)
    x_euler = x + h * v
    if solver == "euler":
        return x_euler
    return x + 0.5 * h * (v + teacher.velocity(x_euler, t_next))


def sample_indices(
    key: Array,
    n: int,
    num_scales: Array,
    grid: Callable[[Array], Array],
    process: Process,
    noise_sampling: str,
    p_mean: float,
    p_std: float,
    max_scales: int,
) -> Array:
    """n indices in {0..N-2} (pairs t_i < t_{i+1}): uniform, or log-normal in s (iCT):
    p(i) ∝ erf((log s_{i+1} - P_mean) / (sqrt2 P_std)) - erf((log s_i - P_mean) / (sqrt2 P_std)).

    `max_scales` is a static bound on N so the categorical has a fixed size.
    """
    idx = jnp.arange(max_scales - 1, dtype=jnp.float32)
    valid = idx < num_scales - 1.0
    if noise_sampling == "uniform":
        logits = jnp.where(valid, 0.0, -jnp.inf)
    else:
        log_s = jnp.log(noise_level(process, grid(jnp.arange(max_scales, dtype=jnp.float32))))
        cdf = jax.scipy.special.erf((log_s - p_mean) / (math.sqrt(2.0) * p_std))
        logits = jnp.where(valid, jnp.log(jnp.maximum(cdf[1:] - cdf[:-1], 1e-30)), -jnp.inf)
    return jax.random.categorical(key, logits, shape=(n,)).astype(jnp.float32)


def consistency(
    process: Process,
    prediction: str = "x0",
    mode: str = "ct",
    teacher_prediction: str = "eps",
    teacher_solver: str = "heun",
    t_min: float = 0.002,
    t_max: float = 0.998,
    rho: float = 7.0,
    sigma_data: float = 0.5,
    metric: str = "pseudo_huber",
    weighting: str = "inverse_gap",
    noise_sampling: str = "lognormal",
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
    et al. 2023: metric="l2" (they use LPIPS), weighting="uniform", noise_sampling="uniform",
    schedule="ct", s0=2, s1=150, mu0=0.9. CD: mode="cd", schedule="constant", s1=18.

    The loss reads `batch["step"]` (the training step k) when the schedule is not constant,
    `params["target"]` (the EMA target, else stop_gradient(params["model"])) and, for CD,
    `params["teacher"]`. With mu0 > 0 the recipe keeps the frozen target: it starts at the
    model and after every step becomes `ema_update(target, model, mu(k))` with
    mu(k) = `target_decay(N(k), s0, mu0)`.

    Args:
      process: the forward process of the model (EDM/VE, VP, ...).
      prediction: must be "x0": f(x, t) estimates the trajectory's origin.
      mode: "cd" or "ct".
      teacher_prediction: the kind the CD teacher network outputs.
      teacher_solver: "euler" or "heun" for the teacher's ODE step.
      t_min: boundary time epsilon, where f(x, t_min) = x.
      t_max: largest time T (< 1 for processes with alpha(1) = 0).
      rho: time-grid exponent.
      sigma_data: data standard deviation in c_skip / c_out.
      metric: "l2", "l1" or "pseudo_huber".
      weighting: lambda(t_n): "uniform" or "inverse_gap" 1 / (s_{n+1} - s_n).
      noise_sampling: "uniform" over n or "lognormal" in s.
      p_mean: log-normal mean of log s.
      p_std: log-normal std of log s.
      schedule: N(k): "constant", "ct" or "ict".
      total_steps: K of the schedule.
      s0: initial N (CT, iCT).
      s1: final (or constant) N.
      mu0: EMA decay at k = 0 (0 for no EMA target).
      rho_sample: exponent of the multistep sampling grid (samplers "consistency").

    Raises:
      ValueError: for unknown or inconsistent options.
    """
    if prediction != "x0":
        raise ValueError(f"a consistency model predicts x0, got {prediction=}")
    if mode not in ("cd", "ct"):
        raise ValueError(f"unknown consistency {mode=}; valid: cd, ct")
    for name, value, valid in [
        ("metric", metric, METRICS),
        ("weighting", weighting, WEIGHTINGS),
        ("noise_sampling", noise_sampling, NOISE_SAMPLINGS),
        ("teacher_solver", teacher_solver, TEACHER_SOLVERS),
    ]:
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    if not 0.0 < t_min < t_max <= 1.0:
        raise ValueError(f"need 0 < {t_min=} < {t_max=} <= 1")
    if sigma_data <= 0.0 or rho <= 0.0 or p_std <= 0.0 or not 0.0 <= mu0 < 1.0:
        raise ValueError(f"need positive {sigma_data=}, {rho=}, {p_std=} and 0 <= {mu0=} < 1")
    n_of_k = num_scales_schedule(schedule, total_steps, s0, s1)
    max_scales = s1 + 1

    def make_loss(apply_fn: ApplyFn) -> LossFn:
        def loss(params: Params, batch: Batch, key: Array) -> tuple[Array, dict[str, Array]]:
            x0, cond = batch["x"], batch.get("cond")
            if schedule == "constant":
                num_scales = n_of_k(0)
            elif "step" in batch:
                num_scales = n_of_k(batch["step"])
            else:
                raise KeyError(f"the {schedule!r} N(k) schedule needs batch['step']")
            k_n, k_z, k_drop = jax.random.split(key, 3)
            b = x0.shape[0]

            def grid(i):
                return time_grid(num_scales, t_min, t_max, rho, i)

            i = sample_indices(
                k_n, b, num_scales, grid, process, noise_sampling, p_mean, p_std, max_scales
            )
            t_lo, t_hi = grid(i), grid(i + 1.0)  # t_n < t_{n+1}, [B]
            z = jax.random.normal(k_z, x0.shape, x0.dtype)
            x_hi = expand(process.alpha(t_hi), x0) * x0 + expand(process.sigma(t_hi), x0) * z
            if mode == "ct":
                x_lo = expand(process.alpha(t_lo), x0) * x0 + expand(process.sigma(t_lo), x0) * z
            else:
                teacher = Denoiser(
                    lambda x, t: apply_fn(params["teacher"], x, t, cond),
                    teacher_prediction,
                    process,
                )
                x_lo = teacher_step(teacher_solver, teacher, x_hi, t_hi, t_lo)
            target_params = params.get("target", params["model"])
            f, f_target = (
                consistency_fn(apply_fn, p, process, t_min, sigma_data, cond, k_drop)
                for p in (params["model"], target_params)
            )
            # The target side (target network, teacher step) carries no gradient.
            d = distance(metric, f(x_hi, t_hi), jax.lax.stop_gradient(f_target(x_lo, t_lo)))
            if weighting == "uniform":
                lam = jnp.ones_like(d)
            else:
                lam = 1.0 / (noise_level(process, t_hi) - noise_level(process, t_lo))
            value = jnp.mean(lam * d)
            return value, {"loss": value, "distance": jnp.mean(d), "num_scales": num_scales}

        return loss

    def init_target(params: Params) -> dict:
        return {"target": params["model"]} if mu0 > 0.0 else {}

    def update_target(frozen: Params, params: Params, step: Array) -> Params:
        mu = target_decay(n_of_k(step), s0, mu0)
        return {**frozen, "target": ema_update(frozen["target"], params["model"], mu)}

    return Recipe(
        name="consistency",
        process=process,
        prediction=ConsistencyBoundary(t_min, sigma_data),
        make_loss=make_loss,
        sampler="consistency",
        sampler_options={"t_min": t_min, "t_max": t_max, "rho": rho_sample},
        teacher_prediction=teacher_prediction if mode == "cd" else None,
        init_frozen=init_target,
        update_frozen=update_target if mu0 > 0.0 else None,
    )
