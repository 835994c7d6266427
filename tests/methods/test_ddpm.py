"""The DDPM recipe: registry, option validation, its loss trains, its sampler draws the data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffjax import methods, processes, samplers
from tests.methods import digits_run

MU = jnp.array([0.5, -1.0])
VAR = jnp.array([0.3, 0.1])


def exact_eps_apply(process):
    """Bayes-optimal eps for N(MU, diag VAR): eps* = (x - alpha E[x0|x]) / sigma."""

    def apply_fn(params, x, t, cond=None, key=None):
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        x0 = MU[None] + a * VAR[None] * (x - a * MU[None]) / (a**2 * VAR[None] + s**2)
        return (x - a * x0) / s

    return apply_fn


def test_registered_with_defaults():
    proc = processes.get("ddpm_linear", num_steps=100)
    recipe = methods.get("ddpm")(process=proc)
    assert recipe.name == "ddpm" and recipe.prediction == "eps" and recipe.sampler == "ddpm"
    assert recipe.process is proc and recipe.out_channels_factor == 1
    assert "ddpm" in samplers.names()


@pytest.mark.parametrize(
    "kw", [{"prediction": "noise"}, {"weighting": "bogus"}, {"time_distribution": "bogus"}]
)
def test_bad_options_fail_at_build_time(kw):
    with pytest.raises(ValueError):
        methods.get("ddpm")(process=processes.get("ddpm_linear"), **kw)


def test_loss_trains_a_linear_model():
    """eps_hat = x W + t u + b, Adam: the loss falls well below its value at the start."""
    proc = processes.get("ddpm_linear", num_steps=100)
    recipe = methods.get("ddpm")(process=proc)

    def apply_fn(p, x, t, cond=None, key=None):
        return x @ p["w"] + t[:, None] * p["u"][None] + p["b"][None]

    loss_fn = recipe.make_loss(apply_fn)
    params = {"model": {"w": jnp.zeros((2, 2)), "u": jnp.zeros(2), "b": jnp.zeros(2)}}
    opt = optax.adam(3e-2)

    @jax.jit
    def step(carry, key):
        params, state = carry
        kx, kl = jax.random.split(key)
        batch = {"x": MU[None] + jnp.sqrt(VAR)[None] * jax.random.normal(kx, (512, 2))}
        (value, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, kl)
        updates, state = opt.update(grads, state)
        return (optax.apply_updates(params, updates), state), value

    (_, _), values = jax.lax.scan(
        step, (params, opt.init(params)), jax.random.split(jax.random.key(0), 300)
    )
    # Zero model: E||eps||^2 / D = 1, one batch's standard error sqrt(2 / (512 D)) ~ 0.044.
    assert abs(float(values[0]) - 1.0) < 5 * 0.044
    # The best model of this form: E_t [mean_d alpha^2 c / (alpha^2 c + sigma^2)] ~ 0.2 plus the
    # error of a t-linear fit; the trained loss is far below the starting 1.
    assert float(values[-50:].mean()) < 0.6


def test_default_sampler_draws_the_data_distribution():
    proc = processes.get("ddpm_linear", num_steps=200)
    recipe = methods.get("ddpm")(process=proc)
    denoiser = recipe.denoiser(lambda *a, **k: exact_eps_apply(proc)(*a, **k), {"model": {}})
    sampler = samplers.get(recipe.sampler, **recipe.sampler_options)
    n = 4000
    x1 = proc.prior_sample(jax.random.key(1), (n, 2))
    x = jax.jit(lambda k, x: sampler(k, denoiser, x))(jax.random.key(2), x1)
    mean, var = np.asarray(x.mean(0)), np.asarray(x.var(0))
    # 5 standard errors of the sample moments; the ancestral chain with T = 200 is exact up to
    # its prior mismatch alpha(1)^2 ~ 1e-2 and the per-step variance choice (a few percent).
    assert np.all(np.abs(mean - MU) < 5 * np.sqrt(VAR / n) + 0.02)
    assert np.all(np.abs(var - VAR) < 5 * VAR * math.sqrt(2 / n) + 0.05 * VAR)


@pytest.mark.slow
def test_digits_config_trains_through_main(tmp_path):
    losses = digits_run.train_losses("ddpm_digits", tmp_path)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
