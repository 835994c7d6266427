"""The noisy classifier's objective: cross-entropy of p_phi(y | x_t, t) on noisy data.

Seed 000, "Classifier Guidance" (Dhariwal & Nichol 2021): guidance needs grad_x log p(y | x_t, t)
at every t the sampler visits, so the classifier is trained on x_t ~ q(x_t | x_0) with t drawn
like the diffusion model's (same process, same time grid for a discrete process).
"""

import dataclasses

import jax
import jax.numpy as jnp

from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective
from diffjax.losses.denoising import snap_time
from diffjax.processes import Process


@dataclasses.dataclass(frozen=True)
class NoisyClassifierLoss(Objective):
    """E_{x_0, y, t, eps} [-log softmax(logits_phi(x_t, t))_y].

    Reads batch = {"x": [B, ...], "label": int [B]}; the network returns logits [B, K].
    Metrics: {"loss", "accuracy"}.

    Attributes:
      process: the diffusion model's forward process.
      time_distribution: a name in `vocabulary.TIME_DISTRIBUTIONS`.
      t_min: smallest t of a continuous process.
    """

    process: Process
    time_distribution: str = "uniform"
    t_min: float = 1e-5

    def __post_init__(self):
        object.__setattr__(self, "_times", vocabulary.time_distribution(self.time_distribution))
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {self.t_min=}")

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        def loss(params, batch, key):
            x0, labels = batch["x"], batch["label"]
            t_key, noise_key, dropout_key = jax.random.split(key, 3)
            t = self._times.sample(t_key, x0.shape[0], self.process)
            t = snap_time(t, self.process, self.t_min, None)
            x_t, _ = self.process.marginal_sample(noise_key, x0, t)
            logp = jax.nn.log_softmax(apply_fn(params["model"], x_t, t, None, dropout_key), -1)
            nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
            accuracy = jnp.mean(jnp.argmax(logp, -1) == labels)
            value = jnp.mean(nll)
            return value, {"loss": value, "accuracy": accuracy}

        return loss
