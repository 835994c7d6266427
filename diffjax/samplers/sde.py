"""Reverse-SDE samplers: Euler-Maruyama and predictor-corrector (Song et al. 2021).

The forward SDE dx = f(t) x dt + g(t) dW has the reverse-time SDE
  dx = [f(t) x - g^2(t) grad log p_t(x)] dt + g(t) dW_bar
(seed 000, "SDE Models"; seed 004, "SDEs (VP/VE/sub-VP)"; seed 003, "samplers": Euler-Maruyama),
with f and g^2 derived from alpha(t), sigma(t) by `Process.f`, `Process.g2`; the score comes from
the denoiser. Steps t -> s < t with dt = t - s and z ~ N(0, I):

- Euler-Maruyama: x_s = x_t - [f x_t - g^2 score] dt + sqrt(g^2 dt) z.
- Reverse diffusion (Song et al., eq. 46) from the exact forward transition x_t | x_s ~
  N(alpha_{t|s} x_s, sigma_{t|s}^2 I): x_s = (2 - alpha_{t|s}) x_t + sigma_{t|s}^2 score
  + sigma_{t|s} z (for VP it is Song's (2 - sqrt(1 - beta)) x + beta score + sqrt(beta) z).
- Langevin corrector (Song et al., Algorithm 5) at each t, before the predictor, `corrector_steps`
  times: e = 2 alpha_{t|s}^2 (r ||z|| / ||score||)^2 with the norms averaged over the batch and r
  the signal-to-noise ratio `snr`; x <- x + e score + sqrt(2 e) z.
No noise is added by the last predictor step (the returned sample is its mean). The default grid
is uniform in t from 1 to t_min = 1e-3.
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

PREDICTORS = ("euler_maruyama", "reverse_diffusion")


def _check_t_min(t_min: float) -> None:
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"{t_min=} must be in (0, 1): the reverse SDE is singular at t = 0")


def _predict(
    predictor: str, denoiser: Denoiser, x: Array, t: Array, s: Array, z: Array, last: Array
) -> Array:
    """One predictor step x_t -> x_s of the reverse SDE (no noise when `last`)."""
    process = denoiser.process
    score = denoiser.score(x, t)
    if predictor == "euler_maruyama":
        dt = t - s
        g2 = process.g2(t)
        mean = x - (process.f(t) * x - g2 * score) * dt
        std = jnp.sqrt(g2 * dt)
    else:
        alpha_ts = process.alpha(t) / process.alpha(s)
        var = jnp.square(process.sigma(t)) * -jnp.expm1(process.log_snr(t) - process.log_snr(s))
        mean = (2.0 - alpha_ts) * x + var * score
        std = jnp.sqrt(var)
    return mean + jnp.where(last, 0.0, std) * z


def _grid(process: Process, num_steps: int, t_min: float) -> Array:
    del process
    return grids.uniform(num_steps, t_min=t_min)


@dataclasses.dataclass(frozen=True)
class EulerMaruyama(StepSampler):
    """Euler-Maruyama on the reverse SDE; strong order 1/2, one evaluation per step.

    Attributes:
      t_min: end of the default grid.
    """

    t_min: float = 1e-3
    default_num_steps: ClassVar[int] = 1000

    def __post_init__(self):
        _check_t_min(self.t_min)

    def grid(self, process: Process, num_steps: int) -> Array:
        return _grid(process, num_steps, self.t_min)

    def nfe(self, num_steps: int) -> int:
        return num_steps

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
        z = jax.random.normal(key, x.shape, x.dtype)
        return _predict("euler_maruyama", denoiser, x, t, s, z, last), state


@dataclasses.dataclass(frozen=True)
class PredictorCorrector(StepSampler):
    """Langevin corrector steps at t, then a predictor step t -> s.

    Attributes:
      predictor: "reverse_diffusion" or "euler_maruyama".
      snr: the corrector's signal-to-noise ratio r (Song et al. use 0.16 for VE, 0.01 for VP).
      corrector_steps: Langevin steps per grid point.
      t_min: end of the default grid.
    """

    predictor: str = "reverse_diffusion"
    snr: float = 0.16
    corrector_steps: int = 1
    t_min: float = 1e-3
    default_num_steps: ClassVar[int] = 1000

    def __post_init__(self):
        if self.predictor not in PREDICTORS:
            raise ValueError(f"{self.predictor=} must be one of {', '.join(PREDICTORS)}")
        if self.snr <= 0 or self.corrector_steps < 0:
            raise ValueError(
                f"need snr > 0, corrector_steps >= 0, got {self.snr}, {self.corrector_steps}"
            )
        _check_t_min(self.t_min)

    def grid(self, process: Process, num_steps: int) -> Array:
        return _grid(process, num_steps, self.t_min)

    def nfe(self, num_steps: int) -> int:
        return num_steps * (1 + self.corrector_steps)

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
        process = denoiser.process
        a2 = jnp.square(process.alpha(t) / process.alpha(s))
        norm = lambda v: jnp.mean(jnp.sqrt(jnp.sum(jnp.square(v.reshape(v.shape[0], -1)), -1)))  # noqa: E731

        def correct(j, x):
            score = denoiser.score(x, t)
            z = jax.random.normal(jax.random.fold_in(key, j), x.shape, x.dtype)
            e = 2.0 * a2 * jnp.square(self.snr * norm(z) / norm(score))
            return x + e * score + jnp.sqrt(2.0 * e) * z

        x = jax.lax.fori_loop(0, self.corrector_steps, correct, x)
        z = jax.random.normal(jax.random.fold_in(key, self.corrector_steps), x.shape, x.dtype)
        return _predict(self.predictor, denoiser, x, t, s, z, last), state
