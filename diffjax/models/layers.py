"""Building blocks shared by the networks: time embeddings, class embedding, attention.

Time conditioning (seed 004, "Architecture": "t encoding: sinusoidal position embeddings or
random Fourier features"):

  sinusoidal  e(t) = [sin(s t w_k), cos(s t w_k)],  w_k = P^(-k / (d/2)),  k = 0 .. d/2 - 1
              (Vaswani et al. 2017; Ho et al. 2020 with s = 1000, so t in [0, 1] covers the
              1000 DDPM steps; any real input works, e.g. EDM's c_noise = log(sigma) / 4).
  fourier     e(t) = [sin(2 pi t W), cos(2 pi t W)],  W ~ N(0, s^2 I) fixed
              (Tancik et al. 2020; Song et al. 2021, NCSN++ with s = 16 on log sigma).

Several times (seed 004, "Mean Flow": the average velocity u(z_t, r, t) takes two times; the
MeanFlow paper (Geng et al. 2025) feeds (t, t - r) through separate embedders and adds them):
t of shape [B, K] gives column k its own MLP of the same kind and width, and the K outputs are
summed; t of shape [B] is the single-time case with an unchanged parameter tree.

Attention (seed 004, "Conditional Diffusion": softmax(Q K^T / sqrt(d)) V) is multi-head
self-attention over tokens through `jax.nn.dot_product_attention`, which dispatches to the
fused kernel of the backend (cuDNN flash attention on GPU with `implementation="cudnn"`).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

Dtype = Any
_lecun = nn.initializers.lecun_normal()


def logical(init: nn.initializers.Initializer, *names: str | None) -> nn.initializers.Initializer:
    """`init` whose parameter carries the logical names of its axes (None: never split), which
    `diffjax.train.sharding.LOGICAL_AXIS_RULES` maps to mesh axes. `nn.meta.unbox` of the
    initialised tree gives the plain arrays the rest of the library sees."""
    return nn.with_logical_partitioning(init, names)


def dense(features: int, *names: str | None, kernel_init=_lecun, **kwargs) -> nn.Dense:
    """nn.Dense whose kernel [in, out] has the logical axis names `names`."""
    return nn.Dense(features, kernel_init=logical(kernel_init, *names), **kwargs)


# Fixed seed of the Gaussian Fourier frequencies: constants of the architecture, not params,
# so they take no optimizer state and no weight decay and are the same in every run.
_FOURIER_SEED = 0


def sinusoidal_embedding(
    t: Array, dim: int, scale: float = 1000.0, max_period: float = 10000.0
) -> Array:
    """Transformer position embedding of a real time, e(t) = [sin(s t w), cos(s t w)].

    Args:
      t: [B] times (or any real noise conditioning).
      dim: even embedding width d.
      scale: s, multiplies t first (1000 maps t in [0, 1] onto DDPM's step indices).
      max_period: P, the longest period; w_k = P^(-k / (d/2)) for k = 0 .. d/2 - 1.

    Returns:
      [B, dim] float32.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)  # [d/2]
    args = scale * t.astype(jnp.float32)[:, None] * freqs[None, :]  # [B, d/2]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def fourier_embedding(t: Array, dim: int, scale: float = 16.0) -> Array:
    """Gaussian Fourier features e(t) = [sin(2 pi t W), cos(2 pi t W)], W ~ N(0, s^2) fixed.

    Args:
      t: [B] times (NCSN++ feeds log sigma).
      dim: even embedding width d.
      scale: s, the standard deviation of the frequencies W: [d/2].

    Returns:
      [B, dim] float32.
    """
    w = scale * jax.random.normal(jax.random.key(_FOURIER_SEED), (dim // 2,))  # [d/2]
    args = 2.0 * jnp.pi * t.astype(jnp.float32)[:, None] * w[None, :]  # [B, d/2]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


EMBEDDINGS = {"sinusoidal": sinusoidal_embedding, "fourier": fourier_embedding}


def broadcast_times(t: Array, batch: int) -> Array:
    """One time per example: a scalar or [B] -> [B]; [B, K] (K times per example) unchanged.

    Raises:
      ValueError: if t has more than two axes.
    """
    t = jnp.asarray(t)
    if t.ndim > 2:
        raise ValueError(f"times must be a scalar, [B] or [B, K], got {t.shape=}")
    return jnp.broadcast_to(t, (batch, t.shape[1]) if t.ndim == 2 else (batch,))


class TimeEmbedding(nn.Module):
    """t -> Dense(SiLU(Dense(e(t)))): the conditioning vector of a UNet or DiT.

    With t: [B, K] (several times per example, e.g. MeanFlow's (t, t - r)) the result is
    sum_k Dense_k(SiLU(Dense_k(e(t_k)))): column 0 uses this module's own layers "dense_0",
    "dense_1" (so [B] and [B, 1] share one parameter tree) and column k >= 1 a TimeEmbedding
    submodule "column_k" with the same fields.

    Attributes:
      features: output width (4 x base channels in the UNets, the hidden width in DiT).
      freq_dim: width of the fixed embedding e(t) fed to the MLP.
      kind: "sinusoidal" or "fourier".
      fourier_scale: standard deviation of the Fourier frequencies (kind "fourier").
      kernel_init: init of both dense layers.
    """

    features: int
    freq_dim: int
    kind: str = "sinusoidal"
    fourier_scale: float = 16.0
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t: Array) -> Array:
        """t: [B] or [B, K] -> [B, features]."""
        if t.ndim not in (1, 2):
            raise ValueError(f"TimeEmbedding takes t of shape [B] or [B, K], got {t.shape=}")
        columns = t[:, None] if t.ndim == 1 else t  # [B, K]
        t0 = columns[:, 0]  # [B]
        if self.kind == "fourier":
            e = fourier_embedding(t0, self.freq_dim, self.fourier_scale)
        elif self.kind == "sinusoidal":
            e = sinusoidal_embedding(t0, self.freq_dim)
        else:
            raise ValueError(f"time embedding {self.kind=} must be one of {sorted(EMBEDDINGS)}")
        kw = dict(kernel_init=self.kernel_init, dtype=self.dtype, param_dtype=self.param_dtype)
        h = dense(self.features, None, "embed", name="dense_0", **kw)(e)
        out = dense(self.features, "embed", None, name="dense_1", **kw)(nn.silu(h))  # [B, features]
        for k in range(1, columns.shape[1]):
            out = out + self.clone(name=f"column_{k}", parent=self)(columns[:, k])
        return out


class LabelEmbedding(nn.Module):
    """Class labels -> [B, features], with row `num_classes` the null class.

    Classifier-free guidance drops labels to the null index `num_classes`; `cond=None` means
    unconditional, i.e. every label is the null class.

    Attributes:
      num_classes: number of real classes; the table has num_classes + 1 rows.
      features: embedding width.
      embedding_init: init of the table.
    """

    num_classes: int
    features: int
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, cond: Array | None, batch: int) -> Array:
        """cond: [B] int labels in [0, num_classes] or None -> [B, features]."""
        labels = jnp.full((batch,), self.num_classes, jnp.int32) if cond is None else cond
        table = nn.Embed(
            self.num_classes + 1,
            self.features,
            embedding_init=logical(self.embedding_init, "classes", "embed"),
            param_dtype=self.param_dtype,
            name="table",
        )
        return table(labels.astype(jnp.int32)).astype(self.dtype)


def check_cond(cond: Array | None, num_classes: int | None) -> None:
    """Raises a ValueError if labels are given to an unconditional model."""
    if num_classes is None and cond is not None:
        raise ValueError("class labels given to a model built with num_classes=None")


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens, softmax(Q K^T / sqrt(d_head)) V.

    Attributes:
      num_heads: number of heads; the token width must divide by it.
      out_kernel_init: init of the output projection (zeros makes the block start as 0).
      qkv_kernel_init: init of the fused Q, K, V projection.
    """

    num_heads: int
    out_kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    qkv_kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """x: [B, L, D] -> [B, L, D]."""
        b, l, d = x.shape
        if d % self.num_heads:
            raise ValueError(f"token width {d} must divide by num_heads={self.num_heads}")
        qkv = dense(
            3 * d,
            "embed",
            "mlp",
            kernel_init=self.qkv_kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="qkv",
        )(x)  # [B, L, 3D]
        q, k, v = jnp.split(qkv.reshape(b, l, 3, self.num_heads, d // self.num_heads), 3, axis=2)
        h = jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])  # [B, L, H, D/H]
        return dense(
            d,
            "heads",
            "embed",
            kernel_init=self.out_kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="out",
        )(h.reshape(b, l, d))
