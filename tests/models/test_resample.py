"""FIR resampling against a NumPy upfirdn written here, and its closed-form properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.models import resample

FIR = (1, 3, 3, 1)


def _upfirdn_1d(x, taps, up, down, p0, p1, gain):
    """Zero-insert, pad, convolve, decimate along axis 1 of [B, H, W, C], with Python loops."""
    k = np.asarray(taps, np.float64) / np.sum(taps)
    z = np.zeros((x.shape[0], x.shape[1] * up, *x.shape[2:]))
    z[:, ::up] = x
    z = np.concatenate([np.zeros_like(z[:, :p0]), z, np.zeros_like(z[:, :p1])], axis=1)
    n_out = z.shape[1] - len(k) + 1
    y = np.stack(
        [sum(k[j] * z[:, n + len(k) - 1 - j] for j in range(len(k))) for n in range(n_out)], 1
    )
    return gain * y[:, ::down]


def _reference(x, taps, up, down, p0, p1, gain):
    """The separable 2-D op: the 1-D op on H, then on W (gain split evenly)."""
    g = np.sqrt(gain)
    h = _upfirdn_1d(np.asarray(x, np.float64), taps, up, down, p0, p1, g)
    w = _upfirdn_1d(h.transpose(0, 2, 1, 3), taps, up, down, p0, p1, g)
    return w.transpose(0, 2, 1, 3)


@pytest.mark.parametrize("taps", [FIR, (1, 2, 1), (1, 1), (3, 3)])  # (a, a): a broadcast
def test_down_and_up_match_numpy_upfirdn(taps):
    x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
    p = len(taps) - 2
    down = jax.jit(resample.downsample_2d, static_argnums=1)(x, taps)
    up = jax.jit(resample.upsample_2d, static_argnums=1)(x, taps)
    assert down.shape == (2, 4, 3, 3) and up.shape == (2, 16, 12, 3)
    expected_down = _reference(x, taps, 1, 2, (p + 1) // 2, p // 2, 1.0)
    expected_up = _reference(x, taps, 2, 1, (p + 1) // 2 + 1, p // 2, 4.0)
    np.testing.assert_allclose(down, expected_down, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(up, expected_up, rtol=1e-5, atol=1e-6)


def test_box_taps_are_average_pooling_and_nearest_neighbour():
    x = jax.random.normal(jax.random.key(1), (2, 6, 4, 3))
    pooled = np.asarray(x).reshape(2, 3, 2, 2, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(resample.downsample_2d(x, (1, 1)), pooled, rtol=1e-6, atol=1e-6)
    nearest = np.repeat(np.repeat(np.asarray(x), 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(resample.upsample_2d(x, (1, 1)), nearest, rtol=1e-6, atol=1e-6)


def test_constant_image_stays_constant_away_from_the_border():
    c = 1.7
    x = jnp.full((1, 8, 8, 2), c)
    down = jax.jit(resample.downsample_2d)(x)
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], c, rtol=1e-6)
    # At the border the outermost tap (1/8 per axis) reads a zero outside the image.
    np.testing.assert_allclose(down[:, 0, 1:-1], c * 7 / 8, rtol=1e-6)
    up = jax.jit(resample.upsample_2d)(x)
    np.testing.assert_allclose(up[:, 1:-1, 1:-1], c, rtol=1e-6)
    np.testing.assert_allclose(resample.fir_taps(FIR), np.array(FIR) / 8)


def test_up_then_down_is_identity_up_to_curvature():
    """down(up(x)) = x + (3/16) (second difference) per axis for the [1, 3, 3, 1] filter.

    Per axis, up gives (x[m-1] + 3 x[m]) / 4 and (3 x[m] + x[m+1]) / 4, and down then averages
    with [1, 3, 3, 1] / 8: (6 x[i-1] + 20 x[i] + 6 x[i+1]) / 32 = x[i] + (3/16) (x[i-1] - 2 x[i]
    + x[i+1]). So the interior is exact for a linear image and off by 2 (3/16) for i^2.
    """
    i = np.arange(10, dtype=np.float32)
    roundtrip = jax.jit(lambda x: resample.downsample_2d(resample.upsample_2d(x)))
    linear = jnp.asarray(0.3 * i[:, None] - 0.2 * i[None, :] + 1.0)[None, :, :, None]
    np.testing.assert_allclose(roundtrip(linear)[:, 1:-1, 1:-1], linear[:, 1:-1, 1:-1], atol=1e-5)
    square = jnp.asarray(np.broadcast_to(i[:, None] ** 2, (10, 10)))[None, :, :, None]
    np.testing.assert_allclose(
        roundtrip(square)[:, 1:-1, 1:-1], square[:, 1:-1, 1:-1] + 3 / 8, rtol=1e-6, atol=1e-4
    )


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="taps"):
        resample.fir_taps((1,))
    with pytest.raises(ValueError, match="up, down"):
        resample.upfirdn2d(jnp.zeros((1, 4, 4, 1)), FIR, up=0)
