"""UNet presets: published parameter counts and output shapes, via jax.eval_shape (no memory)."""

import jax
import jax.numpy as jnp
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
