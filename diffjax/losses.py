"""Training objectives: pure `loss(params, batch, key) -> (scalar, metrics)` builders.

Notation: x_t = alpha_t x_0 + sigma_t eps, lambda_t = log SNR(t) = log(alpha_t^2 / sigma_t^2).

- `denoising_loss`: E_t E_eps [w(t) ||eps_hat - eps||^2], the DDPM L_simple (seed 000, "DDPM";
  seed 001, "three equivalent parameterisations") with the regression done in eps, x0, v, score
  or velocity space, a weighting w(t) (`WEIGHTINGS`) and a timestep distribution
  (`TIME_SAMPLERS`). NCSN (seed 000, "NCSN", lambda(sigma) ∝ sigma^2), score-SDE DSM (seed 000,
  "SDE Models"; seed 004, denoising score matching) and EDM (Karras et al. 2022) are instances.
- `vlb_term` / `ddpm_vlb`: the discrete VLB, prior KL + Gaussian KLs + decoder, in nats; for a
  grid s = (i - 1) / T, t = i / T (seed 001, "GENERAL FORMULATIONS", "DISCRETE-TIME"):
    q(z_s | z_t, x) = N(alpha_s (1 - e^(lambda_t - lambda_s)) x
                        + e^(lambda_t - lambda_s) (alpha_s / alpha_t) z_t,
                        sigma_s^2 (1 - e^(lambda_t - lambda_s)))
  which for a DDPM table is mu~_t = A_t x_0 + B_t x_t, beta~_t of seed 000, "DDPM".
- `iddpm_loss`: L_simple + lambda L_vlb with a learned variance interpolated between beta_t and
  beta~_t in the log domain and a stop-gradient on the mean (seed 000, "iDDPM").
- `vdm_loss`: VDM's continuous-time VLB (seed 001, "CONTINUOUS-TIME": L_inf = 1/2 E_t
  [gamma'(t) ||eps - eps_hat||^2]) + prior + reconstruction, in bits/dim, with the schedule
  trained to minimise the variance of the estimator (Kingma et al. 2021, appendix I.2).

Weightings are given for the eps-space error: w(t) ||eps_hat - eps||^2. Regressing another
`target` multiplies by (d eps / d target)^2, so the objective does not depend on the target,
only the arithmetic does (e.g. target "x0": w SNR ||x0_hat - x0||^2).
"""

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import predictions
from diffjax.predictions import Preconditioning
from diffjax.processes import DiscreteProcess, Process, VDMLearned, expand

ApplyFn = Callable[..., Array]
LossFn = Callable[[Any, Mapping[str, Array], Array], tuple[Array, dict[str, Array]]]
Weighting = Callable[[Process, Array], Array]
TimeSampler = Callable[[Array, int, Process], Array]


def _check_positive(**kwargs: float) -> None:
    for name, value in kwargs.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {name}={value}")


# ---------------------------------------------------------------- weightings (eps space), [B]


def uniform_weighting() -> Weighting:
    """w = 1: DDPM's L_simple (and NCSN's lambda(sigma) = sigma^2 for a score model)."""
    return lambda process, t: jnp.ones_like(t)


def snr_weighting() -> Weighting:
    """w = SNR(t): the x0-space error weighted by SNR^2, emphasising low noise levels."""
    return lambda process, t: jnp.exp(process.log_snr(t))


def min_snr_weighting(gamma: float = 5.0) -> Weighting:
    """Min-SNR-gamma (Hang et al. 2023): x0-space weight min(SNR, gamma), w = min(1, gamma/SNR)."""
    _check_positive(gamma=gamma)
    return lambda process, t: jnp.minimum(1.0, gamma * jnp.exp(-process.log_snr(t)))


def truncated_snr_weighting() -> Weighting:
    """Truncated SNR (Salimans & Ho 2022): x0-space weight max(SNR, 1), w = max(1, 1/SNR)."""
    return lambda process, t: jnp.maximum(1.0, jnp.exp(-process.log_snr(t)))


def likelihood_weighting() -> Weighting:
    """w = g^2(t) / sigma^2(t): score-space weight g^2, which makes DSM the ELBO (Song et al.
    2021a; seed 004, likelihood weighting); equals -d lambda / dt for VP processes."""
    return lambda process, t: process.g2(t) / jnp.square(process.sigma(t))


def edm_weighting(sigma_data: float = 0.5) -> Weighting:
    """EDM lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2 on the x0 error, sigma =
    sigma_t / alpha_t; in eps space w = (sigma^2 + sigma_d^2) / sigma_d^2 (Karras et al. 2022)."""
    _check_positive(sigma_data=sigma_data)
    return lambda process, t: (jnp.exp(-process.log_snr(t)) + sigma_data**2) / sigma_data**2


WEIGHTINGS: dict[str, Callable[..., Weighting]] = {
    "uniform": uniform_weighting,
    "snr": snr_weighting,
    "min_snr": min_snr_weighting,
    "truncated_snr": truncated_snr_weighting,
    "likelihood": likelihood_weighting,
    "edm": edm_weighting,
}


# ------------------------------------------------------------------ timestep samplers, t: [B]


def uniform_time() -> TimeSampler:
    """t ~ U[0, 1)."""
    return lambda key, n, process: jax.random.uniform(key, (n,))


def antithetic_time() -> TimeSampler:
    """Low-discrepancy t_k = (u + k / n) mod 1, one u ~ U[0, 1) per batch (Kingma et al. 2021)."""
    return lambda key, n, process: jnp.mod(jax.random.uniform(key, ()) + jnp.arange(n) / n, 1.0)


def logit_normal_time(mean: float = 0.0, std: float = 1.0) -> TimeSampler:
    """t = sigmoid(mean + std n), n ~ N(0, 1) (SD3, Esser et al. 2024; seed 004, SD3)."""
    _check_positive(std=std)
    return lambda key, n, process: jax.nn.sigmoid(mean + std * jax.random.normal(key, (n,)))


def lognormal_time(mean: float = -1.2, std: float = 1.2) -> TimeSampler:
    """EDM: log(sigma_t / alpha_t) ~ N(mean, std^2), mapped to t by inverting the log-SNR."""
    _check_positive(std=std)

    def sample(key, n, process):
        log_sigma = mean + std * jax.random.normal(key, (n,))
        return process.t_of_log_snr(-2.0 * log_sigma)

    return sample


TIME_SAMPLERS: dict[str, Callable[..., TimeSampler]] = {
    "uniform": uniform_time,
    "antithetic": antithetic_time,
    "logit_normal": logit_normal_time,
    "lognormal": lognormal_time,
}


def _build(kind: str, table: Mapping[str, Callable], name: str, kwargs: Mapping[str, Any]):
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(table))}")
    try:
        return table[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad options {dict(kwargs)} for {kind} {name!r}: {e}") from None


def snap_time(t: Array, process: Process, t_min: float, num_levels: int | None) -> Array:
    """Places continuous draws t in [0, 1] on the times the objective trains on.

    A DiscreteProcess trains on its grid t = i / T, i = ceil(t T) in {1..T}; `num_levels` = L
    gives the grid t = k / (L - 1), k = floor(t L) (NCSN's noise levels sigma_1..sigma_L);
    otherwise t is clipped to [t_min, 1].
    """
    if isinstance(process, DiscreteProcess):
        n = process.num_steps
        return jnp.clip(jnp.ceil(t * n), 1.0, float(n)) / n
    if num_levels is not None:
        return jnp.minimum(jnp.floor(t * num_levels), num_levels - 1) / (num_levels - 1)
    return jnp.clip(t, t_min, 1.0)


# -------------------------------------------------------------------------- shared pieces


def _mean_per_example(x: Array) -> Array:
    """[B, ...] -> [B], the mean over every non-batch axis."""
    return jnp.mean(jnp.reshape(x, (x.shape[0], -1)), axis=-1)


def model_fn_of(
    apply_fn: ApplyFn,
    model_params: Any,
    prediction: str | Preconditioning,
    process: Process,
    cond: Array | None = None,
    key: Array | None = None,
) -> tuple[Callable[[Array, Array], Array], str]:
    """The network as `model_fn(x_t, t) -> prediction` and its plain kind (preconditioning
    applied); `key` is the dropout key (None: evaluation mode)."""
    net = lambda x, t: apply_fn(model_params, x, t, cond, key=key)  # noqa: E731
    if isinstance(prediction, Preconditioning):
        return prediction.wrap(net, process), prediction.kind
    return net, prediction


def regression_error(
    out: Array,
    kind: str,
    target: str,
    x0: Array,
    eps: Array,
    x_t: Array,
    t: Array,
    process: Process,
) -> Array:
    """Per-example ||target_hat - target||^2 (d eps / d target)^2, averaged over dims: [B].

    With `out` a prediction of `kind`, this is the eps-space error computed in `target` space.
    """
    pred = predictions.convert(out, kind, target, x_t, t, process)
    true = predictions.from_x0_eps(target, x0, eps, x_t, t, process)
    to_eps = lambda o: predictions.to_x0_eps(target, o, x_t, t, process)[1]  # noqa: E731
    _, deps = jax.jvp(to_eps, (true,), (jnp.ones_like(true),))  # d eps / d target, elementwise
    return _mean_per_example(jnp.square(deps * (pred - true)))


def _check_kind(prediction: str | Preconditioning, target: str) -> None:
    if not isinstance(prediction, Preconditioning) and prediction not in predictions.KINDS:
        raise ValueError(f"unknown prediction {prediction!r}; valid: {predictions.KINDS}")
    if target not in predictions.KINDS:
        raise ValueError(f"unknown target {target!r}; valid: {predictions.KINDS}")


# ----------------------------------------------------------------------- denoising loss


def denoising_loss(
    apply_fn: ApplyFn,
    process: Process,
    prediction: str | Preconditioning = "eps",
    target: str = "eps",
    weighting: str = "uniform",
    weighting_kwargs: Mapping[str, Any] | None = None,
    time_sampling: str = "uniform",
    time_sampling_kwargs: Mapping[str, Any] | None = None,
    t_min: float = 1e-5,
    num_levels: int | None = None,
) -> LossFn:
    """E_{x_0, t, eps} [w(t) ||eps_hat(x_t, t) - eps||^2], regressed in `target` space.

    Args:
      apply_fn: the network, `apply_fn(model_params, x, t, cond=None, key=None)`.
      process: the forward process (a DiscreteProcess trains on t = i / T, i ~ U{1..T}).
      prediction: what the network outputs (a kind, or a Preconditioning such as EDM's).
      target: the space of the regression ("eps", "x0", "v", "score", "velocity").
      weighting: a name in WEIGHTINGS (eps-space weights); options in `weighting_kwargs`.
      time_sampling: a name in TIME_SAMPLERS; options in `time_sampling_kwargs`.
      t_min: smallest t of a continuous process (the score is unbounded at t = 0).
      num_levels: L > 1 trains on the grid t = k / (L - 1) only (NCSN's noise levels).

    Returns:
      loss(params, batch, key) -> (scalar, {"loss"}) with params = {"model": ..., ...},
      batch = {"x": [B, ...], "cond": optional [B]}; key split for t, noise and dropout.

    Raises:
      ValueError: for unknown names or invalid options.
    """
    _check_kind(prediction, target)
    weight_fn = _build("weighting", WEIGHTINGS, weighting, weighting_kwargs or {})
    time_fn = _build("time sampler", TIME_SAMPLERS, time_sampling, time_sampling_kwargs or {})
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must be in [0, 1), got {t_min=}")
    if num_levels is not None and num_levels < 2:
        raise ValueError(f"num_levels must be >= 2 (or None), got {num_levels=}")

    def loss(params, batch, key):
        x0 = batch["x"]
        t_key, noise_key, dropout_key = jax.random.split(key, 3)
        t = snap_time(time_fn(t_key, x0.shape[0], process), process, t_min, num_levels)
        x_t, eps = process.marginal_sample(noise_key, x0, t)
        model, kind = model_fn_of(
            apply_fn, params["model"], prediction, process, batch.get("cond"), dropout_key
        )
        err = regression_error(model(x_t, t), kind, target, x0, eps, x_t, t, process)
        value = jnp.mean(weight_fn(process, t) * err)
        return value, {"loss": value}

    return loss


# ------------------------------------------------------------------------- discrete VLB


def gaussian_kl(mean1: Array, logvar1: Array, mean2: Array, logvar2: Array) -> Array:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats."""
    return 0.5 * (
        logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
        + jnp.square(mean1 - mean2) * jnp.exp(-logvar2) - 1.0
    )  # fmt: skip


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
    log-variance); "beta" uses beta_1 = sigma_{1/T}^2.

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
        frac = 0.5 * (v + 1.0)
        logvar = frac * log_b + (1.0 - frac) * log_bt
    else:
        logvar = jnp.broadcast_to(log_b if variance == "beta" else log_bt, x0.shape)
    mean_q = coef_x * x0 + coef_z * z_t
    mean_p = coef_x * x0_hat + coef_z * z_t
    kl = gaussian_kl(mean_q, jnp.broadcast_to(log_bt, x0.shape), mean_p, logvar)
    if decoder == "discretized":
        nll0 = -discretized_gaussian_log_likelihood(x0, x0_hat, logvar, num_bins)
    else:
        nll0 = 0.5 * (math.log(2 * math.pi) + logvar + jnp.square(x0 - x0_hat) * jnp.exp(-logvar))
    return jnp.sum(jnp.reshape(jnp.where(first, nll0, kl), (x0.shape[0], -1)), axis=-1)


def prior_kl(process: Process, x0: Array) -> Array:
    """L_T = KL(q(z_1 | x_0) || N(0, prior_std^2 I)) in nats per example [B]."""
    one = jnp.ones(x0.shape[:1])
    mean = expand(process.alpha(one), x0) * x0
    logvar = jnp.broadcast_to(expand(2.0 * jnp.log(process.sigma(one)), x0), x0.shape)
    prior_logvar = jnp.broadcast_to(2.0 * jnp.log(process.prior_std()), x0.shape)
    kl = gaussian_kl(mean, logvar, jnp.zeros_like(x0), prior_logvar)
    return jnp.sum(jnp.reshape(kl, (x0.shape[0], -1)), axis=-1)


def bits_per_dim(nats: Array, x: Array) -> Array:
    """Nats per example [B] -> bits per dimension [B] for data x [B, ...]."""
    return nats / (math.log(2.0) * math.prod(x.shape[1:]))


def ddpm_vlb(
    denoiser: predictions.Denoiser,
    x0: Array,
    key: Array,
    num_steps: int | None = None,
    variance: str = "beta_tilde",
    decoder: str = "discretized",
    num_bins: int = 256,
    v_fn: Callable[[Array, Array], Array] | None = None,
) -> Array:
    """The full discrete VLB L_T + sum_{i=2}^T L_{i-1} + L_0 in nats per example [B].

    One draw z_{i/T} ~ q(z | x_0) per step and example; the steps run in one `lax.scan`.

    Args:
      denoiser: the model (or the exact denoiser) whose x0 prediction defines p's means.
      x0: data [B, ...] in [-1, 1] (on `num_bins` levels for the discretised decoder).
      key: PRNG key.
      num_steps: T; defaults to the process's table size.
      variance, decoder, num_bins: as in `vlb_term`.
      v_fn: `(z_t, t) -> v` [B, ...] for variance="learned".
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
        v = None if v_fn is None else v_fn(z_t, i_b / num_steps)
        term = vlb_term(process, num_steps, i_b, x0, z_t, x0_hat, v, variance, decoder, num_bins)
        return total + term, None

    steps = jnp.arange(1, num_steps + 1)
    total, _ = jax.lax.scan(step, prior_kl(process, x0), steps)
    return total


# --------------------------------------------------------------------------------- iDDPM


def iddpm_loss(
    apply_fn: ApplyFn,
    process: DiscreteProcess,
    vlb_weight: float = 1e-3,
    num_bins: int = 256,
) -> LossFn:
    """iDDPM's hybrid objective L_simple + lambda L_vlb (seed 000, "iDDPM").

    The network outputs 2C channels [eps_hat, v] (`predictions.LearnedVariance`); the variance
    is exp(frac log beta_t + (1 - frac) log beta~_t), frac = (v + 1) / 2. L_vlb =
    sum_t L_t is estimated by T L_i at one i ~ U{1..T} per example, in bits/dim, with the mean
    stop-gradiented so L_vlb trains only the variance.

    Args:
      apply_fn: the network (2C output channels).
      process: a DiscreteProcess (iDDPM: `ddpm_cosine`, T = 4000).
      vlb_weight: lambda (1e-3 in iDDPM).
      num_bins: data levels in [-1, 1] of the discretised decoder L_0.

    Returns:
      loss -> (L_simple + lambda L_vlb, {"loss", "mse", "vlb_bpd"}); vlb_bpd estimates the
      full VLB (with the prior term) in bits/dim.
    """
    if not isinstance(process, DiscreteProcess):
        raise ValueError(f"iddpm needs a discrete process (ddpm_cosine), got {process}")
    if not vlb_weight >= 0.0:
        raise ValueError(f"vlb_weight must be >= 0, got {vlb_weight=}")
    _check_vlb_options("learned", "discretized", num_bins)
    num_steps = process.num_steps

    def loss(params, batch, key):
        x0 = batch["x"]
        t_key, noise_key, dropout_key = jax.random.split(key, 3)
        i = jax.random.randint(t_key, x0.shape[:1], 1, num_steps + 1).astype(jnp.float32)
        t = i / num_steps
        x_t, eps = process.marginal_sample(noise_key, x0, t)
        out = apply_fn(params["model"], x_t, t, batch.get("cond"), key=dropout_key)
        eps_hat, v = predictions.LearnedVariance.split(out)
        mse = _mean_per_example(jnp.square(eps_hat - eps))
        x0_hat, _ = predictions.to_x0_eps("eps", jax.lax.stop_gradient(eps_hat), x_t, t, process)
        term = vlb_term(
            process, num_steps, i, x0, x_t, x0_hat, v, "learned", "discretized", num_bins
        )
        vlb = bits_per_dim(num_steps * term, x0)
        value = jnp.mean(mse + vlb_weight * vlb)
        vlb_bpd = jnp.mean(vlb + bits_per_dim(prior_kl(process, x0), x0))
        return value, {"loss": value, "mse": jnp.mean(mse), "vlb_bpd": vlb_bpd}

    return loss


# ----------------------------------------------------------------------------------- VDM


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
    return jnp.sum(jnp.reshape(nll, (x0.shape[0], -1)), axis=-1)


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
    sq = jnp.sum(jnp.reshape(jnp.square(eps - model(z_t, t)), (x0.shape[0], -1)), axis=-1)
    diffusion = -0.5 * dlam_t * sq  # gamma' = -d log SNR / dt
    z0, _, alpha0 = noisy(jnp.full_like(t, lam_0), k_0)
    recon = vdm_reconstruction_nll(x0, z0, alpha0, jnp.full_like(t, lam_0), num_bins)
    mean1 = jnp.sqrt(jax.nn.sigmoid(lam_1)) * x0
    logvar1 = jnp.full_like(x0, jax.nn.log_sigmoid(-lam_1))
    prior = gaussian_kl(mean1, logvar1, jnp.zeros_like(x0), jnp.zeros_like(x0))
    return diffusion, jnp.sum(jnp.reshape(prior, (x0.shape[0], -1)), axis=-1), recon


def _schedule_shape_mask(params: Any) -> Any:
    """True on the leaves of params["schedule"] that shape gamma (not its ends gamma_0/1)."""

    def is_shape(path, _):
        keys = [getattr(p, "key", None) for p in path]
        return keys[0] == "schedule" and keys[-1] not in ("gamma_0", "gamma_1")

    return jax.tree_util.tree_map_with_path(is_shape, params)


def _variance_reduced_mean(per_example: Callable[[Any], Array], params: Any):
    """(mean_b sum_p L[p, b], L) for L = per_example(params) [P, B], whose gradient is the
    usual one except on the schedule's shape params: those get the gradient of the estimator's
    second moment, d mean(l^2) = mean(2 l dl) with l = sum_p L[p] (Kingma et al. 2021, appendix
    I.2: the schedule minimises the variance of the VLB estimate, the VLB itself depending only
    on the ends of gamma, seed 001, "EQUIVALENCE OF DIFFUSION MODELS"). One forward pass, two
    backward passes."""
    mask = _schedule_shape_mask(params)

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


def vdm_loss(
    apply_fn: ApplyFn,
    process: VDMLearned,
    num_bins: int = 256,
    time_sampling: str = "antithetic",
    variance_reduction: bool = True,
) -> LossFn:
    """VDM's VLB in bits/dim with the learned schedule (Kingma et al. 2021; seed 001).

    loss = (L_inf + L_prior + L_recon) / (D log 2) per example, averaged; the schedule's params
    live in params["schedule"] and are bound into `process` at every call. With
    `variance_reduction`, the schedule's shape is trained to minimise the estimator's variance
    (`_variance_reduced_mean`); the ends gamma_0, gamma_1 and the network follow the VLB.

    Args:
      apply_fn: the eps-predicting network.
      process: the (unbound) `vdm_learned` process; any variance-preserving Process with finite
        log-SNR at both ends also works (fixed schedule, no "schedule" params).
      num_bins: levels of the data in [-1, 1] for the reconstruction term.
      time_sampling: a name in TIME_SAMPLERS ("antithetic": VDM's low-discrepancy sampler).
      variance_reduction: train the schedule's shape on the variance, not the VLB.

    Returns:
      loss -> (bpd, {"loss", "diffusion_bpd", "prior_bpd", "recon_bpd"}).
    """
    time_fn = _build("time sampler", TIME_SAMPLERS, time_sampling, {})
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins=}")
    learned = isinstance(process, VDMLearned)

    def loss(params, batch, key):
        x0 = batch["x"]
        t_key, noise_key, dropout_key = jax.random.split(key, 3)
        t = time_fn(t_key, x0.shape[0], process)
        cond = batch.get("cond")

        def terms(params):  # [3, B] bits per dim
            proc = process.bind(params["schedule"]) if learned else process
            model = lambda z, s: apply_fn(params["model"], z, s, cond, key=dropout_key)  # noqa: E731
            return jnp.stack(
                [bits_per_dim(n, x0) for n in vdm_terms(model, proc, x0, t, noise_key, num_bins)]
            )

        if variance_reduction and learned:
            value, parts = _variance_reduced_mean(terms, params)
        else:
            parts = terms(params)
            value = jnp.mean(jnp.sum(parts, axis=0))
        names = ("diffusion_bpd", "prior_bpd", "recon_bpd")
        return value, {"loss": value, **{n: jnp.mean(p) for n, p in zip(names, parts, strict=True)}}

    return loss
