"""What a network predicts, and conversions between every kind given (x_t, t, process).

With x_t = alpha x_0 + sigma eps (seed 000, "DDPM"; seed 001, "three equivalent
parameterisations"; Salimans & Ho 2022 for v):

  eps       the noise                      eps = (x_t - alpha x_0) / sigma
  x0        the clean data                 x_0 = (x_t - sigma eps) / alpha
  v         alpha eps - sigma x_0          x_0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2)
  score     grad log p_t(x_t)              score = -eps / sigma
  velocity  E[d x_t / dt | x_t]            = alpha' x_0 + sigma' eps  (the PF-ODE drift,
                                             f x_t - g^2 score / 2; flow matching's u_t)

Every conversion goes through the pair (x_0, eps), computed from the prediction with the
divisions the kind needs and no others, so e.g. eps -> score never divides by alpha.

Some networks output something that becomes a prediction only after scaling; a
`Preconditioning` turns such a raw network `(x_t, t) -> F` into a plain prediction function:
EDM's c_skip, c_out, c_in, c_noise (Karras et al. 2022, table 1), the consistency-model boundary
condition c_skip(sigma_min) = 1, c_out(sigma_min) = 0 (seed 000, "Consistency Models"; seed
001, "CONSISTENCY MODELS") and iDDPM's learned variance, whose extra output channels are not
part of the mean prediction (seed 000, "iDDPM"). A Denoiser built with a Preconditioning as its
kind applies it, so samplers only ever see plain kinds.
"""

import abc
import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.processes import Process, expand

KINDS = ("eps", "x0", "v", "score", "velocity")

# Keeps divisions finite where a coefficient is exactly zero (alpha(1) = 0 for the linear
# interpolant, sigma(0) = 0 for every process); the affected outputs are ill-posed there anyway.
_TINY = 1e-12


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown prediction kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def _safe(d: Array) -> Array:
    return jnp.where(jnp.abs(d) < _TINY, _TINY, d)


def _coefs(process: Process, x: Array, t: Array):
    """alpha, sigma and their time derivatives, each shaped to broadcast against x."""
    t = jnp.asarray(t, jnp.float32)
    ones = jnp.ones_like(t)
    alpha, dalpha = jax.jvp(process.alpha, (t,), (ones,))
    sigma, dsigma = jax.jvp(process.sigma, (t,), (ones,))
    return tuple(expand(c, x) for c in (alpha, sigma, dalpha, dsigma))


def to_x0_eps(kind: str, out: Array, x: Array, t: Array, process: Process) -> tuple[Array, Array]:
    """Returns (x_0, eps) implied by a prediction `out` of `kind` at (x_t = x, t).

    Args:
      kind: one of KINDS.
      out: the prediction, [B, ...].
      x: x_t, [B, ...].
      t: [B] or scalar.
      process: the forward process.
    """
    _check_kind(kind)
    alpha, sigma, dalpha, dsigma = _coefs(process, x, t)
    if kind == "eps":
        return (x - sigma * out) / _safe(alpha), out
    if kind == "x0":
        return out, (x - alpha * out) / _safe(sigma)
    if kind == "v":
        norm = jnp.square(alpha) + jnp.square(sigma)
        return (alpha * x - sigma * out) / norm, (sigma * x + alpha * out) / norm
    if kind == "score":
        eps = -sigma * out
        return (x - sigma * eps) / _safe(alpha), eps
    # velocity: solve [alpha sigma; alpha' sigma'] (x0, eps) = (x, u), the second row divided
    # by sigma' (infinite at t = 0 when sigma ~ sqrt(t), where this gives x0 = x / alpha).
    r = 1.0 / _safe(dsigma)
    det = _safe(alpha - sigma * dalpha * r)
    return (x - sigma * r * out) / det, r * (alpha * out - dalpha * x) / det


def from_x0_eps(kind: str, x0: Array, eps: Array, x: Array, t: Array, process: Process) -> Array:
    """Returns the prediction of `kind` given the pair (x_0, eps) at (x_t = x, t)."""
    _check_kind(kind)
    alpha, sigma, dalpha, dsigma = _coefs(process, x, t)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    if kind == "score":
        return -eps / _safe(sigma)
    return dalpha * x0 + dsigma * eps  # velocity


def convert(out: Array, src: str, dst: str, x: Array, t: Array, process: Process) -> Array:
    """Converts a prediction `out` of kind `src` into kind `dst` at (x_t = x, t)."""
    if src == dst:
        return out
    x0, eps = to_x0_eps(src, out, x, t, process)
    return from_x0_eps(dst, x0, eps, x, t, process)


ModelFn = Callable[[Array, Array], Array]


class Preconditioning(abc.ABC):
    """Maps a raw network `F(x_in, t_in)` to a prediction of the plain kind `self.kind`.

    Subclasses are frozen dataclasses (hashable, so they can be static)."""

    kind: str

    @abc.abstractmethod
    def wrap(self, net: ModelFn, process: Process) -> ModelFn:
        """`net(x_in, t_in) -> F` -> `model_fn(x_t, t) -> prediction of self.kind`; t: [B]."""


def _edm_sigma(process: Process, t: Array) -> tuple[Array, Array]:
    """alpha and EDM's sigma_e = sigma / alpha, both [B]: x_t / alpha = x_0 + sigma_e eps."""
    return process.alpha(t), jnp.exp(-0.5 * process.log_snr(t))


def edm_coefficients(sigma: Array, sigma_data: float) -> tuple[Array, Array, Array, Array]:
    """EDM preconditioning (Karras et al. 2022, table 1) at noise level sigma [B].

    D(x) = c_skip x + c_out F(c_in x, c_noise) with
      c_skip = sigma_d^2 / (sigma^2 + sigma_d^2),
      c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
      c_in = 1 / sqrt(sigma^2 + sigma_d^2),  c_noise = log(sigma) / 4.
    Returns (c_skip, c_out, c_in, c_noise), each [B].
    """
    norm = jnp.square(sigma) + sigma_data**2
    return (
        sigma_data**2 / norm,
        sigma * sigma_data * jax.lax.rsqrt(norm),
        jax.lax.rsqrt(norm),
        0.25 * jnp.log(sigma),
    )


def consistency_coefficients(
    sigma: Array, sigma_data: float, sigma_min: float
) -> tuple[Array, Array]:
    """Consistency-model boundary parameterisation (Song et al. 2023, appendix C).

    f(x, sigma) = c_skip x + c_out F with c_skip = sigma_d^2 / ((sigma - sigma_min)^2 +
    sigma_d^2), c_out = sigma_d (sigma - sigma_min) / sqrt(sigma^2 + sigma_d^2), so
    c_skip(sigma_min) = 1, c_out(sigma_min) = 0 and f(x, sigma_min) = x exactly.
    Returns (c_skip, c_out), each [B].
    """
    c_skip = sigma_data**2 / (jnp.square(sigma - sigma_min) + sigma_data**2)
    c_out = sigma_data * (sigma - sigma_min) * jax.lax.rsqrt(jnp.square(sigma) + sigma_data**2)
    return c_skip, c_out


def _check_sigma_data(sigma_data: float) -> None:
    if not sigma_data > 0.0:
        raise ValueError(f"sigma_data must be > 0, got {sigma_data=}")


@dataclasses.dataclass(frozen=True)
class EDMPreconditioning(Preconditioning):
    """x_0 = c_skip x~ + c_out F(c_in x~, c_noise), x~ = x_t / alpha, sigma = sigma / alpha.

    For alpha = 1 (the `edm` process) this is Karras et al. exactly; for other processes it is
    the same map in the scaled variable x~ = x_0 + sigma_e eps.
    """

    sigma_data: float = 0.5
    kind: str = dataclasses.field(default="x0", init=False)

    def __post_init__(self):
        _check_sigma_data(self.sigma_data)

    def wrap(self, net: ModelFn, process: Process) -> ModelFn:
        def model_fn(x, t):
            alpha, sigma = _edm_sigma(process, t)
            x_s = x / expand(alpha, x)
            c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)
            out = net(expand(c_in, x) * x_s, c_noise)
            return expand(c_skip, x) * x_s + expand(c_out, x) * out

        return model_fn


@dataclasses.dataclass(frozen=True)
class ConsistencyPreconditioning(Preconditioning):
    """x_0 = c_skip x~ + c_out F(c_in x~, c_noise) with the consistency c_skip, c_out.

    `sigma_min` is the boundary noise level (sigma_e at the smallest time), where the model is
    the identity. c_in and c_noise are EDM's.
    """

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    kind: str = dataclasses.field(default="x0", init=False)

    def __post_init__(self):
        _check_sigma_data(self.sigma_data)
        if not self.sigma_min >= 0.0:
            raise ValueError(f"sigma_min must be >= 0, got {self.sigma_min=}")

    def wrap(self, net: ModelFn, process: Process) -> ModelFn:
        def model_fn(x, t):
            alpha, sigma = _edm_sigma(process, t)
            x_s = x / expand(alpha, x)
            _, _, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)
            c_skip, c_out = consistency_coefficients(sigma, self.sigma_data, self.sigma_min)
            out = net(expand(c_in, x) * x_s, c_noise)
            return expand(c_skip, x) * x_s + expand(c_out, x) * out

        return model_fn


@dataclasses.dataclass(frozen=True)
class LearnedVariance(Preconditioning):
    """iDDPM: the network outputs [mean prediction of `kind`, v] along the last axis (2C).

    The denoiser sees only the first C channels; `split` gives both halves to the VLB loss.
    """

    kind: str = "eps"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown prediction kind {self.kind!r}; valid kinds: {', '.join(KINDS)}"
            )

    @staticmethod
    def split(out: Array) -> tuple[Array, Array]:
        """[B, ..., 2C] -> (mean prediction [B, ..., C], variance interpolation v [B, ..., C])."""
        c = out.shape[-1] // 2
        return out[..., :c], out[..., c:]

    def wrap(self, net: ModelFn, process: Process) -> ModelFn:
        del process
        return lambda x, t: self.split(net(x, t))[0]


@dataclasses.dataclass(frozen=True)
class Denoiser:
    """Any `model_fn(x_t, t) -> output` with its prediction kind and process.

    Samplers and likelihoods take a Denoiser and ask for the kind they need. `model_fn` receives
    `t` broadcast to shape [B]. Usage: `Denoiser(lambda x, t: apply(params, x, t), "eps", vp)`.
    `kind` may be a `Preconditioning`: the Denoiser then stores the preconditioned model_fn and
    its plain kind, so `model_fn` and `kind` are always a plain pair.
    """

    model_fn: Callable[[Array, Array], Array]
    kind: str
    process: Process
    # iDDPM's learned variance: `(x_t, t) -> v` [B, ...], the interpolation of the log variance
    # between beta (v = 1) and beta_tilde (v = -1); filled in by `LearnedVariance`.
    variance_fn: Callable[[Array, Array], Array] | None = None

    def __post_init__(self):
        if isinstance(self.kind, LearnedVariance) and self.variance_fn is None:
            net, split = self.model_fn, self.kind.split
            object.__setattr__(self, "variance_fn", lambda x, t: split(net(x, t))[1])
        if isinstance(self.kind, Preconditioning):
            object.__setattr__(self, "model_fn", self.kind.wrap(self.model_fn, self.process))
            object.__setattr__(self, "kind", self.kind.kind)
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown prediction kind {self.kind!r}; valid kinds: {', '.join(KINDS)}"
            )

    def predict(self, x: Array, t: Array, kind: str) -> Array:
        """The prediction of `kind` at (x_t = x, t); x: [B, ...], t: scalar or [B]."""
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        return convert(self.model_fn(x, t), self.kind, kind, x, t, self.process)

    def variance(self, x: Array, t: Array) -> Array:
        """The learned-variance interpolation v in [-1, 1] at (x_t = x, t).

        Raises:
          ValueError: if the model has no learned variance.
        """
        if self.variance_fn is None:
            raise ValueError("this Denoiser has no learned variance (predictions.LearnedVariance)")
        return self.variance_fn(x, jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1]))

    def eps(self, x: Array, t: Array) -> Array:
        return self.predict(x, t, "eps")

    def x0(self, x: Array, t: Array) -> Array:
        return self.predict(x, t, "x0")

    def v(self, x: Array, t: Array) -> Array:
        return self.predict(x, t, "v")

    def score(self, x: Array, t: Array) -> Array:
        return self.predict(x, t, "score")

    def velocity(self, x: Array, t: Array) -> Array:
        """The probability-flow ODE drift dx/dt at (x, t)."""
        return self.predict(x, t, "velocity")
