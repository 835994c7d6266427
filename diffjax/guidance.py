"""Guidance: Denoiser -> Denoiser maps that steer a class-conditional model towards its labels.

Classifier-free guidance (Ho & Salimans 2022; seed 000, "Classifier-Free Guidance"): one network
trained with and without labels (the null class, `losses.conditioning`) predicts both D(x, t | y)
and D(x, t | null); the guided prediction is

  D_w = (1 + w) D(x, t | y) - w D(x, t | null),

so w = 0 is the conditional model and w > 0 sharpens it (the convention of Ho & Salimans; the
other common one, uncond + s (cond - uncond), is s = 1 + w). Every prediction kind is an affine
function of any other at fixed (x_t, t) whose coefficients do not depend on the model, and the
weights (1 + w) and -w sum to one, so guiding eps, x0, v, the score or the velocity is the same
map: it is applied to the preconditioned output of whatever kind the model predicts, computed for
the conditional and the null labels in ONE network call on the concatenated batch. A guidance
interval (Kynkaanniemi et al. 2024) applies w only for t in [t_lo, t_hi]; `scale` may be an array
[B], so a scale sweep is one batch.

Classifier guidance (Dhariwal & Nichol 2021; seed 000, "Classifier Guidance"): with a noisy
classifier p_phi(y | x_t, t), the conditional score is score(x_t) + grad_x log p(y | x_t) (Bayes),
so with scale s

  eps_s = eps - s sigma_t grad_x log p_phi(y | x_t, t),

the gradient by `jax.grad` of the classifier's log-softmax inside the sampler's loop.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.tree_util import Partial

from diffjax import denoisers
from diffjax.denoisers import Denoiser
from diffjax.preconditioning import LearnedVariance, Preconditioning
from diffjax.processes import Process, expand


def _checked(labels: Array, scale: float | Array) -> tuple[Array, Array]:
    """(labels, scale) as arrays, validated: int labels [B], scales >= 0 (when concrete)."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integer classes [B], got {labels.dtype}{labels.shape}")
    # Python or NumPy scales are checked here; arrays (traced or not) are the caller's to check.
    if isinstance(scale, (int, float, np.ndarray)) and np.any(np.asarray(scale) < 0):
        raise ValueError(f"guidance scale must be >= 0 (0: no guidance), got {scale}")
    return labels, jnp.asarray(scale, jnp.float32)


def _check_interval(t_interval: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in t_interval)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"guidance t_interval={t_interval} must satisfy 0 <= lo <= hi <= 1")
    return lo, hi


@functools.cache
def _cfg_model(apply_fn: Callable[..., Array], prediction: str | Preconditioning):
    """The guided model_fn of one network and prediction (cached: one static function each)."""

    def call(params, labels, null_label, scale, t_lo, t_hi, process, x, t):
        b = x.shape[0]
        both = denoisers.from_network(
            apply_fn,
            params,
            prediction,
            process,
            jnp.concatenate([labels, jnp.full_like(labels, null_label)]),
        )
        out = both.output(jnp.concatenate([x, x]), jnp.concatenate([t, t]))  # one call
        cond, uncond = out[:b], out[b:]
        time = t if t.ndim == 1 else t[:, 0]  # MeanFlow's times (t, t - r): t
        w = jnp.where((time >= t_lo) & (time <= t_hi), scale, 0.0)
        return cond + expand(w, cond) * (cond - uncond)

    return call


def classifier_free(
    apply_fn: Callable[..., Array],
    params: Any,
    prediction: str | Preconditioning,
    process: Process,
    labels: Array,
    null_label: int,
    scale: float | Array,
    t_interval: tuple[float, float] = (0.0, 1.0),
) -> Denoiser:
    """The classifier-free guided Denoiser (1 + w) D(. | labels) - w D(. | null) of a network.

    Args:
      apply_fn: the network `apply_fn(params, x, t, cond=None, key=None)`, trained with label
        dropout to the null class.
      params: its params (a leaf of the result).
      prediction: what it predicts (a kind or a Preconditioning), as in `Recipe.prediction`.
      process: the forward process.
      labels: int [B], the classes to generate.
      null_label: the null class index (the model's `num_classes`).
      scale: w >= 0, a scalar or [B] (one scale per sample).
      t_interval: (t_lo, t_hi), guide only there; elsewhere the conditional model.

    Raises:
      ValueError: for a negative scale, a bad interval or labels that are not [B] integers.
    """
    lo, hi = _check_interval(t_interval)
    labels, scale = _checked(labels, scale)
    model_fn = Partial(
        _cfg_model(apply_fn, prediction),
        params,
        labels,
        jnp.int32(null_label),
        scale,
        lo,
        hi,
        process,
    )
    kind = prediction.kind if isinstance(prediction, Preconditioning) else prediction
    variance = None
    if isinstance(prediction, LearnedVariance):  # the conditional model's variance, unguided
        cond_model = denoisers.from_network(apply_fn, params, prediction, process, labels)
        variance = Partial(denoisers.variance_of, cond_model)
    return Denoiser(model_fn, kind, process, variance_fn=variance)


def _classifier_guided(denoiser, classifier_fn, labels, scale, x, t):
    def log_p(y):  # sum_b log p(labels_b | y_b, t_b): its gradient is per example
        logp = jax.nn.log_softmax(classifier_fn(y, t), axis=-1)
        return jnp.sum(jnp.take_along_axis(logp, labels[:, None], axis=-1))

    grad = jax.grad(log_p)(x)
    sigma = expand(denoiser.process.sigma(t), x)
    return denoiser.eps(x, t) - expand(scale, x) * sigma * grad


def classifier(
    denoiser: Denoiser,
    classifier_fn: Callable[[Array, Array], Array],
    labels: Array,
    scale: float | Array = 1.0,
) -> Denoiser:
    """The classifier-guided Denoiser: eps - s sigma grad_x log p(labels | x_t, t).

    Args:
      denoiser: the (unconditional or conditional) model.
      classifier_fn: `(x_t [B, ...], t [B]) -> logits [B, K]`; pass a
        `jax.tree_util.Partial(apply_fn, params)` so the params are leaves.
      labels: int [B].
      scale: s >= 0, a scalar or [B]; s = 1 with the exact p(y | x_t) gives the exact
        conditional model.

    Raises:
      ValueError: for labels that are not [B] integers or a negative scale.
    """
    labels, scale = _checked(labels, scale)
    if not isinstance(classifier_fn, Partial):
        classifier_fn = Partial(classifier_fn)
    model_fn = Partial(_classifier_guided, denoiser, classifier_fn, labels, scale)
    variance = Partial(denoisers.variance_of, denoiser) if denoiser.has_variance else None
    return Denoiser(model_fn, "eps", denoiser.process, variance_fn=variance)
