"""Reverse-SDE samplers reproduce Gaussian data (vp / subvp / ve) and mixture weights."""

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

SAMPLERS = {
    "euler_maruyama": {},
    "predictor_corrector": {"snr": 0.01},  # Song et al.'s VP setting
}


def _sample(sampler, denoiser, n, num_steps):
    x1 = denoiser.process.prior_sample(jax.random.PRNGKey(1), (n, 2))
    run = jax.jit(lambda k, x: sampler(k, denoiser, x, num_steps=num_steps))
    return np.asarray(run(jax.random.PRNGKey(0), x1))


@pytest.mark.parametrize("process", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_reproduces_gaussian(name, process):
    """Mean and covariance within 5 standard errors for 4000 samples; 500 steps keep the
    discretisation bias well below that (about 1 standard error at 250 steps)."""
    proc = processes.get(process)
    options = (
        dict(SAMPLERS[name], snr=0.16) if process == "ve" and SAMPLERS[name] else SAMPLERS[name]
    )
    x = _sample(samplers.get(name, **options), gaussian_denoiser(proc), 4000, 500)
    assert_gaussian_moments(x, MEAN, COV)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_reproduces_mixture_weights(name):
    x = _sample(
        samplers.get(name, **SAMPLERS[name]), MIXTURE.denoiser(processes.get("vp")), 2000, 200
    )
    assert_weights(x, 0.7)


def test_nfe_and_options():
    assert samplers.get("euler_maruyama").nfe(100) == 100
    assert samplers.get("predictor_corrector", corrector_steps=2).nfe(100) == 300
    for name, options in [
        ("predictor_corrector", {"predictor": "ancestral"}),
        ("predictor_corrector", {"snr": 0.0}),
        ("euler_maruyama", {"t_min": 0.0}),
    ]:
        with pytest.raises(ValueError):
            samplers.get(name, **options)
