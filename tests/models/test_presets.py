"""UNet presets: published parameter counts and output shapes, via jax.eval_shape (no memory)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import models


def _abstract(name, shape, cond=None, **kw):
    model = models.get(name, **kw)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    t = jax.ShapeDtypeStruct(shape[:1], jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), x, t, cond)
    out = jax.eval_shape(model.apply, params, x, t, cond)
    return sum(p.size for p in jax.tree.leaves(params)), out


@pytest.mark.parametrize(
    "name, shape, cond, published",
    [
        # Ho et al. 2020, appendix B: "Our CIFAR10 model has 35.7 million parameters".
        ("ddpm_cifar10", (2, 32, 32, 3), None, 35.7e6),
        # Dhariwal & Nichol 2021, table 10 (ImageNet 64x64 ADM): 296M parameters.
        ("adm", (2, 64, 64, 3), jax.ShapeDtypeStruct((2,), jnp.int32), 296e6),
    ],
)
def test_published_parameter_counts(name, shape, cond, published):
    count, out = _abstract(name, shape, cond)
    assert abs(count - published) < 0.01 * published, count
    channels = 6 if name == "adm" else 3  # ADM learns the variance: 2 C outputs
    assert out.shape == (*shape[:3], channels) and out.dtype == jnp.float32


@pytest.mark.parametrize(
    "name, shape",
    [
        ("ddpm++_cifar10", (2, 32, 32, 3)),
        ("ncsn++", (2, 32, 32, 3)),
        ("unet_digits", (2, 8, 8, 1)),
        ("unet_tiny", (2, 8, 8, 1)),
        ("mlp", (2, 2)),
        ("dit_digits", (2, 8, 8, 1)),
    ],
)
def test_preset_shapes(name, shape):
    _, out = _abstract(name, shape)
    assert out.shape == shape


def test_classifier_preset_logits_shape():
    _, out = _abstract("classifier_digits", (2, 8, 8, 1))
    assert out.shape == (2, 10)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unet_digits"):
        models.get("unet_digit")


def _random_params(abstract, key, scale=0.1):
    """N(0, scale^2) leaves of the abstract params' shapes: every layer active, no compile."""
    leaves, tree = jax.tree.flatten(abstract)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )


@pytest.mark.parametrize(
    "name, shape", [("mlp", (4, 2)), ("unet_tiny", (4, 8, 8, 1)), ("dit_tiny", (4, 8, 8, 1))]
)
def test_two_times_per_example(name, shape):
    """t: [B, 2] = (t, t - r) as MeanFlow calls the network; [B, 1] has the params of [B].

    (That [B, 1] also gives the output of [B] is checked on TimeEmbedding in test_layers.)
    """
    model = models.get(name, **({"features": 32, "num_blocks": 2} if name == "mlp" else {}))
    x = jax.random.normal(jax.random.key(0), shape)
    t = jax.random.uniform(jax.random.key(1), (shape[0],))
    times = jnp.stack([t, 0.5 * t], axis=1)  # [B, 2]
    single = jax.eval_shape(model.init, jax.random.key(2), x, t)
    column = jax.eval_shape(model.init, jax.random.key(2), x, t[:, None])
    assert jax.tree.structure(column) == jax.tree.structure(single)
    params = jax.eval_shape(model.init, jax.random.key(2), x, jnp.zeros((1, 2)))  # broadcasts
    extra = params["params"]["TimeEmbedding_0" if name == "mlp" else "time_embedding"]["column_1"]
    count = sum(p.size for p in jax.tree.leaves(params))
    assert count == sum(p.size for p in jax.tree.leaves(single)) + sum(
        p.size for p in jax.tree.leaves(extra)
    )

    params = _random_params(params, jax.random.key(3))
    apply = jax.jit(model.apply)
    out = apply(params, x, times)
    assert out.shape == shape and float(jnp.max(jnp.abs(out))) > 1e-3
    assert float(jnp.max(jnp.abs(apply(params, x, times.at[:, 1].set(0.9)) - out))) > 1e-3
    perm = jnp.array([2, 0, 3, 1])
    np.testing.assert_allclose(apply(params, x[perm], times[perm]), out[perm], atol=1e-5)
