"""Label dropout (classifier-free guidance training) and the wrapper every objective trains
behind: the rate, the null index, key determinism, and an unconditional loss left untouched.
Super-resolution conditioning: area downsampling, Gaussian noise-conditioning augmentation
against the closed form of the cosine process, and the loss wrapper."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes
from diffjax.losses.conditioning import (
    LabelDropout,
    SuperResolution,
    area_downsample,
    with_label_dropout,
    with_super_resolution,
)


def test_label_dropout_validates():
    with pytest.raises(ValueError, match="num_classes=0 must be >= 1"):
        LabelDropout(0, 0.1)
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=f"p_uncond={p} must lie in"):
            LabelDropout(10, p)


def test_dropout_rate_and_null_index():
    n, p = 40000, 0.1
    dropout = LabelDropout(10, p)
    labels = jnp.arange(n, dtype=jnp.int32) % 10
    out = np.asarray(jax.jit(dropout.apply)(jax.random.key(0), labels))
    dropped = out != np.asarray(labels)
    assert out.dtype == np.int32 and out.shape == (n,)
    assert dropout.null_class == 10 and np.all(out[dropped] == 10)  # only ever the null class
    # Binomial(n, p): within 4 standard deviations.
    assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_dropout_is_a_function_of_the_key():
    dropout = LabelDropout(8, 0.5)
    labels = jnp.arange(64, dtype=jnp.int32) % 8
    a, b = (dropout.apply(jax.random.key(1), labels) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, dropout.apply(jax.random.key(2), labels))
    np.testing.assert_array_equal(LabelDropout(8, 0.0).apply(jax.random.key(1), labels), labels)


def _recording_loss(seen):
    def loss(params, batch, key):
        seen.append((batch.get("label"), key))
        return jnp.sum(batch["x"]), {}

    return loss


def test_the_objective_sees_the_dropped_labels_and_the_other_key():
    seen = []
    dropout = LabelDropout(10, 0.5)
    loss = with_label_dropout(_recording_loss(seen), dropout)
    labels = jnp.arange(32, dtype=jnp.int32) % 10
    key = jax.random.key(3)
    loss({}, {"x": jnp.ones((32, 2)), "label": labels}, key)
    seen_labels, seen_key = seen[0]
    objective_key, drop_key = jax.random.split(key)
    np.testing.assert_array_equal(seen_labels, dropout.apply(drop_key, labels))
    assert bool(jnp.any(seen_labels == 10))
    np.testing.assert_array_equal(jax.random.key_data(seen_key), jax.random.key_data(objective_key))


def test_an_unconditional_loss_is_unchanged():
    seen = []
    inner = _recording_loss(seen)
    assert with_label_dropout(inner, None) is inner


# --- super-resolution conditioning ---------------------------------------------------------

COSINE = processes.get("cosine")  # alpha(s) = cos(pi s / 2), sigma(s) = sin(pi s / 2)


def test_area_downsampling_of_a_piecewise_constant_image_is_exact():
    """An image constant on 4x4 blocks downsamples by 4 to the block values; a 2x2 block
    averages its four pixels."""
    blocks = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3))  # [B, 4, 4, C]
    image = jnp.repeat(jnp.repeat(blocks, 4, axis=1), 4, axis=2)  # [B, 16, 16, C]
    out = jax.jit(area_downsample, static_argnums=1)(image, 4)
    np.testing.assert_allclose(out, blocks, rtol=1e-6)
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    expected = [[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4], [(8 + 9 + 12 + 13) / 4, 12.5]]
    np.testing.assert_allclose(area_downsample(x, 2)[0, ..., 0], expected)
    np.testing.assert_array_equal(area_downsample(x, 4), x)  # factor 1


def test_area_downsampling_refuses_a_size_that_does_not_divide():
    with pytest.raises(ValueError, match="low_res_size=3 must divide the image size 8x8"):
        area_downsample(jnp.zeros((1, 8, 8, 1)), 3)


def test_training_augmentation_is_the_forward_process_at_a_random_level():
    """z = alpha(s) low + sigma(s) eps for the key's eps, s ~ U[0, aug_max_level] per example,
    with the cosine process's alpha and sigma written out here."""
    sr = SuperResolution(low_res_size=4, aug_max_level=0.6, sample_level=0.1)
    b = 2000
    x = jax.random.uniform(jax.random.key(1), (b, 8, 8, 3), minval=-1.0, maxval=1.0)
    key = jax.random.key(2)
    cond = jax.jit(lambda k, x: sr.train_cond(k, x, COSINE))(key, x)
    assert set(cond) == {"low_res", "low_res_t"}
    assert cond["low_res"].shape == (b, 4, 4, 3) and cond["low_res_t"].shape == (b,)
    s = np.asarray(cond["low_res_t"])
    assert s.min() >= 0.0 and s.max() <= 0.6
    assert s.min() < 0.01 and s.max() > 0.59  # spread over the whole range
    assert abs(s.mean() - 0.3) < 4 * 0.6 / np.sqrt(12 * b)  # U[0, 0.6]: mean 0.3
    low = np.asarray(x).reshape(b, 4, 2, 4, 2, 3).mean(axis=(2, 4))  # block means by hand
    eps = np.asarray(jax.random.normal(jax.random.split(key)[1], low.shape))
    c = s[:, None, None, None]
    expected = np.cos(np.pi * c / 2) * low + np.sin(np.pi * c / 2) * eps
    np.testing.assert_allclose(cond["low_res"], expected, atol=1e-5)


def test_sampling_augments_at_the_fixed_level():
    sr = SuperResolution(low_res_size=4, aug_max_level=0.6, sample_level=0.25)
    low = jax.random.uniform(jax.random.key(3), (5, 4, 4, 3), minval=-1.0, maxval=1.0)
    labels = jnp.arange(5)
    cond = jax.jit(lambda k, low, y: sr.sample_cond(k, low, COSINE, y))(
        jax.random.key(4), low, labels
    )
    np.testing.assert_array_equal(cond["low_res_t"], np.full(5, 0.25, np.float32))
    np.testing.assert_array_equal(cond["label"], labels)
    eps = jax.random.normal(jax.random.key(4), low.shape)
    expected = np.cos(np.pi / 8) * low + np.sin(np.pi / 8) * eps
    np.testing.assert_allclose(cond["low_res"], expected, atol=1e-6)


def test_level_zero_is_no_augmentation():
    """s = 0 of a VP process: alpha = 1, sigma = 0, so the network sees the exact low-res."""
    sr = SuperResolution(low_res_size=2, aug_max_level=0.0, sample_level=0.0)
    x = jax.random.uniform(jax.random.key(5), (3, 4, 4, 1))
    for process in (COSINE, processes.get("ddpm_linear")):
        cond = sr.train_cond(jax.random.key(6), x, process)
        np.testing.assert_array_equal(cond["low_res_t"], np.zeros(3))
        np.testing.assert_allclose(cond["low_res"], area_downsample(x, 2), atol=1e-7)
        cond = sr.sample_cond(jax.random.key(7), area_downsample(x, 2), process)
        np.testing.assert_allclose(cond["low_res"], area_downsample(x, 2), atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low_res_size": 0}, "low_res_size=0 must be >= 1"),
        ({"low_res_size": 4, "aug_max_level": 1.5}, "aug_max_level=1.5 must lie in [0, 1]"),
        ({"low_res_size": 4, "sample_level": -0.1}, "sample_level=-0.1 must lie in [0, 1]"),
    ],
)
def test_super_resolution_validates(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SuperResolution(**kwargs)


@pytest.mark.parametrize(
    ("size", "shape", "message"),
    [
        (5, (16, 16, 3), "low_res_size=5 must divide the data's image size 16"),
        (16, (16, 16, 3), "low_res_size=16 must divide the data's image size 16 and be smaller"),
        (4, (16, 8, 3), "square images"),
        (4, (2,), "square images"),
    ],
)
def test_the_image_must_be_a_multiple_of_the_low_res_size(size, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SuperResolution(size).check_image(shape)


def test_the_objective_sees_the_low_res_conditioning_and_its_labels():
    seen = []
    sr = SuperResolution(low_res_size=4, aug_max_level=0.5)
    loss = with_super_resolution(_recording_loss(seen), sr, lambda params: COSINE)
    x = jax.random.uniform(jax.random.key(8), (6, 8, 8, 3))
    labels = jnp.arange(6, dtype=jnp.int32)
    key = jax.random.key(9)
    loss({}, {"x": x, "label": labels}, key)
    cond, seen_key = seen[0]
    objective_key, aug_key = jax.random.split(key)
    expected = sr.train_cond(aug_key, x, COSINE, labels)
    assert set(cond) == {"low_res", "low_res_t", "label"}
    for name in cond:
        np.testing.assert_array_equal(cond[name], expected[name])
    np.testing.assert_array_equal(jax.random.key_data(seen_key), jax.random.key_data(objective_key))
    loss({}, {"x": x}, key)  # an unconditional batch: no "label" inside
    assert set(seen[1][0]) == {"low_res", "low_res_t"}
    inner = _recording_loss(seen)
    assert with_super_resolution(inner, None, lambda params: COSINE) is inner
