"""Noisy classifier: logits shape, batch equivariance, time dependence, labels rejected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import models


def test_logits_equivariant_and_time_dependent():
    model = models.get("classifier_digits", ch=8, num_groups=4, num_outputs=3)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    t = jax.random.uniform(jax.random.key(1), (4,))
    params = jax.jit(model.init)(jax.random.key(2), x, t)
    apply = jax.jit(model.apply)
    logits = apply(params, x, t)
    assert logits.shape == (4, 3) and logits.dtype == jnp.float32
    perm = jnp.array([1, 3, 0, 2])
    np.testing.assert_allclose(apply(params, x[perm], t[perm]), logits[perm], atol=1e-5)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    params = jax.tree.unflatten(
        tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )
    assert float(jnp.max(jnp.abs(apply(params, x, t) - apply(params, x, 1.0 - t)))) > 1e-3


def test_labels_rejected():
    model = models.get("classifier_digits")
    with pytest.raises(ValueError, match="num_classes=None"):
        model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 1)), jnp.zeros(2), jnp.zeros(2, int))
