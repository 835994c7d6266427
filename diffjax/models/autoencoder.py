"""A KL-regularised convolutional autoencoder (the first stage of latent diffusion).

Seed 002, "Latent Diffusion" / "效率突破：潛在擴散模型 (LDM)": a pretrained autoencoder (VQ-VAE or
KL-VAE) compresses images into a low-dimensional latent space where the diffusion model is
trained (L_LDM = E_{E(x), eps, t} ||eps - eps_theta(z_t, t)||^2), and the decoder maps samples
back to pixels; seed 003, "Stability AI" (Stable Diffusion: a latent diffusion model and a VAE).
The layout follows LDM's `AutoencoderKL` at a small size: an encoder of residual blocks with
len(ch_mult) - 1 stride-2 downsamplings to 2 * latent_channels moments (mean, log-variance) of
a diagonal Gaussian posterior q(z | x), and a mirrored decoder with nearest-neighbour
upsampling. 32x32x3 -> 8x8x4 with ch_mult (1, 2, 2).

The network stays a network: the objective (reconstruction + beta KL) is
`diffjax.losses.autoencoder`. As every model of the trainer it is called as
`model(x, t, cond=None, train=False)`; an autoencoder has no time and ignores `t` and `cond`.
`__call__` returns (reconstruction, mean, logvar): in training mode (a "dropout" rng, which
`apply_fn`'s key provides) the decoder sees z = mean + exp(logvar / 2) eps, the
reparameterised posterior sample; in evaluation mode it sees the posterior mean.
`encode(x) -> (mean, logvar)` and `decode(z) -> x` are the two halves
(`module.apply(variables, x, method="encode")`).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import Array

from diffjax.models.layers import Dtype

# LDM's DiagonalGaussianDistribution clamps the log-variance to this range.
LOGVAR_RANGE = (-30.0, 20.0)


class _ResBlock(nn.Module):
    """GroupNorm -> swish -> conv3x3, twice, with a 1x1 skip when the width changes."""

    features: int
    num_groups: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """x: [B, H, W, C] -> [B, H, W, features]."""
        h = nn.swish(nn.GroupNorm(self.num_groups, dtype=jnp.float32)(x))
        h = nn.Conv(self.features, (3, 3), dtype=self.dtype)(h)
        h = nn.swish(nn.GroupNorm(self.num_groups, dtype=jnp.float32)(h))
        h = nn.Conv(self.features, (3, 3), dtype=self.dtype)(h)
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), dtype=self.dtype)(x)
        return x + h


class Encoder(nn.Module):
    """[B, H, W, C] -> the posterior's moments [B, H / f, W / f, 2 * latent_channels],
    f = 2^(len(ch_mult) - 1)."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    latent_channels: int
    num_groups: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = nn.Conv(self.ch, (3, 3), dtype=self.dtype)(x)
        for level, mult in enumerate(self.ch_mult):
            for _ in range(self.num_res_blocks):
                h = _ResBlock(self.ch * mult, self.num_groups, self.dtype)(h)
            if level < len(self.ch_mult) - 1:
                h = nn.Conv(self.ch * mult, (3, 3), strides=(2, 2), dtype=self.dtype)(h)
        h = _ResBlock(h.shape[-1], self.num_groups, self.dtype)(h)
        h = nn.swish(nn.GroupNorm(self.num_groups, dtype=jnp.float32)(h))
        return nn.Conv(2 * self.latent_channels, (3, 3), dtype=self.dtype)(h)


class Decoder(nn.Module):
    """z [B, h, w, latent_channels] -> [B, h f, w f, out_channels], the encoder mirrored."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    out_channels: int
    num_groups: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: Array) -> Array:
        h = nn.Conv(self.ch * self.ch_mult[-1], (3, 3), dtype=self.dtype)(z)
        h = _ResBlock(h.shape[-1], self.num_groups, self.dtype)(h)
        for level, mult in reversed(list(enumerate(self.ch_mult))):
            for _ in range(self.num_res_blocks):
                h = _ResBlock(self.ch * mult, self.num_groups, self.dtype)(h)
            if level > 0:
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest")
                h = nn.Conv(c, (3, 3), dtype=self.dtype)(h)
        h = nn.swish(nn.GroupNorm(self.num_groups, dtype=jnp.float32)(h))
        return nn.Conv(self.out_channels, (3, 3), dtype=self.dtype)(h)


class KLAutoencoder(nn.Module):
    """Encoder to a diagonal Gaussian posterior, decoder from its samples (module docstring).

    Attributes:
      ch: base width.
      ch_mult: width multiplier per resolution; len(ch_mult) - 1 halvings of the side.
      num_res_blocks: residual blocks per resolution.
      latent_channels: channels of z.
      out_channels: channels of the reconstruction (the trainer passes the data's).
      num_groups: GroupNorm groups (must divide every width).
      dtype: compute dtype of the convolutions; norms and outputs are float32.
    """

    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_channels: int = 4
    out_channels: int = 3
    num_groups: int = 8
    dtype: Dtype = jnp.float32

    def setup(self):
        if not self.ch_mult or self.latent_channels < 1 or self.out_channels < 1:
            raise ValueError(
                f"KLAutoencoder needs ch_mult, latent_channels >= 1 and out_channels >= 1; got "
                f"{self.ch_mult=}, {self.latent_channels=}, {self.out_channels=}"
            )
        shared = dict(
            ch=self.ch, ch_mult=tuple(self.ch_mult), num_res_blocks=self.num_res_blocks,
            num_groups=self.num_groups, dtype=self.dtype,
        )  # fmt: skip
        self.encoder = Encoder(latent_channels=self.latent_channels, **shared)
        self.decoder = Decoder(out_channels=self.out_channels, **shared)

    @property
    def downsampling(self) -> int:
        """f: the latent's side is the image's / f."""
        return 2 ** (len(self.ch_mult) - 1)

    def encode(self, x: Array) -> tuple[Array, Array]:
        """x: [B, H, W, C] -> (mean, logvar) of q(z | x), each [B, H / f, W / f, latent]."""
        if x.shape[1] % self.downsampling or x.shape[2] % self.downsampling:
            raise ValueError(f"image side {x.shape[1:3]} must divide by {self.downsampling}")
        moments = self.encoder(x).astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)

    def decode(self, z: Array) -> Array:
        """z: [B, h, w, latent] -> the image [B, h f, w f, out_channels] (float32)."""
        return self.decoder(z).astype(jnp.float32)

    def __call__(
        self, x: Array, t: Array | None = None, cond: Array | None = None, train: bool = False
    ) -> tuple[Array, Array, Array]:
        """(reconstruction [B, H, W, out], mean, logvar); `t` and `cond` are ignored. Training
        mode decodes the reparameterised sample (rng stream "dropout"), else the mean."""
        del t, cond
        mean, logvar = self.encode(x)
        z = mean
        if train:
            eps = jax.random.normal(self.make_rng("dropout"), mean.shape, mean.dtype)
            z = mean + jnp.exp(0.5 * logvar) * eps
        return self.decode(z), mean, logvar


PRESETS = {
    # 32x32x3 -> 8x8x4 for shapes32: widths 16, 32, 32 (sized for 2 CPU cores: ~1 step/s at
    # batch 64; LDM's f=4 KL models are 128, 256, 512 wide).
    "kl_vae_shapes32": functools.partial(
        KLAutoencoder, ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, latent_channels=4
    ),
    # For tests: widths 8, 16, 16.
    "kl_vae_tiny": functools.partial(
        KLAutoencoder, ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, latent_channels=4, num_groups=4
    ),
}
