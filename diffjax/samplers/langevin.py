"""Annealed Langevin dynamics (NCSN, Song & Ermon 2019, Algorithm 1).

At noise levels sigma_1 > ... > sigma_L, T Langevin steps each with step size
alpha_i = epsilon sigma_i^2 / sigma_L^2:
  x <- x + (alpha_i / 2) grad log p_{sigma_i}(x) + sqrt(alpha_i) z
(seed 000, "NCSN": annealed Langevin dynamics, alpha_i proportional to sigma_i^2; seed 004,
"annealed Langevin"). Here the levels are the grid times t_1 > ... > t_N after the start t_0
(sigma_i = sigma(t_i), the score of p_{t_i} from the denoiser), so the default grid, uniform in
log-SNR from 1 to t_min, is NCSN's geometric sequence for a variance-exploding process. With
`denoise` the result is followed by Tweedie's denoising step E[x_0 | x_{t_N}] (one more network
evaluation), which removes the residual noise sigma_L.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.denoisers import Denoiser
from diffjax.processes import Process
from diffjax.samplers import timesteps as grids
from diffjax.samplers.base import State, StepSampler


@dataclasses.dataclass(frozen=True)
class AnnealedLangevin(StepSampler):
    """NCSN's sampler; NFE = N T (+ 1 with `denoise`).

    Attributes:
      step_size: epsilon, the step size at the last level.
      steps_per_level: T.
      denoise: end with x_0 = E[x_0 | x_{t_N}].
      t_min: the last level of the default grid.
    """

    step_size: float = 2e-5
    steps_per_level: int = 100
    denoise: bool = True
    t_min: float = 1e-3
    default_num_steps: ClassVar[int] = 10

    def __post_init__(self):
        if self.step_size <= 0 or self.steps_per_level < 1:
            raise ValueError(
                f"need step_size > 0, steps_per_level >= 1, got {self.step_size=}, "
                f"{self.steps_per_level=}"
            )
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"{self.t_min=} must be in (0, 1)")

    def grid(self, process: Process, num_steps: int) -> Array:
        return grids.log_snr_uniform(process, num_steps, t_min=self.t_min)

    def nfe(self, num_steps: int) -> int:
        return num_steps * self.steps_per_level + int(self.denoise)

    def init_state(self, x: Array, ts: Array) -> State:
        """The last time t_N, whose sigma sets the step-size scale sigma_L."""
        del x
        return ts[-1]

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
        del t
        process = denoiser.process
        alpha = self.step_size * jnp.square(process.sigma(s) / process.sigma(state))

        def langevin(j, x):
            z = jax.random.normal(jax.random.fold_in(key, j), x.shape, x.dtype)
            return x + 0.5 * alpha * denoiser.score(x, s) + jnp.sqrt(alpha) * z

        x = jax.lax.fori_loop(0, self.steps_per_level, langevin, x)
        if self.denoise:
            x = jax.lax.cond(last, lambda: denoiser.x0_eps(x, s)[0], lambda: x)
        return x, state
