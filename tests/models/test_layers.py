"""Time embeddings and attention against NumPy formulas; label embedding's null class."""

import flax.linen as nn
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
    params = nn.meta.unbox(module.init(jax.random.key(1), x))["params"]
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
    params = nn.meta.unbox(module.init(jax.random.key(0), None, 2))
    table = params["params"]["table"]["embedding"]
    assert table.shape == (4, 4)
    apply = jax.jit(module.apply, static_argnums=2)
    np.testing.assert_array_equal(apply(params, None, 2), jnp.stack([table[3], table[3]]))
    np.testing.assert_array_equal(apply(params, jnp.array([0, 2]), 2), table[jnp.array([0, 2])])


def test_unknown_time_embedding_raises():
    module = layers.TimeEmbedding(8, 8, kind="gaussian")
    with pytest.raises(ValueError, match="sinusoidal"):
        module.init(jax.random.key(0), jnp.zeros(2))


def _numpy_time_mlp(params, t):
    """Dense(SiLU(Dense(e(t)))) in NumPy with the sinusoidal e of Ho et al. (s = 1000)."""
    half = params["dense_0"]["kernel"].shape[0] // 2
    args = 1000.0 * t[:, None] * 10000.0 ** (-np.arange(half) / half)[None, :]
    e = np.concatenate([np.sin(args), np.cos(args)], 1)
    h = e @ np.asarray(params["dense_0"]["kernel"]) + np.asarray(params["dense_0"]["bias"])
    h = h / (1.0 + np.exp(-h))
    return h @ np.asarray(params["dense_1"]["kernel"]) + np.asarray(params["dense_1"]["bias"])


def test_time_embedding_of_several_times_sums_one_mlp_per_column():
    module = layers.TimeEmbedding(features=6, freq_dim=8)
    t = jax.random.uniform(jax.random.key(0), (3,))
    r = jax.random.uniform(jax.random.key(1), (3,)) * t
    times = jnp.stack([t, t - r], axis=1)  # [B, 2]: MeanFlow's (t, t - r)
    single = nn.meta.unbox(module.init(jax.random.key(2), t))["params"]
    # [B, 1] is the single-time case: the same parameter tree and the same output.
    column = nn.meta.unbox(module.init(jax.random.key(2), t[:, None]))["params"]
    assert jax.tree.structure(column) == jax.tree.structure(single)
    apply = jax.jit(module.apply)
    one = {"params": single}
    np.testing.assert_array_equal(apply(one, t[:, None]), apply(one, t))

    two = nn.meta.unbox(module.init(jax.random.key(2), times))["params"]
    assert sorted(two) == ["column_1", "dense_0", "dense_1"]
    assert jax.tree.structure(two["column_1"]) == jax.tree.structure(single)
    out = apply({"params": two}, times)
    tn, dn = np.asarray(t, np.float64), np.asarray(t - r, np.float64)
    expected = _numpy_time_mlp(two, tn) + _numpy_time_mlp(two["column_1"], dn)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    # The second column is not ignored.
    shifted = apply({"params": two}, times.at[:, 1].add(0.1))
    assert float(jnp.max(jnp.abs(shifted - out))) > 1e-3


def test_broadcast_times():
    np.testing.assert_array_equal(layers.broadcast_times(jnp.float32(0.5), 3), jnp.full(3, 0.5))
    assert layers.broadcast_times(jnp.zeros((1, 2)), 3).shape == (3, 2)
    with pytest.raises(ValueError, match="B, K"):
        layers.broadcast_times(jnp.zeros((3, 2, 1)), 3)
