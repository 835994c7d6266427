"""The KL-VAE objective against hand-computed values and the closed-form Gaussian KL."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.losses.autoencoder import AutoencoderLoss, kl_to_standard_normal

KEY = jax.random.PRNGKey(0)
MEAN = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 2, 4))
LOGVAR = jax.random.uniform(jax.random.PRNGKey(2), (3, 2, 2, 4), minval=-3.0, maxval=1.0)


def _kl_numpy(mean, logvar):
    """KL(N(m, s^2) || N(0, 1)) = log(1 / s) + (s^2 + m^2) / 2 - 1/2 per value, summed."""
    m, s = np.asarray(mean, np.float64), np.exp(0.5 * np.asarray(logvar, np.float64))
    per_value = -np.log(s) + (s**2 + m**2) / 2.0 - 0.5
    return per_value.reshape(len(m), -1).sum(-1)


def test_kl_is_the_closed_form():
    kl = jax.jit(kl_to_standard_normal)(MEAN, LOGVAR)
    np.testing.assert_allclose(kl, _kl_numpy(MEAN, LOGVAR), rtol=1e-5)
    zero = kl_to_standard_normal(jnp.zeros((2, 3)), jnp.zeros((2, 3)))
    np.testing.assert_array_equal(zero, [0.0, 0.0])  # q = N(0, I) costs nothing
    # One value, mean 1, variance e: 1/2 (1 + e - 1 - 1) = (e - 1) / 2.
    one = kl_to_standard_normal(jnp.ones((1, 1)), jnp.ones((1, 1)))
    np.testing.assert_allclose(one, [(math.e - 1.0) / 2.0], rtol=1e-6)


@pytest.mark.parametrize("reconstruction", ["l1", "l2"])
def test_loss_is_the_per_example_sum_plus_beta_kl(reconstruction):
    x = jax.random.uniform(jax.random.PRNGKey(3), (3, 4, 4, 3), minval=-1.0, maxval=1.0)
    x_hat = x * 0.5 + 0.1
    seen = []

    def apply_fn(params, x_in, t, cond=None, key=None):
        seen.append(key is not None)
        return x_hat, MEAN, LOGVAR

    beta = 0.01
    loss = jax.jit(AutoencoderLoss(reconstruction, beta)(apply_fn))
    value, metrics = loss({"model": {}}, {"x": x}, KEY)
    err = np.asarray(x, np.float64) - np.asarray(x_hat, np.float64)
    rec = np.abs(err) if reconstruction == "l1" else err**2
    expected = np.mean(rec.reshape(3, -1).sum(-1) + beta * _kl_numpy(MEAN, LOGVAR))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["reconstruction"], rec.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], _kl_numpy(MEAN, LOGVAR).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["rmse"], np.sqrt(np.mean(err**2)), rtol=1e-5)
    assert seen == [True]  # the network samples its posterior with the loss's key


def test_bad_options():
    message = "unknown reconstruction .l3.; valid reconstructions: l1, l2"
    with pytest.raises(ValueError, match=message):
        AutoencoderLoss("l3")
    with pytest.raises(ValueError, match="beta=-1.0 must be >= 0"):
        AutoencoderLoss(beta=-1.0)
