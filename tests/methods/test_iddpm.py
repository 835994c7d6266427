"""The iDDPM recipe: learned-variance output, hybrid loss wiring, validation, digits config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, methods, processes
from tests.methods import digits_run


def test_registered_with_learned_variance():
    proc = processes.get("ddpm_cosine", num_steps=50)
    recipe = methods.get("iddpm")(process=proc)
    assert recipe.name == "iddpm" and recipe.out_channels_factor == 2
    # The denoiser hands samplers the eps half of the 2C output channels.
    apply_fn = lambda p, x, t, cond=None, key=None: jnp.concatenate([x, -3 * x], -1)  # noqa: E731
    x = jax.random.normal(jax.random.key(0), (4, 3, 3, 2))
    np.testing.assert_allclose(recipe.denoiser(apply_fn, {"model": {}}).eps(x, 0.5), x)


def test_loss_is_mse_plus_weighted_vlb():
    """loss = mse + lambda vlb, and vlb_bpd = vlb + prior: check the parts add up."""
    proc = processes.get("ddpm_cosine", num_steps=50)

    def apply_fn(p, x, t, cond=None, key=None):
        return jnp.concatenate([0.9 * x + p["b"], jnp.full_like(x, 0.2)], -1)

    params = {"model": {"b": jnp.float32(0.1)}}
    x = jnp.linspace(-1, 1, 17)[jax.random.randint(jax.random.key(1), (64, 4, 4, 1), 0, 17)]
    key = jax.random.key(2)
    for weight in (0.0, 0.5):
        value, m = jax.jit(losses.IDDPMLoss(proc, weight, num_bins=17)(apply_fn))(
            params, {"x": x}, key
        )
        prior = float(losses.bits_per_dim(losses.prior_kl(proc, x), x[0].size).mean())
        vlb = float(m["vlb_bpd"]) - prior
        np.testing.assert_allclose(float(value), float(m["mse"]) + weight * vlb, rtol=1e-5)


@pytest.mark.parametrize("kw", [{"vlb_weight": -1.0}, {"num_bins": 1}])
def test_bad_options_fail_at_build_time(kw):
    with pytest.raises(ValueError):
        methods.get("iddpm")(process=processes.get("ddpm_cosine"), **kw)


def test_continuous_process_rejected():
    with pytest.raises(ValueError, match="discrete"):
        methods.get("iddpm")(process=processes.get("vp"))


@pytest.mark.slow
def test_digits_config_trains_through_main(tmp_path):
    values = digits_run.train_losses("iddpm_digits", tmp_path)
    assert np.isfinite(values).all() and values[-1] < values[0]
