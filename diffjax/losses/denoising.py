"""Denoising regression: E_t E_eps [w(t) ||eps_hat(x_t, t) - eps||^2] in any prediction space.

The DDPM L_simple (seed 000, "DDPM"; seed 001, "three equivalent parameterisations") with the
regression done in eps, x0, v, score or velocity space, a weighting w(t) and a time
distribution from `losses.vocabulary`. NCSN (seed 000, "NCSN", lambda(sigma) ∝ sigma^2),
score-SDE DSM (seed 000, "SDE Models"; seed 004, denoising score matching) and EDM (Karras et al.
2022) are instances.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import denoisers, predictions
from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective
from diffjax.preconditioning import Preconditioning
from diffjax.processes import DiscreteProcess, Process


def snap_time(t: Array, process: Process, t_min: float, num_levels: int | None) -> Array:
    """Places continuous draws t in [0, 1] on the times the objective trains on.

    A DiscreteProcess trains on its grid t = i / T, i = ceil(t T) in {1..T}; `num_levels` = L
    gives the grid t = k / (L - 1), k = floor(t L) (NCSN's noise levels sigma_1..sigma_L);
    otherwise t is clipped to [t_min, 1].
    """
    if isinstance(process, DiscreteProcess):
        n = process.num_steps
        return jnp.clip(jnp.ceil(t * n), 1.0, float(n)) / n
    if num_levels is not None:
        return jnp.minimum(jnp.floor(t * num_levels), num_levels - 1) / (num_levels - 1)
    return jnp.clip(t, t_min, 1.0)


def regression_error(
    out: Array,
    kind: str,
    target: str,
    x0: Array,
    eps: Array,
    x_t: Array,
    t: Array,
    process: Process,
) -> Array:
    """Per-example ||target_hat - target||^2 (d eps / d target)^2, averaged over dims: [B].

    With `out` a prediction of `kind`, this is the eps-space error computed in `target` space.
    """
    pred = predictions.convert(out, kind, target, x_t, t, process)
    true = predictions.from_x0_eps(target, x0, eps, x_t, t, process)
    to_eps = lambda o: predictions.to_x0_eps(target, o, x_t, t, process)[1]  # noqa: E731
    _, deps = jax.jvp(to_eps, (true,), (jnp.ones_like(true),))  # d eps / d target, elementwise
    return vocabulary.mean_per_example(jnp.square(deps * (pred - true)))


@dataclasses.dataclass(frozen=True)
class DenoisingLoss(Objective):
    """E_{x_0, t, eps} [w(t) ||eps_hat(x_t, t) - eps||^2], regressed in `target` space.

    Attributes:
      process: the forward process (a DiscreteProcess trains on t = i / T, i ~ U{1..T}).
      prediction: what the network outputs (a kind, or a Preconditioning such as EDM's).
      target: the space of the regression ("eps", "x0", "v", "score", "velocity").
      weighting: a name in `vocabulary.WEIGHTINGS` (eps-space weights); options in
        `weighting_kwargs`.
      time_distribution: a name in `vocabulary.TIME_DISTRIBUTIONS`; options in
        `time_distribution_kwargs`.
      t_min: smallest t of a continuous process (the score is unbounded at t = 0).
      num_levels: L > 1 trains on the grid t = k / (L - 1) only (NCSN's noise levels).

    The loss reads batch = {"x": [B, ...], "label": optional [B]} and params["model"]; its key
    is split for t, noise and dropout. Metrics: {"loss"}.

    Raises:
      ValueError: for unknown names or invalid options, on construction.
    """

    process: Process
    prediction: str | Preconditioning = "eps"
    target: str = "eps"
    weighting: str = "uniform"
    weighting_kwargs: Mapping[str, Any] | None = None
    time_distribution: str = "uniform"
    time_distribution_kwargs: Mapping[str, Any] | None = None
    t_min: float = 1e-5
    num_levels: int | None = None

    def __post_init__(self):
        if not isinstance(self.prediction, Preconditioning):
            predictions.check_kind(self.prediction)
        predictions.check_kind(self.target)
        # Built once here so that bad names fail on construction.
        object.__setattr__(
            self, "_weight", vocabulary.weighting(self.weighting, **(self.weighting_kwargs or {}))
        )
        object.__setattr__(
            self,
            "_times",
            vocabulary.time_distribution(
                self.time_distribution, **(self.time_distribution_kwargs or {})
            ),
        )
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {self.t_min=}")
        if self.num_levels is not None and self.num_levels < 2:
            raise ValueError(f"num_levels must be >= 2 (or None), got {self.num_levels=}")

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        process = self.process

        def loss(params, batch, key):
            x0 = batch["x"]
            t_key, noise_key, dropout_key = jax.random.split(key, 3)
            t = self._times.sample(t_key, x0.shape[0], process)
            t = snap_time(t, process, self.t_min, self.num_levels)
            x_t, eps = process.marginal_sample(noise_key, x0, t)
            model = denoisers.from_network(
                apply_fn, params["model"], self.prediction, process, batch.get("label"), dropout_key
            )
            err = regression_error(model.output(x_t, t), model.kind, self.target, x0, eps, x_t, t,
                                   process)  # fmt: skip
            value = jnp.mean(self._weight(process, t) * err)
            return value, {"loss": value}

        return loss
