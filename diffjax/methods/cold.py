"""Cold diffusion (Bansal et al. 2022): a restoration network trained to invert a degradation.

Seed 000, "Cold Diffusion": for a degradation D(x0, t) (`diffjax.degradations`: blur,
pixelate, mask, or Gaussian noise), the restoration network R(x_t, t) predicts x0 and is trained
with

  min_R E_{x0, t ~ U(0, 1], eps} || R(D(x0, t, eps), t) - x0 ||_1

(the paper's L1 norm; "l2" gives the squared error), then samples with Algorithm 1 (naive) or 2
(TACoS) of `diffjax.samplers.cold`. The network is an ordinary x0-predicting denoiser, so the
same trainer, checkpoints and evaluation run it.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from diffjax import degradations, denoisers
from diffjax.degradations import Degradation
from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective
from diffjax.methods.base import Recipe
from diffjax.processes import Process

NORMS = ("l1", "l2")


@dataclasses.dataclass(frozen=True)
class RestorationLoss(Objective):
    """E_{x0, t, eps} || R(D(x0, t, eps), t) - x0 ||, averaged over pixels.

    Attributes:
      degradation: D.
      norm: "l1" (mean absolute error, the paper's) or "l2" (mean squared error).

    The loss reads batch = {"x": [B, H, W, C], "label": optional [B]} and params["model"]; its
    key is split for t ~ U(0, 1], the noise of D and dropout. Metrics: {"loss"}.

    Raises:
      ValueError: for an unknown norm.
    """

    degradation: Degradation
    norm: str = "l1"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; valid norms: {', '.join(NORMS)}")

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        distance = jnp.abs if self.norm == "l1" else jnp.square

        def loss(params, batch, key):
            x0 = batch["x"]
            t_key, noise_key, dropout_key = jax.random.split(key, 3)
            t = 1.0 - jax.random.uniform(t_key, x0.shape[:1])  # U(0, 1]: t = 0 is no task
            x_t = self.degradation(x0, t, jax.random.normal(noise_key, x0.shape))
            restorer = denoisers.from_network(
                apply_fn, params["model"], "x0", None, batch.get("label"), dropout_key
            )
            value = jnp.mean(vocabulary.mean_per_example(distance(restorer.output(x_t, t) - x0)))
            return value, {"loss": value}

        return loss


def cold_diffusion(
    process: Process,
    degradation: str = "blur",
    degradation_kwargs: Mapping[str, Any] | None = None,
    norm: str = "l1",
    sampler_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The cold-diffusion recipe.

    Args:
      process: the Gaussian process of the "noise" degradation; for the others only its
        prior N(0, prior_std^2 I) is used, as the noise the generative start is drawn from.
      degradation: a name in `degradations.names()`.
      degradation_kwargs: its options (`sigma_max` of blur, `noise` on top).
      norm: "l1" (the paper's) or "l2".
      sampler_options: options of the "cold" sampler besides the degradation (rule,
        from_noise, channel_std, perturbation); generation from noise by default.

    Raises:
      ValueError: for unknown names or invalid options (checked here, not at the first step).
    """
    d = degradations.get(degradation, process=process, **(degradation_kwargs or {}))
    options = {"from_noise": True, **(sampler_options or {}), "degradation": d}
    return Recipe(
        name="cold_diffusion",
        process=process,
        prediction="x0",
        objective=RestorationLoss(d, norm),
        sampler="cold",
        sampler_options=options,
    )
