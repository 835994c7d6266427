"""The diffusion UNet of Ho et al. (2020), with the options of Song et al. (2021) and ADM.

Seed 004, "Architecture" (UNet eps_theta(x_t, t), sinusoidal or random Fourier t encoding) and
seed 000, "DDPM"; details from the papers:

- Ho et al. 2020, "Denoising Diffusion Probabilistic Models", appendix B: a PixelCNN++-style
  UNet, two residual blocks per resolution, GroupNorm, self-attention at 16 x 16, the
  sinusoidal time embedding added in every residual block, dropout; 35.7M params on CIFAR-10.
- Song et al. 2021, "Score-Based Generative Modeling through SDEs", appendix H (DDPM++ and
  NCSN++; details as in the released score_sde configs): BigGAN residual blocks for up/down
  sampling, skip connections rescaled by 1/sqrt 2, four residual blocks per resolution,
  attention once per up-path level; for NCSN++ also FIR [1, 3, 3, 1] resampling
  (diffjax.models.resample), a Gaussian Fourier embedding of log sigma, and progressive image
  pyramids ("input_skip" / "residual" on the way down, "output_skip" on the way up).
- Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", section 3 (ADM): multi-head attention
  with 64 channels per head at several resolutions, BigGAN up/down sampling, adaptive group
  normalisation GroupNorm(h) (1 + s) + b with (s, b) from the time and class embedding.

The residual block (Ho et al.; scale-shift form from ADM):
  h = conv(SiLU(GN(x)));  h = SiLU(GN(h + Dense(SiLU(emb))))   or   SiLU(GN(h)(1 + s) + b)
  out = skip(x) + conv_0(dropout(h))   (divided by sqrt 2 with skip_rescale)
with conv_0 initialised to zero, so every block starts as (a projection of) the identity.

Conditioning: `cond` is None, int labels [B] (row `num_classes` of the label table is the null
class of classifier-free guidance), or a mapping with optional keys "label" [B], "low_res"
[B, h, w, C'] (an image resized to the input's size and concatenated on channels, for cascaded
super-resolution) and "low_res_t" [B] (its augmentation noise level, embedded like t and added
to the conditioning vector; seed 000, "Cascaded Diffusion Models").
"""

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
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
from diffjax.models.resample import downsample_2d, upfirdn2d, upsample_2d

_zeros = nn.initializers.zeros
_lecun = nn.initializers.lecun_normal()


def _patch_conv(
    lhs: Array,
    rhs: Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs,
) -> Array:
    """`lax.conv_general_dilated` for nn.Conv, as one matmul over patches when the input
    [B, H, W, C] is smaller than the kernel [kh, kw, C, D] (H < kh or W < kw):

      out[b, y, x] = sum_{i, j, c} pad(lhs)[b, s y + i, s x + j, c] rhs[i, j, c]

    XLA:CPU's convolution is 7-12x slower on such inputs (a 3x3 conv of 2x2 maps: 9.0 ms
    against 0.76 ms for 64 x 2x2x128 -> 64 channels) and as fast or faster on larger ones,
    which keep the convolution. Other cases (dilation, groups) also keep it.
    """
    conv = functools.partial(
        jax.lax.conv_general_dilated,
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **kwargs,
    )
    if lhs.ndim != 4 or kwargs or feature_group_count != 1:
        return conv()
    nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    (b, h, w, c), (kh, kw, _, d) = lhs.shape, rhs.shape
    if dimension_numbers != nhwc or dilated or (h >= kh and w >= kw):
        return conv()
    sh, sw = window_strides
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads((h, w), (kh, kw), window_strides, padding)
    x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    patches = jnp.concatenate(
        [
            jax.lax.slice(
                x,
                (0, i, j, 0),
                (b, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1, c),
                (1, sh, sw, 1),
            )
            for i in range(kh)
            for j in range(kw)
        ],
        axis=-1,
    )  # [B, oh, ow, kh kw C]
    return jnp.dot(patches, rhs.reshape(kh * kw * c, d), precision=precision)


def _conv(*args, kernel_init=_lecun, **kwargs) -> nn.Conv:
    """nn.Conv of a 2-D kernel [kh, kw, in, out] named (None, None, conv_in, conv_out)."""
    kernel_init = logical(kernel_init, None, None, "conv_in", "conv_out")
    return nn.Conv(*args, kernel_init=kernel_init, conv_general_dilated=_patch_conv, **kwargs)


def _group_norm(channels: int, num_groups: int, dtype: Dtype, param_dtype: Dtype) -> nn.Module:
    """GroupNorm with min(num_groups, channels) groups (the group count must divide C)."""
    groups = math.gcd(num_groups, channels)
    return nn.GroupNorm(num_groups=groups, epsilon=1e-6, dtype=dtype, param_dtype=param_dtype)


def _resample(x: Array, direction: str | None, taps: Sequence[int]) -> Array:
    """2x FIR up / down sampling of [B, H, W, C] (diffjax.models.resample); None: identity."""
    if direction == "up":
        return upsample_2d(x, taps)
    if direction == "down":
        return downsample_2d(x, taps)
    return x


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding (see the module docstring).

    Attributes:
      out_channels: channels of the output.
      dropout: dropout rate before the last convolution.
      resample: "up" / "down" resamples inside the block (BigGAN style), None keeps the size.
      scale_shift_norm: ADM's GN(h)(1 + s) + b instead of adding the embedding.
      skip_rescale: divide the sum by sqrt 2 (DDPM++ / NCSN++).
      skip_conv_on_resample: 1x1 conv on the skip path also when resampling (Song et al.);
        otherwise only when the channel count changes (Ho et al., ADM).
      num_groups: GroupNorm groups.
      resample_kernel: FIR taps of the resampling ((1, 1): nearest / average pooling).
    """

    out_channels: int
    dropout: float
    resample: str | None = None
    scale_shift_norm: bool = False
    skip_rescale: bool = False
    skip_conv_on_resample: bool = False
    num_groups: int = 32
    resample_kernel: Sequence[int] = (1, 1)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, emb: Array, train: bool) -> Array:
        """x: [B, H, W, C], emb: [B, E] -> [B, H', W', out_channels]."""
        dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        c = self.out_channels
        h = nn.silu(_group_norm(x.shape[-1], self.num_groups, **dt)(x))
        h = _resample(h, self.resample, self.resample_kernel)
        x = _resample(x, self.resample, self.resample_kernel)
        h = _conv(c, (3, 3), **dt)(h)
        e = dense(2 * c if self.scale_shift_norm else c, "embed", None, **dt)(nn.silu(emb))
        e = e[:, None, None, :]
        if self.scale_shift_norm:
            scale, shift = jnp.split(e, 2, axis=-1)
            h = _group_norm(c, self.num_groups, **dt)(h) * (1 + scale) + shift
        else:
            h = _group_norm(c, self.num_groups, **dt)(h + e)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = _conv(c, (3, 3), kernel_init=_zeros, **dt)(h)
        resampled = self.resample is not None and self.skip_conv_on_resample
        if x.shape[-1] != c or resampled:
            x = _conv(c, (1, 1), **dt)(x)
        out = x + h
        return out / math.sqrt(2.0) if self.skip_rescale else out


class AttentionBlock(nn.Module):
    """x + Attention(GN(x)) over the H W positions, the output projection initialised to zero.

    Attributes:
      num_heads: attention heads.
      skip_rescale: divide the sum by sqrt 2.
      num_groups: GroupNorm groups.
    """

    num_heads: int
    skip_rescale: bool = False
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """x: [B, H, W, C] -> [B, H, W, C]."""
        b, hgt, wid, c = x.shape
        h = _group_norm(c, self.num_groups, self.dtype, self.param_dtype)(x)
        h = SelfAttention(
            self.num_heads,
            out_kernel_init=_zeros,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )(h.reshape(b, hgt * wid, c))
        out = x + h.reshape(b, hgt, wid, c)
        return out / math.sqrt(2.0) if self.skip_rescale else out


class UNetBackbone(nn.Module):
    """The hyperparameters shared by the UNet and the noisy classifier (its encoder half).

    Attributes:
      ch: base channels; level i has ch * ch_mult[i].
      ch_mult: channel multiplier per resolution level (one level per entry, halving H, W).
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attn_resolutions: spatial sizes (H of the feature map) with self-attention after each
        residual block; the middle block always has attention.
      num_heads: attention heads, unless num_head_channels is set.
      num_head_channels: channels per head (ADM: 64); heads = channels // num_head_channels.
      dropout: dropout rate in the residual blocks.
      time_embedding: "sinusoidal" (of 1000 t) or "fourier" (Gaussian features).
      fourier_scale: frequency scale of the Fourier features.
      num_classes: number of classes for a class-conditional model (None: unconditional).
      resblock_updown: resample with residual blocks (BigGAN) instead of convolutions.
      scale_shift_norm: ADM's adaptive GroupNorm in the residual blocks.
      skip_rescale: divide residual sums by sqrt 2 (Song et al.).
      skip_conv_on_resample: 1x1 skip conv in resampling blocks too (Song et al.).
      num_groups: GroupNorm groups (at most the channel count).
      resample_kernel: FIR taps of every 2x resampling (in the residual blocks, before the
        upsampling convolution, before the stride-2 convolutions, in the image pyramids):
        (1, 1) is nearest-neighbour upsampling / 2x2 average pooling / a plain strided conv
        (Ho et al., DDPM++), (1, 3, 3, 1) the FIR of NCSN++.
      time_features: width of the fixed embedding e(t) fed to the time MLP; None means ch
        (NCSN++: 2 ch, i.e. ch Gaussian Fourier frequencies, sin and cos).
      attn_every_up_block: attention after every up-path residual block at an attention
        resolution (Ho et al.); False: once per level, after its blocks (Song et al.).
      progressive_input: image pyramid on the way down (Song et al., appendix H): "none";
        "input_skip": after each downsampling h += Conv1x1(pyramid), the pyramid being the
        FIR-downsampled image; "residual": pyramid <- the anti-aliased stride-2 Conv3x3 of the
        pyramid (_conv_down), then h <- pyramid <- (pyramid + h) (/ sqrt 2 with skip_rescale).
      progressive_output: image pyramid on the way up: "none" (GroupNorm, SiLU, conv_out);
        "output_skip": every level adds Conv3x3(SiLU(GN(h))) to the FIR-upsampled output of
        the level below, and the sum at full resolution is the output.
      remat: rematerialise every residual block in the backward pass (less memory).
      dtype: compute dtype (bfloat16 on TPU); outputs are cast to float32.
      param_dtype: parameter dtype.
    """

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (16,)
    num_heads: int = 1
    num_head_channels: int | None = None
    dropout: float = 0.1
    time_embedding: str = "sinusoidal"
    fourier_scale: float = 16.0
    num_classes: int | None = None
    resblock_updown: bool = False
    scale_shift_norm: bool = False
    skip_rescale: bool = False
    skip_conv_on_resample: bool = False
    num_groups: int = 32
    resample_kernel: Sequence[int] = (1, 1)
    time_features: int | None = None
    attn_every_up_block: bool = True
    progressive_input: str = "none"
    progressive_output: str = "none"
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _dt(self) -> dict[str, Any]:
        return dict(dtype=self.dtype, param_dtype=self.param_dtype)

    def _embed(self, t: Array, labels: Array | None, batch: int) -> Array:
        """The conditioning vector [B, 4 ch] from t [B] or [B, K] and optional labels [B]."""
        check_cond(labels, self.num_classes)
        emb = TimeEmbedding(
            4 * self.ch,
            self.ch if self.time_features is None else self.time_features,
            kind=self.time_embedding,
            fourier_scale=self.fourier_scale,
            name="time_embedding",
            **self._dt(),
        )(broadcast_times(t, batch))
        if self.num_classes is not None:
            emb = emb + LabelEmbedding(self.num_classes, 4 * self.ch, **self._dt())(labels, batch)
        return emb

    def _res_block(self, name: str, out_channels: int, resample: str | None = None) -> nn.Module:
        # Explicit names keep the param tree the same with and without remat.
        cls = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
        return cls(
            out_channels,
            self.dropout,
            resample=resample,
            scale_shift_norm=self.scale_shift_norm,
            skip_rescale=self.skip_rescale,
            skip_conv_on_resample=self.skip_conv_on_resample,
            num_groups=self.num_groups,
            resample_kernel=tuple(self.resample_kernel),
            name=name,
            **self._dt(),
        )

    def _attention(self, name: str, channels: int) -> nn.Module:
        if self.num_head_channels is None:
            heads = self.num_heads
        else:
            heads = channels // self.num_head_channels
        return AttentionBlock(heads, self.skip_rescale, self.num_groups, name=name, **self._dt())

    def _down(self, x: Array, emb: Array, train: bool) -> tuple[Array, list[Array]]:
        """conv_in and the down path; returns the last features and every skip [B, h, w, c]."""
        h = _conv(self.ch, (3, 3), name="conv_in", **self._dt())(x)
        pyramid = x  # [B, h, w, C] (input_skip) or [B, h, w, c] (residual)
        skips = [h]
        for level, mult in enumerate(self.ch_mult):
            for i in range(self.num_res_blocks):
                h = self._res_block(f"down_{level}_{i}", self.ch * mult)(h, emb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = self._attention(f"down_{level}_{i}_attn", h.shape[-1])(h)
                skips.append(h)
            if level != len(self.ch_mult) - 1:
                name = f"down_{level}_resample"
                if self.resblock_updown:
                    h = self._res_block(name, h.shape[-1], "down")(h, emb, train)
                else:
                    h = self._conv_down(name, h, h.shape[-1])
                h, pyramid = self._pyramid_down(f"down_{level}_pyramid", h, pyramid)
                skips.append(h)
        return h, skips

    def _pyramid_down(self, name: str, h: Array, pyramid: Array) -> tuple[Array, Array]:
        """One level of the input pyramid (progressive_input): the new (h, pyramid)."""
        if self.progressive_input == "input_skip":
            pyramid = downsample_2d(pyramid, self.resample_kernel)
            return h + _conv(h.shape[-1], (1, 1), name=name, **self._dt())(pyramid), pyramid
        if self.progressive_input == "residual":
            pyramid = self._conv_down(name, pyramid, h.shape[-1]) + h
            pyramid = pyramid / math.sqrt(2.0) if self.skip_rescale else pyramid
            return pyramid, pyramid
        return h, pyramid

    def _conv_down(self, name: str, x: Array, features: int) -> Array:
        """A 3x3 stride-2 conv [B, h, w, c] -> [B, h/2, w/2, features], anti-aliased by the FIR.

        Box taps: the plain strided conv (zero row / column after, Ho et al.); FIR taps: the
        FIR filter, padded by p = K - 2 + 3 - 1 so that the valid stride-2 conv halves h, w
        (StyleGAN2's fused conv-downsample, used by NCSN++).
        """
        conv = dict(features=features, kernel_size=(3, 3), strides=(2, 2), name=name)
        if tuple(self.resample_kernel) == (1, 1):
            return _conv(**conv, **self._dt())(x)
        p = len(self.resample_kernel)
        x = upfirdn2d(x, self.resample_kernel, pad=((p + 1) // 2, p // 2))
        return _conv(**conv, padding="VALID", **self._dt())(x)

    def _middle(self, h: Array, emb: Array, train: bool) -> Array:
        h = self._res_block("mid_0", h.shape[-1])(h, emb, train)
        h = self._attention("mid_attn", h.shape[-1])(h)
        return self._res_block("mid_1", h.shape[-1])(h, emb, train)

    def _check_size(self, x: Array) -> None:
        """Raises a ValueError for an unknown option or an input size the levels cannot halve."""
        if self.progressive_input not in ("none", "input_skip", "residual"):
            raise ValueError(f"{self.progressive_input=} must be none, input_skip or residual")
        if self.progressive_output not in ("none", "output_skip"):
            raise ValueError(f"{self.progressive_output=} must be none or output_skip")
        factor = 2 ** (len(self.ch_mult) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"input {x.shape=} must have H, W divisible by {factor}")


class UNet(UNetBackbone):
    """eps_theta(x_t, t, cond): [B, H, W, C] -> [B, H, W, out_channels].

    Attributes (beyond UNetBackbone's):
      out_channels: output channels; None means the input's (2 C for learned variance).
    """

    out_channels: int | None = None

    @nn.compact
    def __call__(
        self,
        x: Array,
        t: Array,
        cond: Array | Mapping[str, Array] | None = None,
        train: bool = False,
    ) -> Array:
        """Args: x [B, H, W, C]; t [B] or [B, K]; cond labels [B] or a mapping (module docstring).

        Returns: [B, H, W, out_channels] float32.
        """
        self._check_size(x)
        b = x.shape[0]
        extra = cond if isinstance(cond, Mapping) else {"label": cond}
        emb = self._embed(t, extra.get("label"), b)
        h = x.astype(self.dtype)
        if extra.get("low_res") is not None:
            low = jax.image.resize(
                extra["low_res"], (*x.shape[:3], extra["low_res"].shape[-1]), "bilinear"
            )
            h = jnp.concatenate([h, low.astype(self.dtype)], axis=-1)
        if extra.get("low_res_t") is not None:
            emb = emb + TimeEmbedding(
                4 * self.ch, self.ch, name="low_res_t_embedding", **self._dt()
            )(jnp.broadcast_to(extra["low_res_t"], (b,)))

        h, skips = self._down(h, emb, train)
        h = self._middle(h, emb, train)
        out_channels = x.shape[-1] if self.out_channels is None else self.out_channels
        out = None  # the output pyramid (progressive_output="output_skip"): [B, h, w, out]
        for level, mult in reversed(list(enumerate(self.ch_mult))):
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = self._res_block(f"up_{level}_{i}", self.ch * mult)(h, emb, train)
                if h.shape[1] in self.attn_resolutions and self.attn_every_up_block:
                    h = self._attention(f"up_{level}_{i}_attn", h.shape[-1])(h)
            if h.shape[1] in self.attn_resolutions and not self.attn_every_up_block:
                h = self._attention(f"up_{level}_attn", h.shape[-1])(h)
            if self.progressive_output == "output_skip":
                level_out = self._to_image(f"up_{level}_pyramid", h, out_channels)
                if out is not None:
                    level_out = level_out + upsample_2d(out, self.resample_kernel)
                out = level_out
            if level != 0:
                name = f"up_{level}_resample"
                if self.resblock_updown:
                    h = self._res_block(name, h.shape[-1], "up")(h, emb, train)
                else:
                    h = _conv(h.shape[-1], (3, 3), name=name, **self._dt())(
                        _resample(h, "up", self.resample_kernel)
                    )
        if out is None:
            out = self._to_image("conv_out", h, out_channels)
        return out.astype(jnp.float32)

    def _to_image(self, name: str, h: Array, channels: int) -> Array:
        """Conv3x3(SiLU(GroupNorm(h))) with the conv initialised to zero: [B, h, w, channels]."""
        h = nn.silu(_group_norm(h.shape[-1], self.num_groups, **self._dt())(h))
        return _conv(channels, (3, 3), kernel_init=_zeros, name=name, **self._dt())(h)
