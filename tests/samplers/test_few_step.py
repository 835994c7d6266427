"""Consistency and MeanFlow sampling with exact maps of Gaussian data: exact laws and ODE maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes, samplers
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.denoisers import Denoiser
from diffjax.preconditioning import AverageVelocity, ConsistencyPreconditioning

MEAN = jnp.array([0.5, -1.0])
COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])
GM = GaussianMixture.gaussian(MEAN, COV)
VP = processes.VP()
RF = processes.RectifiedFlow()
T_MIN, SIGMA_DATA = 1e-3, 0.5


def _exact_consistency(process):
    """A Denoiser whose x0 is the exact consistency map in the scaled variable,
    x_t -> x_{t_min} / alpha(t_min) (PF-ODE solution), through the consistency preconditioning
    with the boundary sigma_min = s(t_min)."""
    t_min = jnp.float32(T_MIN)
    precond = ConsistencyPreconditioning(float(process.noise_level(t_min)), T_MIN, SIGMA_DATA)

    def net(x, c_noise):
        # F sees (c_in x~, c_noise = log(s) / 4): recover s, x~, t and x = alpha(t) x~.
        level = jnp.exp(4.0 * c_noise)
        x_s = x * jnp.sqrt(jnp.square(level) + SIGMA_DATA**2)[:, None]
        t = process.t_of_noise_level(level)
        x = process.alpha(t)[:, None] * x_s
        c_skip, c_out, _, _ = precond.coefficients(process, t)
        target = GM.ode_solution(x, t, t_min, process) / process.alpha(t_min)
        safe = jnp.where(c_out > 0, c_out, 1.0)[:, None]
        return jnp.where(c_out[:, None] > 0, (target - c_skip[:, None] * x_s) / safe, 0.0)

    return Denoiser(net, precond, process)


@pytest.mark.parametrize("num_steps", [1, 3])
def test_multistep_consistency_sampling_with_the_exact_map_draws_the_data_law(num_steps):
    """Exact f and x_T ~ p_T: every step outputs x~ = x_{t_min} / a ~ N(mu, C + (s / a)^2 I)."""
    t_max = 1.0
    n = 20000
    k0, k1, k2 = jax.random.split(jax.random.key(3), 3)
    x_t = VP.alpha(t_max) * GM.sample(k0, n) + VP.sigma(t_max) * jax.random.normal(k1, (n, 2))
    sampler = samplers.get("consistency", t_min=T_MIN, t_max=t_max)
    ts = jnp.array([t_max, 0.6, 0.3][:num_steps] + [T_MIN])
    den = _exact_consistency(VP)
    x = jax.jit(lambda k, x: sampler(k, den, x, timesteps=ts))(k2, x_t)
    a, s = float(VP.alpha(T_MIN)), float(VP.sigma(T_MIN))
    cov = np.asarray(COV) + (s / a) ** 2 * np.eye(2)
    # Standard errors: sqrt(C_ii / n) for the mean, sqrt(2 / n) C_ii for the variances.
    np.testing.assert_allclose(np.mean(x, 0), np.asarray(MEAN), atol=4 * np.sqrt(1.0 / n))
    np.testing.assert_allclose(np.cov(np.asarray(x).T), cov, atol=4 * np.sqrt(2.0 / n))
    if num_steps == 1:
        # The prior at t = 1 has std 1 here, so x_init is used as given.
        np.testing.assert_allclose(
            x, GM.ode_solution(x_t, t_max, T_MIN, VP) / VP.alpha(T_MIN), atol=1e-5
        )
    assert sampler.nfe(num_steps) == num_steps


def test_consistency_sampling_starts_from_the_prior_rescaled_to_t_max():
    """For the linear interpolant the noise level at t = 1 is infinite: the default grid starts
    at t_max < 1 from the unit prior rescaled to std(x_{t_max}) = sqrt(a^2 + s^2)."""
    t_max = 0.98
    sampler = samplers.get("consistency", t_min=T_MIN, t_max=t_max)
    ts = sampler.timesteps(RF, 4)
    np.testing.assert_allclose([ts[0], ts[-1]], [t_max, T_MIN], rtol=1e-6)
    z = jax.random.normal(jax.random.key(0), (64, 2))
    den = _exact_consistency(RF)
    x = jax.jit(lambda z: sampler(jax.random.key(9), den, z, num_steps=1))(z)
    scale = np.hypot(1.0 - t_max, t_max)
    np.testing.assert_allclose(
        x, GM.ode_solution(scale * z, t_max, T_MIN, RF) / RF.alpha(T_MIN), atol=1e-4
    )


def _exact_average_velocity_denoiser():
    """u(z, r, t) = (z_t - z_r) / (t - r) with z_r the exact PF-ODE map, as a Denoiser taking
    times (t, t - r); with times [B] it is the exact instantaneous velocity."""

    def net(z, times):
        t, gap = times[:, 0], times[:, 1]
        gap_safe = jnp.where(gap > 0, gap, 1.0)[:, None]
        average = (z - GM.ode_solution(z, t, t - gap, RF)) / gap_safe
        return jnp.where(gap[:, None] > 0, average, GM.denoiser(RF).velocity(z, t))

    return Denoiser(net, AverageVelocity(), RF)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_meanflow_sampling_with_the_exact_average_velocity_is_the_exact_ode_map(num_steps):
    z1 = jax.random.normal(jax.random.key(2), (64, 2))
    sampler = samplers.get("meanflow")
    den = _exact_average_velocity_denoiser()
    z0 = jax.jit(lambda z: sampler(jax.random.key(9), den, z, num_steps=num_steps))(z1)
    np.testing.assert_allclose(z0, GM.ode_solution(z1, 1.0, 0.0, RF), atol=1e-5)
    assert sampler.nfe(num_steps) == num_steps


def test_average_velocity_with_one_time_is_the_instantaneous_velocity():
    den = _exact_average_velocity_denoiser()
    z = jax.random.normal(jax.random.key(4), (32, 2))
    t = jnp.full((32,), 0.4)
    np.testing.assert_allclose(
        jax.jit(den.velocity)(z, t), GM.denoiser(RF).velocity(z, t), rtol=1e-6
    )


def test_meanflow_sampler_needs_a_velocity_model():
    den = Denoiser(lambda x, t: x, "eps", RF)
    with pytest.raises(ValueError, match="velocity"):
        samplers.get("meanflow")(jax.random.key(9), den, jnp.zeros((2, 2)), num_steps=1)
