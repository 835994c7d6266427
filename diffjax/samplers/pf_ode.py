"""Probability-flow ODE samplers: fixed-step Euler / Heun / RK4 and adaptive Dormand-Prince 5(4).

The ODE dx/dt = f(t) x - g^2(t)/2 grad log p_t(x) has the marginals p_t of the forward process
(seed 000, "Fokker-Planck equation and ODE models"; seed 004, "probability-flow ODE"); its drift
is the denoiser's velocity alpha'(t) x0_hat + sigma'(t) eps_hat. It is integrated from t_0 = 1 to
t_N = t_min with the Runge-Kutta solvers of `diffjax.ode` (seed 003, "samplers": Euler, Heun).
For VP-type processes sigma'(t) blows up at t = 0, so the default grid stops at t_min = 1e-3.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import ode
from diffjax.denoisers import Denoiser
from diffjax.processes import Process
from diffjax.samplers import timesteps as grids
from diffjax.samplers.base import Sampler


def _check_t_min(t_min: float) -> None:
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"{t_min=} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class FixedStepODE(Sampler):
    """A fixed-step Runge-Kutta solve of the probability-flow ODE; NFE = stages x steps.

    Attributes:
      method: "euler" (order 1), "heun" (order 2) or "rk4" (order 4).
      t_min: end of the default grid, uniform in t from 1.
    """

    method: str = "euler"
    t_min: float = 1e-3

    def __post_init__(self):
        if self.method not in ode.FIXED_METHODS:
            raise ValueError(f"{self.method=} must be one of {', '.join(ode.FIXED_METHODS)}")
        _check_t_min(self.t_min)

    def grid(self, process: Process, num_steps: int) -> Array:
        del process
        return grids.uniform(num_steps, t_min=self.t_min)

    def nfe(self, num_steps: int) -> int:
        return num_steps * ode.nfe_per_step(self.method)

    def integrate(
        self, key: Array, denoiser: Denoiser, x_init: Array, ts: Array, return_trajectory: bool
    ) -> Array | tuple[Array, Array]:
        del key
        return ode.solve_fixed(denoiser.velocity, x_init, ts, self.method, return_trajectory)


@dataclasses.dataclass(frozen=True)
class Dopri5(Sampler):
    """Adaptive Dormand-Prince 5(4) on the probability-flow ODE, one step size for the batch.

    The grid only fixes the output points: each interval [t_i, t_{i+1}] is one adaptive solve
    (one `lax.scan` over intervals of one `lax.while_loop`), so the default grid is the single
    interval [1, t_min] and `num_steps` asks for that many intervals. Call with
    `return_stats=True` for the dict of "nfe", "num_steps" (accepted), "num_rejected" and
    "success", summed over intervals.

    Attributes:
      rtol, atol: local error tolerances.
      t_min: end of the default grid.
      max_steps: bound on attempted steps per interval.
    """

    rtol: float = 1e-5
    atol: float = 1e-5
    t_min: float = 1e-3
    max_steps: int = 10_000
    default_num_steps: ClassVar[int] = 1

    def __post_init__(self):
        if self.rtol < 0 or self.atol < 0 or self.rtol + self.atol == 0:
            raise ValueError(f"need tolerances >= 0, not both 0, got {self.rtol=}, {self.atol=}")
        if self.max_steps < 1:
            raise ValueError(f"{self.max_steps=} must be >= 1")
        _check_t_min(self.t_min)

    def grid(self, process: Process, num_steps: int) -> Array:
        del process
        return grids.uniform(num_steps, t_min=self.t_min)

    def nfe(self, num_steps: int) -> None:
        """Unknown before the run: ask the call for `return_stats=True`."""
        del num_steps
        return None

    def __call__(
        self,
        key: Array,
        denoiser: Denoiser,
        x_init: Array,
        num_steps: int | None = None,
        timesteps: Array | None = None,
        return_trajectory: bool = False,
        return_stats: bool = False,
    ):
        """As `Sampler.__call__`; with `return_stats` the stats dict is appended to the outputs."""
        ts = self.timesteps(denoiser.process, num_steps, timesteps)
        x, traj, stats = self._solve(denoiser, x_init, ts, return_trajectory)
        outputs = (x, traj) if return_trajectory else (x,)
        if return_stats:
            return (*outputs, stats)
        return outputs if return_trajectory else x

    def integrate(
        self, key: Array, denoiser: Denoiser, x_init: Array, ts: Array, return_trajectory: bool
    ) -> Array | tuple[Array, Array]:
        del key
        x, traj, _ = self._solve(denoiser, x_init, ts, return_trajectory)
        return (x, traj) if return_trajectory else x

    def _solve(self, denoiser: Denoiser, x_init: Array, ts: Array, return_trajectory: bool):
        """(x at t_N, trajectory [N + 1, B, ...] or None, stats summed over the intervals)."""

        def interval(x, t_pair):
            x, stats = ode.solve_adaptive(
                denoiser.velocity,
                x,
                t_pair[0],
                t_pair[1],
                rtol=self.rtol,
                atol=self.atol,
                max_steps=self.max_steps,
            )
            return x, (x if return_trajectory else None, stats)

        x, (traj, stats) = jax.lax.scan(interval, x_init, (ts[:-1], ts[1:]))
        stats = {k: jnp.all(v) if k == "success" else jnp.sum(v) for k, v in stats.items()}
        if return_trajectory:
            traj = jnp.concatenate([x_init[None], traj], axis=0)
        return x, traj, stats
