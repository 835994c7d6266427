"""The score-SDE recipe: DSM at the exact score equals its closed form for vp / subvp / ve."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, methods, processes
from tests.methods import digits_run

MU, VAR = 0.4, 0.09


def exact_eps_apply(process):
    """eps* = sigma (x - alpha mu) / (alpha^2 c + sigma^2) for x_t = alpha x_0 + sigma eps."""

    def apply_fn(params, x, t, cond=None, key=None):
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        return s * (x - a * MU) / (a**2 * VAR + s**2)

    return apply_fn


@pytest.mark.parametrize(
    "name, likelihood", [("vp", False), ("subvp", True), ("ve", False), ("ve", True)]
)
def test_loss_at_exact_model(name, likelihood):
    """E_t w(t) alpha^2 c / (alpha^2 c + sigma^2), t ~ U[t_min, 1], by quadrature."""
    proc = processes.get(name)
    t_min = 1e-3
    recipe = methods.get("score_sde")(process=proc, likelihood_weighting=likelihood, t_min=t_min)
    loss_fn = recipe.make_loss(exact_eps_apply(proc))

    @jax.jit
    def value(key):
        kx, kl = jax.random.split(key)
        x = MU + math.sqrt(VAR) * jax.random.normal(kx, (4096, 2))
        return loss_fn({"model": {}}, {"x": x}, kl)[0]

    vals = jax.vmap(value)(jax.random.split(jax.random.key(0), 16))
    t = jnp.linspace(t_min, 1.0, 20001)
    w = losses.WEIGHTINGS["likelihood" if likelihood else "uniform"]()(proc, t)
    a2, s2 = np.square(proc.alpha(t)), np.square(proc.sigma(t))
    f = np.asarray(w * a2 * VAR / (a2 * VAR + s2), np.float64)
    exact = np.trapezoid(f, dx=float(t[1] - t[0])) + t_min * f[0]  # clipped mass at t_min
    se = float(vals.std(ddof=1)) / 4
    assert abs(float(vals.mean()) - exact) < 5 * se, (vals.mean(), exact, se)


def test_registered_defaults_and_validation():
    recipe = methods.get("score_sde")(process=processes.get("vp"))
    assert recipe.name == "score_sde" and recipe.sampler == "predictor_corrector"
    with pytest.raises(ValueError, match="continuous"):
        methods.get("score_sde")(process=processes.get("ddpm_linear"))
    with pytest.raises(ValueError):
        methods.get("score_sde")(process=processes.get("vp"), prediction="noise")


@pytest.mark.slow
def test_digits_config_trains_through_main(tmp_path):
    values = digits_run.train_losses("sde_digits", tmp_path)
    assert np.isfinite(values).all() and values[-1] < values[0]
