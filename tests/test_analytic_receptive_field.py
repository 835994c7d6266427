"""Effective patch sizes of denoisers whose receptive fields are known exactly."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes
from diffjax.analytic import receptive_field as rf
from diffjax.analytic import score_machines as sm
from diffjax.denoisers import Denoiser

VP = processes.get("vp")


def box_blur(k, x, t):
    """x0_hat = the mean of x over the k x k window of each pixel: a receptive field of k."""
    window = (1, k, k, 1)
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1, 1, 1, 1), "SAME") / k**2


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_a_box_blur_has_its_kernel_size(k):
    # Its gradient is uniform on the k x k window: the (k-2) window holds ((k-2)/k)^2 < 0.9 of it.
    denoiser = Denoiser(functools.partial(box_blur, k), "x0", VP)
    x = jax.random.normal(jax.random.key(0), (3, 9, 9, 2))
    mass = jax.jit(rf.gradient_mass)(denoiser, x, 0.5)
    np.testing.assert_allclose(mass.sum((1, 2)), 2.0, rtol=1e-5)  # two channels, weights 1/k^2
    np.testing.assert_array_equal(rf.patch_size_of(mass, 0.9), k)


def test_an_els_machine_sees_no_further_than_its_patch():
    train = jax.random.uniform(jax.random.key(1), (6, 7, 7, 1), minval=-1.0, maxval=1.0)
    x = jax.random.normal(jax.random.key(2), (2, 7, 7, 1))
    denoiser = sm.equivariant_local(train, 3).denoiser(VP)
    sizes = rf.patch_size_of(jax.jit(rf.gradient_mass)(denoiser, x, 0.5), 1.0)
    np.testing.assert_array_equal(sizes, 3)


def test_calibrate_and_schedule():
    denoiser = Denoiser(functools.partial(box_blur, 5), "x0", VP)
    x0 = jnp.zeros((4, 9, 9, 1))
    ts = np.array([0.1, 0.5, 0.9])
    np.testing.assert_array_equal(rf.calibrate(denoiser, x0, jax.random.key(3), ts), 5)
    sizes, edges = rf.schedule(np.array([0.1, 0.3, 0.5, 0.7]), np.array([3, 3, 5, 7]))
    assert sizes == (3, 5, 7)
    np.testing.assert_allclose(edges, (0.4, 0.6))


def test_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        rf.patch_size_of(jnp.ones((1, 3, 3)), 0.0)
