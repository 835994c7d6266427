"""The vocabulary every objective shares: weightings, time distributions, per-example reductions.

Weightings are given for the eps-space error, w(t) ||eps_hat - eps||^2 (seed 001, "three
equivalent parameterisations"; Kingma et al. 2023 for the unified view). Regressing another
target multiplies by (d eps / d target)^2, so the objective does not depend on the target, only
the arithmetic does: target "x0" gives w SNR ||x0_hat - x0||^2.

A time distribution draws t [n] in [0, 1] for a process (`sample`). EDM's and iCT's log-normal
is a distribution of the noise level s = sigma / alpha; its `level_cdf` gives consistency
training the mass of each interval of its grid.
"""

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.processes import Process

Weighting = Callable[[Process, Array], Array]


def check_positive(**kwargs: float) -> None:
    """Raises a ValueError naming the first argument that is not > 0."""
    for name, value in kwargs.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {name}={value}")


def build(kind: str, table: Mapping[str, Callable], name: str, kwargs: Mapping[str, Any] | None):
    """`table[name](**kwargs)`, with errors that name the valid entries or the bad options."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(table))}")
    try:
        return table[name](**(kwargs or {}))
    except TypeError as e:
        raise ValueError(f"bad options {dict(kwargs or {})} for {kind} {name!r}: {e}") from None


# ---------------------------------------------------------------- weightings (eps space), [B]


def uniform_weighting() -> Weighting:
    """w = 1: DDPM's L_simple (and NCSN's lambda(sigma) = sigma^2 for a score model)."""
    return lambda process, t: jnp.ones_like(t)


def snr_weighting() -> Weighting:
    """w = SNR(t): the x0-space error weighted by SNR^2, emphasising low noise levels."""
    return lambda process, t: jnp.exp(process.log_snr(t))


def inverse_snr_weighting() -> Weighting:
    """w = 1 / SNR(t): the plain x0-space squared error ||x0_hat - x0||^2."""
    return lambda process, t: jnp.exp(-process.log_snr(t))


def min_snr_weighting(gamma: float = 5.0) -> Weighting:
    """Min-SNR-gamma (Hang et al. 2023): x0-space weight min(SNR, gamma), w = min(1, gamma/SNR)."""
    check_positive(gamma=gamma)
    return lambda process, t: jnp.minimum(1.0, gamma * jnp.exp(-process.log_snr(t)))


def truncated_snr_weighting() -> Weighting:
    """Truncated SNR (Salimans & Ho 2022): x0-space weight max(SNR, 1), w = max(1, 1/SNR)."""
    return lambda process, t: jnp.maximum(1.0, jnp.exp(-process.log_snr(t)))


def snr_plus_one_weighting() -> Weighting:
    """SNR + 1 (Salimans & Ho 2022): x0-space weight SNR + 1, w = 1 + 1/SNR; for a VP process
    the v-space squared error."""
    return lambda process, t: 1.0 + jnp.exp(-process.log_snr(t))


def likelihood_weighting() -> Weighting:
    """w = g^2(t) / sigma^2(t): score-space weight g^2, which makes DSM the ELBO (Song et al.
    2021a; seed 004, likelihood weighting); equals -d lambda / dt for VP processes."""
    return lambda process, t: process.g2(t) / jnp.square(process.sigma(t))


def edm_weighting(sigma_data: float = 0.5) -> Weighting:
    """EDM lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2 on the x0 error, sigma =
    sigma_t / alpha_t; in eps space w = (sigma^2 + sigma_d^2) / sigma_d^2 (Karras et al. 2022)."""
    check_positive(sigma_data=sigma_data)
    return lambda process, t: (jnp.exp(-process.log_snr(t)) + sigma_data**2) / sigma_data**2


WEIGHTINGS: dict[str, Callable[..., Weighting]] = {
    "uniform": uniform_weighting,
    "snr": snr_weighting,
    "inverse_snr": inverse_snr_weighting,
    "min_snr": min_snr_weighting,
    "truncated_snr": truncated_snr_weighting,
    "snr_plus_one": snr_plus_one_weighting,
    "likelihood": likelihood_weighting,
    "edm": edm_weighting,
}


def weighting(name: str, **kwargs: Any) -> Weighting:
    """The weighting registered as `name` (see WEIGHTINGS) with its options."""
    return build("weighting", WEIGHTINGS, name, kwargs)


# ------------------------------------------------------------------ time distributions, t: [n]


class TimeDistribution(abc.ABC):
    """A distribution of t in [0, 1]; subclasses are frozen dataclasses of their options."""

    @abc.abstractmethod
    def sample(self, key: Array, n: int, process: Process) -> Array:
        """n draws of t, [n]."""


@dataclasses.dataclass(frozen=True)
class Uniform(TimeDistribution):
    """t ~ U[0, 1)."""

    def sample(self, key, n, process):
        return jax.random.uniform(key, (n,))


@dataclasses.dataclass(frozen=True)
class Antithetic(TimeDistribution):
    """Low-discrepancy t_k = (u + k / n) mod 1, one u ~ U[0, 1) per batch (Kingma et al. 2021);
    each t_k is marginally uniform."""

    def sample(self, key, n, process):
        return jnp.mod(jax.random.uniform(key, ()) + jnp.arange(n) / n, 1.0)


@dataclasses.dataclass(frozen=True)
class LogitNormal(TimeDistribution):
    """t = sigmoid(mean + std n), n ~ N(0, 1) (SD3, Esser et al. 2024; seed 004, "Logit-Normal
    Sampling")."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self):
        check_positive(std=self.std)

    def sample(self, key, n, process):
        return jax.nn.sigmoid(self.mean + self.std * jax.random.normal(key, (n,)))


@dataclasses.dataclass(frozen=True)
class LogNormal(TimeDistribution):
    """log s(t) ~ N(mean, std^2) for the noise level s = sigma / alpha (EDM's P_mean, P_std;
    iCT's noise distribution), mapped to t by inverting the log-SNR."""

    mean: float = -1.2
    std: float = 1.2

    def __post_init__(self):
        check_positive(std=self.std)

    def sample(self, key, n, process):
        return process.t_of_noise_level(
            jnp.exp(self.mean + self.std * jax.random.normal(key, (n,)))
        )

    def level_cdf(self, noise_level: Array) -> Array:
        """P(s <= noise_level) = (1 + erf((log s - mean) / (sqrt 2 std))) / 2, elementwise."""
        z = (jnp.log(noise_level) - self.mean) / (math.sqrt(2.0) * self.std)
        return 0.5 * (1.0 + jax.scipy.special.erf(z))


TIME_DISTRIBUTIONS: dict[str, Callable[..., TimeDistribution]] = {
    "uniform": Uniform,
    "antithetic": Antithetic,
    "logit_normal": LogitNormal,
    "lognormal": LogNormal,
}


def time_distribution(name: str, **kwargs: Any) -> TimeDistribution:
    """The time distribution registered as `name` (see TIME_DISTRIBUTIONS) with its options."""
    return build("time distribution", TIME_DISTRIBUTIONS, name, kwargs)


def rho_spaced(u: Array, lo: Array, hi: Array, rho: float) -> Array:
    """(lo^(1/rho) + u (hi^(1/rho) - lo^(1/rho)))^rho: Karras et al.'s rho-spacing (eq. 5) of
    the noise levels from lo (u = 0) to hi (u = 1)."""
    a, b = lo ** (1.0 / rho), hi ** (1.0 / rho)
    return jnp.power(a + u * (b - a), rho)


# ----------------------------------------------------------------- per-example reductions


def mean_per_example(x: Array) -> Array:
    """[B, ...] -> [B], the mean over every non-batch axis."""
    return jnp.mean(jnp.reshape(x, (x.shape[0], -1)), axis=-1)


def sum_per_example(x: Array) -> Array:
    """[B, ...] -> [B], the sum over every non-batch axis."""
    return jnp.sum(jnp.reshape(x, (x.shape[0], -1)), axis=-1)


def bits_per_dim(nats: Array, dim: int) -> Array:
    """Nats per example (any shape) -> bits per dimension for examples of `dim` values."""
    return nats / (math.log(2.0) * dim)


def dim_of(x: Array) -> int:
    """The number of values per example of x [B, ...]."""
    return math.prod(x.shape[1:])


def gaussian_kl(mean1: Array, logvar1: Array, mean2: Array, logvar2: Array) -> Array:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats."""
    return 0.5 * (
        logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
        + jnp.square(mean1 - mean2) * jnp.exp(-logvar2) - 1.0
    )  # fmt: skip
