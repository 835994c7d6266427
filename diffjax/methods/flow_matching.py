"""Conditional flow matching (CFM) with OT and diffusion paths, and minibatch-OT coupling.

Seed 004, "Conditional Flow Matching": the marginal field u_t(x) = E[u_t(x | x_0, x_1) | x_t = x]
is learned by regressing on the conditional field, L_CFM = L_FM + const. Seed 004,
"Experiments": the OT path (mu_t = t x_1, sigma_t = 1 - (1 - sigma_min) t) and the diffusion path
(VP). Seed 004, "Coupling": pairing noise and data by minibatch optimal transport (Tong et al.
2023, "OT-CFM"). Seed 004, "Logit-Normal Sampling" (SD3): t = sigmoid(m + s z), z ~ N(0, 1).
Seed 000, "Flow Matching": the interpolant view.

diffjax runs time from data (t = 0) to noise (t = 1), the reverse of the seed's notation, so a
path is a `Process`: x_t = alpha(t) x_0 + sigma(t) x_1 with x_1 the noise, and the conditional
velocity is its time derivative

  u_t(x_t | x_0, x_1) = alpha'(t) x_0 + sigma'(t) x_1.

The OT path with sigma_min is the process `ot_path` (`processes.OTPath`: alpha = 1 - t,
sigma = sigma_min + (1 - sigma_min) t, the seed's path under t -> 1 - t); the diffusion path
is `processes.VP`; sigma_min = 0 is the linear interpolant of rectified flow. The network
predicts the velocity, so the PF-ODE samplers integrate dx/dt = v(x, t) from t = 1 to t = 0.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import coupling as coupling_lib
from diffjax.methods.base import ApplyFn, Batch, LossFn, Params, Recipe
from diffjax.processes import Process, expand

TIME_DISTRIBUTIONS = ("uniform", "logit_normal")
COUPLINGS = ("independent", "exact", "sinkhorn")

TimeSampler = Callable[[Array, int], Array]


def time_sampler(
    distribution: str = "uniform", loc: float = 0.0, scale: float = 1.0, t_min: float = 0.0
) -> TimeSampler:
    """Returns `sample(key, n) -> t [n]` on [t_min, 1].

    Args:
      distribution: "uniform", t ~ U[t_min, 1]; or "logit_normal", logit(t) ~ N(loc, scale^2)
        (density pi(t) = exp(-(logit t - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi) t (1 - t)),
        seed 004, "Logit-Normal Sampling"), then mapped affinely onto [t_min, 1].
      loc: logit-normal location m.
      scale: logit-normal scale s > 0.
      t_min: smallest time, in [0, 1).

    Raises:
      ValueError: for an unknown distribution, scale <= 0 or t_min outside [0, 1).
    """
    if distribution not in TIME_DISTRIBUTIONS:
        raise ValueError(f"unknown {distribution=}; valid: {', '.join(TIME_DISTRIBUTIONS)}")
    if scale <= 0.0:
        raise ValueError(f"logit-normal {scale=} must be > 0")
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"{t_min=} must lie in [0, 1)")

    def sample(key: Array, n: int) -> Array:
        if distribution == "uniform":
            u = jax.random.uniform(key, (n,))
        else:
            u = jax.nn.sigmoid(loc + scale * jax.random.normal(key, (n,)))
        return t_min + (1.0 - t_min) * u

    return sample


def cfm_loss_per_example(
    velocity_fn: Callable[[Array, Array], Array],
    process: Process,
    x0: Array,
    x1: Array,
    t: Array,
) -> Array:
    """|| v(x_t, t) - (alpha'(t) x_0 + sigma'(t) x_1) ||^2, averaged over features.

    Args:
      velocity_fn: (x_t [B, ...], t [B]) -> predicted velocity [B, ...].
      process: the path.
      x0: data [B, ...].
      x1: noise coupled to x0 [B, ...].
      t: [B].

    Returns:
      [B] per-example squared error.
    """
    ones = jnp.ones_like(t)
    alpha, dalpha = jax.jvp(process.alpha, (t,), (ones,))
    sigma, dsigma = jax.jvp(process.sigma, (t,), (ones,))
    x_t = expand(alpha, x0) * x0 + expand(sigma, x0) * x1
    target = expand(dalpha, x0) * x0 + expand(dsigma, x0) * x1
    err = jnp.square(velocity_fn(x_t, t) - target)
    return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)


def couple(kind: str, key: Array, x0: Array, x1: Array, sinkhorn_epsilon: float) -> Array:
    """Reorders the noise x1 [B, ...] to pair with x0 [B, ...] under the coupling `kind`.

    "independent" keeps the draw; "exact" applies the squared-Euclidean optimal assignment;
    "sinkhorn" draws, for each x0[i], a partner j ~ pi[i, :] / sum_j pi[i, j] of the entropic plan.
    """
    if kind == "independent":
        return x1
    flat0, flat1 = x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)
    if kind == "exact":
        return x1[coupling_lib.exact_assignment(coupling_lib.sq_euclidean_cost(flat0, flat1))]
    plan = coupling_lib.sinkhorn(coupling_lib.sq_euclidean_cost(flat0, flat1), sinkhorn_epsilon)
    return x1[coupling_lib.sample_partners(key, plan)]


def flow_matching(
    process: Process,
    prediction: str = "velocity",
    time_distribution: str = "uniform",
    time_loc: float = 0.0,
    time_scale: float = 1.0,
    t_min: float = 0.0,
    coupling: str = "independent",
    sinkhorn_epsilon: float = 0.05,
) -> Recipe:
    """Conditional flow matching on the path `process`.

    Loss: E_{t, (x_0, x_1) ~ coupling} || v_theta(x_t, t) - (alpha' x_0 + sigma' x_1) ||^2. A batch
    holding `"noise"` (reflow pairs, see `rectified_flow`) uses that noise as x_1, coupled as
    given; otherwise x_1 ~ N(0, I) is drawn and paired by `coupling`.

    Args:
      process: the probability path (OTPath, VP, RectifiedFlow, ...).
      prediction: must be "velocity": the network predicts the PF-ODE drift.
      time_distribution: "uniform" or "logit_normal" (see `time_sampler`).
      time_loc: logit-normal location.
      time_scale: logit-normal scale.
      t_min: smallest training time.
      coupling: "independent", "exact" (optimal assignment, O(B^3) on the host) or "sinkhorn".
      sinkhorn_epsilon: entropic regularisation, relative to the mean cost of the batch.

    Raises:
      ValueError: for an unsupported prediction, coupling or time distribution.
    """
    if prediction != "velocity":
        raise ValueError(f"flow matching trains a velocity field, got {prediction=}")
    if coupling not in COUPLINGS:
        raise ValueError(f"unknown {coupling=}; valid: {', '.join(COUPLINGS)}")
    if sinkhorn_epsilon <= 0.0:
        raise ValueError(f"{sinkhorn_epsilon=} must be > 0")
    sample_t = time_sampler(time_distribution, time_loc, time_scale, t_min)

    def make_loss(apply_fn: ApplyFn) -> LossFn:
        def loss(params: Params, batch: Batch, key: Array) -> tuple[Array, dict[str, Array]]:
            x0, cond = batch["x"], batch.get("cond")
            k_t, k_noise, k_couple, k_drop = jax.random.split(key, 4)
            t = sample_t(k_t, x0.shape[0])
            if "noise" in batch:
                x1 = batch["noise"]
            else:
                x1 = jax.random.normal(k_noise, x0.shape, x0.dtype)
                x1 = couple(coupling, k_couple, x0, x1, sinkhorn_epsilon)
            per_example = cfm_loss_per_example(
                lambda x, s: apply_fn(params["model"], x, s, cond, k_drop), process, x0, x1, t
            )
            value = jnp.mean(per_example)
            return value, {"loss": value}

        return loss

    return Recipe(
        name="flow_matching",
        process=process,
        prediction="velocity",
        make_loss=make_loss,
        sampler="euler",
        chain_modes=frozenset({"reflow"}),
    )


def ot_cfm(process: Process, coupling: str = "exact", **kwargs) -> Recipe:
    """Flow matching with minibatch optimal-transport coupling (OT-CFM); see `flow_matching`."""
    if coupling == "independent":
        raise ValueError("ot_cfm needs an OT coupling: 'exact' or 'sinkhorn'")
    return dataclasses.replace(flow_matching(process, coupling=coupling, **kwargs), name="ot_cfm")
