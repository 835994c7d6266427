"""Preconditionings: how a raw network F becomes a prediction of a plain kind.

A `Preconditioning` turns the raw network `net(x_in, time_in) -> F` into `model_fn(x_t, t)`
predicting one of `predictions.KINDS`; it decides what the network sees (c_in x, c_noise) and how
its output is scaled (c_skip, c_out). Every one of the library lives here:

- `EDMPreconditioning`: Karras et al. 2022, table 1 (seed 003, "preconditioning").
- `ConsistencyPreconditioning`: the consistency-model boundary f(x, s_min) = x with EDM's c_in
  and c_noise (seed 000, "Consistency Models"; Song et al. 2023, appendix C; iCT).
- `LogSNRConditioning`: VDM's network sees the normalised gamma(t) = -log SNR(t), not t (seed 001,
  "EQUIVALENCE OF DIFFUSION MODELS"; Kingma et al. 2021, appendix B).
- `LearnedVariance`: iDDPM's extra output channels (seed 000, "iDDPM").
- `AverageVelocity`: MeanFlow's two-time network u(z, r, t) (seed 004, "Mean Flow").

In EDM and consistency models the process is VE (x = x_0 + s eps). For any other process both
work in the scaled variable x~ = x_t / alpha = x_0 + s eps with s = sigma / alpha
(`Process.noise_level`), so they are the papers' maps exactly when alpha = 1 and the same maps
in x~ otherwise. Subclasses are frozen dataclasses: hashable, so a `Denoiser` keeps them static.
"""

import abc
import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.predictions import check_kind
from diffjax.processes import Process, expand

Net = Callable[[Array, Array], Array]


class Preconditioning(abc.ABC):
    """Maps a raw network `net(x_in, time_in) -> F` to a prediction of the plain kind `kind`."""

    kind: str

    @abc.abstractmethod
    def wrap(self, net: Net, process: Process) -> Net:
        """`net` -> `model_fn(x_t [B, ...], t [B]) -> prediction of self.kind`."""


def edm_coefficients(noise_level: Array, sigma_data: float) -> tuple[Array, Array, Array, Array]:
    """EDM preconditioning (Karras et al. 2022, table 1) at noise level sigma [B].

    D(x) = c_skip x + c_out F(c_in x, c_noise) with
      c_skip = sigma_d^2 / (sigma^2 + sigma_d^2),
      c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
      c_in = 1 / sqrt(sigma^2 + sigma_d^2),  c_noise = log(sigma) / 4.
    Returns (c_skip, c_out, c_in, c_noise), each [B].
    """
    norm = jnp.square(noise_level) + sigma_data**2
    return (
        sigma_data**2 / norm,
        noise_level * sigma_data * jax.lax.rsqrt(norm),
        jax.lax.rsqrt(norm),
        0.25 * jnp.log(noise_level),
    )


def consistency_coefficients(
    noise_level: Array, sigma_data: float, sigma_min: float
) -> tuple[Array, Array]:
    """Consistency-model boundary parameterisation (Song et al. 2023, appendix C).

    f(x, sigma) = c_skip x + c_out F with c_skip = sigma_d^2 / ((sigma - sigma_min)^2 +
    sigma_d^2), c_out = sigma_d (sigma - sigma_min) / sqrt(sigma^2 + sigma_d^2), so
    c_skip(sigma_min) = 1, c_out(sigma_min) = 0 and f(x, sigma_min) = x exactly.
    Returns (c_skip, c_out), each [B].
    """
    gap = noise_level - sigma_min
    c_skip = sigma_data**2 / (jnp.square(gap) + sigma_data**2)
    c_out = sigma_data * gap * jax.lax.rsqrt(jnp.square(noise_level) + sigma_data**2)
    return c_skip, c_out


def _check_sigma_data(sigma_data: float) -> None:
    if not sigma_data > 0.0:
        raise ValueError(f"sigma_data must be > 0, got {sigma_data=}")


def _scaled(process: Process, x: Array, t: Array) -> tuple[Array, Array]:
    """(x~ = x_t / alpha, s = sigma / alpha): x~ = x_0 + s eps, the VE view of any process."""
    return x / expand(process.alpha(t), x), process.noise_level(t)


@dataclasses.dataclass(frozen=True)
class EDMPreconditioning(Preconditioning):
    """x_0 = c_skip x~ + c_out F(c_in x~, c_noise) with x~ = x_t / alpha, s = sigma / alpha."""

    sigma_data: float = 0.5
    kind: str = dataclasses.field(default="x0", init=False)

    def __post_init__(self):
        _check_sigma_data(self.sigma_data)

    def wrap(self, net: Net, process: Process) -> Net:
        def model_fn(x, t):
            x_s, level = _scaled(process, x, t)
            c_skip, c_out, c_in, c_noise = edm_coefficients(level, self.sigma_data)
            return expand(c_skip, x) * x_s + expand(c_out, x) * net(expand(c_in, x) * x_s, c_noise)

        return model_fn


@dataclasses.dataclass(frozen=True)
class ConsistencyPreconditioning(Preconditioning):
    """f(x, t) = c_skip x~ + c_out F(c_in x~, c_noise): the consistency function, x~ = x_t / alpha.

    c_skip, c_out are `consistency_coefficients` (f is the identity at the boundary), c_in and
    c_noise EDM's, as in Song et al. 2023 and iCT. The output is read as the x0 prediction: it is
    the trajectory's point x~ at the boundary, x_0 + sigma_min eps. The noise level is pinned to
    sigma_min at t <= t_min, so the gap is exactly 0 there (t_min is sigma_min's time found by
    bisection, which may miss sigma_min by an ulp).

    Attributes:
      sigma_min: the boundary noise level s_min (the papers': 0.002).
      t_min: the boundary time, `process.t_of_noise_level(sigma_min)`.
      sigma_data: the data standard deviation (0.5 for images in [-1, 1]).
    """

    sigma_min: float = 0.002
    t_min: float = 0.002
    sigma_data: float = 0.5
    kind: str = dataclasses.field(default="x0", init=False)

    def __post_init__(self):
        _check_sigma_data(self.sigma_data)
        if not (self.sigma_min > 0.0 and 0.0 < self.t_min < 1.0):
            raise ValueError(f"need sigma_min > 0, 0 < t_min < 1: {self.sigma_min=}, {self.t_min=}")

    def coefficients(self, process: Process, t: Array) -> tuple[Array, Array, Array, Array]:
        """(c_skip, c_out, c_in, c_noise) at t [B]."""
        level = jnp.where(t <= self.t_min, self.sigma_min, process.noise_level(t))
        c_skip, c_out = consistency_coefficients(level, self.sigma_data, self.sigma_min)
        _, _, c_in, c_noise = edm_coefficients(level, self.sigma_data)
        return c_skip, c_out, c_in, c_noise

    def wrap(self, net: Net, process: Process) -> Net:
        def model_fn(x, t):
            x_s = x / expand(process.alpha(t), x)
            c_skip, c_out, c_in, c_noise = self.coefficients(process, t)
            return expand(c_skip, x) * x_s + expand(c_out, x) * net(expand(c_in, x) * x_s, c_noise)

        return model_fn


@dataclasses.dataclass(frozen=True)
class LogSNRConditioning(Preconditioning):
    """The network sees (gamma(t) - gamma_min) / (gamma_max - gamma_min), gamma = -log SNR.

    VDM conditions its network on the normalised gamma, not on t (Kingma et al. 2021, appendix B,
    with the schedule's initial ends as the constants), so the model is a function of the SNR
    and the continuous-time VLB depends on the schedule only through its ends (seed 001,
    "EQUIVALENCE OF DIFFUSION MODELS"). The output is a prediction of `kind`, unscaled.

    Attributes:
      gamma_min, gamma_max: the normalisation constants (VDM: the initial ends -13.3, 5).
      kind: what the network predicts ("eps" in VDM).
    """

    gamma_min: float = -13.3
    gamma_max: float = 5.0
    kind: str = "eps"

    def __post_init__(self):
        check_kind(self.kind)
        if not self.gamma_min < self.gamma_max:
            raise ValueError(
                f"need gamma_min < gamma_max, got {self.gamma_min=}, {self.gamma_max=}"
            )

    def wrap(self, net: Net, process: Process) -> Net:
        span = self.gamma_max - self.gamma_min
        return lambda x, t: net(x, (-process.log_snr(t) - self.gamma_min) / span)


@dataclasses.dataclass(frozen=True)
class LearnedVariance(Preconditioning):
    """iDDPM: the network outputs [mean prediction of `kind`, v] along the last axis (2C).

    The model function is the first C channels; `split` gives both halves to the VLB loss and
    `Denoiser.variance` the second.
    """

    kind: str = "eps"

    def __post_init__(self):
        check_kind(self.kind)

    @staticmethod
    def split(out: Array) -> tuple[Array, Array]:
        """[B, ..., 2C] -> (mean prediction [B, ..., C], variance interpolation v [B, ..., C])."""
        c = out.shape[-1] // 2
        return out[..., :c], out[..., c:]

    @staticmethod
    def log_variance(v: Array, log_beta: Array, log_beta_tilde: Array) -> Array:
        """iDDPM's variance exp(frac log beta + (1 - frac) log beta~), frac = (v + 1) / 2, as its
        log: v = 1 gives beta, v = -1 beta~ (Nichol & Dhariwal 2021, eq. 15)."""
        frac = 0.5 * (v + 1.0)
        return frac * log_beta + (1.0 - frac) * log_beta_tilde

    def wrap(self, net: Net, process: Process) -> Net:
        del process
        return lambda x, t: self.split(net(x, t))[0]


# What MeanFlow's network is fed, from the times (t, t - r) its callers pass.
NETWORK_TIMES = {
    "t_gap": lambda times: times,  # (t, t - r), the paper's conditioning
    "r_t": lambda times: jnp.stack([times[:, 0] - times[:, 1], times[:, 0]], -1),  # (r, t)
}


@dataclasses.dataclass(frozen=True)
class AverageVelocity(Preconditioning):
    """MeanFlow's average-velocity network u(z, r, t), called on times [B, 2] = (t, t - r).

    As a velocity model, times [B] mean r = t, i.e. (t, 0): u(z, t, t) is the instantaneous
    velocity, so every ODE sampler and the likelihood work on it; times [B, 2] are the "meanflow"
    sampler's and loss's. The network sees them as `network_times` says: "t_gap" passes
    (t, t - r) through (the paper's choice), "r_t" feeds (r, t) (the paper's ablation, Geng et
    al. 2025, table 1c), multiplied by `time_scale`. The MeanFlow target differentiates the
    network in t, and a time embedding of high frequency (the sinusoidal one runs at 1000 t) makes
    that derivative, and so the target's variance, large; a time_scale < 1 lowers every frequency
    (as sCM's c_noise(t) = t rather than 1000 t; Lu & Song 2024, section 4.1).

    Raises:
      ValueError: for an unknown `network_times` or a time_scale <= 0.
    """

    network_times: str = "t_gap"
    time_scale: float = 1.0
    kind: str = dataclasses.field(default="velocity", init=False)

    def __post_init__(self):
        if self.network_times not in NETWORK_TIMES:
            raise ValueError(
                f"unknown network_times={self.network_times!r}; valid: {', '.join(NETWORK_TIMES)}"
            )
        if self.time_scale <= 0.0:
            raise ValueError(f"{self.time_scale=} must be > 0")

    def wrap(self, net: Net, process: Process) -> Net:
        del process
        feed = NETWORK_TIMES[self.network_times]

        def model_fn(x: Array, t: Array) -> Array:
            times = t if t.ndim == 2 else jnp.stack([t, jnp.zeros_like(t)], -1)  # [B, 2]
            return net(x, self.time_scale * feed(times))

        return model_fn
