"""Samplers by name: `diffjax.samplers.get(name, **options)` returns a pure function

  sampler(key, denoiser, x_init, num_steps=None, timesteps=None, return_trajectory=False)
    -> x at t_N [B, ...] (and the trajectory [N + 1, B, ...] when asked)

jittable with `num_steps` static; `denoiser` is a `diffjax.denoisers.Denoiser`, `x_init` the
start at t_0 (noise at t = 1 for most), `timesteps` an explicit decreasing grid t_0 > ... > t_N.
`sampler.nfe(num_steps)` is the number of network evaluations (None for `dopri5`, which returns
its counts with `return_stats=True`). Each loop is one `lax.scan` on device; see `base.py`.
"""

import dataclasses
import functools
from collections.abc import Callable

from diffjax import _registry
from diffjax.samplers import ancestral, cold, dpm_solver, edm, few_step, langevin, pf_ode, sde
from diffjax.samplers.base import Sampler

_SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "ddpm": ancestral.DDPM,
    "ddim": ancestral.DDIM,
    "annealed_langevin": langevin.AnnealedLangevin,
    "euler_maruyama": sde.EulerMaruyama,
    "predictor_corrector": sde.PredictorCorrector,
    "euler": functools.partial(pf_ode.FixedStepODE, method="euler"),
    "heun": functools.partial(pf_ode.FixedStepODE, method="heun"),
    "rk4": functools.partial(pf_ode.FixedStepODE, method="rk4"),
    "dopri5": pf_ode.Dopri5,
    "dpm_solver": dpm_solver.DPMSolver,
    "dpm_solver_pp": dpm_solver.DPMSolverPP,
    "edm_heun": edm.EDMHeun,
    "consistency": few_step.Consistency,
    "meanflow": few_step.MeanFlow,
    "cold": cold.Cold,
}


def option_names(name: str) -> tuple[str, ...]:
    """The options `get(name, ...)` takes: the sampler's dataclass fields, less those its
    registry entry fixes (`method` of euler / heun / rk4).

    Raises:
      ValueError: for an unknown name (listing the valid ones).
    """
    make = _registry.lookup("sampler", _SAMPLERS, name)
    fixed = make.keywords if isinstance(make, functools.partial) else {}
    cls = make.func if isinstance(make, functools.partial) else make
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in fixed)


def get(name: str, **options) -> Sampler:
    """The sampler registered as `name`, configured with `options`.

    Raises:
      ValueError: for an unknown name (listing the valid ones), an unknown option (listing the
        sampler's options), a missing required option or an invalid option value.
    """
    valid = option_names(name)
    unknown = [option for option in options if option not in valid]
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} of sampler {name!r}; valid options: "
            f"{', '.join(valid) or 'none'}"
        )
    missing = [option for option in required_options(name) if option not in options]
    if missing:
        raise ValueError(
            f"sampler {name!r} needs the option {missing[0]!r} (e.g. cold's degradation comes "
            "from its method, cold_diffusion); it cannot sample another method's model alone"
        )
    return _SAMPLERS[name](**options)


def required_options(name: str) -> tuple[str, ...]:
    """The options of `name` without a default (cold's `degradation`)."""
    make = _registry.lookup("sampler", _SAMPLERS, name)
    cls = make.func if isinstance(make, functools.partial) else make
    no_default = dataclasses.MISSING
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is no_default and f.default_factory is no_default
    )


def names() -> list[str]:
    return sorted(_SAMPLERS)
