"""Cold-diffusion sampling: restore, then degrade again, down a grid t_0 = 1 > ... > t_N = 0.

Seed 000, "Cold Diffusion" (Bansal et al. 2022, Algorithms 1 and 2). With the restoration
network R(x_t, t) ~ x0 (the Denoiser's x0 prediction) and a degradation
D(x0, t, eps) = A_t x0 + n(t) eps (`diffjax.degradations`), one step t -> s < t is

  naive (Algorithm 1):  x_s = D(R(x_t), s, z),                        z ~ N(0, I) fresh,
  TACoS (Algorithm 2):  x_s = x_t - D(R(x_t), t, eps_hat) + D(R(x_t), s, eps_hat),

where eps_hat = (x_t - A_t x0_hat) / n(t) is the noise that x_t implies given x0_hat = R(x_t)
(0 where n(t) = 0, the deterministic degradations). For the Gaussian noise degradation
(A_t = alpha_t, n = sigma_t) the TACoS step is alpha_s x0_hat + sigma_s eps_hat: deterministic
DDIM (eta = 0), step for step. For a linear deterministic degradation the TACoS steps telescope:
with any restorer, x_N = x_0 + sum_i (A_{t_{i+1}} - A_{t_i}) x0_hat_i, so a restorer with a
constant error, x0_hat = x0 + delta, ends at x0 + delta - A_1 delta, the naive sampler at
x0 + delta (the paper's argument that TACoS tolerates restoration errors); a perfect restorer
makes both follow the degradation path x_{t_i} = D(x0, t_i) exactly.

Generation (`from_noise=True`): `x_init` is then N(0, I) noise z [B, H, W, C] and the start is
  x_1 = D(m, 1, z) + perturbation * z',   m [B, 1, 1, C] ~ N(0, channel_std^2 I), z' ~ N(0, I),
a constant image of random colour m degraded at t = 1: for blur and pixelation A_1 maps an
image onto its per-channel mean, so this is a one-component version of the paper's Gaussian
mixture over fully degraded images (fit `channel_std` to the data's per-channel means: 0.32
for shapes32, configs/cold_blur_shapes32.py); for the noise degradation x_1 = alpha_1 m +
sigma_1 z is the Gaussian prior; for the mask (A_1 = 0) only the perturbation breaks the
symmetry between samples.
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.degradations import Degradation
from diffjax.denoisers import Denoiser
from diffjax.processes import expand
from diffjax.samplers.base import State, StepSampler

RULES = ("tacos", "naive")


@dataclasses.dataclass(frozen=True)
class Cold(StepSampler):
    """The cold-diffusion sampler (module docstring) on a uniform grid from 1 to 0.

    Attributes:
      degradation: the D the restorer was trained to invert.
      rule: "tacos" (Algorithm 2, the default) or "naive" (Algorithm 1).
      from_noise: x_init is N(0, I) noise turned into a fully degraded start (generation);
        False: x_init is x at the grid's first time t_0 (e.g. D(x0, t_0) of real images to
        restore, or a draw of a mixture fitted to fully degraded images).
      channel_std: std of the start's random colour m (from_noise only); the default is the
        RMS per-channel mean of shapes32 images (fit it to the data).
      perturbation: std of the noise added to the start (from_noise only).
    """

    degradation: Degradation
    rule: str = "tacos"
    from_noise: bool = False
    channel_std: float = 0.32
    perturbation: float = 0.0
    default_num_steps: ClassVar[int] = 50

    def __post_init__(self):
        if not isinstance(self.degradation, Degradation):
            raise ValueError(
                f"cold needs a diffjax.degradations.Degradation, got {self.degradation!r}"
            )
        if self.rule not in RULES:
            raise ValueError(f"unknown cold rule {self.rule!r}; valid rules: {', '.join(RULES)}")
        if not (self.channel_std >= 0.0 and self.perturbation >= 0.0):
            raise ValueError(f"need channel_std={self.channel_std} >= 0 and "
                             f"perturbation={self.perturbation} >= 0")  # fmt: skip

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def start(self, key: Array, z: Array) -> Array:
        """The fully degraded start x_1 [B, H, W, C] from noise z [B, H, W, C]."""
        colour_key, perturb_key = jax.random.split(key)
        m = self.channel_std * jax.random.normal(colour_key, (z.shape[0], 1, 1, z.shape[-1]))
        x1 = self.degradation(jnp.broadcast_to(m, z.shape), 1.0, z)
        return x1 + self.perturbation * jax.random.normal(perturb_key, z.shape)

    def integrate(
        self, key: Array, denoiser: Denoiser, x_init: Array, ts: Array, return_trajectory: bool
    ) -> Array | tuple[Array, Array]:
        if self.from_noise:
            key, start_key = jax.random.split(key)
            x_init = self.start(start_key, x_init)
        return super().integrate(key, denoiser, x_init, ts, return_trajectory)

    def step(
        self,
        denoiser: Denoiser,
        x: Array,
        state: State,
        t: Array,
        s: Array,
        key: Array,
        last: Array,
    ) -> tuple[Array, State]:
        del last
        d = self.degradation
        x0 = denoiser.x0(x, t)
        if self.rule == "naive":
            return d(x0, s, jax.random.normal(key, x.shape, x.dtype)), state
        a_t = d(x0, t)  # A_t x0_hat
        n_t = expand(d.noise_std(jnp.broadcast_to(t, x.shape[:1])), x)
        eps = jnp.where(n_t > 0.0, (x - a_t) / jnp.where(n_t > 0.0, n_t, 1.0), 0.0)
        return x - d(x0, t, eps) + d(x0, s, eps), state
