"""MLP: shapes, zero initial output, conditioning, batch equivariance, dropout."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import models


def _setup(**kw):
    model = models.get("mlp", features=32, num_blocks=2, **kw)
    x = jax.random.normal(jax.random.key(0), (5, 2))
    t = jax.random.uniform(jax.random.key(1), (5,))
    return model, x, t


def _perturbed(params, key, scale=0.1):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )


def test_zero_init_then_equivariant_and_time_dependent():
    model, x, t = _setup()
    params = jax.jit(model.init)(jax.random.key(2), x, t)
    apply = jax.jit(model.apply)
    np.testing.assert_array_equal(apply(params, x, t), 0.0)
    params = _perturbed(params, jax.random.key(3))
    out = apply(params, x, t)
    assert out.shape == (5, 2) and float(jnp.max(jnp.abs(out))) > 1e-3
    perm = jnp.array([4, 2, 0, 1, 3])
    np.testing.assert_allclose(apply(params, x[perm], t[perm]), out[perm], atol=1e-6)
    assert float(jnp.max(jnp.abs(apply(params, x, 1.0 - t) - out))) > 1e-3


def test_class_conditioning_null_class_and_dropout():
    model, x, t = _setup(num_classes=3, dropout=0.5, out_channels=4)
    labels = jnp.array([0, 1, 2, 3, 3])
    params = _perturbed(
        nn.meta.unbox(model.init(jax.random.key(2), x, t, labels)), jax.random.key(3)
    )
    apply = jax.jit(model.apply, static_argnames="train")
    out = apply(params, x, t, labels)
    assert out.shape == (5, 4)
    np.testing.assert_allclose(apply(params, x, t, None), apply(params, x, t, jnp.full(5, 3)))
    assert float(jnp.max(jnp.abs(out[:3] - apply(params, x, t, None)[:3]))) > 1e-3
    a = apply(params, x, t, labels, train=True, rngs={"dropout": jax.random.key(4)})
    b = apply(params, x, t, labels, train=True, rngs={"dropout": jax.random.key(5)})
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


def test_rejects_images():
    model, _, t = _setup()
    with pytest.raises(ValueError, match="vectors"):
        model.init(jax.random.key(0), jnp.zeros((5, 2, 2, 1)), t)
