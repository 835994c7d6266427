"""VDM's continuous VLB: the dependence on the schedule's ends only, the end terms' limits, and
the variance-minimising schedule gradient."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, processes

from .gaussian_data import (
    DATA,
    MU,
    VAR,
    exact_apply,
)


def vdm_process(seed, hidden):
    proc = processes.get("vdm_learned", hidden=hidden)
    return proc, {"schedule": proc.init(jax.random.key(seed))}


def test_vdm_diffusion_loss_depends_only_on_the_ends():
    """Two gamma shapes with the same ends: L_inf = 1/2 sum_d log((1 + c SNR_max) / (1 + c
    SNR_min)) for the exact model (seed 001, "EQUIVALENCE OF DIFFUSION MODELS")."""
    snr_max, snr_min = math.exp(13.3), math.exp(-5.0)
    c = np.asarray(VAR, np.float64)
    exact = 0.5 * np.sum(np.log((1 + c * snr_max) / (1 + c * snr_min)))
    shapes = [vdm_process(0, 8), vdm_process(1, 64)]
    # Make the second schedule very different in shape: a steep sigmoid layer.
    params1 = shapes[1][1]
    params1["schedule"]["_PositiveDense_1"]["kernel"] = (
        30.0 * params1["schedule"]["_PositiveDense_1"]["kernel"]
    )
    values = []
    for proc, params in shapes:
        bound = proc.bind(params["schedule"])
        model = lambda z, t, p=bound: exact_apply(p, "eps")({"b": jnp.zeros(2)}, z, t)  # noqa: E731

        @jax.jit
        def diffusion(key, model=model, bound=bound):
            kx, kt, kn = jax.random.split(key, 3)
            x0 = DATA.sample(kx, 4096)
            t = losses.time_distribution(
                "antithetic",
            ).sample(kt, 4096, bound)
            return losses.vdm_terms(model, bound, x0, t, kn, 17)[0].mean()

        vals = jax.vmap(diffusion)(jax.random.split(jax.random.key(2), 16))
        assert abs(float(vals.mean()) - exact) < 5 * float(vals.std(ddof=1)) / 4, (
            vals.mean(),
            exact,
        )
        values.append(float(vals.mean()))
    # The two shapes really differ: gamma at t = 0.5.
    g = [p.bind(q["schedule"]).gamma(jnp.array([0.5])) for p, q in shapes]
    assert abs(float(g[0][0] - g[1][0])) > 1.0


def test_vdm_prior_and_reconstruction_limits():
    proc, params = vdm_process(0, 8)
    bound = proc.bind(params["schedule"])
    x0 = DATA.sample(jax.random.key(0), 2048)
    prior = losses.prior_kl(bound, x0)
    a2 = float(jax.nn.sigmoid(-5.0))  # alpha_1^2 = sigmoid(-gamma_max)
    c, mu = np.asarray(VAR, np.float64), np.asarray(MU, np.float64)
    expected = np.sum(0.5 * (a2 * (c + mu**2) + (1 - a2) - 1 - np.log(1 - a2)))
    assert abs(float(prior.mean()) - expected) < 5 * float(prior.std()) / math.sqrt(2048)
    # Reconstruction: SNR_0 -> inf gives -log p -> 0; SNR_0 -> 0 gives log(num_bins) per dim.
    x = jnp.linspace(-1.0, 1.0, 17)[jnp.array([[0, 5], [16, 8]])]
    ones = jnp.ones(2)
    sharp = losses.vdm_reconstruction_nll(x, x, ones, 30.0 * ones, 17)
    flat = losses.vdm_reconstruction_nll(x, x, ones, -30.0 * ones, 17)
    np.testing.assert_allclose(sharp, 0.0, atol=1e-6)
    np.testing.assert_allclose(flat, 2 * np.log(17), rtol=1e-6)


def test_vdm_variance_reduction_gradients():
    """Model and gamma ends get the VLB gradient; the shape of gamma gets d mean(l^2)."""
    proc, params = vdm_process(0, 8)
    params = {"model": {"b": jnp.array([0.1, -0.2])}, **params}

    def apply_fn(p, z, t, cond=None, key=None):
        return 0.5 * z + p["b"][None]

    batch = {"x": DATA.sample(jax.random.key(0), 64)}
    key = jax.random.key(1)
    reduced = losses.VDMLoss(proc, num_bins=256, variance_reduction=True)(apply_fn)
    plain = losses.VDMLoss(proc, num_bins=256, variance_reduction=False)(apply_fn)
    g_red = jax.jit(jax.grad(lambda p: reduced(p, batch, key)[0]))(params)
    g_plain = jax.jit(jax.grad(lambda p: plain(p, batch, key)[0]))(params)
    assert float(reduced(params, batch, key)[0]) == pytest.approx(
        float(plain(params, batch, key)[0])
    )

    def second_moment(p):
        _, m = plain(p, batch, key)
        del m
        t_key, noise_key, _ = jax.random.split(key, 3)
        t = losses.time_distribution(
            "antithetic",
        ).sample(t_key, 64, proc)
        bound = proc.bind(p["schedule"])
        model = lambda z, s: apply_fn(p["model"], z, s)  # noqa: E731
        parts = losses.vdm_terms(model, bound, batch["x"], t, noise_key, 256)
        total = sum(losses.bits_per_dim(n, batch["x"][0].size) for n in parts)
        return jnp.mean(jnp.square(total))

    g_var = jax.jit(jax.grad(second_moment))(params)
    np.testing.assert_allclose(g_red["model"]["b"], g_plain["model"]["b"], rtol=1e-5)
    for end in ("gamma_0", "log_gamma_span"):
        np.testing.assert_allclose(g_red["schedule"][end], g_plain["schedule"][end], rtol=1e-5)
    shape = "_PositiveDense_1"
    np.testing.assert_allclose(
        g_red["schedule"][shape]["kernel"], g_var["schedule"][shape]["kernel"], rtol=1e-4, atol=1e-7
    )
    assert not np.allclose(g_red["schedule"][shape]["kernel"], g_plain["schedule"][shape]["kernel"])
