"""DiT: the paper's parameter counts and GFLOPs, adaLN-Zero init, equivariance, bf16, remat."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import models
from diffjax.models.dit import DiTBlock, sincos_position_embedding

# Peebles & Xie 2023, table 4: forward GFLOPs (multiply-accumulates) on 32x32x4 latents.
PAPER_GFLOPS = {
    "DiT-S/8": 0.36,
    "DiT-S/4": 1.41,
    "DiT-S/2": 6.06,
    "DiT-B/8": 1.42,
    "DiT-B/4": 5.56,
    "DiT-B/2": 23.01,
    "DiT-L/4": 19.70,
    "DiT-L/2": 80.71,
    "DiT-XL/8": 7.39,
    "DiT-XL/4": 29.05,
    "DiT-XL/2": 118.64,
}
# Parameter counts of the four widths (Peebles & Xie: S 33M, B 130M, L 458M, XL 675M).
PAPER_PARAMS = {"S": 33e6, "B": 130e6, "L": 458e6, "XL": 675e6}
LATENT = dict(input_size=32, in_channels=4, num_classes=1000, learn_sigma=True)


def _abstract(name):
    """The model, its abstract params and abstract inputs on one 32x32x4 latent."""
    model = models.get(name, **LATENT)
    x = jax.ShapeDtypeStruct((1, 32, 32, 4), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    y = jax.ShapeDtypeStruct((1,), jnp.int32)
    return model, jax.eval_shape(model.init, jax.random.key(0), x, t, y), (x, t, y)


def _check_preset(name):
    model, params, inputs = _abstract(name)
    count = sum(p.size for p in jax.tree.leaves(params))
    paper = PAPER_PARAMS[name.split("-")[1].split("/")[0]]
    # The paper rounds to the million and the patch size changes the count by < 1M.
    assert abs(count - paper) < 0.01 * paper, (name, count)
    assert jax.eval_shape(model.apply, params, *inputs).shape == (1, 32, 32, 8)
    if name in PAPER_GFLOPS:
        # XLA counts a multiply-add as 2 flops; it also counts the elementwise ops the paper
        # leaves out (norms, GELU, softmax), which are < 1% of the matmuls.
        macs = jax.jit(model.apply).lower(params, *inputs).cost_analysis()["flops"] / 2
        assert macs / 1e9 == pytest.approx(PAPER_GFLOPS[name], rel=0.01), name


@pytest.mark.parametrize("name", [f"DiT-{s}/{p}" for s in PAPER_PARAMS for p in (2, 4, 8)])
def test_every_preset_params_shape_and_gflops(name):
    _check_preset(name)


def test_position_embedding_closed_form():
    dim, grid = 8, 3
    pe = sincos_position_embedding(dim, grid)
    w = 1.0 / 10000 ** (np.arange(2) / 2)  # dim/4 = 2 frequencies
    r, c = 2, 1  # token index r * grid + c
    expected = np.concatenate([np.sin(r * w), np.cos(r * w), np.sin(c * w), np.cos(c * w)])
    np.testing.assert_allclose(pe[r * grid + c], expected, rtol=1e-6)


def _tiny(**kw):
    model = models.get("dit_tiny", num_classes=10, **kw)
    key_x, key_t = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (4, 8, 8, 1))
    t = jax.random.uniform(key_t, (4,))
    y = jnp.array([1, 5, 9, 10])
    return model, x, t, y


def _perturbed(params, key, scale=0.1):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )


def test_adaln_zero_init_output_zero_and_blocks_identity():
    model, x, t, y = _tiny()
    params = jax.jit(model.init)(jax.random.key(1), x, t, y)
    np.testing.assert_array_equal(jax.jit(model.apply)(params, x, t, y), 0.0)
    z = jax.random.normal(jax.random.key(2), (4, 16, 32))
    c = jax.random.normal(jax.random.key(3), (4, 32))
    for i in range(model.depth):
        block = {"params": params["params"][f"block_{i}"]}
        np.testing.assert_array_equal(jax.jit(DiTBlock(model.num_heads).apply)(block, z, c), z)


def test_batch_permutation_equivariance_and_conditioning():
    model, x, t, y = _tiny()
    params = _perturbed(nn.meta.unbox(model.init(jax.random.key(1), x, t, y)), jax.random.key(2))
    apply = jax.jit(model.apply)
    out = apply(params, x, t, y)
    assert out.shape == (4, 8, 8, 1)
    assert float(jnp.max(jnp.abs(out))) > 1e-3
    perm = jnp.array([3, 1, 0, 2])
    np.testing.assert_allclose(apply(params, x[perm], t[perm], y[perm]), out[perm], atol=1e-5)
    # cond=None is the null label (index num_classes) for every example.
    np.testing.assert_allclose(
        apply(params, x, t, None), apply(params, x, t, jnp.full((4,), 10)), atol=1e-6
    )
    assert float(jnp.max(jnp.abs(apply(params, x, t + 0.3, y) - out))) > 1e-3


def test_learn_sigma_doubles_channels():
    model, x, t, y = _tiny(learn_sigma=True)
    out = jax.eval_shape(
        lambda: model.apply(nn.meta.unbox(model.init(jax.random.key(1), x, t, y)), x, t, y)
    )
    assert out.shape == (4, 8, 8, 2)


def test_remat_same_output_and_bfloat16_close():
    model, x, t, y = _tiny()
    params = _perturbed(nn.meta.unbox(model.init(jax.random.key(1), x, t, y)), jax.random.key(2))
    out = jax.jit(model.apply)(params, x, t, y)
    remat, _, _, _ = _tiny(remat=True)
    np.testing.assert_allclose(jax.jit(remat.apply)(params, x, t, y), out, rtol=1e-5, atol=1e-6)
    bf16, _, _, _ = _tiny(dtype=jnp.bfloat16)
    out16 = jax.jit(bf16.apply)(params, x, t, y)
    # bfloat16 rounds at 2^-8 relative; a few percent of the output scale after 2 blocks.
    err = float(jnp.max(jnp.abs(out16 - out)))
    assert 0.0 < err < 0.05 * float(jnp.std(out))


def test_bad_input_size_raises():
    model = models.get("dit_tiny", input_size=16)
    with pytest.raises(ValueError, match="input_size"):
        model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros(1))
