"""Class labels in training: label dropout for classifier-free guidance, shared by every objective.

Classifier-free guidance (Ho & Salimans 2022) trains one network as both the conditional model
and the unconditional one by replacing each training label with the null class with
probability p_uncond. A class-conditional network built with `num_classes = N` (see
`diffjax.models.layers.LabelEmbedding`) reads labels in [0, N], row N being the null class.

The dropout lives here, once: `with_label_dropout(loss, dropout)` wraps any
`loss(params, batch, key)` so the objective sees `batch["label"]` already dropped, with a key
split off the loss key. An objective that needs to know which labels were dropped (MeanFlow's
guided target) compares them with the null class.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.losses.base import LossFn


@dataclasses.dataclass(frozen=True)
class LabelDropout:
    """Replaces each label by the null class `num_classes` with probability `p_uncond`.

    Attributes:
      num_classes: number of real classes N (>= 1); the null class is N.
      p_uncond: probability in [0, 1) that a label becomes the null class.
    """

    num_classes: int
    p_uncond: float = 0.0

    def __post_init__(self):
        if self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes} must be >= 1")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond={self.p_uncond} must lie in [0, 1)")

    @property
    def null_class(self) -> int:
        """The label of the unconditional model: `num_classes`."""
        return self.num_classes

    def apply(self, key: Array, labels: Array) -> Array:
        """labels: int [B] in [0, N) -> [B], each replaced by N with probability p_uncond."""
        if self.p_uncond == 0.0:
            return labels
        dropped = jax.random.uniform(key, labels.shape) < self.p_uncond  # [B]
        return jnp.where(dropped, jnp.asarray(self.null_class, labels.dtype), labels)


def with_label_dropout(loss_fn: LossFn, dropout: LabelDropout | None) -> LossFn:
    """`loss_fn` with `batch["label"]` passed through `dropout` first.

    The dropout key is split off the loss key; the objective receives the other half. `None`
    (an unconditional model) returns `loss_fn` itself, so its keys and values are unchanged.

    Args:
      loss_fn: `loss(params, batch, key) -> (scalar, metrics)` reading `batch.get("label")`.
      dropout: the label dropout, or None.

    Returns:
      `loss(params, batch, key)`; it raises a KeyError if a batch carries no "label".
    """
    if dropout is None:
        return loss_fn

    def loss(params, batch, key):
        key, drop_key = jax.random.split(key)
        batch = {**batch, "label": dropout.apply(drop_key, batch["label"])}
        return loss_fn(params, batch, key)

    return loss
