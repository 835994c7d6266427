"""Gaussian data N(MU, diag(VAR)) and its Bayes-optimal model: the exact answers the loss tests
check against."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import denoisers
from diffjax.analytic.gaussian import GaussianMixture

MU = jnp.array([0.3, -0.5])
VAR = jnp.array([0.2, 0.05])  # diagonal covariance
DATA = GaussianMixture.gaussian(MU, jnp.diag(VAR))


def exact_apply(process, kind):
    """apply_fn of the Bayes-optimal model of kind `kind`, plus a learnable offset params["b"].

    For diagonal Gaussian data E[x_0 | x_t] = mu + alpha c (x_t - alpha mu) / (alpha^2 c + sigma^2).
    """

    def x0_mean(x, t):
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        return MU[None] + a * VAR[None] * (x - a * MU[None]) / (a**2 * VAR[None] + s**2)

    denoiser = denoisers.Denoiser(x0_mean, "x0", process)

    def apply_fn(params, x, t, cond=None, key=None):
        return denoiser.predict(x, t, kind) + params["b"][None]

    return apply_fn


def eps_mse_at_optimum(process, t):
    """E ||eps - eps*||^2 / D at t [N]: mean_d alpha^2 c / (alpha^2 c + sigma^2)."""
    a2, s2 = np.square(process.alpha(t))[:, None], np.square(process.sigma(t))[:, None]
    return np.mean(a2 * VAR[None] / (a2 * VAR[None] + s2), axis=-1)


def mc_mean(loss_fn, params, n_keys=16, batch=2048):
    """The loss averaged over n_keys independent batches, and its standard error."""

    @jax.jit
    def one(key):
        kx, kl = jax.random.split(key)
        return loss_fn(params, {"x": DATA.sample(kx, batch)}, kl)[0]

    vals = jax.vmap(one)(jax.random.split(jax.random.key(0), n_keys))
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n_keys))


ZERO = {"model": {"b": jnp.zeros(2)}}


def exact_x0_denoiser(process):
    return denoisers.Denoiser(
        lambda x, t: exact_apply(process, "x0")({"b": jnp.zeros(2)}, x, t), "x0", process
    )
