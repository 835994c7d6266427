"""VDM's learned noise schedule gamma_eta(t) = -log SNR(t): a monotone network with learned ends.

Seed 001, "LEARNED NOISE SCHEDULE": sigma_t^2 = sigmoid(gamma_eta(t)), alpha_t^2 =
sigmoid(-gamma_eta(t)). Following Kingma et al. (2021, appendix "monotonic network"), the
unnormalised network

  g(t) = l1(t) + l3(sigmoid(l2(l1(t)))),   l1: 1 -> 1, l2: 1 -> H, l3: H -> 1,

has positive weights (|W|), so it increases in t; it is rescaled to the learned endpoints

  gamma(t) = gamma_0 + (gamma_1 - gamma_0) (g(t) - g(0)) / (g(1) - g(0)),

with gamma_1 = gamma_0 + exp(log_gamma_span), so gamma_0 < gamma_1 whatever the training does
(a crossing would make gamma decreasing, SNR increasing in t: not a forward process).

This module is only the network; `diffjax.processes.VDMLearned` turns it into a process.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array


class _PositiveDense(nn.Module):
    """y = x |W| + b: a linear layer that is non-decreasing in every input."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
            (x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ jnp.abs(kernel) + bias[None]


class MonotoneGamma(nn.Module):
    """gamma_eta(t), increasing from gamma_0 (learned, init gamma_min) to gamma_1 (init gamma_max).

    The ends are the params `ENDS`: gamma_0 and log(gamma_1 - gamma_0).

    Attributes:
      gamma_min: initial gamma(0) = -log SNR at t = 0 (VDM: -13.3).
      gamma_max: initial gamma(1) = -log SNR at t = 1 (VDM: 5.0).
      hidden: width H of the sigmoid layer (VDM: 1024).
    """

    gamma_min: float = -13.3
    gamma_max: float = 5.0
    hidden: int = 1024

    ENDS = ("gamma_0", "log_gamma_span")

    @nn.compact
    def __call__(self, t: Array) -> Array:
        """t: any shape, in [0, 1] -> gamma(t) of the same shape."""
        t = jnp.asarray(t, jnp.float32)
        l1, l2, l3 = _PositiveDense(1), _PositiveDense(self.hidden), _PositiveDense(1)
        gamma_0 = self.param("gamma_0", nn.initializers.constant(self.gamma_min), ())
        span = self.gamma_max - self.gamma_min
        log_span = self.param("log_gamma_span", nn.initializers.constant(jnp.log(span)), ())
        gamma_1 = gamma_0 + jnp.exp(log_span)
        ts = jnp.concatenate([jnp.zeros((1,)), jnp.ones((1,)), jnp.reshape(t, (-1,))])[:, None]
        h = l1(ts)
        g = (h + l3(jax.nn.sigmoid(l2(h))))[:, 0]  # [2 + N]
        frac = (g[2:] - g[0]) / (g[1] - g[0])
        return jnp.reshape(gamma_0 + (gamma_1 - gamma_0) * frac, jnp.shape(t))
