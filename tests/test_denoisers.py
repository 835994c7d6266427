"""Denoiser wrappers, checked against the exact Gaussian-mixture denoiser."""

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import denoisers, processes
from diffjax.analytic.gaussian import GaussianMixture


def test_clip_x0_clips_x0_and_keeps_the_conversions_consistent():
    process = processes.get("vp")
    data = GaussianMixture.gaussian(jnp.array([2.0, -0.5]), jnp.eye(2))
    exact = data.denoiser(process)
    clipped = denoisers.clip_x0(exact)
    x = 3.0 * jax.random.normal(jax.random.key(0), (64, 2))
    t = jnp.full((64,), 0.3)
    x0 = jax.jit(clipped.x0)(x, t)
    np.testing.assert_allclose(x0, np.clip(exact.x0(x, t), -1.0, 1.0), rtol=1e-6, atol=1e-6)
    # eps is the one consistent with x_t = alpha x0 + sigma eps for the clipped x0.
    alpha, sigma = process.alpha(t)[:, None], process.sigma(t)[:, None]
    np.testing.assert_allclose(
        jax.jit(clipped.eps)(x, t), (x - alpha * x0) / sigma, rtol=1e-5, atol=1e-5
    )
    # Inside the range nothing changes.
    inside = denoisers.clip_x0(exact, -100.0, 100.0)
    np.testing.assert_allclose(inside.score(x, t), exact.score(x, t), rtol=1e-5, atol=1e-6)
