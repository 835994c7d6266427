"""The Denoiser: a model of (x_t, t) with its prediction kind and process, and its wrappers.

Samplers, likelihoods and losses take a `Denoiser` and ask it for the kind they need
(`eps`, `x0`, `v`, `score`, `velocity`, or the pair `x0_eps` from one network call). It is built
from any `model_fn(x_t, t) -> output` with the kind it predicts, which may be a
`diffjax.preconditioning.Preconditioning` (EDM, the consistency boundary, VDM's log-SNR input,
iDDPM's learned variance, MeanFlow's average velocity): the Denoiser applies it, so its users only
see plain kinds.

A Denoiser is a pytree. `model_fn` is a `jax.tree_util.Partial` whose bound arguments (network
params, the conditioning, mixture parameters, an inner Denoiser) are leaves and whose function is
static, as are the kind and the preconditioning; the process is a pytree too (a learned
schedule's params are leaves). So `jax.jit(sampler)(key, denoiser, x)` compiles once and reuses
the compiled function for new params. A plain function as `model_fn` is static: it works, and a
new function means a new compilation.

`from_network` is the one way to turn a network `apply_fn(params, x, t, cond=None, key=None)` into
a Denoiser (a key means training mode with that dropout key). `clip_x0` is the "clip_denoised" of
Ho et al. (2020); guidance, a Denoiser -> Denoiser map as well, belongs here too.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax.numpy as jnp
from jax import Array
from jax.tree_util import Partial

from diffjax import predictions
from diffjax.preconditioning import LearnedVariance, Preconditioning
from diffjax.processes import Process


def _as_partial(fn: Callable | None) -> Partial | None:
    return fn if fn is None or isinstance(fn, Partial) else Partial(fn)


@flax.struct.dataclass
class Denoiser:
    """`model_fn(x_t, t) -> output` with its prediction and process.

    Attributes:
      model_fn: the raw model; t arrives broadcast to [B] (or as [B, 2] times for MeanFlow's
        sampler). Wrapped in a `jax.tree_util.Partial` if it is not one.
      prediction: a kind in `predictions.KINDS` or a `Preconditioning`.
      process: the forward process.
      variance_fn: `(x_t, t) -> v` [B, ...], iDDPM's interpolation of the log variance between
        beta (v = 1) and beta_tilde (v = -1), for a Denoiser wrapping one with a learned variance
        (a `LearnedVariance` prediction provides it without this field).
    """

    model_fn: Callable
    prediction: str | Preconditioning = flax.struct.field(pytree_node=False)
    process: Process
    variance_fn: Callable | None = None

    def __post_init__(self):
        object.__setattr__(self, "model_fn", _as_partial(self.model_fn))
        object.__setattr__(self, "variance_fn", _as_partial(self.variance_fn))
        if not isinstance(self.prediction, Preconditioning):
            predictions.check_kind(self.prediction)

    @property
    def kind(self) -> str:
        """The plain kind of `output` (the preconditioning applied)."""
        p = self.prediction
        return p.kind if isinstance(p, Preconditioning) else p

    @property
    def has_variance(self) -> bool:
        return self.variance_fn is not None or isinstance(self.prediction, LearnedVariance)

    def output(self, x: Array, t: Array) -> Array:
        """The model's prediction of `kind` at (x_t = x, t); t: scalar, [B], or [B, 2] times."""
        t = jnp.asarray(t, jnp.float32)
        if t.ndim < 2:
            t = jnp.broadcast_to(t, x.shape[:1])
        if isinstance(self.prediction, Preconditioning):
            return self.prediction.wrap(self.model_fn, self.process)(x, t)
        return self.model_fn(x, t)

    def x0_eps(self, x: Array, t: Array) -> tuple[Array, Array]:
        """(x_0, eps) predicted at (x_t = x, t) [B, ...] each, from one network evaluation."""
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        return predictions.to_x0_eps(self.kind, self.output(x, t), x, t, self.process)

    def predict(self, x: Array, t: Array, kind: str) -> Array:
        """The prediction of `kind` at (x_t = x, t); x: [B, ...], t: scalar or [B]."""
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        return predictions.convert(self.output(x, t), self.kind, kind, x, t, self.process)

    def variance(self, x: Array, t: Array) -> Array:
        """The learned-variance interpolation v in [-1, 1] at (x_t = x, t).

        Raises:
          ValueError: if the model has no learned variance.
        """
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        if self.variance_fn is not None:
            return self.variance_fn(x, t)
        if isinstance(self.prediction, LearnedVariance):
            return self.prediction.split(self.model_fn(x, t))[1]
        raise ValueError("this Denoiser has no learned variance (preconditioning.LearnedVariance)")

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


def from_network(
    apply_fn: Callable[..., Array],
    params: Any,
    prediction: str | Preconditioning,
    process: Process,
    cond: Array | None = None,
    key: Array | None = None,
) -> Denoiser:
    """The network `apply_fn(params, x, t, cond=None, key=None)` as a Denoiser.

    `params` (the network's own tree), `cond` ([B] labels) and `key` (the dropout key: training
    mode; None: evaluation) are leaves of the result; `apply_fn` is static.
    """
    return Denoiser(Partial(_positional(apply_fn), params, cond, key), prediction, process)


@functools.cache
def _positional(apply_fn: Callable[..., Array]) -> Callable[..., Array]:
    """apply_fn with its leaves first, so a Partial can bind them; cached, so one apply_fn gives
    one static function and a jitted user of the Denoiser compiles once."""

    def call(params, cond, key, x, t):
        return apply_fn(params, x, t, cond, key)

    return call


def _clipped_x0(inner: Denoiser, lo: Array, hi: Array, x: Array, t: Array) -> Array:
    return jnp.clip(inner.x0(x, t), lo, hi)


def variance_of(inner: Denoiser, x: Array, t: Array) -> Array:
    """`inner`'s learned variance: the variance_fn of wrappers that keep it (a Partial of this)."""
    return inner.variance(x, t)


def clip_x0(denoiser: Denoiser, lo: float = -1.0, hi: float = 1.0) -> Denoiser:
    """The Denoiser whose x0 prediction is `clip(denoiser.x0(x, t), lo, hi)`.

    Every other kind follows from the clipped x0 through the conversions of `predictions`; a
    learned variance is kept as it is.

    Raises:
      ValueError: if lo >= hi.
    """
    if not lo < hi:
        raise ValueError(f"clip_x0 needs lo < hi, got {lo=}, {hi=}")
    variance = Partial(variance_of, denoiser) if denoiser.has_variance else None
    return Denoiser(
        Partial(_clipped_x0, denoiser, lo, hi), "x0", denoiser.process, variance_fn=variance
    )
