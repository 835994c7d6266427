"""Mixed precision across the networks: with `dtype=bfloat16` every matrix product and
convolution runs in bfloat16, while normalisation statistics, the attention softmax and the
time embedding stay float32 and the output is float32 (so losses and samplers never see
bfloat16); the params are float32 either way."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core

from diffjax import models

# Where each kind of op must compute in a bfloat16 network.
BFLOAT16_OPS = ("dot_general", "conv_general_dilated")
FLOAT32_OPS = ("reduce_sum", "reduce_max", "exp", "rsqrt")

CASES = {
    "unet": ("unet_tiny", dict(num_classes=3), (2, 8, 8, 1)),
    "unet_adm_fir": (
        "unet_tiny",
        dict(scale_shift_norm=True, resblock_updown=True, resample_kernel=(1, 3, 3, 1)),
        (2, 8, 8, 1),
    ),
    "dit": ("dit_tiny", dict(num_classes=3), (2, 8, 8, 1)),
    "mlp": ("mlp", dict(features=16, num_classes=3), (2, 2)),
    "classifier": ("classifier_digits", {}, (2, 8, 8, 1)),
}


def _equations(jaxpr):
    """Every equation of `jaxpr`, inside nested jaxprs (jit, remat, custom_jvp) too."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, core.ClosedJaxpr):
                    yield from _equations(sub.jaxpr)
                elif isinstance(sub, core.Jaxpr):
                    yield from _equations(sub)


def _model_and_inputs(case, dtype):
    name, kwargs, shape = CASES[case]
    model = models.get(name, dtype=dtype, **kwargs)
    x = jax.random.normal(jax.random.key(0), shape)
    t = jnp.array([0.2, 0.7])
    labels = jnp.array([0, 2]) if "num_classes" in kwargs else None
    return model, x, t, labels


@pytest.mark.parametrize("case", sorted(CASES))
def test_bfloat16_network_multiplies_in_bfloat16_and_reduces_in_float32(case):
    model, x, t, labels = _model_and_inputs(case, jnp.bfloat16)
    params = model.init(jax.random.key(1), x, t, labels)
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    jaxpr = jax.make_jaxpr(lambda p: model.apply(p, x, t, labels))(params)
    assert [a.dtype for a in jaxpr.out_avals] == [jnp.float32]
    seen = set()
    for eqn in _equations(jaxpr.jaxpr):
        op = eqn.primitive.name
        dtypes = {str(v.aval.dtype) for v in eqn.invars}
        if op in BFLOAT16_OPS:
            assert dtypes == {"bfloat16"}, (op, dtypes)
        elif op in FLOAT32_OPS:
            assert dtypes == {"float32"}, (op, dtypes)
        seen.add(op)
    assert {"dot_general", "reduce_sum", "rsqrt"} <= seen  # the walk saw the network


def _perturbed(params, key):
    """Params with every leaf moved a little, so the zero-initialised output layers are not."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )


@pytest.mark.parametrize("case", ["unet", "dit"])
def test_bfloat16_forward_is_float32_and_close_to_float32(case):
    f32, x, t, labels = _model_and_inputs(case, jnp.float32)
    bf16, _, _, _ = _model_and_inputs(case, jnp.bfloat16)
    params = _perturbed(f32.init(jax.random.key(1), x, t, labels), jax.random.key(2))
    out32 = jax.jit(f32.apply)(params, x, t, labels)
    out16 = jax.jit(bf16.apply)(params, x, t, labels)
    assert out16.dtype == jnp.float32
    # bfloat16 keeps 8 mantissa bits (relative rounding 2^-8 = 0.4%), so a few layers give
    # errors of about 1% of the output; float32 would agree to ~1e-6.
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert 1e-4 < rel < 5e-2, rel
    np.testing.assert_array_equal(jnp.isfinite(out16), True)
