"""Conversions round-trip and agree with the exact Gaussian-mixture score; preconditionings."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import denoisers, preconditioning, predictions, processes
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


def test_edm_coefficients_match_karras_table():
    sigma = jnp.array([0.01, 0.5, 3.0, 80.0])
    c_skip, c_out, c_in, c_noise = preconditioning.edm_coefficients(sigma, 0.5)
    s = np.asarray(sigma, np.float64)
    np.testing.assert_allclose(c_skip, 0.25 / (s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(c_out, s * 0.5 / np.sqrt(s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(c_noise, np.log(s) / 4, rtol=1e-6)


def test_consistency_boundary_condition():
    c_skip, c_out = preconditioning.consistency_coefficients(jnp.array([0.002, 1.0]), 0.5, 0.002)
    np.testing.assert_allclose(c_skip[0], 1.0)
    np.testing.assert_allclose(c_out[0], 0.0)
    proc = processes.get("edm", sigma_min=0.002)
    precond = preconditioning.ConsistencyPreconditioning(sigma_data=0.5, sigma_min=0.002)
    x = points(jax.random.key(3))
    net = lambda x_in, c_noise: 100.0 * jnp.ones_like(x_in)  # noqa: E731
    denoiser = denoisers.Denoiser(net, precond, proc)
    np.testing.assert_allclose(denoiser.x0(x, 0.0), x, rtol=1e-6)  # f(x, sigma_min) = x exactly


def test_edm_preconditioned_exact_network_reproduces_exact_denoiser():
    """F* = (D* - c_skip x) / c_out, fed through EDMPreconditioning, gives back D*."""
    proc = processes.get("edm")
    x = 3.0 * points(jax.random.key(4))
    sigma = proc.sigma(T)

    def net(x_in, c_noise):
        sig = jnp.exp(4.0 * c_noise)
        c_skip, c_out, c_in, _ = preconditioning.edm_coefficients(sig, 0.5)
        x_t = x_in / c_in[:, None]
        return (MIX.x0_mean(x_t, T, proc) - c_skip[:, None] * x_t) / c_out[:, None]

    denoiser = denoisers.Denoiser(net, preconditioning.EDMPreconditioning(0.5), proc)
    assert denoiser.kind == "x0"
    got = jax.jit(lambda x: denoiser.x0(x, T))(x)
    np.testing.assert_allclose(got, MIX.x0_mean(x, T, proc), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jnp.exp(-0.5 * proc.log_snr(T)), sigma, rtol=1e-5)


def test_learned_variance_uses_the_mean_channels():
    proc = processes.get("ddpm_linear")
    x = points(jax.random.key(5))
    net = lambda x, t: jnp.concatenate([2 * x, -x], axis=-1)  # noqa: E731
    denoiser = denoisers.Denoiser(net, preconditioning.LearnedVariance("eps"), proc)
    np.testing.assert_allclose(denoiser.eps(x, 0.5), 2 * x)
    mean, v = preconditioning.LearnedVariance.split(net(x, None))
    np.testing.assert_allclose(v, -x)


@pytest.mark.parametrize(
    "build",
    [
        lambda: denoisers.Denoiser(lambda x, t: x, "noise", processes.get("vp")),
        lambda: preconditioning.EDMPreconditioning(sigma_data=0.0),
        lambda: preconditioning.LearnedVariance("mean"),
        lambda: predictions.convert(
            jnp.zeros(1), "eps", "bogus", jnp.zeros(1), 0.5, processes.get("vp")
        ),
    ],
)
def test_invalid_kinds_raise(build):
    with pytest.raises(ValueError):
        build()
