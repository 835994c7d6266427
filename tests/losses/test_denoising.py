"""Denoising regression at the exact optimal model (Gaussian data) against closed-form minima and
gradients, in every prediction and target space."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, predictions, processes

from .gaussian_data import (
    DATA,
    ZERO,
    eps_mse_at_optimum,
    exact_apply,
    mc_mean,
)


@pytest.mark.parametrize(
    "kind, target", [("eps", "eps"), ("x0", "eps"), ("v", "eps"), ("eps", "x0"), ("v", "v")]
)
def test_ddpm_loss_at_optimum_is_closed_form(kind, target):
    proc = processes.get("ddpm_linear", num_steps=100)
    loss_fn = losses.DenoisingLoss(proc, prediction=kind, target=target)(
        lambda p, *a, **k: exact_apply(proc, kind)(p, *a)
    )
    value, se = mc_mean(loss_fn, ZERO)
    t = np.arange(1, 101) / 100
    exact = eps_mse_at_optimum(proc, jnp.asarray(t, jnp.float32)).mean()
    assert abs(value - exact) < 5 * se, (value, exact, se)


@pytest.mark.parametrize(
    "weighting, kw",
    [
        ("snr", {}),
        ("min_snr", {"gamma": 5.0}),
        ("truncated_snr", {}),
        ("likelihood", {}),
        ("edm", {}),
    ],
)
def test_weighted_continuous_loss_at_optimum(weighting, kw):
    """Continuous vp with each weighting: E_t[w(t) mse*(t)] by quadrature on a fine t grid."""
    proc = processes.get("vp")
    t_min = 1e-3
    loss_fn = losses.DenoisingLoss(proc, weighting=weighting, weighting_kwargs=kw, t_min=t_min)(
        exact_apply(proc, "eps")
    )
    value, se = mc_mean(loss_fn, ZERO, n_keys=32)
    # t ~ U[0, 1) clipped to t_min: mass t_min at t_min, density 1 on (t_min, 1).
    t = jnp.linspace(t_min, 1.0, 20001)
    w = losses.WEIGHTINGS[weighting](**kw)(proc, t)
    integrand = np.asarray(w * eps_mse_at_optimum(proc, t))
    exact = np.trapezoid(integrand, dx=float(t[1] - t[0])) + t_min * integrand[0]
    assert abs(value - exact) < 5 * se, (value, exact, se)


def test_target_space_does_not_change_the_objective():
    """Same draws, a non-optimal model: the loss regressed in any target space is identical."""
    proc = processes.get("ddpm_cosine", num_steps=50)
    params = {"model": {"b": jnp.array([0.3, -0.2])}}
    batch = {"x": DATA.sample(jax.random.key(3), 256)}
    apply_fn = exact_apply(proc, "v")

    @jax.jit
    def all_targets(params, batch, key):
        return jnp.stack(
            [
                losses.DenoisingLoss(proc, prediction="v", target=target)(apply_fn)(
                    params, batch, key
                )[0]
                for target in predictions.KINDS
            ]
        )

    values = all_targets(params, batch, jax.random.key(4))
    np.testing.assert_allclose(values, values[0], rtol=2e-4)


@pytest.mark.parametrize("kind", ["eps", "x0", "score"])
def test_gradient_wrt_model_output_vanishes_at_optimum(kind):
    """d loss / d b at b = 0 for output + b: zero in expectation (5 standard errors)."""
    proc = processes.get("ddpm_linear", num_steps=100)
    loss_fn = losses.DenoisingLoss(proc, prediction=kind)(exact_apply(proc, kind))

    @jax.jit
    def grad(key):
        kx, kl = jax.random.split(key)
        batch = {"x": DATA.sample(kx, 2048)}
        return jax.grad(lambda p: loss_fn(p, batch, kl)[0])(ZERO)["model"]["b"]

    g = jax.vmap(grad)(jax.random.split(jax.random.key(5), 16))
    se = g.std(0, ddof=1) / 4.0
    assert np.all(np.abs(g.mean(0)) < 5 * se), (g.mean(0), se)
    # A wrong model has a clearly non-zero gradient, in the direction of its error.
    shifted = {"model": {"b": jnp.full(2, 0.5)}}
    batch = {"x": DATA.sample(jax.random.key(6), 2048)}
    g_bad = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(7))[0])(shifted)["model"]["b"]
    assert np.all(np.asarray(g_bad) > 10 * np.asarray(se))


def test_discrete_time_sampling_is_uniform_on_the_grid():
    proc = processes.get("ddpm_linear", num_steps=10)
    t = losses.snap_time(jax.random.uniform(jax.random.key(0), (100000,)), proc, 1e-5, None)
    i = np.round(np.asarray(t) * 10).astype(int)
    np.testing.assert_allclose(np.asarray(t) * 10, i, atol=1e-5)
    counts = np.bincount(i, minlength=11)
    assert counts[0] == 0
    expected = 100000 / 10
    assert np.all(np.abs(counts[1:] - expected) < 5 * math.sqrt(expected))


def test_ncsn_levels_grid():
    proc = processes.get("ve")
    t = losses.snap_time(jnp.linspace(0, 1, 101), proc, 1e-5, 5)
    assert set(np.round(np.asarray(t) * 4, 6)) == {0.0, 1.0, 2.0, 3.0, 4.0}


@pytest.mark.parametrize(
    "kw",
    [
        {"weighting": "nope"},
        {"time_distribution": "nope"},
        {"weighting": "min_snr", "weighting_kwargs": {"gamma": -1.0}},
        {"weighting": "min_snr", "weighting_kwargs": {"gama": 1.0}},
        {"prediction": "noise"},
        {"target": "noise"},
        {"t_min": 1.0},
        {"num_levels": 1},
    ],
)
def test_invalid_options_raise(kw):
    with pytest.raises(ValueError):
        losses.DenoisingLoss(processes.get("vp"), **kw)(None)
