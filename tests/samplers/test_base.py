"""The shared sampler interface: registry, grids, and compile time independent of step count."""

import dataclasses
import re

import jax
import numpy as np
import pytest

from diffjax import samplers

from .closed_forms import VP, gaussian_denoiser

NAMES = [
    "ddpm", "ddim", "annealed_langevin", "euler_maruyama", "predictor_corrector", "euler",
    "heun", "rk4", "dopri5", "dpm_solver", "dpm_solver_pp", "edm_heun", "consistency", "meanflow",
]  # fmt: skip


def _velocity_denoiser(count=None):
    """The exact Gaussian model as a velocity model, which every sampler takes (meanflow calls
    it with times [B, 2] = (t, t - r); the exact instantaneous velocity ignores t - r)."""
    den = gaussian_denoiser(VP)

    def model_fn(x, t):
        if count is not None:
            count[0] += 1
        return den.velocity(x, t if t.ndim == 1 else t[:, 0])

    return type(den)(model_fn, "velocity", den.process)


def test_registry_has_every_sampler_of_the_issue():
    # and cold diffusion's, which runs a restorer with a degradation (tests/samplers/test_cold.py)
    assert samplers.names() == sorted([*NAMES, "cold"])
    with pytest.raises(ValueError, match="dpm_solver_pp"):
        samplers.get("dpm_solver++")


@pytest.mark.parametrize("name", NAMES)
def test_options_are_the_fields_and_an_unknown_one_lists_them(name):
    sampler = samplers.get(name)
    valid = samplers.option_names(name)
    for option in valid:  # each option is taken, here at its default value
        value = getattr(sampler, option)
        assert getattr(samplers.get(name, **{option: value}), option) == value
    fields = {f.name for f in dataclasses.fields(sampler)}
    assert set(valid) == fields - ({"method"} if name in ("euler", "heun", "rk4") else set())
    listed = re.escape(", ".join(valid) or "none")
    message = rf"unknown option 'etaa' of sampler '{name}'; valid options: {listed}$"
    with pytest.raises(ValueError, match=message):
        samplers.get(name, etaa=0.0)


def _compiled_lines(sampler, num_steps):
    den = _velocity_denoiser()
    fn = jax.jit(lambda k, x: sampler(k, den, x, num_steps=num_steps))
    args = (jax.random.PRNGKey(0), jax.ShapeDtypeStruct((8, 2), np.float32))
    # Compiled here, not read from the persistent cache: a cached executable prints another text.
    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        return len(fn.lower(*args).compile().as_text().splitlines())
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)


# Two representatives (one scan; a scan of fori_loops) run by default, the rest with -m slow.
FAST = ("ddpm", "annealed_langevin")


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
)
def test_compiled_program_does_not_grow_with_steps(name):
    """One loop on device: the optimised program of 1000 steps is no longer than that of 10
    (the time grid is one constant either way; an unrolled loop would be 100x longer). It may be
    a few lines shorter: XLA folds more of a short grid's arithmetic into printed constants
    (ddpm: 1275 lines at 1000 steps, 1282 at 10, on XLA:CPU of jax 0.10.2)."""
    sampler = samplers.get(name)
    assert _compiled_lines(sampler, 1000) <= _compiled_lines(sampler, 10) + 2


def _model_traces(sampler, num_steps):
    """How many times the network is traced when lowering a run of `num_steps` steps."""
    count = [0]
    traced = _velocity_denoiser(count)
    fn = jax.jit(lambda k, x: sampler(k, traced, x, num_steps=num_steps))
    fn.lower(jax.random.PRNGKey(0), jax.ShapeDtypeStruct((8, 2), np.float32))
    return count[0]


@pytest.mark.parametrize("name", NAMES)
def test_network_traced_independently_of_steps(name):
    """The loop body is traced once: the network appears in the program as often for 50 steps
    as for 5 (once per stage of the step rule), never once per step."""
    sampler = samplers.get(name)
    assert _model_traces(sampler, 50) == _model_traces(sampler, 5) <= 10
