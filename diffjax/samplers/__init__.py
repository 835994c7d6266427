"""Samplers by name: `diffjax.samplers.get(name, **options)` returns a pure function

  sampler(key, denoiser, x_init, num_steps=None, timesteps=None) -> x_0

jittable with `num_steps` static; `denoiser` is a `diffjax.predictions.Denoiser`, `x_init` the
start at t_0 (noise at t = 1 for most), `timesteps` an explicit decreasing grid t_0 > ... > t_N.
Each loop is one `lax.scan` / `fori_loop` on device.
"""

from collections.abc import Callable

from diffjax import _registry
from diffjax.samplers import ancestral

_SAMPLERS: dict[str, Callable[..., Callable]] = {
    "ddpm": ancestral.DDPM,
    "ddim": ancestral.DDIM,
}


def get(name: str, **options) -> Callable:
    """The sampler registered as `name`, configured with `options`."""
    return _registry.lookup("sampler", _SAMPLERS, name)(**options)


def names() -> list[str]:
    return sorted(_SAMPLERS)
