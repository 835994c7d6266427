"""Probability-flow ODE samplers against the exact ODE map of Gaussian data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes, samplers

from .closed_forms import GAUSSIAN, VP, gaussian_denoiser, observed_order


def _x1(n=256):
    return jax.random.normal(jax.random.PRNGKey(1), (n, 2))


def _errors(sampler, steps):
    den, x1 = gaussian_denoiser(VP), _x1()
    errors = []
    for n in steps:
        ts = sampler.timesteps(VP, n)
        exact = GAUSSIAN.ode_solution(x1, ts[0], ts[-1], VP)
        x = jax.jit(lambda k, x, n=n: sampler(k, den, x, num_steps=n))(jax.random.PRNGKey(0), x1)
        errors.append(float(jnp.max(jnp.abs(x - exact))))
    return errors


@pytest.mark.parametrize(
    "name,order,steps",
    [("euler", 1, [20, 40, 80, 160]), ("heun", 2, [10, 20, 40, 80]), ("rk4", 4, [5, 10, 20])],
)
def test_fixed_step_order(name, order, steps):
    """Observed order (slope of log error vs log steps) within 0.3 of the method's order; the
    rk4 grid stops before the float32 floor (~1e-6)."""
    sampler = samplers.get(name)
    errors = _errors(sampler, steps)
    assert abs(observed_order(steps, errors) - order) < 0.3, errors
    assert sampler.nfe(10) == 10 * {"euler": 1, "heun": 2, "rk4": 4}[name]


@pytest.mark.parametrize("tol", [1e-3, 1e-5])
def test_dopri5_meets_tolerance(tol):
    """The global error of an adaptive solve is a small multiple of its local tolerance."""
    sampler = samplers.get("dopri5", rtol=tol, atol=tol)
    den, x1 = gaussian_denoiser(VP), _x1()
    x, stats = jax.jit(lambda k, x: sampler(k, den, x, return_stats=True))(
        jax.random.PRNGKey(0), x1
    )
    exact = GAUSSIAN.ode_solution(x1, 1.0, 1e-3, VP)
    assert bool(stats["success"])
    assert float(jnp.max(jnp.abs(x - exact))) < 10 * tol + 1e-5
    assert stats["nfe"] == 6 * (stats["num_steps"] + stats["num_rejected"]) + 2
    assert sampler.nfe(1) is None


def test_dopri5_trajectory_lands_on_grid():
    sampler = samplers.get("dopri5", rtol=1e-5, atol=1e-5)
    den, x1 = gaussian_denoiser(VP), _x1(16)
    ts = jnp.array([1.0, 0.5, 0.1, 1e-3])
    x, traj = jax.jit(lambda k, x: sampler(k, den, x, timesteps=ts, return_trajectory=True))(
        jax.random.PRNGKey(0), x1
    )
    assert traj.shape == (4, 16, 2)
    np.testing.assert_array_equal(traj[-1], x)
    for i in range(1, 4):
        np.testing.assert_allclose(traj[i], GAUSSIAN.ode_solution(x1, 1.0, ts[i], VP), atol=1e-4)


@pytest.mark.parametrize("name,options", [("heun", {"method": "rk45"}), ("euler", {"t_min": 1.0})])
def test_invalid_options_raise(name, options):
    with pytest.raises(ValueError):
        samplers.get(name, **options)


@pytest.mark.parametrize("name,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_linear_interpolant_to_t_zero(name, order):
    """On the rectified-flow path with a velocity model (flow matching's u = E[x_1 - x_0 | x_t])
    the ODE is regular at t = 0, so the grid runs to t_min = 0 with the expected order."""
    rf = processes.get("rectified_flow")
    sampler, den = samplers.get(name, t_min=0.0), gaussian_denoiser(rf, "velocity")
    x1 = _x1()
    exact = GAUSSIAN.ode_solution(x1, 1.0, 0.0, rf)
    steps = [4, 8, 16] if name == "rk4" else [8, 16, 32, 64]
    errors = []
    for n in steps:
        x = jax.jit(lambda k, x, n=n: sampler(k, den, x, num_steps=n))(jax.random.PRNGKey(0), x1)
        errors.append(float(jnp.max(jnp.abs(x - exact))))
    assert abs(observed_order(steps, errors) - order) < 0.3, errors
