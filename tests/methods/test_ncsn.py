"""The NCSN recipe: lambda(sigma) = sigma^2 score matching over L levels at the exact score."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import methods, processes
from tests.methods import digits_run

MU, VAR = 0.4, 0.09  # one-dimensional Gaussian data, repeated over 2 independent dims


def exact_score_apply(process):
    """grad log p_sigma(x) = -(x - mu) / (c + sigma^2) for x = x_0 + sigma z (alpha = 1)."""

    def apply_fn(params, x, t, cond=None, key=None):
        return -(x - MU) / (VAR + jnp.square(process.sigma(t)))[:, None]

    return apply_fn


def test_registered_defaults():
    recipe = methods.get("ncsn")(process=processes.get("ve"))
    assert recipe.name == "ncsn" and recipe.prediction == "score"
    assert recipe.sampler == "annealed_langevin"


def test_loss_at_exact_score_is_the_level_average():
    """1/L sum_i E ||sigma_i s*(x) + z||^2 / D = 1/L sum_i c / (c + sigma_i^2)."""
    proc = processes.get("ve", sigma_min=0.01, sigma_max=1.0)
    recipe = methods.get("ncsn")(process=proc, num_levels=10)
    loss_fn = recipe.make_loss(exact_score_apply(proc))

    @jax.jit
    def value(key):
        kx, kl = jax.random.split(key)
        x = MU + math.sqrt(VAR) * jax.random.normal(kx, (4096, 2))
        return loss_fn({"model": {}}, {"x": x}, kl)[0]

    vals = jax.vmap(value)(jax.random.split(jax.random.key(0), 16))
    sigmas = 0.01 * 100.0 ** (np.arange(10) / 9)  # geometric sigma_L .. sigma_1
    exact = np.mean(VAR / (VAR + sigmas**2))
    se = float(vals.std(ddof=1)) / 4
    assert abs(float(vals.mean()) - exact) < 5 * se


def test_needs_a_ve_process():
    with pytest.raises(ValueError, match="ve"):
        methods.get("ncsn")(process=processes.get("vp"))
    with pytest.raises(ValueError):
        methods.get("ncsn")(process=processes.get("ve"), num_levels=1)


@pytest.mark.slow
def test_digits_config_trains_through_main(tmp_path):
    values = digits_run.train_losses("ncsn_digits", tmp_path)
    assert np.isfinite(values).all() and values[-1] < values[0]
