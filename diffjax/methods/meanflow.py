"""MeanFlow: one-step generation by learning the average velocity (Geng et al. 2025).

Seed 004, "Mean Flow". For a flow dz/dt = v(z_t, t) the average velocity over [r, t] is

  u(z_t, r, t) = 1 / (t - r) int_r^t v(z_tau, tau) dtau,   so   z_r = z_t - (t - r) u(z_t, r, t),

and differentiating (t - r) u = int_r^t v in t gives the MeanFlow identity

  u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),
  d/dt u = v d_z u + d_t u        (total derivative along the flow; d_r u does not enter).

Training regresses u_theta on u_tgt = sg(v - (t - r) d/dt u_theta), the total derivative being
one forward-mode `jax.jvp` of (z, r, t) -> u_theta with tangents (v, 0, 1); v is the conditional
velocity alpha' x + sigma' eps of the path (e - x on the linear path), whose regression gives
the marginal one as in flow matching. Options of the paper: (r, t) from a logit-normal with a
fraction of r = t (plain flow matching on those), the adaptive weight w = 1 / (||D||^2 + c)^p
with D = u_theta - u_tgt, and classifier-free guidance folded into the target,
v_tgt = omega v + (1 - omega) u_theta(z_t, t, t | null) (with label dropout for the null class).

The network sees both times: `apply_fn(model_params, z, times, cond, key)` with
times = stack([t, t - r], -1) of shape [B, 2], t first, so a model embeds each column (the
paper conditions on (t, t - r)). As a Denoiser (prediction `AverageVelocity`), a call with
times [B] is the instantaneous velocity u(z, t, t), so every ODE sampler and the likelihood work
on it, and the "meanflow" sampler calls it with both times: 1 or a few steps
z_{t_{i+1}} = z_{t_i} - (t_i - t_{i+1}) u(z_{t_i}, t_{i+1}, t_i) from z_1 ~ N(0, I).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.methods.base import ApplyFn, Batch, LossFn, Params, Recipe
from diffjax.methods.flow_matching import time_sampler
from diffjax.predictions import ModelFn, Preconditioning
from diffjax.processes import Process, expand

AverageVelocityFn = Callable[[Array, Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class AverageVelocity(Preconditioning):
    """The average-velocity network as a velocity model: times [B] mean r = t, i.e. (t, 0);
    times [B, 2] = (t, t - r) pass through (the "meanflow" sampler)."""

    kind: str = dataclasses.field(default="velocity", init=False)

    def wrap(self, net: ModelFn, process: Process) -> ModelFn:
        del process

        def model_fn(x: Array, t: Array) -> Array:
            return net(x, t if t.ndim == 2 else jnp.stack([t, jnp.zeros_like(t)], axis=-1))

        return model_fn


def average_velocity(
    apply_fn: ApplyFn, model_params: Params, cond: Array | None = None, key: Array | None = None
) -> AverageVelocityFn:
    """u(z [B, ...], r [B], t [B]) -> [B, ...]: the network called on times [B, 2] = (t, t - r)."""
    return lambda z, r, t: apply_fn(model_params, z, jnp.stack([t, t - r], axis=-1), cond, key)


def meanflow_target(u_fn: AverageVelocityFn, z: Array, r: Array, t: Array, v: Array):
    """u(z_t, r, t) and the MeanFlow target v - (t - r) (v d_z u + d_t u), by one jvp.

    Args:
      u_fn: (z [B, ...], r [B], t [B]) -> u [B, ...].
      z: z_t [B, ...].
      r: [B], r <= t.
      t: [B].
      v: the velocity dz/dt at (z_t, t), [B, ...].

    Returns:
      (u [B, ...], u_tgt [B, ...]); u_tgt is not stop-gradiented here.
    """
    u, dudt = jax.jvp(u_fn, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
    return u, v - expand(t - r, z) * dudt


def sample_times(
    key: Array, n: int, sample_t: Callable[[Array, int], Array], equal_fraction: float
) -> tuple[Array, Array]:
    """(r, t) [n] each: two draws of `sample_t`, t the larger; r = t with prob. equal_fraction."""
    k1, k2, k3 = jax.random.split(key, 3)
    a, b = sample_t(k1, n), sample_t(k2, n)
    t, r = jnp.maximum(a, b), jnp.minimum(a, b)
    return jnp.where(jax.random.uniform(k3, (n,)) < equal_fraction, t, r), t


def meanflow(
    process: Process,
    prediction: str = "velocity",
    time_distribution: str = "logit_normal",
    time_loc: float = -0.4,
    time_scale: float = 1.0,
    equal_fraction: float = 0.75,
    adaptive_power: float = 1.0,
    adaptive_eps: float = 1e-3,
    guidance_scale: float = 1.0,
    cond_drop_prob: float = 0.1,
    null_cond: int = -1,
) -> Recipe:
    """MeanFlow: the average-velocity network trained with the jvp target.

    Loss per example: sg(w) ||D||^2 with D = u_theta(z_t, r, t) - sg(u_tgt) and
    w = (||D||^2 + adaptive_eps)^(-adaptive_power) (adaptive_power = 0: plain squared error).

    Args:
      process: the path z_t = alpha x + sigma eps (the paper's is `rectified_flow`).
      prediction: must be "velocity" (the network's u(z, t, t) is the instantaneous velocity).
      time_distribution: "uniform" or "logit_normal" for each of the two draws of (r, t).
      time_loc: logit-normal location (paper: -0.4).
      time_scale: logit-normal scale (paper: 1.0).
      equal_fraction: fraction of examples with r = t (paper: 0.75).
      adaptive_power: p of the adaptive weight (paper: 1).
      adaptive_eps: c of the adaptive weight.
      guidance_scale: omega of the CFG target (1 = no guidance); needs labels in the batch.
      cond_drop_prob: probability of replacing a label by `null_cond` (CFG training).
      null_cond: the null label, i.e. the model's `num_classes` (required when omega != 1).

    Raises:
      ValueError: for out-of-range options.
    """
    if prediction != "velocity":
        raise ValueError(f"meanflow trains a velocity field, got {prediction=}")
    if not 0.0 <= equal_fraction <= 1.0 or not 0.0 <= cond_drop_prob < 1.0:
        raise ValueError(f"fractions must lie in [0, 1]: {equal_fraction=}, {cond_drop_prob=}")
    if adaptive_power < 0.0 or adaptive_eps <= 0.0:
        raise ValueError(f"need {adaptive_power=} >= 0 and {adaptive_eps=} > 0")
    if guidance_scale != 1.0 and null_cond < 0:
        raise ValueError(f"{guidance_scale=} needs the model's null label as null_cond >= 0")
    sample_t = time_sampler(time_distribution, time_loc, time_scale)

    def make_loss(apply_fn: ApplyFn) -> LossFn:
        def loss(params: Params, batch: Batch, key: Array) -> tuple[Array, dict[str, Array]]:
            x, cond = batch["x"], batch.get("cond")
            k_t, k_eps, k_drop, k_net = jax.random.split(key, 4)
            n = x.shape[0]
            r, t = sample_times(k_t, n, sample_t, equal_fraction)
            eps = jax.random.normal(k_eps, x.shape, x.dtype)
            ones = jnp.ones_like(t)
            alpha, dalpha = jax.jvp(process.alpha, (t,), (ones,))
            sigma, dsigma = jax.jvp(process.sigma, (t,), (ones,))
            z = expand(alpha, x) * x + expand(sigma, x) * eps
            v = expand(dalpha, x) * x + expand(dsigma, x) * eps
            if cond is not None and null_cond >= 0:
                dropped = jax.random.uniform(k_drop, (n,)) < cond_drop_prob
                cond = jnp.where(dropped, null_cond, cond)
                if guidance_scale != 1.0:
                    null = jnp.full_like(cond, null_cond)
                    v_null = average_velocity(apply_fn, params["model"], null, k_net)(z, t, t)
                    v_cfg = guidance_scale * v + (1.0 - guidance_scale) * v_null
                    v = jnp.where(expand(dropped, x), v, jax.lax.stop_gradient(v_cfg))
            u_fn = average_velocity(apply_fn, params["model"], cond, k_net)
            u, u_tgt = meanflow_target(u_fn, z, r, t, v)
            err = u - jax.lax.stop_gradient(u_tgt)
            sq = jnp.sum(jnp.square(err).reshape(n, -1), axis=-1)  # [B]
            weight = jax.lax.stop_gradient(jnp.power(sq + adaptive_eps, -adaptive_power))
            value = jnp.mean(weight * sq)
            return value, {"loss": value, "squared_error": jnp.mean(sq)}

        return loss

    return Recipe(
        name="meanflow",
        process=process,
        prediction=AverageVelocity(),
        make_loss=make_loss,
        sampler="meanflow",
        num_times=2,
    )
