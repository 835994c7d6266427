"""VDM's continuous-time VLB with a learned schedule (Kingma et al. 2021; seed 001).

Seed 001, "CONTINUOUS-TIME": L_inf = 1/2 E_t [gamma'(t) ||eps - eps_hat||^2] + prior +
reconstruction ("GENERAL FORMULATIONS"), in bits/dim, with the schedule trained to minimise the
variance of the estimator (Kingma et al. 2021, appendix I.2).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import denoisers
from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective
from diffjax.models.vdm_schedule import MonotoneGamma
from diffjax.preconditioning import Preconditioning
from diffjax.processes import DiscreteProcess, Process, VDMLearned, expand


def vdm_reconstruction_nll(x0: Array, z0: Array, alpha0: Array, log_snr0: Array, num_bins: int):
    """-log p(x_0 | z_0) in nats per example [B] (Kingma et al. 2021, eq. 17-18).

    Each value of x_0 on `num_bins` levels c_k in [-1, 1] has probability softmax_k(-SNR_0
    (z_0 / alpha_0 - c_k)^2 / 2), independently per dimension.
    """
    levels = jnp.linspace(-1.0, 1.0, num_bins)
    k = jnp.clip(jnp.round((x0 + 1.0) * 0.5 * (num_bins - 1)), 0, num_bins - 1).astype(jnp.int32)
    z_scaled = z0 / expand(alpha0, z0)
    snr = expand(jnp.exp(log_snr0), z0)
    levels = jnp.reshape(levels, (1,) * z0.ndim + (num_bins,))
    logits = -0.5 * snr[..., None] * jnp.square(z_scaled[..., None] - levels)  # [B, ..., K]
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, k[..., None], axis=-1)[..., 0]
    return vocabulary.sum_per_example(nll)


def vdm_terms(
    model: Callable[[Array, Array], Array],
    process: Process,
    x0: Array,
    t: Array,
    key: Array,
    num_bins: int,
) -> tuple[Array, Array, Array]:
    """VDM's VLB terms in nats per example [B]: (diffusion, prior, reconstruction).

    diffusion = 1/2 gamma'(t) ||eps - eps_hat(z_t, t)||^2 (seed 001, "CONTINUOUS-TIME"), an
    unbiased one-sample estimate of L_inf for t ~ U[0, 1); prior = KL(q(z_1 | x) || N(0, I));
    reconstruction = -log p(x | z_0) (seed 001, "GENERAL FORMULATIONS"). Everything is read
    from gamma = -log SNR (alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma)), evaluated once
    at t (with its derivative) and once at the two ends.

    Args:
      model: (z_t, t) -> eps_hat.
      process: a variance-preserving process with finite log-SNR at t = 0 and 1.
      x0: [B, ...]; t: [B]; key: for the two noise draws.
    """
    k_t, k_0 = jax.random.split(key)
    lam_t, dlam_t = jax.jvp(process.log_snr, (t,), (jnp.ones_like(t),))
    lam_0, lam_1 = process.log_snr(jnp.array([0.0, 1.0]))

    def noisy(lam, k):  # z = alpha x + sigma eps, lam: [B]
        eps = jax.random.normal(k, x0.shape, x0.dtype)
        alpha, sigma = jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))
        return expand(alpha, x0) * x0 + expand(sigma, x0) * eps, eps, alpha

    z_t, eps, _ = noisy(lam_t, k_t)
    sq = vocabulary.sum_per_example(jnp.square(eps - model(z_t, t)))
    diffusion = -0.5 * dlam_t * sq  # gamma' = -d log SNR / dt
    z0, _, alpha0 = noisy(jnp.full_like(t, lam_0), k_0)
    recon = vdm_reconstruction_nll(x0, z0, alpha0, jnp.full_like(t, lam_0), num_bins)
    mean1 = jnp.sqrt(jax.nn.sigmoid(lam_1)) * x0
    logvar1 = jnp.full_like(x0, jax.nn.log_sigmoid(-lam_1))
    prior = vocabulary.gaussian_kl(mean1, logvar1, jnp.zeros_like(x0), jnp.zeros_like(x0))
    return diffusion, vocabulary.sum_per_example(prior), recon


def schedule_shape_mask(params: Any) -> Any:
    """True on the leaves of params["schedule"] that shape gamma, not on its ends
    (`MonotoneGamma.ENDS`) nor outside the schedule."""

    def is_shape(path, _):
        keys = [getattr(p, "key", None) for p in path]
        return keys[0] == "schedule" and keys[-1] not in MonotoneGamma.ENDS

    return jax.tree_util.tree_map_with_path(is_shape, params)


def decayed_params_mask(params: Any) -> Any:
    """False on the schedule's ends gamma_0, gamma_1: weight decay would pull the log-SNR range
    towards 0, i.e. shrink the SNR range the VLB depends on."""

    def decayed(path, _):
        keys = [getattr(p, "key", None) for p in path]
        return not (keys[0] == "schedule" and keys[-1] in MonotoneGamma.ENDS)

    return jax.tree_util.tree_map_with_path(decayed, params)


def _variance_reduced_mean(per_example: Callable[[Any], Array], params: Any):
    """(mean_b sum_p L[p, b], L) for L = per_example(params) [P, B], whose gradient is the
    usual one except on the schedule's shape params: those get the gradient of the estimator's
    second moment, d mean(l^2) = mean(2 l dl) with l = sum_p L[p] (Kingma et al. 2021, appendix
    I.2: the schedule minimises the variance of the VLB estimate, the VLB itself depending only
    on the ends of gamma, seed 001, "EQUIVALENCE OF DIFFUSION MODELS"). One forward pass, two
    backward passes."""
    mask = schedule_shape_mask(params)

    @jax.custom_vjp
    def mean_loss(params):
        parts = per_example(params)
        return jnp.mean(jnp.sum(parts, axis=0)), parts

    def fwd(params):
        parts, vjp_fn = jax.vjp(per_example, params)
        return (jnp.mean(jnp.sum(parts, axis=0)), parts), (parts, vjp_fn)

    def bwd(res, cts):
        parts, vjp_fn = res
        ct_mean, ct_parts = cts
        n = parts.shape[1]
        total = jnp.broadcast_to(jnp.sum(parts, axis=0, keepdims=True), parts.shape)
        (g_mean,) = vjp_fn(jnp.full_like(parts, ct_mean / n) + ct_parts)
        (g_var,) = vjp_fn(ct_mean * 2.0 * total / n + ct_parts)
        return (jax.tree.map(lambda m, g, v: jnp.where(m, v, g), mask, g_mean, g_var),)

    mean_loss.defvjp(fwd, bwd)
    return mean_loss(params)


@dataclasses.dataclass(frozen=True)
class VDMLoss(Objective):
    """VDM's VLB in bits/dim with the learned schedule (Kingma et al. 2021; seed 001).

    loss = (L_inf + L_prior + L_recon) / (D log 2) per example, averaged; the schedule's params
    live in params["schedule"] and are bound into `process` at every call. The network sees
    what `prediction` gives it: VDM's `LogSNRConditioning` (the normalised gamma(t)), which
    makes the continuous VLB depend on the schedule only through its ends. With
    `variance_reduction`, the schedule's shape is trained to minimise the estimator's variance
    (`_variance_reduced_mean`); the ends gamma_0, gamma_1 and the network follow the VLB.
    Metrics: {"loss", "diffusion_bpd", "prior_bpd", "recon_bpd"}.

    Attributes:
      process: the (unbound) `vdm_learned` process; any variance-preserving Process with finite
        log-SNR at both ends also works (fixed schedule, no "schedule" params).
      prediction: the eps-predicting network's preconditioning (or plain "eps").
      num_bins: levels of the data in [-1, 1] for the reconstruction term.
      time_distribution: a name in TIME_DISTRIBUTIONS ("antithetic": VDM's low-discrepancy t).
      variance_reduction: train the schedule's shape on the variance, not the VLB.
    """

    process: Process
    prediction: str | Preconditioning = "eps"
    num_bins: int = 256
    time_distribution: str = "antithetic"
    variance_reduction: bool = True

    def __post_init__(self):
        object.__setattr__(self, "_times", vocabulary.time_distribution(self.time_distribution))
        if self.num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {self.num_bins=}")
        if isinstance(self.process, DiscreteProcess):
            raise ValueError(f"vdm is continuous-time; got the discrete process {self.process}")

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        process = self.process
        learned = isinstance(process, VDMLearned)

        def loss(params, batch, key):
            x0 = batch["x"]
            t_key, noise_key, dropout_key = jax.random.split(key, 3)
            t = self._times.sample(t_key, x0.shape[0], process)

            def terms(params):  # [3, B] bits per dim
                proc = process.bind(params["schedule"]) if learned else process
                model = denoisers.from_network(
                    apply_fn,
                    params["model"],
                    self.prediction,
                    proc,
                    batch.get("label"),
                    dropout_key,
                )
                parts = vdm_terms(model.eps, proc, x0, t, noise_key, self.num_bins)
                return jnp.stack([vocabulary.bits_per_dim(n, vocabulary.dim_of(x0)) for n in parts])

            if self.variance_reduction and learned:
                value, parts = _variance_reduced_mean(terms, params)
            else:
                parts = terms(params)
                value = jnp.mean(jnp.sum(parts, axis=0))
            names = ("diffusion_bpd", "prior_bpd", "recon_bpd")
            means = {n: jnp.mean(p) for n, p in zip(names, parts, strict=True)}
            return value, {"loss": value, **means}

        return loss
