"""Closed-form problems shared by the sampler tests: Gaussian and 2-D mixture data under VP."""

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import processes
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.denoisers import Denoiser

MEAN = np.array([0.5, -0.3], np.float32)
COV = np.array([[0.3, 0.1], [0.1, 0.2]], np.float32)


VP = processes.get("vp")

# N(MEAN, COV) in 2-D: exact denoiser and exact probability-flow ODE map.
GAUSSIAN = GaussianMixture.gaussian(jnp.asarray(MEAN), jnp.asarray(COV))

# Two well-separated components with weights 0.3 / 0.7, told apart by the sign of x[0].
MIXTURE = GaussianMixture(
    jnp.array([0.3, 0.7]),
    jnp.array([[-0.6, 0.0], [0.6, 0.0]]),
    jnp.stack([0.02 * jnp.eye(2)] * 2),
)


def gaussian_denoiser(process, kind: str = "x0") -> Denoiser:
    """The exact denoiser of N(MEAN, COV) written directly from its eigen-decomposition C = U
    diag(lam) U^T, with S = alpha^2 lam + sigma^2 per eigen-direction:
      E[x_0 | x_t] = mu + U diag(alpha lam / S) U^T (x_t - alpha mu),
      E[eps | x_t] = U diag(sigma / S) U^T (x_t - alpha mu),
    predicting x0, or (kind="velocity") alpha' E[x_0 | x_t] + sigma' E[eps | x_t], which stays
    finite at t = 0 and at alpha = 0. Linear, so cheap for thousands of samples and steps."""
    lam, u = (jnp.asarray(a, jnp.float32) for a in np.linalg.eigh(COV.astype(np.float64)))
    mean = jnp.asarray(MEAN)

    def predict(x, t):
        ones = jnp.ones_like(t)
        alpha, dalpha = (c[:, None] for c in jax.jvp(process.alpha, (t,), (ones,)))  # [B, 1]
        sigma, dsigma = (c[:, None] for c in jax.jvp(process.sigma, (t,), (ones,)))
        s = jnp.square(alpha) * lam[None] + jnp.square(sigma)  # [B, D]
        y = (x - alpha * mean[None]) @ u
        x0 = mean[None] + (y * alpha * lam[None] / s) @ u.T
        if kind == "x0":
            return x0
        return dalpha * x0 + dsigma * (y * sigma / s) @ u.T

    return Denoiser(predict, kind, process)


def assert_gaussian_moments(x: np.ndarray, mean: np.ndarray, cov: np.ndarray, z: float = 5.0):
    """Sample mean and covariance within z standard errors of (mean, cov) for n = len(x) draws.

    Standard errors of Gaussian samples: sqrt(C_ii / n) for the mean and
    sqrt((C_ii C_jj + C_ij^2) / n) for the covariance entry (i, j).
    """
    n = x.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), z * se_mean)
    np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), z * se_cov)


def assert_weights(x: np.ndarray, weight_right: float, z: float = 5.0):
    """Fraction of draws with x[0] > 0 within z binomial standard errors of `weight_right`."""
    n = x.shape[0]
    se = np.sqrt(weight_right * (1 - weight_right) / n)
    assert abs(np.mean(x[:, 0] > 0) - weight_right) < z * se


def observed_order(steps, errors) -> float:
    """Slope of log(error) against log(1 / steps): the observed convergence order."""
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])
