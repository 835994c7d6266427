"""The EDM recipe: the optimal loss is exactly 1 when the data variance is sigma_d^2; Heun
sampling with the exact denoiser reproduces the data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import methods, preconditioning, processes, samplers
from tests.methods import digits_run

SIGMA_D, MU = 0.5, jnp.array([0.3, -0.2])


def exact_net(process):
    """F* = (D* - c_skip x) / c_out for N(MU, sigma_d^2 I): D* = mu + c (x - mu) / (c + s^2)."""

    def apply_fn(params, x_in, c_noise, cond=None, key=None):
        sigma = jnp.exp(4.0 * c_noise)[:, None]
        c_skip, c_out, c_in, _ = (
            c[:, None] for c in preconditioning.edm_coefficients(sigma[:, 0], SIGMA_D)
        )
        x = x_in / c_in
        d = MU[None] + SIGMA_D**2 * (x - MU[None]) / (SIGMA_D**2 + sigma**2)
        return (d - c_skip * x) / c_out

    return apply_fn


def test_loss_at_optimum_is_one():
    """lambda E||D* - x||^2 / D = (sigma^2 + s_d^2) c / (s_d^2 (c + sigma^2)) = 1 at c = s_d^2."""
    proc = processes.get("edm")
    loss_fn = methods.get("edm")(process=proc).make_loss(exact_net(proc))

    @jax.jit
    def value(key):
        kx, kl = jax.random.split(key)
        x = MU[None] + SIGMA_D * jax.random.normal(kx, (4096, 2))
        return loss_fn({"model": {}}, {"x": x}, kl)[0]

    vals = jax.vmap(value)(jax.random.split(jax.random.key(0), 16))
    se = float(vals.std(ddof=1)) / 4
    assert abs(float(vals.mean()) - 1.0) < 5 * se


def test_default_sampler_reproduces_the_data():
    proc = processes.get("edm")
    recipe = methods.get("edm")(process=proc)
    denoiser = recipe.denoiser(exact_net(proc), {"model": {}})
    sampler = samplers.get(recipe.sampler, **recipe.sampler_options)
    n = 4000
    x1 = proc.prior_sample(jax.random.key(1), (n, 2))
    x = jax.jit(lambda k, x: sampler(k, denoiser, x))(jax.random.key(2), x1)
    # The PF-ODE of Gaussian data is linear; 18 Heun steps leave a small bias, the final
    # noise level sigma_min = 0.002 adds 4e-6 to the variance.
    assert np.all(
        np.abs(np.asarray(x.mean(0)) - np.asarray(MU)) < 5 * SIGMA_D / math.sqrt(n) + 0.01
    )
    assert np.all(np.abs(np.asarray(x.std(0)) - SIGMA_D) < 5 * SIGMA_D / math.sqrt(2 * n) + 0.01)


def test_registered_defaults_and_validation():
    recipe = methods.get("edm")(process=processes.get("edm"))
    assert recipe.name == "edm" and recipe.sampler == "edm_heun"
    assert isinstance(recipe.prediction, preconditioning.EDMPreconditioning)
    for kw in ({"sigma_data": 0.0}, {"p_std": 0.0}):
        with pytest.raises(ValueError):
            methods.get("edm")(process=processes.get("edm"), **kw)


@pytest.mark.slow
def test_digits_config_trains_through_main(tmp_path):
    values = digits_run.train_losses("edm_digits", tmp_path)
    assert np.isfinite(values).all() and values[-1] < values[0]


def test_gradient_wrt_network_output_vanishes_at_optimum():
    proc = processes.get("edm")
    net = exact_net(proc)
    loss_fn = methods.get("edm")(process=proc).make_loss(
        lambda p, x, c, cond=None, key=None: net(p, x, c) + p["b"][None]
    )

    @jax.jit
    def grad(key):
        kx, kl = jax.random.split(key)
        x = MU[None] + SIGMA_D * jax.random.normal(kx, (4096, 2))
        return jax.grad(lambda p: loss_fn(p, {"x": x}, kl)[0])({"model": {"b": jnp.zeros(2)}})

    g = jax.vmap(grad)(jax.random.split(jax.random.key(3), 16))["model"]["b"]
    se = g.std(0, ddof=1) / 4
    assert np.all(np.abs(g.mean(0)) < 5 * se), (g.mean(0), se)
