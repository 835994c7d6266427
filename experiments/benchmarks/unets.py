"""The UNets that `peers.py` and `unet_profile.py` measure, in diffjax and in diffusers, and
the perturbed initialisation the benchmarks time any diffjax model with (no flags here, so every
benchmark can import it)."""

import dataclasses
from typing import Any

import jax


def perturbed_init(model, key: jax.Array, x: jax.Array, t: jax.Array):
    """`model.init` on (x, t) with every parameter perturbed by 0.01 N(0, 1), so that no
    zero-initialised layer leaves a branch trivially zero."""
    k_init, k_perturb = jax.random.split(key)
    params = jax.jit(model.init)(k_init, x, t)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(k_perturb, len(leaves))
    return jax.tree.unflatten(
        tree, [p + 0.01 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )


@dataclasses.dataclass(frozen=True)
class Case:
    """One architecture in both libraries.

    Attributes:
      batch: examples per call.
      shape: one example, (H, W, C).
      unet: diffjax `UNet` fields.
      diffusers: `diffusers.UNet2DModel` keyword arguments of the same network.
      params: the parameter count both must have.
    """

    batch: int
    shape: tuple[int, int, int]
    unet: dict[str, Any]
    diffusers: dict[str, Any]
    params: int


def _diffusers_unet(channels: int, size: int, block_out, attention_level: int, groups: int):
    """UNet2DModel kwargs of a Ho et al. UNet: attention blocks at one level, 1 head."""
    levels = len(block_out)
    down = ["AttnDownBlock2D" if i == attention_level else "DownBlock2D" for i in range(levels)]
    up = ["AttnUpBlock2D" if i == attention_level else "UpBlock2D" for i in range(levels)][::-1]
    return dict(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(block_out),
        layers_per_block=2,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=groups,
        norm_eps=1e-6,  # diffjax's GroupNorm epsilon
        downsample_padding=0,  # pad (0, 1) then a valid stride-2 conv = flax "SAME"
        flip_sin_to_cos=False,  # [sin, cos], as diffjax
        freq_shift=0,  # frequencies P^(-k / (d/2)), as diffjax
        attention_head_dim=None,  # one head of all channels
        act_fn="silu",
        dropout=0.0,
        time_embedding_type="positional",
        mid_block_scale_factor=1,
    )


# google/ddpm-cifar10-32 has freq_shift=1 (frequencies P^(-k / (d/2 - 1))): a different
# embedding with the same parameters and cost; the 8x8 model keeps diffjax's for equal outputs.
CASES = {
    "ddpm_cifar10": Case(
        batch=8,
        shape=(32, 32, 3),
        unet=dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,)),
        diffusers={**_diffusers_unet(3, 32, (128, 256, 256, 256), 1, 32), "freq_shift": 1},
        params=35_746_307,
    ),
    "unet_8x8": Case(
        batch=64,
        shape=(8, 8, 1),
        unet=dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(4,), num_groups=8),
        diffusers=_diffusers_unet(1, 8, (32, 64, 64), 1, 8),
        params=1_623_169,
    ),
}
