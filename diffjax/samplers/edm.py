"""Karras et al.'s (EDM) Heun sampler with stochastic churn, for any process.

In the scaled variable y = x / alpha_t with noise level sigma~ = sigma_t / alpha_t
(= exp(-log_snr / 2)) the probability-flow ODE is dy/dsigma~ = (y - D(y, sigma~)) / sigma~ with
D the x0 prediction (Karras et al. 2022, eq. 4 and Algorithm 2; seed 003, "samplers": Heun).
One step from sigma~_i to sigma~_{i+1}:

  gamma = min(S_churn / N, sqrt(2) - 1) if S_tmin <= sigma~_i <= S_tmax else 0
  sigma^ = (1 + gamma) sigma~_i,  y^ = y + sqrt(sigma^2 - sigma~_i^2) S_noise z
  d = (y^ - D(y^, sigma^)) / sigma^,  y' = y^ + (sigma~_{i+1} - sigma^) d
  if sigma~_{i+1} > 0: y' = y^ + (sigma~_{i+1} - sigma^) (d + d') / 2,
                       d' = (y' - D(y', sigma~_{i+1})) / sigma~_{i+1}

S_churn = 0 is the deterministic 2nd-order sampler; sigma^ is capped at the level of t = 1.
The default grid is Karras's rho = 7 spacing of sigma~ from t_max to t_min with a final step to
t = 0 (an Euler step), so NFE = 2N - 1.
"""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.denoisers import Denoiser
from diffjax.processes import Process
from diffjax.samplers import timesteps as grids
from diffjax.samplers.base import State, StepSampler


@dataclasses.dataclass(frozen=True)
class EDMHeun(StepSampler):
    """Karras et al.'s Algorithm 2.

    Attributes:
      s_churn: total churn S_churn >= 0 (0 = deterministic Heun).
      s_tmin, s_tmax: churn only where S_tmin <= sigma/alpha <= S_tmax.
      s_noise: noise inflation S_noise.
      rho: grid exponent.
      t_min, t_max: the last nonzero and the first grid time (t_max < 1 for processes with
        alpha(1) = 0, such as the linear interpolant).
    """

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0
    rho: float = 7.0
    t_min: float = 1e-3
    t_max: float = 1.0
    default_num_steps: ClassVar[int] = 18

    def __post_init__(self):
        if self.s_churn < 0 or self.s_noise < 0 or self.s_tmin > self.s_tmax:
            raise ValueError(
                f"need s_churn, s_noise >= 0 and s_tmin <= s_tmax, got {self.s_churn=}, "
                f"{self.s_noise=}, {self.s_tmin=}, {self.s_tmax=}"
            )
        if self.rho <= 0 or not 0.0 < self.t_min < self.t_max <= 1.0:
            raise ValueError(f"need rho > 0, 0 < t_min < t_max <= 1, got {self}")

    def grid(self, process: Process, num_steps: int) -> Array:
        if num_steps == 1:
            return jnp.array([self.t_max, 0.0], jnp.float32)
        ts = grids.karras(process, num_steps - 1, self.t_max, self.t_min, self.rho)
        return jnp.concatenate([ts, jnp.zeros((1,), jnp.float32)])

    def nfe(self, num_steps: int) -> int:
        return 2 * num_steps - 1

    def init_state(self, x: Array, ts: Array) -> State:
        """gamma's cap min(S_churn / N, sqrt(2) - 1)."""
        del x
        return jnp.float32(min(self.s_churn / (ts.shape[0] - 1), math.sqrt(2.0) - 1.0))

    def step(
        self,
        denoiser: Denoiser,
        x: Array,
        state: State,
        t: Array,
        s: Array,
        key: Array,
        last: Array,
    ) -> tuple[Array, State]:
        del last
        process = denoiser.process
        level = process.noise_level
        slope = lambda y, u: (y - denoiser.x0_eps(process.alpha(u) * y, u)[0]) / level(u)  # noqa: E731
        level_t, level_s = level(t), level(s)
        gamma = jnp.where((level_t >= self.s_tmin) & (level_t <= self.s_tmax), state, 0.0)
        # Churn never raises the level past that of t = 1, where the process ends.
        level_hat = jnp.minimum((1.0 + gamma) * level_t, level(jnp.float32(1.0)))
        t_hat = jnp.where(gamma > 0, process.t_of_noise_level(level_hat), t)
        z = jax.random.normal(key, x.shape, x.dtype)
        y_hat = (
            x / process.alpha(t)
            + jnp.sqrt(jnp.maximum(level_hat**2 - level_t**2, 0.0)) * self.s_noise * z
        )
        d = slope(y_hat, t_hat)
        y_s = y_hat + (level_s - level_hat) * d
        y_s = jax.lax.cond(
            level_s > 0,
            lambda: y_hat + (level_s - level_hat) * 0.5 * (d + slope(y_s, s)),
            lambda: y_s,
        )
        return process.alpha(s) * y_s, state
