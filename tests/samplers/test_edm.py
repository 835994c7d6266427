"""Karras et al.'s Heun sampler: order 2 on the exact ODE map; with churn, the right samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes, samplers

from .closed_forms import (
    COV,
    GAUSSIAN,
    MEAN,
    assert_gaussian_moments,
    gaussian_denoiser,
    observed_order,
)


@pytest.mark.parametrize("process", ["vp", "edm"])
def test_deterministic_order_two(process):
    """S_churn = 0 converges to the exact probability-flow ODE map from t = 1 to t = 0 (last step
    Euler, as in Karras et al.) at order 2 +- 0.3; NFE = 2N - 1."""
    proc = processes.get(process)
    sampler, den = samplers.get("edm_heun"), gaussian_denoiser(proc)
    x1 = proc.prior_sample(jax.random.PRNGKey(1), (256, 2))
    exact = GAUSSIAN.ode_solution(x1, 1.0, 0.0, proc)
    steps = [10, 20, 40, 80]
    errors = []
    for n in steps:
        x = jax.jit(lambda k, x, n=n: sampler(k, den, x, num_steps=n))(jax.random.PRNGKey(0), x1)
        errors.append(float(jnp.max(jnp.abs(x - exact))))
    assert abs(observed_order(steps, errors) - 2.0) < 0.3, errors
    assert sampler.nfe(18) == 35


def test_default_grid_is_karras_then_zero():
    ts = samplers.get("edm_heun", t_min=0.01).timesteps(processes.get("vp"), 5)
    assert ts.shape == (6,) and ts[0] == 1.0 and ts[-2] == np.float32(0.01) and ts[-1] == 0.0
    assert np.all(np.diff(ts) < 0)


def test_churn_reproduces_gaussian():
    proc = processes.get("vp")
    sampler = samplers.get("edm_heun", s_churn=20.0)
    x1 = proc.prior_sample(jax.random.PRNGKey(1), (4000, 2))
    run = jax.jit(lambda k, x: sampler(k, gaussian_denoiser(proc), x, num_steps=100))
    assert_gaussian_moments(np.asarray(run(jax.random.PRNGKey(0), x1)), MEAN, COV)


@pytest.mark.parametrize(
    "options", [{"s_churn": -1.0}, {"s_tmin": 2.0, "s_tmax": 1.0}, {"rho": 0.0}, {"t_min": 0.0}]
)
def test_invalid_options_raise(options):
    with pytest.raises(ValueError):
        samplers.get("edm_heun", **options)
