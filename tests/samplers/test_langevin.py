"""Annealed Langevin dynamics reproduces Gaussian data (vp / ve) and mixture weights."""

import jax
import numpy as np
import pytest

from diffjax import processes, samplers

from .closed_forms import (
    COV,
    MEAN,
    MIXTURE,
    assert_gaussian_moments,
    assert_weights,
    gaussian_denoiser,
)

# epsilon / sigma_L^2 ~ 1: each Langevin step contracts the noise by about a half at every level.
OPTIONS = {"steps_per_level": 10, "step_size": 1e-4}


def _sample(denoiser, n, num_levels=100, **options):
    sampler = samplers.get("annealed_langevin", **{**OPTIONS, **options})
    x1 = denoiser.process.prior_sample(jax.random.PRNGKey(1), (n, 2))
    run = jax.jit(lambda k, x: sampler(k, denoiser, x, num_steps=num_levels))
    return np.asarray(run(jax.random.PRNGKey(0), x1))


@pytest.mark.parametrize("process", ["vp", "ve"])
def test_reproduces_gaussian(process):
    x = _sample(gaussian_denoiser(processes.get(process)), 4000)
    assert_gaussian_moments(x, MEAN, COV)


def test_reproduces_mixture_weights():
    assert_weights(_sample(MIXTURE.denoiser(processes.get("vp")), 2000, num_levels=50), 0.7)


def test_final_denoising_is_tweedie():
    """Without `denoise` the result is noisy at sigma_L; with it, E[x_0 | x_{t_N}] of that."""
    den = gaussian_denoiser(processes.get("vp"))
    noisy = _sample(den, 8, num_levels=5, denoise=False)
    clean = _sample(den, 8, num_levels=5)
    t_min = samplers.get("annealed_langevin").t_min
    np.testing.assert_allclose(clean, den.x0(noisy, t_min), rtol=1e-5, atol=1e-6)
    assert samplers.get("annealed_langevin", **OPTIONS).nfe(100) == 1001


@pytest.mark.parametrize("options", [{"step_size": 0.0}, {"steps_per_level": 0}, {"t_min": 0.0}])
def test_invalid_options_raise(options):
    with pytest.raises(ValueError):
        samplers.get("annealed_langevin", **options)
