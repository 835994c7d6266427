"""Degradations D(x0, t): boundaries, linearity, closed forms (blur spectrum, block means, the
mask's hole), monotone loss of detail, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import degradations, processes
from diffjax.degradations import GaussianBlur, GaussianNoise, Mask, Pixelate

SHAPE = (3, 32, 32, 3)
KINDS = {
    "blur": GaussianBlur(),
    "pixelate": Pixelate(),
    "mask": Mask(),
    "noise": GaussianNoise(processes.get("cosine")),
}


def _x0(seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.PRNGKey(seed), SHAPE, minval=-1.0, maxval=1.0)


def _apply(d, x, t, eps=None):
    return jax.jit(lambda x, t, eps: d(x, t, eps))(x, t, eps)


@pytest.mark.parametrize("name", KINDS)
def test_identity_at_t0_and_linear(name):
    d = KINDS[name]
    x, y = _x0(0), _x0(1)
    np.testing.assert_allclose(_apply(d, x, 0.0), x, atol=1e-6)
    t = jnp.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(
        _apply(d, 2.0 * x - 3.0 * y, t), 2.0 * _apply(d, x, t) - 3.0 * _apply(d, y, t), atol=1e-5
    )


@pytest.mark.parametrize("name", ["blur", "pixelate"])
def test_fully_degraded_is_the_channel_mean(name):
    """t = 1: blur (sigma_max = 20, every mode damped below 5e-4) and pixelation give the
    per-channel mean of each image."""
    x = _x0()
    mean = jnp.broadcast_to(x.mean(axis=(1, 2), keepdims=True), SHAPE)
    np.testing.assert_allclose(_apply(KINDS[name], x, 1.0), mean, atol=5e-4)


def test_mask_and_noise_at_t1():
    x = _x0()
    np.testing.assert_array_equal(_apply(KINDS["mask"], x, 1.0), 0.0)
    eps = jax.random.normal(jax.random.PRNGKey(3), SHAPE)
    np.testing.assert_allclose(_apply(KINDS["noise"], x, 1.0, eps), eps, atol=1e-6)  # alpha(1)=0


def test_blur_matches_the_gaussian_transfer_function():
    """A cosine of frequency (k / 32, 0) is an eigenvector of the periodic blur with eigenvalue
    exp(-2 pi^2 sigma_max^2 t (k / 32)^2)."""
    k, t, sigma_max = 3, 0.01, 20.0
    cols = jnp.cos(2 * jnp.pi * k * jnp.arange(32) / 32)
    x = jnp.broadcast_to(cols[None, None, :, None], (1, 32, 32, 1))
    gain = np.exp(-2 * np.pi**2 * sigma_max**2 * t * (k / 32) ** 2)
    np.testing.assert_allclose(_apply(GaussianBlur(sigma_max), x, t), gain * x, atol=1e-6)


def test_blur_composes_variances():
    """Blurring twice with variance sigma^2 t equals blurring once with 2 sigma^2 t (the paper's
    repeated fixed kernel)."""
    d, x = GaussianBlur(), _x0()
    twice = _apply(d, _apply(d, x, 0.01), 0.01)
    np.testing.assert_allclose(twice, _apply(d, x, 0.02), atol=1e-5)


def test_pixelate_levels_are_block_means():
    """t = k / 5 on a 32-pixel image: means over blocks of 2^k (checked against a numpy loop),
    and halfway between levels the average of the two."""
    x = np.asarray(_x0())
    d = Pixelate()
    for k in range(6):
        b = 2**k
        ref = np.zeros_like(x)
        for i in range(0, 32, b):
            for j in range(0, 32, b):
                ref[:, i : i + b, j : j + b] = x[:, i : i + b, j : j + b].mean(
                    axis=(1, 2), keepdims=True
                )
        np.testing.assert_allclose(_apply(d, x, k / 5), ref, atol=1e-5)
    half = 0.5 * (_apply(d, x, 0.2) + _apply(d, x, 0.4))
    np.testing.assert_allclose(_apply(d, x, 0.3), half, atol=1e-5)


def test_mask_hole_grows_from_the_centre():
    """At t the pixels within Chebyshev distance r(t) - 1 of the centre are zero, those beyond
    r(t) untouched, r(t) = 17 t for 32-pixel images."""
    x = jnp.ones((1, 32, 32, 1))
    for t in (0.25, 0.5, 0.75):
        out = np.asarray(_apply(Mask(), x, t))[0, :, :, 0]
        centres = np.abs(np.arange(32) + 0.5 - 16)
        d = np.maximum(centres[:, None], centres[None, :])
        r = 17 * t
        np.testing.assert_allclose(out[d <= r - 1], 0.0)
        np.testing.assert_allclose(out[d >= r], 1.0)


@pytest.mark.parametrize("name", ["blur", "pixelate", "mask"])
def test_detail_decreases_with_t(name):
    """The distance to the fully degraded image never grows with t."""
    d, x = KINDS[name], _x0()
    ts = jnp.linspace(0.0, 1.0, 11)
    end = _apply(d, x, 1.0)
    gaps = [float(jnp.linalg.norm(_apply(d, x, t) - end)) for t in ts]
    assert all(b <= a + 1e-5 for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[0] > 10.0 * gaps[-2] or name == "mask"


def test_small_noise_on_top():
    x, eps = _x0(), jax.random.normal(jax.random.PRNGKey(1), SHAPE)
    d = GaussianBlur(noise=0.05)
    np.testing.assert_allclose(_apply(d, x, 0.5, eps), _apply(d, x, 0.5) + 0.025 * eps, atol=1e-6)
    np.testing.assert_allclose(_apply(d, x, 0.0, eps), x, atol=1e-6)


def test_registry_and_errors():
    assert degradations.names() == ["blur", "mask", "noise", "pixelate"]
    assert degradations.get("blur", sigma_max=4.0) == GaussianBlur(sigma_max=4.0)
    process = processes.get("cosine")
    assert degradations.get("noise", process=process).process is process
    with pytest.raises(ValueError, match="unknown degradation 'smear'; valid degradations: "
                       "blur, mask, noise, pixelate"):  # fmt: skip
        degradations.get("smear")
    with pytest.raises(
        ValueError, match="unknown option 'radius'.*valid options: noise, sigma_max"
    ):
        degradations.get("blur", radius=3)
    with pytest.raises(ValueError, match="sigma_max=0.0 must be > 0"):
        GaussianBlur(sigma_max=0.0)
    with pytest.raises(ValueError, match="noise=-0.1 must be >= 0"):
        Mask(noise=-0.1)
    with pytest.raises(ValueError, match="needs the forward process"):
        degradations.get("noise")
    with pytest.raises(ValueError, match="power-of-two side"):
        Pixelate()(jnp.zeros((1, 24, 24, 3)), 0.5)
