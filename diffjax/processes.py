"""Forward noising processes x_t = alpha(t) x_0 + sigma(t) eps, t in [0, 1] (0 data, 1 noise).

Every process defines only `alpha(t)` and `sigma(t)`; the log-SNR and the SDE coefficients of
dx = f(t) x dt + g(t) dW are derived once, for all processes, with forward-mode autodiff:

  f(t)   = d log alpha / dt
  g^2(t) = d sigma^2 / dt - 2 f(t) sigma^2(t)

(seed 000, "SDE Models"; seed 004, "SDEs (VP/VE/sub-VP)"; seed 001, "general formulations":
q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I)).
"""

import abc

import flax.struct
import jax
import jax.numpy as jnp
from jax import Array

from diffjax import _registry


class Process(abc.ABC):
    """A Gaussian forward process. Subclasses are frozen `flax.struct` dataclasses.

    All methods take `t` of any shape (a scalar or a batch [B]) and broadcast elementwise.
    """

    @abc.abstractmethod
    def alpha(self, t: Array) -> Array:
        """Signal scale alpha(t): x_t = alpha(t) x_0 + sigma(t) eps."""

    @abc.abstractmethod
    def sigma(self, t: Array) -> Array:
        """Noise scale sigma(t)."""

    def log_snr(self, t: Array) -> Array:
        """lambda(t) = log(alpha^2 / sigma^2), decreasing in t."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def f(self, t: Array) -> Array:
        """Drift coefficient f(t) = d log alpha / dt of the forward SDE."""
        t = jnp.asarray(t, jnp.float32)
        alpha, dalpha = jax.jvp(self.alpha, (t,), (jnp.ones_like(t),))
        return dalpha / alpha

    def g2(self, t: Array) -> Array:
        """Squared diffusion coefficient g^2(t) = d sigma^2/dt - 2 f(t) sigma^2(t)."""
        t = jnp.asarray(t, jnp.float32)
        sigma2 = lambda s: jnp.square(self.sigma(s))  # noqa: E731
        s2, ds2 = jax.jvp(sigma2, (t,), (jnp.ones_like(t),))
        return ds2 - 2.0 * self.f(t) * s2

    def prior_std(self) -> Array:
        """Std of the terminal distribution N(0, (alpha(1)^2 + sigma(1)^2) I) for unit-scale data.

        Exactly 1 for variance-preserving processes, ~sigma_max for variance-exploding ones.
        """
        one = jnp.float32(1.0)
        return jnp.sqrt(jnp.square(self.alpha(one)) + jnp.square(self.sigma(one)))

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        """Draws x_1 ~ N(0, prior_std^2 I) of the given shape."""
        return self.prior_std() * jax.random.normal(key, shape)

    def marginal_sample(self, key: Array, x0: Array, t: Array) -> tuple[Array, Array]:
        """Draws x_t ~ q(x_t | x_0); returns (x_t, eps). `t`: [B], `x0`: [B, ...]."""
        eps = jax.random.normal(key, x0.shape, x0.dtype)
        return self.alpha(t).reshape(_bshape(x0, t)) * x0 + self.sigma(t).reshape(
            _bshape(x0, t)
        ) * eps, eps


def _bshape(x: Array, t: Array) -> tuple[int, ...]:
    """Shape that broadcasts a per-example t of shape [B] against x of shape [B, ...]."""
    return jnp.shape(t) + (1,) * (x.ndim - jnp.ndim(t))


def expand(coef: Array, x: Array) -> Array:
    """Reshapes a per-example coefficient [B] (or scalar) to broadcast against x [B, ...]."""
    return jnp.reshape(coef, _bshape(x, coef))


@flax.struct.dataclass
class VP(Process):
    """Variance-preserving SDE with linear beta(t) = beta_min + t (beta_max - beta_min).

    alpha(t) = exp(-1/2 int_0^t beta), sigma^2 = 1 - alpha^2 (Song et al. 2021; seed 004, VP SDE).
    """

    beta_min: float = flax.struct.field(pytree_node=False, default=0.1)
    beta_max: float = flax.struct.field(pytree_node=False, default=20.0)

    def __post_init__(self):
        if not 0.0 < self.beta_min < self.beta_max:
            raise ValueError(f"vp needs 0 < beta_min < beta_max, got {self.beta_min=}, {self.beta_max=}")

    def _log_alpha(self, t: Array) -> Array:
        return -0.25 * jnp.square(t) * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: Array) -> Array:
        return jnp.exp(self._log_alpha(t))

    def sigma(self, t: Array) -> Array:
        return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(t)))


@flax.struct.dataclass
class RectifiedFlow(Process):
    """Linear interpolant alpha(t) = 1 - t, sigma(t) = t (rectified flow / OT flow matching)."""

    def alpha(self, t: Array) -> Array:
        return 1.0 - jnp.asarray(t, jnp.float32)

    def sigma(self, t: Array) -> Array:
        return jnp.asarray(t, jnp.float32)


_PROCESSES = {
    "vp": VP,
    "rectified_flow": RectifiedFlow,
}


def get(name: str, **kwargs) -> Process:
    """Builds the process registered as `name` with its keyword parameters."""
    return _registry.lookup("process", _PROCESSES, name)(**kwargs)
