"""Preconditionings: EDM's and the consistency coefficients against their tables, exact
networks through them, the learned-variance channels, VDM's log-SNR input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import denoisers, preconditioning, processes
from diffjax.analytic.gaussian import GaussianMixture

MIX = GaussianMixture(
    weights=jnp.array([0.3, 0.7]),
    means=jnp.array([[1.0, -0.5], [-0.8, 0.4]]),
    covs=jnp.array([[[0.2, 0.05], [0.05, 0.1]], [[0.1, 0.0], [0.0, 0.3]]]),
)
T = jnp.array([0.02, 0.2, 0.5, 0.8, 0.97])


def points(key, n=5):
    return jax.random.normal(key, (n, 2))


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
    np.testing.assert_allclose(proc.noise_level(T), sigma, rtol=1e-5)


def test_learned_variance_uses_the_mean_channels():
    proc = processes.get("ddpm_linear")
    x = points(jax.random.key(5))
    net = lambda x, t: jnp.concatenate([2 * x, -x], axis=-1)  # noqa: E731
    denoiser = denoisers.Denoiser(net, preconditioning.LearnedVariance("eps"), proc)
    np.testing.assert_allclose(denoiser.eps(x, 0.5), 2 * x)
    mean, v = preconditioning.LearnedVariance.split(net(x, None))
    np.testing.assert_allclose(v, -x)


def test_learned_variance_log_variance_interpolates_beta_and_beta_tilde():
    log_b, log_bt = jnp.log(0.02), jnp.log(0.005)
    v = jnp.array([-1.0, 0.0, 1.0])
    got = preconditioning.LearnedVariance.log_variance(v, log_b, log_bt)
    np.testing.assert_allclose(got, [log_bt, 0.5 * (log_b + log_bt), log_b], rtol=1e-6)


@pytest.mark.parametrize(
    "build",
    [
        lambda: preconditioning.EDMPreconditioning(sigma_data=0.0),
        lambda: preconditioning.LearnedVariance("mean"),
        lambda: preconditioning.LogSNRConditioning(gamma_min=1.0, gamma_max=0.0),
        lambda: preconditioning.ConsistencyPreconditioning(sigma_min=0.0),
        lambda: preconditioning.AverageVelocity("t_r"),
    ],
)
def test_invalid_options_raise(build):
    with pytest.raises(ValueError):
        build()


def test_consistency_network_sees_c_in_scaled_input_and_c_noise():
    """Song et al. / iCT feed F(c_in x~, c_noise) with c_in = 1 / sqrt(s^2 + s_d^2), c_noise =
    log(s) / 4 (x~ = x / alpha): at s = 80 a unit-variance-data input of std ~80 reaches the
    network with std ~1."""
    proc = processes.get("vp")
    t = jnp.array([0.1, 0.5, 0.9, 1.0])
    seen = {}

    def net(x_in, c_noise):
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return jnp.zeros_like(x_in)

    precond = preconditioning.ConsistencyPreconditioning(0.002, 1e-3, 0.5)
    x = points(jax.random.key(6), n=4)
    denoisers.Denoiser(net, precond, proc).x0(x, t)
    s = proc.sigma(t) / proc.alpha(t)
    c_in = 1.0 / np.sqrt(np.square(s) + 0.25)
    np.testing.assert_allclose(seen["x_in"], x / proc.alpha(t)[:, None] * c_in[:, None], rtol=1e-5)
    np.testing.assert_allclose(seen["c_noise"], np.log(s) / 4, rtol=1e-5)
    big = 80.0 * jax.random.normal(jax.random.key(7), (4096, 2))
    edm = processes.get("edm")
    denoisers.Denoiser(net, precond, edm).x0(big, jnp.ones(4096))
    assert abs(float(jnp.std(seen["x_in"])) - 1.0) < 0.05


@pytest.mark.parametrize("time_scale", [1.0, 0.01])
@pytest.mark.parametrize(
    "network_times, expected",
    [("t_gap", lambda r, t: (t, t - r)), ("r_t", lambda r, t: (r, t))],
)
def test_average_velocity_feeds_the_network_its_two_times(network_times, expected, time_scale):
    """Callers pass (t, t - r); the network sees time_scale x (t, t - r) or x (r, t), and times
    [B] are r = t."""
    r, t = jnp.array([0.1, 0.3, 0.5]), jnp.array([0.2, 0.9, 0.5])
    precond = preconditioning.AverageVelocity(network_times, time_scale)
    den = denoisers.Denoiser(lambda x, times: times, precond, processes.RectifiedFlow())
    x = jnp.zeros((3, 2))
    seen = jax.jit(den.output)(x, jnp.stack([t, t - r], -1))
    np.testing.assert_allclose(seen, time_scale * jnp.stack(expected(r, t), -1), rtol=1e-6)
    seen = jax.jit(den.output)(x, t)
    np.testing.assert_allclose(seen, time_scale * jnp.stack(expected(t, t), -1), rtol=1e-6)


def test_average_velocity_rejects_bad_options():
    with pytest.raises(ValueError, match="valid: t_gap, r_t"):
        preconditioning.AverageVelocity("t_r")
    with pytest.raises(ValueError, match="time_scale"):
        preconditioning.AverageVelocity(time_scale=0.0)
