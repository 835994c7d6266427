"""Rectified flow and reflow (Liu et al. 2023), with the straightness and transport-cost metrics.

Seed 002, "Rectified Flow" and "Reflow" (the k-rectified-flow table: straightness, one-step FID
after reflow and distillation); seed 004, "Rectified Flow"; seed 000, "Flow Matching" (reflow).
A rectified flow is flow matching on the linear interpolant x_t = (1 - t) x_0 + t x_1 (diffjax
time: t = 0 data, t = 1 noise), so `rectified_flow` is `flow_matching` with that path.

Reflow: simulate the trained flow from noise Z_1 to Z_0 and train the next flow on the pairs
(Z_0, Z_1) (batches {"x": Z_0, "noise": Z_1}); k rounds give the k-rectified flow, whose paths
are straighter and whose transport cost E||Z_1 - Z_0||^2 is no larger. `simulate` returns the
pairs and, along the same solve, the two metrics of the paper:

  transport cost  C = E ||Z_1 - Z_0||^2,
  straightness    S = int_0^1 E ||(Z_1 - Z_0) - dZ_t/dt||^2 dt = E int_0^1 ||v(Z_t, t)||^2 dt - C,

the second form (int_0^1 v dt = Z_1 - Z_0) letting the kinetic energy ride along in the ODE state,
so S = 0 exactly when every trajectory is a straight line at constant speed.
"""

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
from jax import Array

from diffjax import ode
from diffjax.methods import flow_matching
from diffjax.methods.base import Recipe
from diffjax.processes import Process


def rectified_flow(process: Process, **kwargs) -> Recipe:
    """Flow matching on the linear interpolant; reflow rounds feed batches with "noise".

    Args:
      process: must be the linear interpolant alpha = 1 - t, sigma = t ("rectified_flow").
      **kwargs: options of `flow_matching.flow_matching` (time distribution, coupling, ...).

    Raises:
      ValueError: if `process` is not the linear interpolant.
    """
    t = jnp.linspace(0.0, 1.0, 5)
    if not (jnp.allclose(process.alpha(t), 1.0 - t) and jnp.allclose(process.sigma(t), t)):
        raise ValueError(f"rectified flow needs alpha = 1 - t, sigma = t; got {process}")
    recipe = flow_matching.flow_matching(process, **kwargs)
    return dataclasses.replace(recipe, name="rectified_flow")


def simulate(
    velocity_fn: Callable[[Array, Array], Array],
    noise: Array,
    num_steps: int = 100,
    method: str = "rk4",
    t_min: float = 0.0,
) -> tuple[Array, Array, Array]:
    """Solves dZ/dt = v(Z, t) from Z_1 = noise down to t_min; returns Z_0 with S and C.

    Args:
      velocity_fn: (z [B, ...], t [B]) -> v [B, ...].
      noise: Z_1, [B, ...].
      num_steps: uniform steps from 1 to t_min.
      method: a fixed-step method of `diffjax.ode` ("euler", "heun", "rk4").
      t_min: end time (> 0 when v is singular at t = 0 and the method evaluates the end point).

    Returns:
      (Z_0 [B, ...], straightness [B], transport cost [B]); per example, norms summed over
      features. With Euler, S = mean_i ||v_i - mean_j v_j||^2 over the steps, >= 0.
    """
    b = noise.shape[0]

    def drift(state, t):
        z, _ = state
        v = velocity_fn(z, jnp.full((b,), t))
        # Integrating from 1 down to t_min, d(energy)/dt = -||v||^2 accumulates +int ||v||^2.
        return v, -jnp.sum(jnp.square(v).reshape(b, -1), axis=-1)

    ts = jnp.linspace(1.0, t_min, num_steps + 1)
    z0, energy = ode.solve_fixed(drift, (noise, jnp.zeros((b,))), ts, method)
    span = 1.0 - t_min
    cost = jnp.sum(jnp.square(noise - z0).reshape(b, -1), axis=-1)
    # Over [t_min, 1]: S = int ||v||^2 - ||Z_1 - Z_{t_min}||^2 / (1 - t_min).
    return z0, energy - cost / span, cost
