"""Losses at the exact optimal model (Gaussian data) against closed-form minima and gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, predictions, processes
from diffjax.analytic.gaussian import GaussianMixture

MU = jnp.array([0.3, -0.5])
VAR = jnp.array([0.2, 0.05])  # diagonal covariance
DATA = GaussianMixture.gaussian(MU, jnp.diag(VAR))


def exact_apply(process, kind):
    """apply_fn of the Bayes-optimal model of kind `kind`, plus a learnable offset params["b"].

    For diagonal Gaussian data E[x_0 | x_t] = mu + alpha c (x_t - alpha mu) / (alpha^2 c + sigma^2).
    """

    def x0_mean(x, t):
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        return MU[None] + a * VAR[None] * (x - a * MU[None]) / (a**2 * VAR[None] + s**2)

    denoiser = predictions.Denoiser(x0_mean, "x0", process)

    def apply_fn(params, x, t, cond=None, key=None):
        return denoiser.predict(x, t, kind) + params["b"][None]

    return apply_fn


def eps_mse_at_optimum(process, t):
    """E ||eps - eps*||^2 / D at t [N]: mean_d alpha^2 c / (alpha^2 c + sigma^2)."""
    a2, s2 = np.square(process.alpha(t))[:, None], np.square(process.sigma(t))[:, None]
    return np.mean(a2 * VAR[None] / (a2 * VAR[None] + s2), axis=-1)


def mc_mean(loss_fn, params, n_keys=16, batch=2048):
    """The loss averaged over n_keys independent batches, and its standard error."""

    @jax.jit
    def one(key):
        kx, kl = jax.random.split(key)
        return loss_fn(params, {"x": DATA.sample(kx, batch)}, kl)[0]

    vals = jax.vmap(one)(jax.random.split(jax.random.key(0), n_keys))
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n_keys))


ZERO = {"model": {"b": jnp.zeros(2)}}


@pytest.mark.parametrize(
    "kind, target", [("eps", "eps"), ("x0", "eps"), ("v", "eps"), ("eps", "x0"), ("v", "v")]
)
def test_ddpm_loss_at_optimum_is_closed_form(kind, target):
    proc = processes.get("ddpm_linear", num_steps=100)
    loss_fn = losses.denoising_loss(
        lambda p, *a, **k: exact_apply(proc, kind)(p, *a), proc, prediction=kind, target=target
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
    loss_fn = losses.denoising_loss(
        exact_apply(proc, "eps"), proc, weighting=weighting, weighting_kwargs=kw, t_min=t_min
    )
    value, se = mc_mean(loss_fn, ZERO, n_keys=32)
    # t ~ U[0, 1) clipped to t_min: mass t_min at t_min, density 1 on (t_min, 1).
    t = jnp.linspace(t_min, 1.0, 20001)
    w = losses.WEIGHTINGS[weighting](**kw)(proc, t)
    integrand = np.asarray(w * eps_mse_at_optimum(proc, t))
    exact = np.trapezoid(integrand, dx=float(t[1] - t[0])) + t_min * integrand[0]
    assert abs(value - exact) < 5 * se, (value, exact, se)


def test_weightings_match_formulas():
    proc = processes.get("vp")
    t = jnp.linspace(0.05, 0.95, 19)
    snr = np.exp(np.asarray(proc.log_snr(t)))
    beta = 0.1 + np.asarray(t) * 19.9
    sigma2 = 1 - np.exp(-(0.1 * t + 0.5 * 19.9 * t**2))
    checks = {
        ("uniform", ()): np.ones_like(snr),
        ("snr", ()): snr,
        ("min_snr", (("gamma", 2.0),)): np.minimum(snr, 2.0) / snr,
        ("truncated_snr", ()): np.maximum(snr, 1.0) / snr,
        ("likelihood", ()): beta / sigma2,
        ("edm", (("sigma_data", 0.5),)): (1 / snr + 0.25) / 0.25,
    }
    for (name, kw), expected in checks.items():
        got = jax.jit(lambda p, t, n=name, kw=kw: losses.WEIGHTINGS[n](**dict(kw))(p, t))(proc, t)
        np.testing.assert_allclose(got, expected, rtol=2e-4, err_msg=name)


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
                losses.denoising_loss(apply_fn, proc, prediction="v", target=target)(
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
    loss_fn = losses.denoising_loss(exact_apply(proc, kind), proc, prediction=kind)

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


def test_time_samplers():
    proc = processes.get("edm")
    key = jax.random.key(0)
    n = 20000
    anti = losses.TIME_SAMPLERS["antithetic"]()(key, 8, proc)
    np.testing.assert_allclose(np.sort(np.diff(np.sort(np.asarray(anti)))), 1 / 8, atol=1e-6)
    t = losses.TIME_SAMPLERS["logit_normal"](mean=0.5, std=0.8)(key, n, proc)
    logit = np.log(t) - np.log1p(-t)
    assert abs(logit.mean() - 0.5) < 5 * 0.8 / math.sqrt(n)
    assert abs(logit.std() - 0.8) < 5 * 0.8 / math.sqrt(2 * n)
    t = jax.jit(lambda k: losses.TIME_SAMPLERS["lognormal"](mean=-1.2, std=1.2)(k, n, proc))(key)
    log_sigma = np.log(np.asarray(proc.sigma(t)))
    assert abs(log_sigma.mean() + 1.2) < 5 * 1.2 / math.sqrt(n)
    assert abs(log_sigma.std() - 1.2) < 5 * 1.2 / math.sqrt(2 * n)


def test_ncsn_levels_grid():
    proc = processes.get("ve")
    t = losses.snap_time(jnp.linspace(0, 1, 101), proc, 1e-5, 5)
    assert set(np.round(np.asarray(t) * 4, 6)) == {0.0, 1.0, 2.0, 3.0, 4.0}


@pytest.mark.parametrize(
    "kw",
    [
        {"weighting": "nope"},
        {"time_sampling": "nope"},
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
        losses.denoising_loss(None, processes.get("vp"), **kw)
