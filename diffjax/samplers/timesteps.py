"""Decreasing time grids t_0 > t_1 > ... > t_N for the samplers, each of shape [N + 1].

- uniform:          t_i = t_max - (i / N) (t_max - t_min)
- quadratic:        t_i = t_min + (t_max - t_min) (1 - i / N)^2  (DDIM's quadratic subsequence,
                    dense near the data; seed 000, "DDIM / Accelerating Inference")
- log_snr_uniform:  lambda(t_i) uniform between lambda(t_max) and lambda(t_min) (DPM-Solver's
                    grid; seed 004, "DPM-Solver")
- karras:           the noise level s = sigma/alpha = exp(-lambda/2) on the grid
                    s_i = (s_max^(1/rho) + (i / N)(s_min^(1/rho) - s_max^(1/rho)))^rho
                    (Karras et al. 2022, eq. 5; seed 003, "samplers")
- snap:             rounds a grid to multiples of 1/T, the steps of a discrete DDPM process
                    (step i of T is t = i / T).
Grids defined in log-SNR map back to t by bisection (`Process.t_of_log_snr`), since lambda(t)
is decreasing for every process.
"""

import jax.numpy as jnp
from jax import Array

from diffjax.losses.vocabulary import rho_spaced
from diffjax.processes import Process


def _check(num_steps: int, t_max: float, t_min: float) -> None:
    if num_steps < 1:
        raise ValueError(f"{num_steps=} must be >= 1")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min=}, {t_max=}")


def uniform(num_steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Array:
    """Uniform grid in t, [num_steps + 1]."""
    _check(num_steps, t_max, t_min)
    return jnp.linspace(t_max, t_min, num_steps + 1, dtype=jnp.float32)


def quadratic(num_steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Array:
    """Quadratic grid t_min + (t_max - t_min)(1 - i/N)^2, dense near t_min, [num_steps + 1]."""
    _check(num_steps, t_max, t_min)
    u = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=jnp.float32)
    return t_min + (t_max - t_min) * jnp.square(u)


def _check_log_snr(num_steps: int, t_max: float, t_min: float) -> None:
    _check(num_steps, t_max, t_min)
    if t_min <= 0.0:
        raise ValueError(f"log-SNR grids need t_min > 0 (lambda(0) is infinite), got {t_min=}")


def _pin_ends(ts: Array, t_max: float, t_min: float) -> Array:
    """Sets the end points exactly (bisection leaves them within float32 resolution)."""
    return ts.at[0].set(t_max).at[-1].set(t_min)


def log_snr_uniform(
    process: Process, num_steps: int, t_max: float = 1.0, t_min: float = 1e-3
) -> Array:
    """Grid uniform in lambda = log(alpha^2 / sigma^2), [num_steps + 1]; needs t_min > 0."""
    _check_log_snr(num_steps, t_max, t_min)
    lam = jnp.linspace(
        process.log_snr(jnp.float32(t_max)), process.log_snr(jnp.float32(t_min)), num_steps + 1
    )
    return _pin_ends(process.t_of_log_snr(lam), t_max, t_min)


def karras(
    process: Process, num_steps: int, t_max: float = 1.0, t_min: float = 1e-3, rho: float = 7.0
) -> Array:
    """Karras et al.'s rho-spaced grid in the noise level sigma/alpha, [num_steps + 1].

    Needs t_min > 0 and a finite noise level at t_max (for the linear interpolant, t_max < 1).
    """
    _check_log_snr(num_steps, t_max, t_min)
    if rho <= 0.0:
        raise ValueError(f"{rho=} must be > 0")
    s_max = process.noise_level(jnp.float32(t_max))
    s_min = process.noise_level(jnp.float32(t_min))
    u = jnp.linspace(1.0, 0.0, num_steps + 1, dtype=jnp.float32)
    levels = rho_spaced(u, s_min, s_max, rho)  # the spacing consistency training uses too
    return _pin_ends(process.t_of_noise_level(levels), t_max, t_min)


def snap(ts: Array, num_train_steps: int) -> Array:
    """Rounds a grid to the discrete steps i / T of a T-step process."""
    return jnp.round(ts * num_train_steps) / num_train_steps
