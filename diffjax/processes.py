"""Forward noising processes x_t = alpha(t) x_0 + sigma(t) eps, t in [0, 1] (0 data, 1 noise).

Every process defines only `alpha(t)` and `sigma(t)`; the log-SNR and the SDE coefficients of
dx = f(t) x dt + g(t) dW are derived once, for all processes, with forward-mode autodiff:

  f(t)   = d log alpha / dt
  g^2(t) = d sigma^2 / dt - 2 f(t) sigma^2(t)

(seed 000, "SDE Models"; seed 004, "SDEs (VP/VE/sub-VP)"; seed 001, "general formulations":
q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I)).

Processes: discrete DDPM tables `ddpm_linear` / `ddpm_cosine` (seed 000, "DDPM" and "iDDPM"),
`vp`, `subvp`, `ve` (seed 000, "SDE Models"), `edm` (Karras et al. 2022), `cosine`
(trigonometric), `rectified_flow` (seed 000, "Flow Matching"), `ot_path` (Lipman et al.'s
OT path with sigma_min; seed 004, "Flow Matching") and `vdm_learned` (seed 001, "LEARNED NOISE
SCHEDULE").
"""

import abc
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffjax import _registry
from diffjax.models.vdm_schedule import MonotoneGamma


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

    def noise_level(self, t: Array) -> Array:
        """s(t) = sigma(t) / alpha(t) = exp(-lambda / 2): the VE-equivalent noise level, x_t / alpha
        = x_0 + s eps (EDM's sigma, the consistency models' t)."""
        return jnp.exp(-0.5 * self.log_snr(t))

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

    def t_of_log_snr(self, log_snr: Array, num_iters: int = 40) -> Array:
        """Inverts the (decreasing) log-SNR by bisection on [0, 1]; clips outside its range.

        Args:
          log_snr: target lambda, any shape.
          num_iters: bisection steps (the bracket halves each step; 40 reach float32 precision).
        Returns t with log_snr(t) = lambda, same shape.
        """
        lam = jnp.asarray(log_snr, jnp.float32)

        def body(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # mid is still before the target time
            return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

        lo, hi = jax.lax.fori_loop(0, num_iters, body, (jnp.zeros_like(lam), jnp.ones_like(lam)))
        return 0.5 * (lo + hi)

    def t_of_noise_level(self, noise_level: Array) -> Array:
        """The t with `noise_level(t)` = s (bisection on the log-SNR -2 log s); any shape."""
        return self.t_of_log_snr(-2.0 * jnp.log(jnp.asarray(noise_level, jnp.float32)))

    def prior_std(self) -> Array:
        """Std of the terminal distribution N(0, (alpha(1)^2 + sigma(1)^2) I) for unit-scale data.

        Exactly 1 for variance-preserving processes, ~sigma_max for variance-exploding ones.
        """
        one = jnp.float32(1.0)
        return jnp.sqrt(jnp.square(self.alpha(one)) + jnp.square(self.sigma(one)))

    def prior_sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        """Draws x_1 ~ N(0, prior_std^2 I) of the given shape."""
        return self.prior_std() * jax.random.normal(key, shape)

    def x_t(self, x0: Array, eps: Array, t: Array) -> Array:
        """alpha(t) x0 + sigma(t) eps; x0, eps: [B, ...], t: [B] or scalar. With the model's
        (x0, eps) at a later time this is the deterministic DDIM step."""
        return expand(self.alpha(t), x0) * x0 + expand(self.sigma(t), x0) * eps

    def marginal_sample(self, key: Array, x0: Array, t: Array) -> tuple[Array, Array]:
        """Draws x_t ~ q(x_t | x_0); returns (x_t, eps). `t`: [B], `x0`: [B, ...]."""
        eps = jax.random.normal(key, x0.shape, x0.dtype)
        return self.x_t(x0, eps, t), eps


def _bshape(x: Array, t: Array) -> tuple[int, ...]:
    """Shape that broadcasts a per-example t of shape [B] against x of shape [B, ...]."""
    return jnp.shape(t) + (1,) * (x.ndim - jnp.ndim(t))


def expand(coef: Array, x: Array) -> Array:
    """Reshapes a per-example coefficient [B] (or scalar) to broadcast against x [B, ...]."""
    return jnp.reshape(coef, _bshape(x, coef))


def _vp_log_alpha(t: Array, beta_min: float, beta_max: float) -> Array:
    """log alpha(t) = -1/2 int_0^t beta(s) ds for beta(s) = beta_min + s (beta_max - beta_min)."""
    t = jnp.asarray(t, jnp.float32)
    return -0.25 * jnp.square(t) * (beta_max - beta_min) - 0.5 * t * beta_min


def _check_betas(name: str, beta_min: float, beta_max: float) -> None:
    if not 0.0 < beta_min < beta_max:
        raise ValueError(f"{name} needs 0 < beta_min < beta_max, got {beta_min=}, {beta_max=}")


@flax.struct.dataclass
class VP(Process):
    """Variance-preserving SDE with linear beta(t) = beta_min + t (beta_max - beta_min).

    alpha(t) = exp(-1/2 int_0^t beta), sigma^2 = 1 - alpha^2; f = -beta/2, g^2 = beta
    (Song et al. 2021; seed 004, VP SDE).
    """

    beta_min: float = flax.struct.field(pytree_node=False, default=0.1)
    beta_max: float = flax.struct.field(pytree_node=False, default=20.0)

    def __post_init__(self):
        _check_betas("vp", self.beta_min, self.beta_max)

    def alpha(self, t: Array) -> Array:
        return jnp.exp(_vp_log_alpha(t, self.beta_min, self.beta_max))

    def sigma(self, t: Array) -> Array:
        return jnp.sqrt(-jnp.expm1(2.0 * _vp_log_alpha(t, self.beta_min, self.beta_max)))


@flax.struct.dataclass
class SubVP(Process):
    """Sub-VP SDE: the VP mean with variance (1 - alpha^2)^2 <= the VP variance.

    alpha as in `VP`, sigma = 1 - alpha^2; g^2(t) = beta(t) (1 - exp(-2 int_0^t beta))
    (Song et al. 2021, eq. 29; seed 004, sub-VP SDE).
    """

    beta_min: float = flax.struct.field(pytree_node=False, default=0.1)
    beta_max: float = flax.struct.field(pytree_node=False, default=20.0)

    def __post_init__(self):
        _check_betas("subvp", self.beta_min, self.beta_max)

    def alpha(self, t: Array) -> Array:
        return jnp.exp(_vp_log_alpha(t, self.beta_min, self.beta_max))

    def sigma(self, t: Array) -> Array:
        return -jnp.expm1(2.0 * _vp_log_alpha(t, self.beta_min, self.beta_max))


@flax.struct.dataclass
class VE(Process):
    """Variance-exploding SDE: alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t.

    f = 0, g^2 = d sigma^2 / dt = 2 sigma^2 log(sigma_max / sigma_min) (Song et al. 2021, the
    continuous NCSN; seed 000, "SDE model as continuous NCSN").
    """

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.01)
    sigma_max: float = flax.struct.field(pytree_node=False, default=50.0)

    def __post_init__(self):
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"ve needs 0 < sigma_min < sigma_max, got {self.sigma_min=}, {self.sigma_max=}"
            )

    def alpha(self, t: Array) -> Array:
        return jnp.ones_like(jnp.asarray(t, jnp.float32))

    def sigma(self, t: Array) -> Array:
        t = jnp.asarray(t, jnp.float32)
        return self.sigma_min * jnp.exp(t * math.log(self.sigma_max / self.sigma_min))


@flax.struct.dataclass
class EDM(Process):
    """Karras et al. (2022): alpha = 1, sigma(t) = sigma_min + t (sigma_max - sigma_min).

    The time variable is EDM's sigma rescaled to [0, 1]; samplers choose their own sigma grid.
    """

    sigma_min: float = flax.struct.field(pytree_node=False, default=0.002)
    sigma_max: float = flax.struct.field(pytree_node=False, default=80.0)

    def __post_init__(self):
        if not 0.0 <= self.sigma_min < self.sigma_max:
            raise ValueError(
                f"edm needs 0 <= sigma_min < sigma_max, got {self.sigma_min=}, {self.sigma_max=}"
            )

    def alpha(self, t: Array) -> Array:
        return jnp.ones_like(jnp.asarray(t, jnp.float32))

    def sigma(self, t: Array) -> Array:
        return self.sigma_min + jnp.asarray(t, jnp.float32) * (self.sigma_max - self.sigma_min)


@flax.struct.dataclass
class Cosine(Process):
    """Trigonometric interpolant alpha = cos(pi t / 2), sigma = sin(pi t / 2); log-SNR = -2 log tan.

    The continuous-time limit of the iDDPM cosine schedule with offset s = 0 (seed 000, "iDDPM").
    """

    def alpha(self, t: Array) -> Array:
        return jnp.cos(0.5 * jnp.pi * jnp.asarray(t, jnp.float32))

    def sigma(self, t: Array) -> Array:
        return jnp.sin(0.5 * jnp.pi * jnp.asarray(t, jnp.float32))


@flax.struct.dataclass
class RectifiedFlow(Process):
    """Linear interpolant alpha(t) = 1 - t, sigma(t) = t (rectified flow / OT flow matching)."""

    def alpha(self, t: Array) -> Array:
        return 1.0 - jnp.asarray(t, jnp.float32)

    def sigma(self, t: Array) -> Array:
        return jnp.asarray(t, jnp.float32)


class DiscreteProcess(Process):
    """A discrete DDPM schedule of T steps, extended to continuous t in [0, 1].

    q(x_i | x_{i-1}) = N(sqrt(1 - beta_i) x_{i-1}, beta_i I), alphas_cumprod[i-1] = prod_{j<=i}
    (1 - beta_j) (seed 000, "DDPM"). Step i of T is t = i / T with alpha(i / T)^2 =
    alphas_cumprod[i - 1]; alpha(0) = 1, sigma(0) = 0 (the data). Between grid points the log-SNR
    is interpolated linearly; on [0, 1/T] sigma^2 is linear (the log-SNR is infinite at t = 0),
    so continuous-time samplers and likelihoods can query any t. Variance preserving:
    alpha^2 + sigma^2 = 1 everywhere.

    Subclasses are frozen dataclasses with a static `num_steps` field and define `betas`.
    """

    num_steps: int

    @property
    @abc.abstractmethod
    def betas(self) -> np.ndarray:
        """beta_1..beta_T, float64 [T] (a static table: the schedule's fields are static)."""

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """bar alpha_1..bar alpha_T = cumprod(1 - betas), float64 [T]."""
        return np.cumprod(1.0 - self.betas)

    def _check_steps(self) -> None:
        if int(self.num_steps) != self.num_steps or self.num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {self.num_steps=}")

    def _sigma2_first(self, t: Array) -> Array:
        """sigma^2 on [0, 1/T], linear from 0 to 1 - alphas_cumprod[0] (clipped outside)."""
        u = jnp.minimum(t * self.num_steps, 1.0)  # t >= 0
        return u * jnp.float32(1.0 - self.alphas_cumprod[0])

    def _log_snr_grid(self, t: Array) -> Array:
        """The log-SNR table interpolated linearly in t, for t >= 1/T (clipped below)."""
        ac = self.alphas_cumprod
        table = jnp.asarray(np.log(ac) - np.log1p(-ac), jnp.float32)  # [T], log-SNR at i / T
        n = self.num_steps
        u = jnp.clip(t * n, 1.0, float(n))
        i = jnp.clip(jnp.floor(u), 1.0, float(max(n - 1, 1)))  # left grid point, 1..T-1
        i0 = i.astype(jnp.int32) - 1
        i1 = jnp.minimum(i0 + 1, n - 1)
        return (1.0 + i - u) * table[i0] + (u - i) * table[i1]

    def _first(self, t: Array) -> Array:
        return jnp.asarray(t, jnp.float32) * self.num_steps < 1.0

    def log_snr(self, t: Array) -> Array:
        t = jnp.asarray(t, jnp.float32)
        s2 = self._sigma2_first(t)
        return jnp.where(self._first(t), jnp.log1p(-s2) - jnp.log(s2), self._log_snr_grid(t))

    def alpha(self, t: Array) -> Array:
        t = jnp.asarray(t, jnp.float32)
        first = jnp.sqrt(1.0 - self._sigma2_first(t))
        return jnp.where(self._first(t), first, jnp.sqrt(jax.nn.sigmoid(self._log_snr_grid(t))))

    def sigma(self, t: Array) -> Array:
        t = jnp.asarray(t, jnp.float32)
        first = jnp.sqrt(self._sigma2_first(t))
        return jnp.where(self._first(t), first, jnp.sqrt(jax.nn.sigmoid(-self._log_snr_grid(t))))


@flax.struct.dataclass
class DDPMLinear(DiscreteProcess):
    """DDPM's linear schedule beta_i = beta_start + (i - 1) / (T - 1) (beta_end - beta_start).

    Ho et al. (2020) with T = 1000, beta 1e-4 .. 0.02 (seed 000, "DDPM").
    """

    num_steps: int = flax.struct.field(pytree_node=False, default=1000)
    beta_start: float = flax.struct.field(pytree_node=False, default=1e-4)
    beta_end: float = flax.struct.field(pytree_node=False, default=0.02)

    def __post_init__(self):
        self._check_steps()
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ValueError(
                f"ddpm_linear needs 0 < beta_start <= beta_end < 1, got {self.beta_start=}, "
                f"{self.beta_end=}"
            )

    @property
    def betas(self) -> np.ndarray:
        return np.linspace(self.beta_start, self.beta_end, self.num_steps, dtype=np.float64)


@flax.struct.dataclass
class DDPMCosine(DiscreteProcess):
    """iDDPM's cosine schedule: bar alpha_i = f(i) / f(0), f(i) = cos^2(pi/2 (i/T + s) / (1 + s)).

    beta_i = 1 - bar alpha_i / bar alpha_{i-1}, clipped at `max_beta` = 0.999 (Nichol & Dhariwal
    2021; seed 000, "iDDPM", improvement 2); the table is recomputed from the clipped betas.
    """

    num_steps: int = flax.struct.field(pytree_node=False, default=1000)
    s: float = flax.struct.field(pytree_node=False, default=0.008)
    max_beta: float = flax.struct.field(pytree_node=False, default=0.999)

    def __post_init__(self):
        self._check_steps()
        if self.s < 0.0:
            raise ValueError(f"ddpm_cosine needs offset s >= 0, got {self.s=}")
        if not 0.0 < self.max_beta <= 1.0:
            raise ValueError(f"ddpm_cosine needs 0 < max_beta <= 1, got {self.max_beta=}")

    @property
    def betas(self) -> np.ndarray:
        i = np.arange(self.num_steps + 1, dtype=np.float64)
        f = np.cos(0.5 * np.pi * (i / self.num_steps + self.s) / (1.0 + self.s)) ** 2
        return np.minimum(1.0 - f[1:] / f[:-1], self.max_beta)


@flax.struct.dataclass
class VDMLearned(Process):
    """VDM's learned schedule: alpha^2 = sigmoid(-gamma_eta(t)), sigma^2 = sigmoid(gamma_eta(t)).

    gamma_eta is `diffjax.models.vdm_schedule.MonotoneGamma` (seed 001, "LEARNED NOISE
    SCHEDULE"); its params are a pytree field, trained with the model. `get("vdm_learned")`
    returns the unbound process; `init(key)` creates params and `bind(params)` returns the
    process to evaluate.
    """

    params: dict | None = None
    gamma_min: float = flax.struct.field(pytree_node=False, default=-13.3)
    gamma_max: float = flax.struct.field(pytree_node=False, default=5.0)
    hidden: int = flax.struct.field(pytree_node=False, default=1024)

    def __post_init__(self):
        if not self.gamma_min < self.gamma_max:
            raise ValueError(
                f"vdm_learned needs gamma_min < gamma_max, got {self.gamma_min=}, {self.gamma_max=}"
            )
        if self.hidden < 1:
            raise ValueError(f"vdm_learned needs hidden >= 1, got {self.hidden=}")

    @property
    def network(self) -> MonotoneGamma:
        return MonotoneGamma(self.gamma_min, self.gamma_max, self.hidden)

    def init(self, key: Array) -> dict:
        """Fresh schedule params (gamma(0) = gamma_min, gamma(1) = gamma_max)."""
        return self.network.init(key, jnp.zeros((1,)))["params"]

    def bind(self, params: dict) -> "VDMLearned":
        return self.replace(params=params)

    def gamma(self, t: Array) -> Array:
        """gamma_eta(t) = -log SNR(t), same shape as t."""
        if self.params is None:
            raise ValueError("vdm_learned is unbound: call .bind(params) (see Recipe.process_for)")
        return self.network.apply({"params": self.params}, t)

    def log_snr(self, t: Array) -> Array:
        return -self.gamma(t)

    def alpha(self, t: Array) -> Array:
        return jnp.sqrt(jax.nn.sigmoid(-self.gamma(t)))

    def sigma(self, t: Array) -> Array:
        return jnp.sqrt(jax.nn.sigmoid(self.gamma(t)))


@flax.struct.dataclass
class OTPath(Process):
    """Lipman et al.'s OT path in diffjax time: alpha(t) = 1 - t, sigma(t) = s + (1 - s) t.

    At t = 0 the path is the data smoothed by N(0, sigma_min^2 I); at t = 1 it is pure noise.
    Seed 004, "Experiments", OT vector field u = (x_1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) t)
    is this process's conditional velocity after t -> 1 - t.
    """

    sigma_min: float = flax.struct.field(pytree_node=False, default=1e-4)

    def __post_init__(self):
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"ot path needs 0 <= sigma_min < 1, got {self.sigma_min=}")

    def alpha(self, t: Array) -> Array:
        return 1.0 - jnp.asarray(t, jnp.float32)

    def sigma(self, t: Array) -> Array:
        return self.sigma_min + (1.0 - self.sigma_min) * jnp.asarray(t, jnp.float32)


_PROCESSES = {
    "ddpm_linear": DDPMLinear,
    "ddpm_cosine": DDPMCosine,
    "vp": VP,
    "subvp": SubVP,
    "ve": VE,
    "edm": EDM,
    "cosine": Cosine,
    "rectified_flow": RectifiedFlow,
    "ot_path": OTPath,
    "vdm_learned": VDMLearned,
}


def get(name: str, **kwargs) -> Process:
    """Builds the process registered as `name` with its keyword parameters."""
    return _registry.lookup("process", _PROCESSES, name)(**kwargs)
