"""The KL autoencoder: encode / decode shapes, the training-mode posterior sample, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import models
from diffjax.models.autoencoder import LOGVAR_RANGE, KLAutoencoder

X = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), minval=-1.0, maxval=1.0)


def _init(model, x=X):
    return model.init({"params": jax.random.PRNGKey(1)}, x, jnp.zeros(x.shape[:1]))["params"]


def test_shapes_32x32x3_to_8x8x4_and_back():
    model = models.get("kl_vae_tiny", out_channels=3)
    params = _init(model)
    encode = jax.jit(lambda p, x: model.apply({"params": p}, x, method="encode"))
    decode = jax.jit(lambda p, z: model.apply({"params": p}, z, method="decode"))
    mean, logvar = encode(params, X)
    assert mean.shape == logvar.shape == (2, 8, 8, 4)
    assert decode(params, mean).shape == (2, 32, 32, 3)
    assert float(logvar.min()) >= LOGVAR_RANGE[0] and float(logvar.max()) <= LOGVAR_RANGE[1]
    assert model.downsampling == 4
    # Another factor and widths: one halving, 2 latent channels, a 1-channel image.
    small = KLAutoencoder(ch=4, ch_mult=(1, 2), latent_channels=2, out_channels=1, num_groups=2)
    x1 = X[..., :1]
    mean1, _ = small.apply({"params": _init(small, x1)}, x1, method="encode")
    assert mean1.shape == (2, 16, 16, 2)


def test_evaluation_decodes_the_mean_and_training_a_posterior_sample():
    model = models.get("kl_vae_tiny", out_channels=3)
    params = _init(model)

    @jax.jit
    def call(p, x, key):
        return model.apply({"params": p}, x, None, train=True, rngs={"dropout": key})

    x_hat, mean, logvar = jax.jit(lambda p, x: model.apply({"params": p}, x, None))(params, X)
    decoded = jax.jit(lambda p, z: model.apply({"params": p}, z, method="decode"))(params, mean)
    # float32 rounding of the same convolutions in two compiled programs
    np.testing.assert_allclose(x_hat, decoded, rtol=1e-5, atol=1e-5)
    a, mean_a, _ = call(params, X, jax.random.PRNGKey(2))
    b, _, _ = call(params, X, jax.random.PRNGKey(3))
    again, _, _ = call(params, X, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(a, again)  # the key decides the sample
    assert float(jnp.abs(a - b).max()) > 0.0 and float(jnp.abs(a - x_hat).max()) > 0.0
    np.testing.assert_allclose(mean_a, mean, rtol=1e-5, atol=1e-6)  # the encoder is deterministic


def test_bad_input():
    model = models.get("kl_vae_tiny", out_channels=3)
    with pytest.raises(ValueError, match=r"image side \(30, 30\) must divide by 4"):
        _init(model, jnp.zeros((1, 30, 30, 3)))
    with pytest.raises(ValueError, match="latent_channels >= 1"):
        _init(KLAutoencoder(latent_channels=0))
    with pytest.raises(ValueError, match="unknown model 'kl_vae'"):
        models.get("kl_vae")
