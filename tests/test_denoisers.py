"""Denoiser wrappers, checked against the exact Gaussian-mixture denoiser."""

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import denoisers, preconditioning, processes, samplers
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


def test_clip_x0_keeps_a_learned_variance():
    process = processes.get("vp")
    exact = GaussianMixture.gaussian(jnp.zeros(2), jnp.eye(2)).denoiser(process)
    net = lambda x, t: jnp.concatenate([exact.x0(x, t), jnp.full_like(x, 0.25)], -1)  # noqa: E731
    learned = denoisers.Denoiser(net, preconditioning.LearnedVariance("x0"), process)
    clipped = denoisers.clip_x0(learned)
    x = jax.random.normal(jax.random.key(0), (8, 2))
    np.testing.assert_array_equal(jax.jit(clipped.variance)(x, 0.5), np.full((8, 2), 0.25))


def test_denoiser_is_a_pytree_and_new_params_reuse_the_compiled_sampler():
    """The README's call: jit(sampler)(key, denoiser, x) compiles once; a Denoiser with other
    params (network or mixture) is the same pytree structure, so it reuses the compilation."""
    proc = processes.get("vp")
    sampler = samplers.get("dpm_solver", order=2)
    traces = []

    def run(key, denoiser, x):
        traces.append(1)
        return sampler(key, denoiser, x, num_steps=4)

    jitted = jax.jit(run)
    x = jax.random.normal(jax.random.key(1), (16, 2))
    a = GaussianMixture.gaussian(jnp.zeros(2), jnp.eye(2)).denoiser(proc)
    b = GaussianMixture.gaussian(jnp.ones(2), 0.5 * jnp.eye(2)).denoiser(proc)
    out_a, out_b = jitted(jax.random.key(0), a, x), jitted(jax.random.key(0), b, x)
    assert len(traces) == 1
    np.testing.assert_allclose(out_b, sampler(jax.random.key(0), b, x, num_steps=4), atol=1e-5)
    assert not np.allclose(out_a, out_b)

    def apply_fn(params, x, t, cond=None, key=None):
        return params["w"] * x

    nets = [denoisers.from_network(apply_fn, {"w": w}, "eps", proc) for w in (0.1, 0.2)]
    outs = [jitted(jax.random.key(0), d, x) for d in nets]
    assert len(traces) == 2  # one more trace for the new structure, none for the new params
    assert not np.allclose(outs[0], outs[1])
