"""What every sampler shares: a decreasing time grid, one step rule, one `lax.scan`.

A sampler integrates the reverse process from x_{t_0} = x_init down a grid
t_0 > t_1 > ... > t_N (t = 1 noise, t = 0 data; seed 000, "SDE Models"). A subclass states only
its default grid, how many network evaluations (NFE) a run costs, and how it integrates down a
grid; a `StepSampler` states only its step rule x_{t_i} -> x_{t_{i+1}}, and the per-step keys
(`fold_in(key, i)`), the trajectory and the loop live here, so the whole run is one `lax.scan`
whose compile time does not depend on the number of steps.
"""

import abc
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.denoisers import Denoiser
from diffjax.processes import Process
from diffjax.samplers import timesteps as grids

State = Any


class Sampler(abc.ABC):
    """A sampling algorithm. Subclasses are frozen dataclasses whose fields are the options.

    Call: `sampler(key, denoiser, x_init, num_steps=None, timesteps=None,
    return_trajectory=False)`:
      key: PRNG key (unused by deterministic samplers).
      denoiser: the `Denoiser` whose process defines alpha(t), sigma(t).
      x_init: x at t_0, [B, ...] (noise at t = 1 from `process.prior_sample` for generation).
      num_steps: N, static; the grid is the sampler's default spacing (`grid`); None gives
        `default_steps(process)` (for ddpm / ddim on a discrete T-step process: T, on i / T).
      timesteps: alternatively an explicit decreasing grid [N + 1]; the sampler lands on t_N.
      return_trajectory: also return x at every grid point, [N + 1, B, ...].
    Returns x at t_N ([B, ...]), and the trajectory when asked.
    """

    default_num_steps: ClassVar[int] = 100

    @abc.abstractmethod
    def nfe(self, num_steps: int) -> int | None:
        """Network evaluations of a run of `num_steps` steps (None when adaptive)."""

    def grid(self, process: Process, num_steps: int) -> Array:
        """Default grid [num_steps + 1] from 1 to 0, uniform in t."""
        del process
        return grids.uniform(num_steps)

    def timesteps(
        self, process: Process, num_steps: int | None = None, timesteps: Array | None = None
    ) -> Array:
        """The grid a call integrates over, [N + 1], from `num_steps` or explicit `timesteps`.

        With neither given, N is `default_steps(process)`.

        Raises:
          ValueError: if both are given, the grid has the wrong shape, or num_steps is < 1 (or
            invalid for the sampler's grid).
        """
        if timesteps is not None:
            if num_steps is not None:
                raise ValueError("give num_steps or timesteps, not both")
            timesteps = jnp.asarray(timesteps, jnp.float32)
            if timesteps.ndim != 1 or timesteps.shape[0] < 2:
                raise ValueError(f"timesteps must have shape [N + 1 >= 2], got {timesteps.shape}")
            return timesteps
        if num_steps is None:
            num_steps = self.default_steps(process)
        if num_steps < 1:
            raise ValueError(f"{num_steps=} must be >= 1")
        return self.grid(process, num_steps)

    def default_steps(self, process: Process) -> int:
        """N when neither num_steps nor timesteps is given."""
        del process
        return self.default_num_steps

    def __call__(
        self,
        key: Array,
        denoiser: Denoiser,
        x_init: Array,
        num_steps: int | None = None,
        timesteps: Array | None = None,
        return_trajectory: bool = False,
    ) -> Array | tuple[Array, Array]:
        ts = self.timesteps(denoiser.process, num_steps, timesteps)
        return self.integrate(key, denoiser, x_init, ts, return_trajectory)

    @abc.abstractmethod
    def integrate(
        self, key: Array, denoiser: Denoiser, x_init: Array, ts: Array, return_trajectory: bool
    ) -> Array | tuple[Array, Array]:
        """Runs the sampler down the grid ts [N + 1]; see the class docstring for the returns."""


class StepSampler(Sampler):
    """A sampler given by one step rule x_{t_i} -> x_{t_{i+1}}, run as one `lax.scan`."""

    @abc.abstractmethod
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
        """One step x_t -> x_s (s < t); `last` (traced bool) is True on the final step."""

    def init_state(self, x: Array, ts: Array) -> State:
        """Extra loop state (multistep history, grid constants) from x_init and the grid."""
        del x, ts
        return ()

    def integrate(
        self, key: Array, denoiser: Denoiser, x_init: Array, ts: Array, return_trajectory: bool
    ) -> Array | tuple[Array, Array]:
        n = ts.shape[0] - 1

        def body(carry, inputs):
            x, state = carry
            i, t, s = inputs
            x, state = self.step(denoiser, x, state, t, s, jax.random.fold_in(key, i), i == n - 1)
            return (x, state), (x if return_trajectory else None)

        (x, _), traj = jax.lax.scan(
            body, (x_init, self.init_state(x_init, ts)), (jnp.arange(n), ts[:-1], ts[1:])
        )
        if return_trajectory:
            return x, jnp.concatenate([x_init[None], traj], axis=0)
        return x
