"""A residual MLP for vectors (2-D toys): eps_theta(x_t, t, cond) with x: [B, D].

Seed 004, "Architecture" (time encoding by sinusoidal embeddings): the time embedding (and the
optional class embedding) is added inside every pre-norm residual block,
  h <- h + Dense(dropout(SiLU(Dense(SiLU(LN(h))) + Dense(emb)))),
and the last layer is initialised to zero so the network starts at output 0.
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from diffjax.models.layers import (
    Dtype,
    LabelEmbedding,
    TimeEmbedding,
    broadcast_times,
    check_cond,
    dense,
)


class MLP(nn.Module):
    """Residual MLP on [B, D] conditioned on t [B] (or [B, K]) and optional labels [B].

    Attributes:
      features: hidden width.
      num_blocks: residual blocks.
      dropout: dropout rate inside each block (the 'dropout' rng when train=True).
      time_embedding: "sinusoidal" or "fourier".
      num_classes: classes of a conditional model (row num_classes is the null class).
      out_channels: output width; None means D.
    """

    features: int = 256
    num_blocks: int = 3
    dropout: float = 0.0
    time_embedding: str = "sinusoidal"
    num_classes: int | None = None
    out_channels: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Array | None = None, train: bool = False) -> Array:
        """x: [B, D], t: [B] or [B, K], cond: [B] or None -> [B, out_channels] float32."""
        if x.ndim != 2:
            raise ValueError(f"MLP takes vectors [B, D], got {x.shape=}")
        check_cond(cond, self.num_classes)
        b = x.shape[0]
        dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        emb = TimeEmbedding(self.features, self.features, kind=self.time_embedding, **dt)(
            broadcast_times(t, b)
        )
        if self.num_classes is not None:
            emb = emb + LabelEmbedding(self.num_classes, self.features, **dt)(cond, b)
        h = dense(self.features, None, "embed", **dt)(x.astype(self.dtype))
        for _ in range(self.num_blocks):
            r = dense(self.features, "embed", "mlp", **dt)(nn.silu(nn.LayerNorm(**dt)(h)))
            r = nn.silu(r + dense(self.features, "embed", "mlp", **dt)(nn.silu(emb)))
            r = nn.Dropout(self.dropout, deterministic=not train)(r)
            h = h + dense(self.features, "mlp", "embed", **dt)(r)
        out = x.shape[-1] if self.out_channels is None else self.out_channels
        zeros = nn.initializers.zeros
        h = dense(out, "embed", None, kernel_init=zeros, **dt)(nn.silu(nn.LayerNorm(**dt)(h)))
        return h.astype(jnp.float32)
