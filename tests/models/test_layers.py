"""Time embeddings and attention against NumPy formulas; label embedding's null class."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.models import layers


def test_sinusoidal_embedding_formula():
    t = np.array([0.0, 0.25, 1.0], np.float32)
    dim = 8
    out = jax.jit(layers.sinusoidal_embedding, static_argnums=1)(jnp.asarray(t), dim)
    w = 10000.0 ** (-np.arange(4) / 4)  # P^(-k / (d/2))
    args = 1000.0 * t[:, None] * w[None, :]
    np.testing.assert_allclose(out, np.concatenate([np.sin(args), np.cos(args)], 1), atol=1e-4)


def test_fourier_embedding_is_fixed_and_has_the_right_frequencies():
    # sin(2 pi t W) over t in a tiny interval has slope 2 pi W: recover W and check its scale.
    f = jax.jit(layers.fourier_embedding, static_argnums=(1, 2))
    dim, scale, dt = 512, 16.0, 1e-4
    slope = (f(jnp.array([dt]), dim, scale) - f(jnp.array([0.0]), dim, scale))[0, : dim // 2] / dt
    w = np.asarray(slope) / (2 * np.pi)
    # std of 256 N(0, 16^2) draws: relative standard error 1 / sqrt(2 * 256) = 4.4%; 4 sigma.
    assert np.std(w) == pytest.approx(scale, rel=4 * 0.044)
    np.testing.assert_array_equal(f(jnp.array([0.3]), dim, scale), f(jnp.array([0.3]), dim, scale))


def test_self_attention_matches_numpy():
    b, l, d, heads = 2, 5, 8, 2
    x = jax.random.normal(jax.random.key(0), (b, l, d))
    module = layers.SelfAttention(heads)
    params = module.init(jax.random.key(1), x)["params"]
    out = jax.jit(module.apply)({"params": params}, x)

    xn = np.asarray(x, np.float64)
    qkv = xn @ np.asarray(params["qkv"]["kernel"]) + np.asarray(params["qkv"]["bias"])
    q, k, v = (a.reshape(b, l, heads, d // heads) for a in np.split(qkv, 3, axis=-1))
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // heads)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    h = np.einsum("bhqk,bkhd->bqhd", p, v).reshape(b, l, d)
    expected = h @ np.asarray(params["out"]["kernel"]) + np.asarray(params["out"]["bias"])
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_label_embedding_null_class_row():
    module = layers.LabelEmbedding(num_classes=3, features=4)
    params = module.init(jax.random.key(0), None, 2)
    table = params["params"]["table"]["embedding"]
    assert table.shape == (4, 4)
    apply = jax.jit(module.apply, static_argnums=2)
    np.testing.assert_array_equal(apply(params, None, 2), jnp.stack([table[3], table[3]]))
    np.testing.assert_array_equal(apply(params, jnp.array([0, 2]), 2), table[jnp.array([0, 2])])


def test_unknown_time_embedding_raises():
    module = layers.TimeEmbedding(8, 8, kind="gaussian")
    with pytest.raises(ValueError, match="sinusoidal"):
        module.init(jax.random.key(0), jnp.zeros(2))
