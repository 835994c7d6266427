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

How a raw network becomes one of these kinds is `diffjax.preconditioning`; the model as a
function of (x_t, t) with its kind and process is `diffjax.denoisers.Denoiser`.
"""

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.processes import Process, expand

KINDS = ("eps", "x0", "v", "score", "velocity")

# Keeps divisions finite where a coefficient is exactly zero (alpha(1) = 0 for the linear
# interpolant, sigma(0) = 0 for every process); the affected outputs are ill-posed there anyway.
_TINY = 1e-12


def check_kind(kind: str) -> None:
    """Raises a ValueError naming the valid kinds unless `kind` is one of KINDS."""
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
    check_kind(kind)
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
    check_kind(kind)
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
