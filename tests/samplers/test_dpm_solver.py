"""DPM-Solver and DPM-Solver++ against the exact ODE map of Gaussian data, in log-SNR time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from diffjax import samplers
from diffjax.denoisers import Denoiser
from diffjax.predictions import convert

from .closed_forms import GAUSSIAN, VP, gaussian_denoiser, observed_order


def _eps_denoiser():
    """The exact denoiser as a noise predictor, as DPM-Solver is written for one."""
    x0 = gaussian_denoiser(VP)
    return Denoiser(lambda x, t: convert(x0.output(x, t), "x0", "eps", x, t, VP), "eps", VP)


def _errors(sampler, steps, den):
    x1 = jax.random.normal(jax.random.PRNGKey(1), (256, 2))
    errors = []
    for n in steps:
        ts = sampler.timesteps(VP, n)
        exact = GAUSSIAN.ode_solution(x1, ts[0], ts[-1], VP)
        x = jax.jit(lambda k, x, n=n: sampler(k, den, x, num_steps=n))(jax.random.PRNGKey(0), x1)
        errors.append(float(jnp.max(jnp.abs(x - exact))))
    return errors


@pytest.mark.parametrize(
    "name,order,theory,steps",
    [
        ("dpm_solver", 1, (1, 1), [10, 20, 40, 80]),
        ("dpm_solver", 2, (2, 2), [5, 10, 20, 40]),
        ("dpm_solver", 3, (3, 4), [5, 10, 20, 40]),
        ("dpm_solver_pp", 2, (2, 2), [10, 20, 40, 80]),
        ("dpm_solver_pp", 3, (3, 4), [5, 10, 20, 40]),
    ],
)
def test_observed_order(name, order, theory, steps):
    """Slope of log error vs log steps within 0.3 of theory; for the third-order solvers the
    issue's 3-4 (on this smooth problem they converge faster than h^3 at these step counts).
    Single-step order k costs k NFE per step, multistep one (3M one more for its start)."""
    sampler = samplers.get(name, order=order)
    errors = _errors(sampler, steps, _eps_denoiser())
    assert theory[0] - 0.3 < observed_order(steps, errors) < theory[1] + 0.3, errors
    assert sampler.nfe(10) == (10 * order if name == "dpm_solver" else 10 + (order == 3))


def test_3m_step_is_exact_for_quadratic_predictions():
    """With data predictions m(l) quadratic in l = log(alpha/sigma) and exact history, one 3M
    step equals the exact solution of the ODE,
    x_s = (sigma_s/sigma_t) x_t + sigma_s int_{l_t}^{l_s} e^l m(l) dl (quadrature in float64).
    (2M's phi_1-weighted extrapolation is second order but not exact for linear m.)"""
    coefs = [0.3, -0.2, 0.05]
    poly = lambda l: sum(c * l**k for k, c in enumerate(coefs))  # noqa: E731
    half_log_snr = lambda t: 0.5 * VP.log_snr(t)  # noqa: E731
    den = Denoiser(lambda x, t: poly(half_log_snr(t))[:, None] * jnp.ones_like(x), "x0", VP)
    sampler = samplers.get("dpm_solver_pp", order=3)
    t_prev2, t_prev, t, s = 0.7, 0.6, 0.5, 0.35
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2))
    ones = jnp.ones_like(x)
    l_prev2, l_prev, l_t, l_s = (
        float(half_log_snr(jnp.float32(u))) for u in (t_prev2, t_prev, t, s)
    )
    state = (poly(l_prev) * ones, poly(l_prev2) * ones, l_prev, l_prev2, jnp.int32(2))
    got, _ = jax.jit(lambda x: sampler.step(den, x, state, t, s, jax.random.PRNGKey(0), False))(x)
    integral = scipy.integrate.quad(lambda l: np.exp(l) * poly(l), l_t, l_s)[0]
    sigma_t, sigma_s = (float(VP.sigma(jnp.float32(u))) for u in (t, s))
    want = sigma_s / sigma_t * np.asarray(x) + sigma_s * integral
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_first_order_is_ddim():
    """DPM-Solver-1 is DDIM (eta = 0) on the same grid."""
    den, x1 = gaussian_denoiser(VP), jax.random.normal(jax.random.PRNGKey(2), (32, 2))
    ts = samplers.get("dpm_solver").timesteps(VP, 12)
    key = jax.random.PRNGKey(0)
    a = jax.jit(lambda x: samplers.get("dpm_solver", order=1)(key, den, x, timesteps=ts))(x1)
    b = jax.jit(lambda x: samplers.get("ddim")(key, den, x, timesteps=ts))(x1)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name,options",
    [("dpm_solver", {"order": 4}), ("dpm_solver_pp", {"order": 1}), ("dpm_solver", {"t_min": 0})],
)
def test_invalid_options_raise(name, options):
    with pytest.raises(ValueError):
        samplers.get(name, **options)
