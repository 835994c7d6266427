"""Ancestral samplers: DDPM and DDIM, written for any process from alpha(t), sigma(t).

For s < t the forward process has the transition x_t | x_s ~ N(alpha_{t|s} x_s, sigma_{t|s}^2 I)
with alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2
= sigma_t^2 r, where r = 1 - exp(lambda_t - lambda_s) in terms of the log-SNR lambda (computed
with expm1, exact to float precision for small steps). The posterior q(x_s | x_t, x_0) is
Gaussian with variance beta_tilde = sigma_s^2 r and mean
  alpha_s x_0 + sigma_s sqrt(1 - r) eps,   eps = (x_t - alpha_t x_0) / sigma_t
(seed 000, "DDPM": A_t x_0 + B_t x_t and beta_tilde_t; seed 001, "DDPM derivation").

DDIM (seed 000, "DDIM" and "Accelerating Inference") keeps the marginals with any variance
c^2 = eta^2 beta_tilde in [0, sigma_s^2]:
  x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
so eta = 1 is the DDPM posterior step and eta = 0 the deterministic DDIM map. DDPM's two fixed
variances are beta_tilde ("beta_tilde") and the forward variance sigma_{t|s}^2 ("beta"). With a
discrete T-step process and the grid i / T these are exactly DDPM's A_t, B_t, beta_tilde_t and
beta_t; any subsequence of the grid is allowed. No noise is added on the last step, so with
t_N = 0 (alpha = 1, sigma = 0) the result is the network's x_0 prediction at t_{N-1}.
"""

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.denoisers import Denoiser
from diffjax.preconditioning import LearnedVariance
from diffjax.processes import Process
from diffjax.samplers import timesteps as grids
from diffjax.samplers.base import State, StepSampler


class _Ancestral(StepSampler):
    """x_s = alpha_s x0_hat + d eps_hat + c z, one network evaluation per step."""

    default_num_steps: ClassVar[int] = 1000

    @abc.abstractmethod
    def coefs(
        self, r: Array, sigma_s: Array, sigma_t: Array, v: Array | None
    ) -> tuple[Array, Array]:
        """(d, c): the eps coefficient and the noise std, given r = sigma_{t|s}^2 / sigma_t^2
        and, for a learned variance, the network's interpolation v [B, ...] (else None)."""

    def uses_learned_variance(self) -> bool:
        return False

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
        process: Process = denoiser.process
        x0, eps = denoiser.x0_eps(x, t)
        r = -jnp.expm1(process.log_snr(t) - process.log_snr(s))
        v = denoiser.variance(x, t) if self.uses_learned_variance() else None
        d, c = self.coefs(r, process.sigma(s), process.sigma(t), v)
        z = jax.random.normal(key, x.shape, x.dtype)
        return process.alpha(s) * x0 + d * eps + jnp.where(last, 0.0, c) * z, state

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def default_steps(self, process: Process) -> int:
        """T for a discrete T-step process, `default_num_steps` otherwise."""
        return _discrete_steps(process) or self.default_num_steps

    def grid(self, process: Process, num_steps: int) -> Array:
        """Uniform from 1 to 0; for a discrete T-step process the subsequence round(grid T) / T.

        Raises:
          ValueError: if num_steps exceeds a discrete process's T.
        """
        ts = grids.uniform(num_steps)
        T = _discrete_steps(process)
        if T is None:
            return ts
        if num_steps > T:
            raise ValueError(f"{num_steps=} exceeds the process's {T} discrete steps")
        return grids.snap(ts, T)


def _discrete_steps(process: Process) -> int | None:
    """T of a discrete DDPM process (it exposes `num_steps`), None for continuous processes."""
    return getattr(process, "num_steps", None)


@dataclasses.dataclass(frozen=True)
class DDPM(_Ancestral):
    """Ancestral sampling from the posterior mean with a fixed or learned variance.

    Attributes:
      variance: "beta_tilde" (the posterior variance sigma_s^2 r, exact for point-mass data),
        "beta" (the forward variance sigma_t^2 r, exact for N(0, I) data) or "learned" (iDDPM:
        exp(f log beta + (1 - f) log beta_tilde), f = (v + 1) / 2 from the network's v; the two
        variances are those of the actual step t -> s, so respaced grids work as in iDDPM).
    """

    variance: str = "beta_tilde"

    def __post_init__(self):
        if self.variance not in ("beta_tilde", "beta", "learned"):
            raise ValueError(
                f"ddpm variance must be 'beta_tilde', 'beta' or 'learned', got {self.variance!r}"
            )

    def uses_learned_variance(self) -> bool:
        return self.variance == "learned"

    def coefs(
        self, r: Array, sigma_s: Array, sigma_t: Array, v: Array | None
    ) -> tuple[Array, Array]:
        if self.variance == "learned":
            # The step's beta = sigma_t^2 r and beta~ = sigma_s^2 r share the factor r. At s = 0
            # (the last step, which adds no noise) log sigma_s = -inf and std is 0 or unused.
            log_var = LearnedVariance.log_variance(
                v, 2.0 * jnp.log(sigma_t), 2.0 * jnp.log(sigma_s)
            )
            std = jnp.exp(0.5 * log_var)
        else:
            std = sigma_s if self.variance == "beta_tilde" else sigma_t
        return sigma_s * jnp.sqrt(1.0 - r), std * jnp.sqrt(r)


@dataclasses.dataclass(frozen=True)
class DDIM(_Ancestral):
    """DDIM with noise c = eta sqrt(beta_tilde); eta = 0 deterministic, eta = 1 DDPM.

    Attributes:
      eta: in [0, 1].
    """

    eta: float = 0.0
    default_num_steps: ClassVar[int] = 50

    def __post_init__(self):
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"ddim needs 0 <= eta <= 1, got {self.eta=}")

    def coefs(
        self, r: Array, sigma_s: Array, sigma_t: Array, v: Array | None
    ) -> tuple[Array, Array]:
        del sigma_t, v
        # On an increasing grid (DDIM inversion, eta = 0) r < 0: no noise, and no sqrt of r < 0.
        d = sigma_s * jnp.sqrt(jnp.maximum(1.0 - self.eta**2 * r, 0.0))
        return d, self.eta * sigma_s * jnp.sqrt(jnp.maximum(r, 0.0))
