"""Diffusion Transformer (DiT) with adaLN-Zero conditioning, and its presets S/B/L/XL x 2/4/8.

Seed 000, "DiT": patchify the (latent) image into p x p patches, a transformer over the
tokens, conditioning on t and the label y by adaptive LayerNorm whose gate alpha is
initialised to zero ("each residual block is initialised into identity block"), and a linear
decoder to p x p x 2C per token (noise and covariance). Seed 004, "Diffusion Transformer".
Details from Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", section 3.2:

  tokens  z = Patchify(x) + PE,  x: [B, I, I, C] -> z: [B, (I/p)^2, D], fixed 2-D sin-cos PE
  c       = MLP(e(t)) + Embed(y)                      (row num_classes: the null label)
  block   (b1, g1, a1, b2, g2, a2) = Dense_0(SiLU(c))  (zero-initialised)
          z <- z + a1 * Attn(LN(z) (1 + g1) + b1)
          z <- z + a2 * MLP(LN(z) (1 + g2) + b2)       (LN without affine, MLP ratio 4, GELU)
  final   (b, g) = Dense_0(SiLU(c));  out = Dense_0(LN(z) (1 + g) + b)  -> unpatchify

so at initialisation every block is the identity and the output is exactly zero. Presets
(table 1): S = (12 layers, width 384, 6 heads), B = (12, 768, 12), L = (24, 1024, 16),
XL = (28, 1152, 16), each with patch size 2, 4 or 8.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffjax.models.layers import (
    Dtype,
    LabelEmbedding,
    SelfAttention,
    TimeEmbedding,
    broadcast_times,
    check_cond,
    dense,
    logical,
)

_xavier = nn.initializers.xavier_uniform()
# PyTorch's xavier_uniform on the conv weight viewed as [D, p p C] (DiT's patch embedding).
_patch_init = nn.initializers.variance_scaling(
    1.0, "fan_avg", "uniform", in_axis=(0, 1, 2), out_axis=-1
)
_zeros = nn.initializers.zeros


def sincos_position_embedding(dim: int, grid: int) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding of a grid x grid token layout (MAE / DiT).

    Half of the width encodes the row, half the column, each with the 1-D embedding
    [sin(pos w_k), cos(pos w_k)], w_k = 10000^(-k / (dim / 4)), k = 0 .. dim/4 - 1.

    Returns:
      [grid * grid, dim] float32, row-major over the grid.
    """
    if dim % 4:
        raise ValueError(f"position embedding width {dim=} must divide by 4")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))  # [D/4]
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")

    def one_d(pos):
        args = pos.reshape(-1)[:, None] * omega[None, :]  # [N, D/4]
        return np.concatenate([np.sin(args), np.cos(args)], axis=1)

    return np.concatenate([one_d(rows), one_d(cols)], axis=1).astype(np.float32)


def _modulate(x: Array, shift: Array, scale: Array) -> Array:
    """LN(x) (1 + scale) + shift with x: [B, N, D], shift, scale: [B, D]."""
    x = nn.LayerNorm(epsilon=1e-6, use_scale=False, use_bias=False, dtype=x.dtype)(x)
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    """One adaLN-Zero transformer block (module docstring); identity at initialisation."""

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: Array, c: Array) -> Array:
        """z: [B, N, D], c: [B, D] -> [B, N, D]."""
        d = z.shape[-1]
        dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        ada = dense(6 * d, "embed", "mlp", kernel_init=_zeros, name="adaLN", **dt)
        mod = ada(nn.silu(c))  # [B, 6D]
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
        h = SelfAttention(
            self.num_heads, out_kernel_init=_xavier, qkv_kernel_init=_xavier, name="attn", **dt
        )(_modulate(z, shift1, scale1))
        z = z + gate1[:, None, :] * h
        width = int(self.mlp_ratio * d)
        mlp_in = dense(width, "embed", "mlp", kernel_init=_xavier, name="mlp_in", **dt)
        h = mlp_in(_modulate(z, shift2, scale2))
        h = dense(d, "mlp", "embed", kernel_init=_xavier, name="mlp_out", **dt)(
            nn.gelu(h, approximate=True)
        )
        return z + gate2[:, None, :] * h


class DiT(nn.Module):
    """Diffusion Transformer: [B, I, I, C] -> [B, I, I, out] (module docstring).

    Attributes:
      patch_size: p; the input size must divide by it.
      hidden_size: token width D.
      depth: number of blocks.
      num_heads: attention heads.
      mlp_ratio: MLP hidden width / D.
      num_classes: classes for class conditioning (None: unconditional); row num_classes of the
        label table is the null label of classifier-free guidance.
      learn_sigma: output twice the channels (noise and the variance interpolation, iDDPM).
      out_channels: output channels before doubling; None means the input's.
      input_size: expected I (optional; checked against the input).
      in_channels: expected C (optional; checked against the input).
      remat: rematerialise every block in the backward pass.
      dtype: compute dtype; outputs are float32.
      param_dtype: parameter dtype.
    """

    patch_size: int = 2
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int | None = None
    learn_sigma: bool = False
    out_channels: int | None = None
    input_size: int | None = None
    in_channels: int | None = None
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, t: Array, cond: Array | None = None, train: bool = False) -> Array:
        """x: [B, I, I, C], t: [B] or [B, K], cond: [B] labels or None -> [B, I, I, out] float32."""
        del train  # DiT uses no dropout (the label dropout of CFG belongs to the method)
        b, hgt, wid, ch = x.shape
        p, d = self.patch_size, self.hidden_size
        if hgt % p or wid % p:
            raise ValueError(f"input {x.shape=} must have H, W divisible by {p=}")
        if hgt != wid:
            raise ValueError(f"DiT takes square inputs, got {x.shape=}")
        if self.input_size not in (None, hgt) or self.in_channels not in (None, ch):
            raise ValueError(f"{x.shape=} but {self.input_size=}, {self.in_channels=}")
        check_cond(cond, self.num_classes)
        dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        grid = hgt // p

        patch_init = logical(_patch_init, None, None, None, "embed")
        z = nn.Conv(d, (p, p), strides=(p, p), kernel_init=patch_init, name="patch", **dt)(
            x.astype(self.dtype)
        ).reshape(b, grid * grid, d)  # [B, N, D]
        z = z + jnp.asarray(sincos_position_embedding(d, grid), self.dtype)[None]
        c = TimeEmbedding(
            d, 256, kernel_init=nn.initializers.normal(0.02), name="time_embedding", **dt
        )(broadcast_times(t, b))
        if self.num_classes is not None:
            c = c + LabelEmbedding(self.num_classes, d, **dt)(cond, b)

        block = nn.remat(DiTBlock) if self.remat else DiTBlock
        for i in range(self.depth):
            z = block(self.num_heads, self.mlp_ratio, name=f"block_{i}", **dt)(z, c)

        out = (ch if self.out_channels is None else self.out_channels) * (
            2 if self.learn_sigma else 1
        )
        shift, scale = jnp.split(
            dense(2 * d, "embed", "mlp", kernel_init=_zeros, name="final_adaLN", **dt)(nn.silu(c)),
            2,
            -1,
        )
        z = dense(p * p * out, "embed", None, kernel_init=_zeros, name="final", **dt)(
            _modulate(z, shift, scale)
        )  # [B, N, p p out]
        z = z.reshape(b, grid, grid, p, p, out).transpose(0, 1, 3, 2, 4, 5)
        return z.reshape(b, hgt, wid, out).astype(jnp.float32)


_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}

PRESETS = {
    f"DiT-{size}/{p}": functools.partial(
        DiT, patch_size=p, depth=depth, hidden_size=width, num_heads=heads
    )
    for size, (depth, width, heads) in _SIZES.items()
    for p in (2, 4, 8)
}
# A DiT for 8x8x1 digits: 16 tokens of 2x2 patches, width 64, 6 blocks.
PRESETS["dit_digits"] = functools.partial(DiT, patch_size=2, depth=6, hidden_size=64, num_heads=4)
PRESETS["dit_tiny"] = functools.partial(DiT, patch_size=2, depth=2, hidden_size=32, num_heads=2)
