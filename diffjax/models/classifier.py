"""Noisy classifier p_phi(y | x_t, t) for classifier guidance: the UNet's encoder half + a head.

Seed 000, "Classifier guidance": sampling adds s * grad_x log p_phi(y | x_t, t) to the score,
so the classifier is trained on noisy x_t at every t. Architecture of Dhariwal & Nichol 2021,
section 4 ("the downsampling trunk of the UNet model with an attention pool at the 8x8 layer"):
here the UNet down path and middle block (diffjax.models.unet) followed by
GroupNorm, SiLU, global average pooling and a dense layer to the logits.
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from diffjax.models.unet import UNetBackbone, _group_norm


class NoisyClassifier(UNetBackbone):
    """Time-conditioned classifier: x_t [B, H, W, C], t [B] (or [B, T]) -> logits [B, num_outputs].

    Attributes (beyond UNetBackbone's, whose num_classes must stay None):
      num_outputs: number of classes to predict.
    """

    num_outputs: int = 10

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Array | None = None, train: bool = False) -> Array:
        """Args: x [B, H, W, C]; t [B] or [B, T]; cond None. Returns float32 logits [B, K]."""
        self._check_size(x)
        emb = self._embed(t, cond, x.shape[0])
        h, _ = self._down(x.astype(self.dtype), emb, train)
        h = self._middle(h, emb, train)
        h = nn.silu(_group_norm(h.shape[-1], self.num_groups, **self._dt())(h))
        logits = nn.Dense(self.num_outputs, name="head", **self._dt())(jnp.mean(h, axis=(1, 2)))
        return logits.astype(jnp.float32)
