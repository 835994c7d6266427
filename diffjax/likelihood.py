"""Exact log-likelihood of data under the probability-flow ODE of any denoiser.

The probability-flow ODE dx/dt = F(x, t) (`Denoiser.velocity`: f x - g^2 score / 2, or flow
matching's velocity) carries p_t to p_s for every s, t, so by the instantaneous change of
variables (seed 000, "Fokker-Planck equation and ODE models"; seed 004, "Diffusion ODEs",
continuous change of variable)

  log p_{t_min}(x(t_min)) = log p_1(x(1)) + int_{t_min}^{1} div F(x(t), t) dt,

integrated forward from the data x(t_min) = x jointly with the accumulated divergence, and
log p_1 taken as the terminal distribution N(0, prior_std^2 I) of the process. The divergence
div F = tr(dF/dx) is either

  exact:       sum_i e_i^T (dF/dx) e_i, one `jax.jvp` per basis vector e_i, vectorised
               (D forward-mode passes: for small D only), or
  hutchinson:  (1/K) sum_k z_k^T (dF/dx) z_k with K probes z_k of zero mean and identity
               covariance, Gaussian or Rademacher (Skilling-Hutchinson trace estimator, seed
               004), one `jax.jvp` per probe; the probes are drawn once per example and held
               fixed along the trajectory, so the integrand is a smooth ODE and the estimate of
               log p is unbiased in expectation over the probes.

In both cases the jvps share the primal evaluation, so one augmented drift evaluation costs
about one forward pass plus K (or D) tangent passes, and no backward pass.

Densities here are of x as given (continuous, in the units of x); `diffjax.evaluation.bpd`
turns them into bits/dim of discrete data with dequantization.
"""

import math

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import ode
from diffjax.denoisers import Denoiser
from diffjax.losses import vocabulary

TRACES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
SOLVERS = ("dopri5", *ode.FIXED_METHODS)


def _probes(key: Array, x: Array, trace: str, probe: str, num_probes: int) -> Array:
    """Tangents for the divergence, [K, B, ...]: basis vectors (K = D) or random probes."""
    batch, event = x.shape[0], x.shape[1:]
    if trace == "exact":
        dim = math.prod(event)
        basis = jnp.eye(dim, dtype=x.dtype).reshape((dim, 1, *event))
        return jnp.broadcast_to(basis, (dim, batch, *event))
    shape = (num_probes, *x.shape)
    if probe == "gaussian":
        return jax.random.normal(key, shape, x.dtype)
    return jax.random.rademacher(key, shape, x.dtype)


def drift_and_divergence(denoiser: Denoiser, x: Array, t: Array, tangents: Array, weight: float):
    """F(x, t) [B, ...] and weight * sum_k z_k^T (dF/dx) z_k [B] for tangents z: [K, B, ...].

    The probability-flow drift is evaluated once (the primal of the jvps); the K tangents are
    pushed through it in forward mode, vectorised. Examples must not interact in the model
    (no batch statistics), so that dF/dx is block diagonal over the batch.
    """

    def velocity(y):
        return denoiser.velocity(y, t)

    def jvp(z):
        return jax.jvp(velocity, (x,), (z,))

    v, jz = jax.vmap(jvp, out_axes=(None, 0))(tangents)  # [B, ...], [K, B, ...]
    axes = tuple(range(2, tangents.ndim))
    return v, weight * jnp.sum(tangents * jz, axis=(0, *axes))


def nll(
    key: Array | None,
    denoiser: Denoiser,
    x: Array,
    *,
    trace: str = "hutchinson",
    probe: str = "rademacher",
    num_probes: int = 1,
    solver: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 10_000,
    num_steps: int = 100,
    t_min: float = 1e-5,
    t_max: float = 1.0,
) -> dict[str, Array]:
    """Negative log-likelihood of x under the probability-flow ODE of `denoiser`.

    -log p(x) = -log N(x(t_max); 0, s^2 I) - int_{t_min}^{t_max} div F(x(t), t) dt,
    with s = process.prior_std() and F = denoiser.velocity.

    Args:
      key: PRNG key for the Hutchinson probes (unused, may be None, for trace="exact").
      denoiser: any Denoiser; its model must treat examples independently.
      x: data, [B, ...] (the density is in the units of x).
      trace: "exact" (D jvps per evaluation; small D) or "hutchinson".
      probe: "rademacher" or "gaussian" Hutchinson probes.
      num_probes: Hutchinson probes per example, averaged.
      solver: "dopri5" (adaptive, `rtol`/`atol`/`max_steps`) or a fixed-step method "euler",
        "heun", "rk4" over `num_steps` uniform steps.
      rtol, atol: dopri5 tolerances, on x and on the accumulated log-density jointly.
      max_steps: dopri5 bound on attempted steps.
      num_steps: steps of a fixed-step solver.
      t_min: start time (the data end; score_sde uses 1e-5 for VP, the ODE is singular at 0).
      t_max: end time at which the prior is evaluated.

    Returns:
      {"nll": [B] nats per example, "bpd": [B] nll / (D ln 2) (continuous, no dequantization
      offset), "nfe": [] evaluations of the augmented drift, "latent": x(t_max) [B, ...],
      "prior_logp": [B] log N(latent; 0, s^2 I),
      "delta_logp": [B] the divergence integral, "success": [] bool (dopri5 reached t_max;
      always True for fixed steps)}.

    Raises:
      ValueError: for an unknown trace / probe / solver, num_probes, num_steps or max_steps < 1,
        times outside 0 <= t_min < t_max <= 1, or trace="hutchinson" without a key.
    """
    if trace not in TRACES:
        raise ValueError(f"unknown trace {trace!r}; valid traces: {', '.join(TRACES)}")
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; valid probes: {', '.join(PROBES)}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; valid solvers: {', '.join(SOLVERS)}")
    if min(num_probes, num_steps, max_steps) < 1:
        raise ValueError(f"need {num_probes=}, {num_steps=}, {max_steps=} all >= 1")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= {t_min=} < {t_max=} <= 1")
    if trace == "hutchinson" and key is None:
        raise ValueError("trace='hutchinson' needs a PRNG key for its probes")
    x = jnp.asarray(x, jnp.float32)
    batch, dim = x.shape[0], math.prod(x.shape[1:])
    tangents = _probes(key, x, trace, probe, num_probes)
    weight = 1.0 if trace == "exact" else 1.0 / num_probes

    def augmented(state, t):
        y, _ = state
        return drift_and_divergence(denoiser, y, t, tangents, weight)

    y0 = (x, jnp.zeros((batch,), jnp.float32))
    if solver == "dopri5":
        (x1, delta), stats = ode.solve_adaptive(
            augmented, y0, t_min, t_max, rtol=rtol, atol=atol, max_steps=max_steps
        )
        nfe, success = stats["nfe"], stats["success"]
    else:
        ts = jnp.linspace(t_min, t_max, num_steps + 1)
        x1, delta = ode.solve_fixed(augmented, y0, ts, solver)
        nfe, success = jnp.int32(num_steps * ode.nfe_per_step(solver)), jnp.bool_(True)
    prior_logp = gaussian_log_prob(x1, denoiser.process.prior_std())
    nats = -(prior_logp + delta)
    return {
        "nll": nats,
        "bpd": vocabulary.bits_per_dim(nats, dim),
        "nfe": nfe,
        "latent": x1,
        "prior_logp": prior_logp,
        "delta_logp": delta,
        "success": success,
    }


def gaussian_log_prob(x: Array, std: Array) -> Array:
    """log N(x; 0, std^2 I) per example, [B]; x: [B, ...], std a scalar."""
    dim = math.prod(x.shape[1:])
    sq = jnp.sum(jnp.square(x).reshape(x.shape[0], dim), axis=-1)
    return -0.5 * (sq / jnp.square(std) + dim * jnp.log(2.0 * jnp.pi * jnp.square(std)))
