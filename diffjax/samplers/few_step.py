"""Samplers of learned maps that jump along the probability-flow ODE: consistency functions and
MeanFlow's average velocity.

Consistency sampling (seed 001, "Consistency Models", Algorithm 1; Song et al. 2023): the
denoiser's x0 prediction is the consistency function f(x_t, t), the origin of the PF-ODE
trajectory through x_t at the boundary t_min, in the scaled variable x~ = x / alpha = x_0 + s eps
(s = sigma / alpha; `preconditioning.ConsistencyPreconditioning`). On the grid
t_0 = t_max > t_1 > ... > t_{N-1} > t_N = t_min, step i evaluates x~ = f(x_{t_i}, t_i) and,
except on the last step, re-noises it to t_{i+1}: x~ = x_0 + s_min eps at the boundary, so

  x_{t_{i+1}} = alpha_{i+1} (x~ + sqrt(s_{i+1}^2 - s_min^2) z)

has exactly the law of q(x_{t_{i+1}} | x_0); for a VE process this is Algorithm 1's
x + sqrt(tau^2 - eps^2) z. The last step returns x~ (x_0 + s_min eps, the paper's output).
N steps cost N network evaluations; N = 1 is one-step
generation.

MeanFlow sampling (seed 004, "Mean Flow"): with u(z_t, r, t) the average velocity over [r, t],
z_r = z_t - (t - r) u(z_t, r, t) exactly, so each step of a grid is one network call. The
denoiser's `output` takes times [B, 2] = (t, t - r) (`preconditioning.AverageVelocity`).
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


def _prior_scale(process: Process, t: Array) -> Array:
    """Std of x_t for unit-scale data over the std of the prior at t = 1 (which x_init has)."""
    std_t = jnp.sqrt(jnp.square(process.alpha(t)) + jnp.square(process.sigma(t)))
    return std_t / process.prior_std()


@dataclasses.dataclass(frozen=True)
class Consistency(StepSampler):
    """Multistep consistency sampling on Karras's rho-spaced grid from t_max to t_min.

    `x_init` is noise from the prior at t = 1; it is rescaled to the prior at t_0 (t_0 < 1 when
    the noise level at t = 1 is infinite, as for the linear interpolant).

    Attributes:
      t_min: the consistency function's boundary time (where f(x, t_min) = x).
      t_max: the first time, where f is evaluated on pure noise.
      rho: grid exponent.
    """

    t_min: float = 0.002
    t_max: float = 1.0
    rho: float = 7.0
    default_num_steps: ClassVar[int] = 1

    def __post_init__(self):
        if not 0.0 < self.t_min < self.t_max <= 1.0 or self.rho <= 0.0:
            raise ValueError(f"consistency needs 0 < {self.t_min=} < {self.t_max=} <= 1, rho > 0")

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def grid(self, process: Process, num_steps: int) -> Array:
        return grids.karras(process, num_steps, self.t_max, self.t_min, self.rho)

    def integrate(self, key, denoiser, x_init, ts, return_trajectory):
        x_init = _prior_scale(denoiser.process, ts[0]) * x_init
        return super().integrate(key, denoiser, x_init, ts, return_trajectory)

    def step(self, denoiser, x, state, t, s, key, last) -> tuple[Array, State]:
        process = denoiser.process
        x0 = denoiser.x0(x, t)
        level_min, level_s = process.noise_level(jnp.float32(self.t_min)), process.noise_level(s)
        std = jnp.sqrt(jnp.maximum(jnp.square(level_s) - jnp.square(level_min), 0.0))
        renoised = process.alpha(s) * (x0 + std * jax.random.normal(key, x.shape, x.dtype))
        return jnp.where(last, x0, renoised), state


@dataclasses.dataclass(frozen=True)
class MeanFlow(StepSampler):
    """z_s = z_t - (t - s) u(z_t, s, t) on a uniform grid from 1 to 0 (one call per step).

    Needs a velocity denoiser whose `output` accepts times [B, 2] = (t, t - r).
    """

    default_num_steps: ClassVar[int] = 1

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def step(self, denoiser: Denoiser, x, state, t, s, key, last) -> tuple[Array, State]:
        del key, last
        if denoiser.kind != "velocity":
            raise ValueError(f"meanflow sampling needs a velocity model, got {denoiser.kind!r}")
        b = x.shape[0]
        times = jnp.stack([jnp.full((b,), t), jnp.full((b,), t - s)], axis=-1)
        return x - (t - s) * denoiser.output(x, times), state
