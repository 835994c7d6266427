"""Consistency distillation (CD) and consistency training (CT), with the improved-CT options.

Seed 000, "Consistency Models"; seed 001 and seed 002, "Consistency Models" (Algorithm 2 CD,
Algorithm 3 CT); Song et al. 2023 (arXiv 2303.01469) for the parameterisation and schedules,
Song & Dhariwal 2023 ("Improved techniques for training consistency models") for pseudo-Huber,
log-normal noise sampling, the exponential curriculum and mu = 0.

The consistency function f(x, t) (`preconditioning.ConsistencyPreconditioning`) maps every point
of a PF-ODE trajectory to its point at the boundary noise level sigma_min. Everything is placed
by the noise level s = sigma / alpha (`Process.noise_level`; s = sigma for the VE / EDM process,
where alpha = 1), as in the papers: the grid sigma_min = s_1 < ... < s_N = sigma_max is
rho-spaced in s,

  s_i = (s_min^(1/rho) + (i - 1) / (N - 1) (s_max^(1/rho) - s_min^(1/rho)))^rho,

the same spacing as the Karras grid the "consistency" sampler runs on, and t_i is the time of
s_i (`Process.t_of_noise_level`). With n drawn on {1..N-1} (uniformly, or by the log-normal mass
of [s_n, s_{n+1}] in iCT),
  CD: x_{n+1} = alpha x + sigma z; x_hat_n = one Euler/Heun step of the teacher's PF-ODE from
      t_{n+1} to t_n; loss lambda(s_n) d(f_theta(x_{n+1}, t_{n+1}), f_target(x_hat_n, t_n)).
  CT: the same with x_hat_n = alpha_n x + sigma_n z (same z): no teacher.
The target network theta^- is `params["target"]` (an EMA with decay mu(k), moved by the trainer
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

from diffjax import denoisers, predictions
from diffjax.denoisers import Denoiser
from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective, Params
from diffjax.preconditioning import ConsistencyPreconditioning
from diffjax.processes import Process, expand

METRICS = ("l2", "l1", "pseudo_huber")
WEIGHTINGS = ("uniform", "inverse_gap")
# "uniform" is uniform over the grid's pairs (Song et al. 2023), not over t; "lognormal" is the
# shared LogNormal's mass of each pair's interval (iCT).
TIME_DISTRIBUTIONS = ("uniform", "lognormal")
SCHEDULES = ("constant", "ct", "ict")
TEACHER_SOLVERS = ("euler", "heun")


def noise_levels(num_scales: Array, sigma_min: float, sigma_max: float, rho: float, i: Array):
    """s_i (0-based i in [0, N-1]) of the rho-spaced N-point grid on [sigma_min, sigma_max]."""
    return vocabulary.rho_spaced(i / (num_scales - 1.0), sigma_min, sigma_max, rho)


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
    trapezoid); t, t_next: [B]."""
    h = expand(t_next - t, x)
    v = teacher.velocity(x, t)
    x_euler = x + h * v
    if solver == "euler":
        return x_euler
    return x + 0.5 * h * (v + teacher.velocity(x_euler, t_next))


def sample_indices(
    key: Array, n: int, num_scales: Array, levels: Array, distribution: str, p_mean: float,
    p_std: float,
) -> Array:  # fmt: skip
    """n indices in {0..N-2} (pairs s_i < s_{i+1}) of the grid `levels` [max_scales] (valid
    below N): uniform, or the log-normal mass of [s_i, s_{i+1}] (iCT, `vocabulary.LogNormal`),
    p(i) ∝ erf((log s_{i+1} - P_mean) / (sqrt2 P_std)) - erf((log s_i - P_mean) / (sqrt2 P_std)).
    """
    idx = jnp.arange(levels.shape[0] - 1, dtype=jnp.float32)
    valid = idx < num_scales - 1.0
    if distribution == "uniform":
        logits = jnp.where(valid, 0.0, -jnp.inf)
    else:
        cdf = vocabulary.LogNormal(p_mean, p_std).level_cdf(levels)
        logits = jnp.where(valid, jnp.log(jnp.maximum(cdf[1:] - cdf[:-1], 1e-30)), -jnp.inf)
    return jax.random.categorical(key, logits, shape=(n,)).astype(jnp.float32)


def boundary(process: Process, sigma_min: float, sigma_max: float) -> tuple[float, float]:
    """(t_min, t_max): the times of the noise levels sigma_min and sigma_max.

    Raises:
      ValueError: if the process does not reach them inside [0, 1].
    """
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < {sigma_min=} < {sigma_max=}")
    t_min, t_max = (float(process.t_of_noise_level(s)) for s in (sigma_min, sigma_max))
    for name, s, t in (("sigma_min", sigma_min, t_min), ("sigma_max", sigma_max, t_max)):
        if not math.isclose(float(process.noise_level(jnp.float32(t))), s, rel_tol=1e-3):
            raise ValueError(f"{name}={s} is outside the noise levels of {process} on [0, 1]")
    return max(t_min, 1e-12), t_max


@dataclasses.dataclass(frozen=True)
class ConsistencyLoss(Objective):
    """lambda(s_n) d(f_theta(x_{n+1}, t_{n+1}), sg(f_target(x_hat_n, t_n))), averaged.

    Metrics: {"loss", "distance", "num_scales"}. Reads `batch["step"]` when the schedule is not
    constant, `params["target"]` (else stop_gradient(params["model"])) and, for CD,
    `params["teacher"]`.

    Attributes: see `diffjax.methods.consistency.consistency`, which builds this.
    """

    process: Process
    precondition: ConsistencyPreconditioning
    mode: str = "ct"
    teacher_prediction: str = "eps"
    teacher_solver: str = "heun"
    sigma_max: float = 80.0
    rho: float = 7.0
    metric: str = "pseudo_huber"
    weighting: str = "inverse_gap"
    time_distribution: str = "lognormal"
    p_mean: float = -1.1
    p_std: float = 2.0
    schedule: str = "ict"
    total_steps: int = 10000
    s0: int = 10
    s1: int = 1280

    def __post_init__(self):
        if self.mode not in ("cd", "ct"):
            raise ValueError(f"unknown consistency mode={self.mode!r}; valid: cd, ct")
        for name, valid in [
            ("metric", METRICS),
            ("weighting", WEIGHTINGS),
            ("time_distribution", TIME_DISTRIBUTIONS),
            ("teacher_solver", TEACHER_SOLVERS),
        ]:
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}"
                )
        predictions.check_kind(self.teacher_prediction)
        vocabulary.check_positive(rho=self.rho, p_std=self.p_std)
        object.__setattr__(
            self, "_n_of_k", num_scales_schedule(self.schedule, self.total_steps, self.s0, self.s1)
        )

    def num_scales(self, step: Array) -> Array:
        """N(k), float32."""
        return self._n_of_k(step)

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        process, precond = self.process, self.precondition
        sigma_min = precond.sigma_min
        all_levels = lambda n: noise_levels(  # noqa: E731
            n, sigma_min, self.sigma_max, self.rho, jnp.arange(self.s1 + 1, dtype=jnp.float32)
        )

        def loss(params, batch, key):
            x0, cond = batch["x"], batch.get("label")
            if self.schedule == "constant":
                num_scales = self.num_scales(0)
            elif "step" in batch:
                num_scales = self.num_scales(batch["step"])
            else:
                raise KeyError(f"the {self.schedule!r} N(k) schedule needs batch['step']")
            k_n, k_z, k_drop = jax.random.split(key, 3)
            levels = all_levels(num_scales)  # [s1 + 1], valid below N
            i = sample_indices(
                k_n, x0.shape[0], num_scales, levels, self.time_distribution, self.p_mean,
                self.p_std,
            ).astype(jnp.int32)  # fmt: skip
            s_lo, s_hi = levels[i], levels[i + 1]  # s_n < s_{n+1}, [B]
            t_lo = jnp.where(i == 0, precond.t_min, process.t_of_noise_level(s_lo))
            t_hi = process.t_of_noise_level(s_hi)
            z = jax.random.normal(k_z, x0.shape, x0.dtype)
            x_hi = expand(process.alpha(t_hi), x0) * x0 + expand(process.sigma(t_hi), x0) * z
            if self.mode == "ct":
                x_lo = expand(process.alpha(t_lo), x0) * x0 + expand(process.sigma(t_lo), x0) * z
            else:
                teacher = denoisers.from_network(
                    apply_fn, params["teacher"], self.teacher_prediction, process, cond
                )
                x_lo = teacher_step(self.teacher_solver, teacher, x_hi, t_hi, t_lo)
            f, f_target = (
                denoisers.from_network(apply_fn, p, precond, process, cond, k_drop).output
                for p in (params["model"], params.get("target", params["model"]))
            )
            # The target side (target network, teacher step) carries no gradient.
            d = distance(self.metric, f(x_hi, t_hi), jax.lax.stop_gradient(f_target(x_lo, t_lo)))
            lam = jnp.ones_like(d) if self.weighting == "uniform" else 1.0 / (s_hi - s_lo)
            value = jnp.mean(lam * d)
            return value, {"loss": value, "distance": jnp.mean(d), "num_scales": num_scales}

        return loss
