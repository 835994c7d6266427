"""Flow objectives: conditional flow matching and MeanFlow's average-velocity target.

Conditional flow matching (seed 004, "Conditional Flow Matching"): the marginal field
u_t(x) = E[u_t(x | x_0, x_1) | x_t = x] is learned by regressing on the conditional field,
L_CFM = L_FM + const. A path is a `Process`, x_t = alpha(t) x_0 + sigma(t) x_1 with x_1 the noise
(diffjax time runs from data at 0 to noise at 1, the reverse of the seed's notation), and the
conditional velocity is its time derivative alpha'(t) x_0 + sigma'(t) x_1: the "velocity"
prediction of `predictions.from_x0_eps` at (x_0, eps = x_1). Minibatch-OT couplings of (x_0, x_1)
(seed 004, "Coupling"; Tong et al. 2023) come from `diffjax.coupling`.

MeanFlow (seed 004, "Mean Flow"; Geng et al. 2025): the average velocity over [r, t],
u(z_t, r, t) = 1 / (t - r) int_r^t v(z_tau, tau) dtau, satisfies

  u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),   d/dt u = v d_z u + d_t u,

and u_theta is regressed on sg(v - (t - r) d/dt u_theta), the total derivative being one
forward-mode `jax.jvp` of (z, r, t) -> u_theta with tangents (v, 0, 1). Options of the paper:
(r, t) from a logit-normal with a fraction of r = t, the adaptive weight w = 1 / (||D||^2 + c)^p
with D = u_theta - u_tgt, and classifier-free guidance folded into the target,
v_tgt = omega v + (1 - omega) u_theta(z_t, t, t | null) for the examples whose label was kept
(the trainer's `conditioning.LabelDropout` teaches the null class).
The network sees times [B, 2] = (t, t - r) (`preconditioning.AverageVelocity`).
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import coupling as coupling_lib
from diffjax import denoisers, predictions
from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective
from diffjax.preconditioning import AverageVelocity
from diffjax.processes import Process, expand

COUPLINGS = ("independent", "exact", "sinkhorn")


def interpolate(process: Process, x0: Array, x1: Array, t: Array) -> tuple[Array, Array]:
    """(x_t, u_t(x_t | x_0, x_1)) = (alpha x_0 + sigma x_1, alpha' x_0 + sigma' x_1); t: [B]."""
    x_t = expand(process.alpha(t), x0) * x0 + expand(process.sigma(t), x0) * x1
    return x_t, predictions.from_x0_eps("velocity", x0, x1, x_t, t, process)


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


def _time_distribution(name: str, kwargs: Mapping[str, Any] | None, t_min: float):
    """The named distribution, and t_min checked; its draws are mapped onto [t_min, 1]."""
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"{t_min=} must lie in [0, 1)")
    return vocabulary.time_distribution(name, **(kwargs or {}))


@dataclasses.dataclass(frozen=True)
class FlowMatchingLoss(Objective):
    """E_{t, (x_0, x_1) ~ coupling} || v_theta(x_t, t) - (alpha' x_0 + sigma' x_1) ||^2.

    A batch holding "noise" (reflow pairs) uses that noise as x_1, coupled as given; otherwise
    x_1 ~ N(0, I) is drawn and paired by `coupling`. Metrics: {"loss"}.

    Attributes:
      process: the probability path (OTPath, VP, RectifiedFlow, ...).
      time_distribution: a name in TIME_DISTRIBUTIONS ("uniform"; "logit_normal" as SD3), its
        draws u mapped to t = t_min + (1 - t_min) u; options in `time_distribution_kwargs`.
      t_min: smallest training time.
      coupling: "independent", "exact" (optimal assignment, O(B^3) on the host) or "sinkhorn".
      sinkhorn_epsilon: entropic regularisation, relative to the mean cost of the batch.
    """

    process: Process
    time_distribution: str = "uniform"
    time_distribution_kwargs: Mapping[str, Any] | None = None
    t_min: float = 0.0
    coupling: str = "independent"
    sinkhorn_epsilon: float = 0.05

    def __post_init__(self):
        times = _time_distribution(
            self.time_distribution, self.time_distribution_kwargs, self.t_min
        )
        object.__setattr__(self, "_times", times)
        if self.coupling not in COUPLINGS:
            raise ValueError(f"unknown coupling={self.coupling!r}; valid: {', '.join(COUPLINGS)}")
        vocabulary.check_positive(sinkhorn_epsilon=self.sinkhorn_epsilon)

    def sample_t(self, key: Array, n: int) -> Array:
        """n training times in [t_min, 1]."""
        return self.t_min + (1.0 - self.t_min) * self._times.sample(key, n, self.process)

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        def loss(params, batch, key):
            x0 = batch["x"]
            k_t, k_noise, k_couple, k_drop = jax.random.split(key, 4)
            t = self.sample_t(k_t, x0.shape[0])
            if "noise" in batch:
                x1 = batch["noise"]
            else:
                x1 = jax.random.normal(k_noise, x0.shape, x0.dtype)
                x1 = couple(self.coupling, k_couple, x0, x1, self.sinkhorn_epsilon)
            x_t, target = interpolate(self.process, x0, x1, t)
            model = denoisers.from_network(
                apply_fn, params["model"], "velocity", self.process, batch.get("label"), k_drop
            )
            value = jnp.mean(vocabulary.mean_per_example(jnp.square(model.output(x_t, t) - target)))
            return value, {"loss": value}

        return loss


AverageVelocityFn = Callable[[Array, Array, Array], Array]


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


def average_velocity(model: denoisers.Denoiser) -> AverageVelocityFn:
    """u(z, r, t) of an `AverageVelocity` Denoiser: its output on times (t, t - r)."""
    return lambda z, r, t: model.output(z, jnp.stack([t, t - r], axis=-1))


@dataclasses.dataclass(frozen=True)
class MeanFlowLoss(Objective):
    """sg(w) ||D||^2 per example, D = u_theta(z_t, r, t) - sg(u_tgt), w = (||D||^2 + c)^(-p).

    Metrics: {"loss", "squared_error"}.

    Attributes:
      process: the path z_t = alpha x + sigma eps (the paper's is `rectified_flow`).
      time_distribution: each of the two draws of (r, t) ("logit_normal" in the paper, with
        `time_distribution_kwargs` {"mean": -0.4, "std": 1.0}); t is the larger.
      equal_fraction: fraction of examples with r = t (paper: 0.75).
      adaptive_power: p of the adaptive weight (paper: 1; 0 is the plain squared error).
      adaptive_eps: c of the adaptive weight.
      guidance_scale: omega of the CFG target (1 = no guidance); needs labels in the batch,
        dropped by the trainer's shared label dropout (`conditioning.LabelDropout`).
      null_cond: the null label, i.e. the model's `num_classes` (required when omega != 1); a
        batch label equal to it marks an example whose label was dropped.
      network_times: what the network sees, "t_gap" (t, t - r) or "r_t" (r, t)
        (`preconditioning.AverageVelocity`).
      time_scale: the network sees time_scale x those times (`AverageVelocity`).
    """

    process: Process
    time_distribution: str = "logit_normal"
    time_distribution_kwargs: Mapping[str, Any] | None = None
    equal_fraction: float = 0.75
    adaptive_power: float = 1.0
    adaptive_eps: float = 1e-3
    guidance_scale: float = 1.0
    null_cond: int = -1
    network_times: str = "t_gap"
    time_scale: float = 1.0

    def __post_init__(self):
        times = _time_distribution(self.time_distribution, self.time_distribution_kwargs, 0.0)
        object.__setattr__(self, "_times", times)
        prediction = AverageVelocity(self.network_times, self.time_scale)
        object.__setattr__(self, "_prediction", prediction)
        if not 0.0 <= self.equal_fraction <= 1.0:
            raise ValueError(f"fractions must lie in [0, 1]: {self.equal_fraction=}")
        if self.adaptive_power < 0.0 or self.adaptive_eps <= 0.0:
            raise ValueError(f"need {self.adaptive_power=} >= 0 and {self.adaptive_eps=} > 0")
        if self.guidance_scale != 1.0 and self.null_cond < 0:
            raise ValueError(
                f"{self.guidance_scale=} needs the model's null label as null_cond >= 0"
            )

    def check_conditioning(self, num_classes: int, p_uncond: float) -> None:
        """The guided target needs the model's null class and dropped labels to learn it.

        Raises:
          ValueError: if guidance_scale != 1 and null_cond != num_classes or p_uncond == 0.
        """
        if self.guidance_scale == 1.0:
            return
        if self.null_cond != num_classes or num_classes < 1:
            raise ValueError(
                f"loss.guidance_scale={self.guidance_scale} needs loss.null_cond="
                f"{self.null_cond} to equal model.num_classes={num_classes} > 0 (the null class)"
            )
        if p_uncond == 0.0:
            raise ValueError(
                f"loss.guidance_scale={self.guidance_scale} needs model.p_uncond > 0: the "
                "guided target reads the unconditional model, learned from dropped labels"
            )

    def sample_times(self, key: Array, n: int) -> tuple[Array, Array]:
        """(r, t) [n] each: two draws, t the larger; r = t with probability equal_fraction."""
        k1, k2, k3 = jax.random.split(key, 3)
        a, b = (self._times.sample(k, n, self.process) for k in (k1, k2))
        t, r = jnp.maximum(a, b), jnp.minimum(a, b)
        return jnp.where(jax.random.uniform(k3, (n,)) < self.equal_fraction, t, r), t

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        process, prediction = self.process, self._prediction

        def network(params, cond, key):
            return denoisers.from_network(apply_fn, params, prediction, process, cond, key)

        def loss(params, batch, key):
            x, cond = batch["x"], batch.get("label")
            # The third key drew the label dropout before it moved to the trainer; kept so runs
            # draw the same times and noise as before.
            k_t, k_eps, _, k_net = jax.random.split(key, 4)
            n = x.shape[0]
            r, t = self.sample_times(k_t, n)
            z, v = interpolate(process, x, jax.random.normal(k_eps, x.shape, x.dtype), t)
            if cond is not None and self.guidance_scale != 1.0:
                dropped = cond == self.null_cond  # [B]: the trainer's label dropout
                null = jnp.full_like(cond, self.null_cond)
                v_null = network(params["model"], null, k_net).output(z, t)
                v_cfg = self.guidance_scale * v + (1.0 - self.guidance_scale) * v_null
                v = jnp.where(expand(dropped, x), v, jax.lax.stop_gradient(v_cfg))
            u_fn = average_velocity(network(params["model"], cond, k_net))
            u, u_tgt = meanflow_target(u_fn, z, r, t, v)
            sq = vocabulary.sum_per_example(jnp.square(u - jax.lax.stop_gradient(u_tgt)))  # [B]
            weight = jax.lax.stop_gradient(jnp.power(sq + self.adaptive_eps, -self.adaptive_power))
            value = jnp.mean(weight * sq)
            return value, {"loss": value, "squared_error": jnp.mean(sq)}

        return loss
