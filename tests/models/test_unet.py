"""UNet: shapes, zero initial output, conditioning paths, batch equivariance, remat, bf16."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import models
from diffjax.models import unet
from diffjax.models.unet import UNet

B = 4


def _inputs(key, shape=(B, 8, 8, 1)):
    kx, kt = jax.random.split(key)
    return jax.random.normal(kx, shape), jax.random.uniform(kt, (shape[0],))


def _perturbed(params, key, scale=0.1):
    """Params with every leaf shifted, so zero-initialised layers become active."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )


def test_digits_preset_shapes_and_zero_init():
    model = models.get("unet_digits")
    x, t = _inputs(jax.random.key(0))
    params = jax.jit(model.init)(jax.random.key(1), x, t)
    out = jax.jit(model.apply)(params, x, t)
    assert out.shape == x.shape and out.dtype == jnp.float32
    # The output convolution starts at zero (Ho et al.), so the initial prediction is 0.
    np.testing.assert_array_equal(out, 0.0)


def test_out_channels_and_learned_variance_shape():
    model = models.get("unet_tiny", out_channels=2)
    x, t = _inputs(jax.random.key(0))
    shape = jax.eval_shape(
        lambda: model.apply(nn.meta.unbox(model.init(jax.random.key(1), x, t)), x, t)
    )
    assert shape.shape == (B, 8, 8, 2)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {
            "resblock_updown": True,
            "scale_shift_norm": True,
            "num_head_channels": 4,
            "skip_rescale": True,
            "skip_conv_on_resample": True,
            "time_embedding": "fourier",
        },
        # NCSN++'s options: FIR resampling, residual input pyramid, one attention per up level.
        {
            "resblock_updown": True,
            "skip_rescale": True,
            "skip_conv_on_resample": True,
            "time_embedding": "fourier",
            "time_features": 16,
            "resample_kernel": (1, 3, 3, 1),
            "progressive_input": "residual",
            "attn_every_up_block": False,
        },
        {"resample_kernel": (1, 3, 3, 1), "progressive_input": "input_skip"},
        {"resample_kernel": (1, 3, 3, 1), "progressive_output": "output_skip"},
    ],
)
def test_batch_permutation_equivariance_and_time_dependence(kw):
    """Permuting the batch permutes the output: no mixing across examples (attention, norms)."""
    model = models.get("unet_tiny", **kw)
    x, t = _inputs(jax.random.key(0))
    params = _perturbed(nn.meta.unbox(model.init(jax.random.key(1), x, t)), jax.random.key(2))
    perm = jnp.array([2, 0, 3, 1])
    apply = jax.jit(model.apply)
    out, out_perm = apply(params, x, t), apply(params, x[perm], t[perm])
    assert float(jnp.max(jnp.abs(out))) > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(out_perm, out[perm], rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(apply(params, x, 1.0 - t) - out))) > 1e-3


def test_class_conditioning_and_null_class():
    model = models.get("unet_tiny", num_classes=10)
    x, t = _inputs(jax.random.key(0))
    labels = jnp.array([0, 3, 9, 10])  # 10 is the null class
    params = _perturbed(
        nn.meta.unbox(model.init(jax.random.key(1), x, t, labels)), jax.random.key(2)
    )
    apply = jax.jit(model.apply)
    null = jnp.full((B,), 10)
    # cond=None is the unconditional model, i.e. the null class for every example.
    np.testing.assert_allclose(apply(params, x, t, None), apply(params, x, t, null), atol=1e-6)
    diff = apply(params, x, t, labels) - apply(params, x, t, null)
    assert float(jnp.max(jnp.abs(diff[:3]))) > 1e-3
    np.testing.assert_allclose(diff[3], 0.0, atol=1e-6)


def test_labels_to_unconditional_model_raise():
    model = models.get("unet_tiny")
    x, t = _inputs(jax.random.key(0))
    with pytest.raises(ValueError, match="num_classes=None"):
        model.init(jax.random.key(1), x, t, jnp.zeros(B, jnp.int32))


def test_low_resolution_input_for_super_resolution():
    model = models.get("unet_tiny")
    x, t = _inputs(jax.random.key(0))
    cond = {"low_res": jax.random.normal(jax.random.key(3), (B, 4, 4, 1)), "low_res_t": t / 2}
    params = _perturbed(nn.meta.unbox(model.init(jax.random.key(1), x, t, cond)), jax.random.key(2))
    # conv_in sees the image and the upsampled low-resolution image: 2 channels.
    assert params["params"]["conv_in"]["kernel"].shape == (3, 3, 2, 8)
    out = jax.jit(model.apply)(params, x, t, cond)
    assert out.shape == x.shape


def test_dropout_uses_the_dropout_rng():
    model = models.get("unet_tiny", dropout=0.5)
    x, t = _inputs(jax.random.key(0))
    params = _perturbed(nn.meta.unbox(model.init(jax.random.key(1), x, t)), jax.random.key(2))

    @jax.jit
    def train_apply(key):
        return model.apply(params, x, t, train=True, rngs={"dropout": key})

    a, b = train_apply(jax.random.key(5)), train_apply(jax.random.key(6))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3
    np.testing.assert_array_equal(a, train_apply(jax.random.key(5)))


def test_remat_gives_the_same_function_and_gradient():
    x, t = _inputs(jax.random.key(0))
    plain, remat = models.get("unet_tiny"), models.get("unet_tiny", remat=True)
    params = _perturbed(nn.meta.unbox(plain.init(jax.random.key(1), x, t)), jax.random.key(2))

    def grad(model):
        return jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, x, t) ** 2)))(params)

    # Recomputation may fuse differently: float32 rounding, relative to each leaf's scale.
    for a, b in zip(jax.tree.leaves(grad(plain)), jax.tree.leaves(grad(remat)), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.max(jnp.abs(a))) + 1e-7)


def test_bfloat16_compute_close_to_float32():
    x, t = _inputs(jax.random.key(0))
    f32, bf16 = models.get("unet_tiny"), models.get("unet_tiny", dtype=jnp.bfloat16)
    params = _perturbed(nn.meta.unbox(f32.init(jax.random.key(1), x, t)), jax.random.key(2))
    out32 = jax.jit(f32.apply)(params, x, t)
    out16 = jax.jit(bf16.apply)(params, x, t)
    assert out16.dtype == jnp.float32
    # bfloat16 has an 8-bit mantissa (relative rounding 2^-8 = 0.4%); errors accumulate over
    # ~20 layers, so a few percent of the output scale.
    scale = float(jnp.std(out32))
    assert float(jnp.max(jnp.abs(out16 - out32))) < 0.05 * scale + 1e-3
    assert float(jnp.max(jnp.abs(out16 - out32))) > 0.0  # bf16 really was used


def test_size_not_divisible_raises():
    model = UNet(ch=8, ch_mult=(1, 2, 2, 2), num_groups=4)
    with pytest.raises(ValueError, match="divisible by 8"):
        model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)), jnp.zeros(1))


def _count(model, x, t):
    params = jax.eval_shape(model.init, jax.random.key(0), x, t)
    return sum(p.size for p in jax.tree.leaves(params))


def test_song_options_add_the_closed_form_parameter_counts():
    """unet_tiny (C = 1; level 0: 8 ch at 8x8, level 1: 16 ch at 4x4 with attention)."""
    x, t = _inputs(jax.random.key(0))
    base = _count(models.get("unet_tiny"), x, t)

    def extra(**kw):
        return _count(models.get("unet_tiny", **kw), x, t) - base

    assert extra(resample_kernel=(1, 3, 3, 1)) == 0  # FIR has no parameters
    assert extra(progressive_input="input_skip") == 1 * 8 + 8  # Conv1x1 1 -> 8 after level 0
    assert extra(progressive_input="residual") == 9 * 1 * 8 + 8  # Conv3x3 1 -> 8, stride 2
    # GroupNorm + Conv3x3 16 -> 1 at level 1 (level 0's is conv_out, renamed)
    assert extra(progressive_output="output_skip") == 2 * 16 + 9 * 16 + 1
    # Level 1 goes up through 2 blocks: one attention (GroupNorm, QKV, out) fewer.
    assert extra(attn_every_up_block=False) == -(2 * 16 + 4 * (16 * 16 + 16))
    assert extra(time_features=16) == (16 - 8) * 32  # first time-MLP layer: e(t) -> 4 ch


def test_output_pyramid_starts_at_zero_and_fir_changes_the_function():
    x, t = _inputs(jax.random.key(0))
    skip = models.get("unet_tiny", progressive_output="output_skip")
    params = jax.jit(skip.init)(jax.random.key(1), x, t)
    np.testing.assert_array_equal(jax.jit(skip.apply)(params, x, t), 0.0)
    params = _perturbed(
        nn.meta.unbox(models.get("unet_tiny").init(jax.random.key(1), x, t)), jax.random.key(2)
    )
    box = jax.jit(models.get("unet_tiny").apply)(params, x, t)
    fir = jax.jit(models.get("unet_tiny", resample_kernel=(1, 3, 3, 1)).apply)(params, x, t)
    assert float(jnp.max(jnp.abs(fir - box))) > 1e-3


def test_unknown_pyramid_option_raises():
    x, t = _inputs(jax.random.key(0))
    with pytest.raises(ValueError, match="input_skip"):
        models.get("unet_tiny", progressive_input="skip").init(jax.random.key(0), x, t)
    with pytest.raises(ValueError, match="output_skip"):
        models.get("unet_tiny", progressive_output="residual").init(jax.random.key(0), x, t)


NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
    "hw, kernel, strides, padding",
    [
        ((2, 2), (3, 3), (1, 1), "SAME"),  # the 2x2 level of a small UNet: one patch matmul
        ((1, 1), (3, 3), (1, 1), "SAME"),
        ((2, 3), (3, 3), (2, 2), "SAME"),
        ((2, 2), (3, 3), (1, 1), ((2, 1), (0, 2))),
        ((2, 2), (3, 2), (1, 1), "SAME"),
        ((4, 4), (3, 3), (1, 1), "SAME"),  # as large as the kernel: XLA's convolution
    ],
)
def test_patch_conv_is_the_convolution_with_its_gradient(hw, kernel, strides, padding):
    x = jax.random.normal(jax.random.key(0), (3, *hw, 5))
    w = jax.random.normal(jax.random.key(1), (*kernel, 5, 4))
    numbers = jax.lax.conv_dimension_numbers(x.shape, w.shape, NHWC)

    def loss(conv, x, w):
        out = conv(x, w, strides, padding, dimension_numbers=numbers)
        return jnp.sum(jnp.sin(out)), out

    grad = jax.jit(jax.grad(loss, argnums=(1, 2), has_aux=True), static_argnums=0)
    (dx, dw), out = grad(unet._patch_conv, x, w)
    (dx_ref, dw_ref), out_ref = grad(jax.lax.conv_general_dilated, x, w)
    assert out.shape == out_ref.shape
    for a, b in [(out, out_ref), (dx, dx_ref), (dw, dw_ref)]:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
