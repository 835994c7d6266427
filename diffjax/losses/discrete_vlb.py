"""The discrete VLB (DDPM) and iDDPM's hybrid objective with a learned variance.

`vlb_term` / `ddpm_vlb`: the discrete VLB, prior KL + Gaussian KLs + decoder, in nats; for a
grid s = (i - 1) / T, t = i / T (seed 001, "GENERAL FORMULATIONS", "DISCRETE-TIME"):
  q(z_s | z_t, x) = N(alpha_s (1 - e^(lambda_t - lambda_s)) x
                      + e^(lambda_t - lambda_s) (alpha_s / alpha_t) z_t,
                      sigma_s^2 (1 - e^(lambda_t - lambda_s)))
which for a DDPM table is mu~_t = A_t x_0 + B_t x_t, beta~_t of seed 000, "DDPM".
`IDDPMLoss`: L_simple + lambda L_vlb with a learned variance interpolated between beta_t and
beta~_t in the log domain and a stop-gradient on the mean (seed 000, "iDDPM").
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import denoisers, predictions
from diffjax.denoisers import Denoiser
from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective
from diffjax.preconditioning import LearnedVariance
from diffjax.processes import DiscreteProcess, Process, expand


def discretized_gaussian_log_likelihood(
    x: Array, mean: Array, logvar: Array, num_bins: int
) -> Array:
    """log P(x) per element for data on `num_bins` levels in [-1, 1] under N(mean, e^logvar)
    integrated over each level's bin, the outer bins extended to +-inf (DDPM's L_0)."""
    half = 1.0 / (num_bins - 1)
    inv_std = jnp.exp(-0.5 * logvar)
    upper = jax.scipy.stats.norm.logcdf((x - mean + half) * inv_std)
    lower_tail = jax.scipy.stats.norm.logcdf(-(x - mean - half) * inv_std)  # log(1 - cdf)
    cdf_up = jnp.exp(upper)
    cdf_low = jax.scipy.stats.norm.cdf((x - mean - half) * inv_std)
    middle = jnp.log(jnp.maximum(cdf_up - cdf_low, 1e-12))
    return jnp.where(x < -1.0 + half, upper, jnp.where(x > 1.0 - half, lower_tail, middle))


def _step_coefs(process: Process, s: Array, t: Array, x: Array):
    """For the step z_t -> z_s (s < t, both [B]): the posterior mean's coefficients of x and
    z_t, log beta~ (posterior variance) and log beta (forward variance), expanded to x [B, ...].

    beta = sigma_t^2 (1 - SNR_t / SNR_s), beta~ = sigma_s^2 (1 - SNR_t / SNR_s); at s = 0 the
    z_t coefficient is 0 and beta~ = 0 (log beta~ = -inf).
    """
    lam_s, lam_t = process.log_snr(s), process.log_snr(t)
    em1 = -jnp.expm1(lam_t - lam_s)  # 1 - SNR_t / SNR_s, in (0, 1]
    alpha_s, alpha_t = process.alpha(s), process.alpha(t)
    coef_x = alpha_s * em1
    coef_z = jnp.exp(lam_t - lam_s) * alpha_s / alpha_t
    log_beta_tilde = 2.0 * jnp.log(process.sigma(s)) + jnp.log(em1)
    log_beta = 2.0 * jnp.log(process.sigma(t)) + jnp.log(em1)
    return tuple(expand(c, x) for c in (coef_x, coef_z, log_beta_tilde, log_beta))


VARIANCES = ("beta", "beta_tilde", "learned")
DECODERS = ("discretized", "gaussian")


def _check_vlb_options(variance: str, decoder: str, num_bins: int) -> None:
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; valid: {', '.join(VARIANCES)}")
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; valid: {', '.join(DECODERS)}")
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins=}")


def vlb_term(
    process: Process,
    num_steps: int,
    i: Array,
    x0: Array,
    z_t: Array,
    x0_hat: Array,
    v: Array | None = None,
    variance: str = "beta_tilde",
    decoder: str = "discretized",
    num_bins: int = 256,
) -> Array:
    """L_{i-1} of the discrete VLB on the grid t = i / T, in nats per example [B].

    For i >= 2: KL(q(z_s | z_t, x_0) || p(z_s | z_t)), s = (i - 1) / T, with p's mean the
    posterior mean at x0_hat and variance beta~ ("beta_tilde"), beta ("beta") or iDDPM's
    exp(frac log beta + (1 - frac) log beta~), frac = (v + 1) / 2 ("learned"). For i = 1 the
    decoder -log p(x_0 | z_{1/T}), mean x0_hat, discretised to `num_bins` levels in [-1, 1]
    or a Gaussian density. beta~_1 = 0, so step 1 uses beta~_2 in its place (iDDPM's clipped
    log-variance), for "beta" too with the discretised decoder (DDPM / iDDPM's convention; the
    Gaussian decoder keeps beta_1); "learned" interpolates between beta_1 and beta~_2 there, as
    iDDPM.

    Args:
      process: the forward process (sigma(0) = 0, e.g. a DDPM table, vp, cosine).
      num_steps: T.
      i: [B] step indices in 1..T.
      x0: the data [B, ...]; z_t: a draw of q(z_{i/T} | x_0) [B, ...]; x0_hat: the model's
        x_0 at (z_t, i / T) [B, ...].
      v: the learned-variance output [B, ...] (only for variance="learned").
    """
    _check_vlb_options(variance, decoder, num_bins)
    if (variance == "learned") != (v is not None):
        raise ValueError("pass the network's v output exactly when variance='learned'")
    i = jnp.asarray(i, jnp.float32)
    t = i / num_steps
    coef_x, coef_z, log_bt, log_b = _step_coefs(process, t - 1.0 / num_steps, t, x0)
    first = expand(i < 1.5, x0)
    if num_steps > 1:
        step2 = _step_coefs(
            process, jnp.full_like(t, 1.0 / num_steps), jnp.full_like(t, 2.0 / num_steps), x0
        )
        log_bt = jnp.where(first, step2[2], log_bt)
    else:
        log_bt = log_b
    if variance == "learned":
        logvar = LearnedVariance.log_variance(v, log_b, log_bt)
    elif variance == "beta" and decoder == "discretized":
        # The discretised decoder's variance is beta~_2 for both fixed variances, as in DDPM /
        # iDDPM (their "fixedlarge" prepends posterior_variance[1] to betas[1:]). The Gaussian
        # density decoder keeps beta_1 = sigma_{1/T}^2, the exact variance of x_0 | z_{1/T}
        # for point-mass data, whose VLB then converges to the NLL like 1 / T.
        logvar = jnp.broadcast_to(jnp.where(first, log_bt, log_b), x0.shape)
    elif variance == "beta":
        logvar = jnp.broadcast_to(log_b, x0.shape)
    else:
        logvar = jnp.broadcast_to(log_bt, x0.shape)
    mean_q = coef_x * x0 + coef_z * z_t
    mean_p = coef_x * x0_hat + coef_z * z_t
    kl = vocabulary.gaussian_kl(mean_q, jnp.broadcast_to(log_bt, x0.shape), mean_p, logvar)
    if decoder == "discretized":
        nll0 = -discretized_gaussian_log_likelihood(x0, x0_hat, logvar, num_bins)
    else:
        nll0 = 0.5 * (math.log(2 * math.pi) + logvar + jnp.square(x0 - x0_hat) * jnp.exp(-logvar))
    return vocabulary.sum_per_example(jnp.where(first, nll0, kl))


def prior_kl(process: Process, x0: Array) -> Array:
    """L_T = KL(q(z_1 | x_0) || N(0, prior_std^2 I)) in nats per example [B]."""
    one = jnp.ones(x0.shape[:1])
    mean = expand(process.alpha(one), x0) * x0
    logvar = jnp.broadcast_to(expand(2.0 * jnp.log(process.sigma(one)), x0), x0.shape)
    prior_logvar = jnp.broadcast_to(2.0 * jnp.log(process.prior_std()), x0.shape)
    return vocabulary.sum_per_example(
        vocabulary.gaussian_kl(mean, logvar, jnp.zeros_like(x0), prior_logvar)
    )


def ddpm_vlb(
    denoiser: Denoiser,
    x0: Array,
    key: Array,
    num_steps: int | None = None,
    variance: str = "beta_tilde",
    decoder: str = "discretized",
    num_bins: int = 256,
) -> Array:
    """The full discrete VLB L_T + sum_{i=2}^T L_{i-1} + L_0 in nats per example [B].

    One draw z_{i/T} ~ q(z | x_0) per step and example; the steps run in one `lax.scan`.

    Args:
      denoiser: the model (or the exact denoiser) whose x0 prediction defines p's means.
      x0: data [B, ...] in [-1, 1] (on `num_bins` levels for the discretised decoder).
      key: PRNG key.
      num_steps: T; defaults to the process's table size.
      variance, decoder, num_bins: as in `vlb_term` ("learned" reads `denoiser.variance`).
    """
    process = denoiser.process
    if num_steps is None:
        if not isinstance(process, DiscreteProcess):
            raise ValueError("num_steps is required for a continuous-time process")
        num_steps = process.num_steps
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps=}")

    def step(total, i):
        i_b = jnp.full(x0.shape[:1], i, jnp.float32)
        z_t, _ = process.marginal_sample(jax.random.fold_in(key, i), x0, i_b / num_steps)
        x0_hat = denoiser.x0(z_t, i_b / num_steps)
        v = denoiser.variance(z_t, i_b / num_steps) if variance == "learned" else None
        term = vlb_term(process, num_steps, i_b, x0, z_t, x0_hat, v, variance, decoder, num_bins)
        return total + term, None

    steps = jnp.arange(1, num_steps + 1)
    total, _ = jax.lax.scan(step, prior_kl(process, x0), steps)
    return total


@dataclasses.dataclass(frozen=True)
class IDDPMLoss(Objective):
    """iDDPM's hybrid objective L_simple + lambda L_vlb (seed 000, "iDDPM").

    The network outputs 2C channels [eps_hat, v] (`preconditioning.LearnedVariance`); the
    variance is exp(frac log beta_t + (1 - frac) log beta~_t), frac = (v + 1) / 2. L_vlb =
    sum_t L_t is estimated by T L_i at one i ~ U{1..T} per example, in bits/dim, with the mean
    stop-gradiented so L_vlb trains only the variance. Metrics: {"loss", "mse", "vlb_bpd"};
    vlb_bpd estimates the full VLB (with the prior term) in bits/dim.

    Attributes:
      process: a DiscreteProcess (iDDPM: `ddpm_cosine`, T = 4000).
      vlb_weight: lambda (1e-3 in iDDPM).
      num_bins: data levels in [-1, 1] of the discretised decoder L_0.
    """

    process: DiscreteProcess
    vlb_weight: float = 1e-3
    num_bins: int = 256

    def __post_init__(self):
        if not isinstance(self.process, DiscreteProcess):
            raise ValueError(f"iddpm needs a discrete process (ddpm_cosine), got {self.process}")
        if not self.vlb_weight >= 0.0:
            raise ValueError(f"vlb_weight must be >= 0, got {self.vlb_weight=}")
        _check_vlb_options("learned", "discretized", self.num_bins)

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        process, num_steps = self.process, self.process.num_steps

        def loss(params, batch, key):
            x0 = batch["x"]
            t_key, noise_key, dropout_key = jax.random.split(key, 3)
            i = jax.random.randint(t_key, x0.shape[:1], 1, num_steps + 1).astype(jnp.float32)
            t = i / num_steps
            x_t, eps = process.marginal_sample(noise_key, x0, t)
            model = denoisers.from_network(
                apply_fn, params["model"], "eps", process, batch.get("label"), dropout_key
            )
            eps_hat, v = LearnedVariance.split(model.output(x_t, t))
            mse = vocabulary.mean_per_example(jnp.square(eps_hat - eps))
            x0_hat, _ = predictions.to_x0_eps(
                "eps", jax.lax.stop_gradient(eps_hat), x_t, t, process
            )
            term = vlb_term(
                process, num_steps, i, x0, x_t, x0_hat, v, "learned", "discretized", self.num_bins
            )
            vlb = vocabulary.bits_per_dim(num_steps * term, vocabulary.dim_of(x0))
            value = jnp.mean(mse + self.vlb_weight * vlb)
            vlb_bpd = jnp.mean(
                vlb + vocabulary.bits_per_dim(prior_kl(process, x0), vocabulary.dim_of(x0))
            )
            return value, {"loss": value, "mse": jnp.mean(mse), "vlb_bpd": vlb_bpd}

        return loss
