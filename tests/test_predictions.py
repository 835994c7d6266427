"""Conversions round-trip and agree with the exact Gaussian-mixture score."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import denoisers, predictions, processes
from diffjax.analytic.gaussian import GaussianMixture

MIX = GaussianMixture(
    weights=jnp.array([0.3, 0.7]),
    means=jnp.array([[1.0, -0.5], [-0.8, 0.4]]),
    covs=jnp.array([[[0.2, 0.05], [0.05, 0.1]], [[0.1, 0.0], [0.0, 0.3]]]),
)
PROCS = ["ddpm_linear", "vp", "subvp", "ve", "edm", "cosine", "rectified_flow"]
T = jnp.array([0.02, 0.2, 0.5, 0.8, 0.97])


def points(key, n=5):
    return jax.random.normal(key, (n, 2))


@pytest.mark.parametrize("name", PROCS)
def test_every_conversion_round_trips(name):
    proc = processes.get(name)
    x = points(jax.random.key(0))
    out = points(jax.random.key(1))
    t = jnp.array([0.1, 0.3, 0.5, 0.7, 0.9])

    @jax.jit
    def round_trips(x, out):
        return jnp.stack(
            [
                predictions.convert(predictions.convert(out, a, b, x, t, proc), b, a, x, t, proc)
                for a, b in itertools.permutations(predictions.KINDS, 2)
            ]
        )

    back = round_trips(x, out)
    # Relative float32 error grows like 1 / sigma^2 (score <-> x0 cancels x - alpha x0);
    # on T sigma >= 0.1 for every process here, so 1e3 eps_32 bounds it.
    np.testing.assert_allclose(back, jnp.broadcast_to(out, back.shape), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", PROCS)
def test_conversions_finite_at_both_ends(name):
    proc = processes.get(name)
    x = points(jax.random.key(6), 2)
    ends = jnp.array([0.0, 1.0])
    # The velocity alpha' x0 + sigma' eps is itself infinite at t = 0 where sigma ~ sqrt(t).
    velocity_at_0 = np.isfinite(jax.jvp(proc.sigma, (0.0,), (1.0,))[1])
    for a, b in itertools.permutations(predictions.KINDS, 2):
        out = predictions.convert(x, a, b, x, ends, proc)
        rows = out if b != "velocity" or velocity_at_0 else out[1:]
        assert np.all(np.isfinite(rows)), (a, b)


@pytest.mark.parametrize("name", PROCS)
def test_exact_mixture_kinds_agree(name):
    """x0_mean (exact) converted to score equals the exact score; velocity is the PF-ODE drift."""
    proc = processes.get(name)
    denoiser = MIX.denoiser(proc)
    x = 2.0 * points(jax.random.key(2))

    @jax.jit
    def kinds(x):
        return denoiser.score(x, T), denoiser.eps(x, T), denoiser.velocity(x, T)

    score, eps, vel = kinds(x)
    exact = MIX.score(x, T, proc)
    sigma = proc.sigma(T)[:, None]
    np.testing.assert_allclose(score, exact, rtol=1e-3, atol=1e-3 * float(jnp.abs(exact).max()))
    np.testing.assert_allclose(eps, -sigma * exact, rtol=1e-3, atol=1e-4)
    drift = proc.f(T)[:, None] * x - 0.5 * proc.g2(T)[:, None] * exact
    np.testing.assert_allclose(vel, drift, rtol=2e-3, atol=2e-3 * float(jnp.abs(drift).max()))


@pytest.mark.parametrize(
    "build",
    [
        lambda: denoisers.Denoiser(lambda x, t: x, "noise", processes.get("vp")),
        lambda: predictions.convert(
            jnp.zeros(1), "eps", "bogus", jnp.zeros(1), 0.5, processes.get("vp")
        ),
    ],
)
def test_invalid_kinds_raise(build):
    with pytest.raises(ValueError):
        build()
