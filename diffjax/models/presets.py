"""Named UNet / MLP configurations: the published ones and tiny ones for digits and tests.

Each preset is `functools.partial(Module, **published)`, so keywords override any field, e.g.
`diffjax.models.get("ddpm_cifar10", num_classes=10)`. Parameter counts (3-channel 32x32
input, as published; tests/models/test_presets.py checks them):

  ddpm_cifar10    Ho et al. 2020, appendix B: ch 128, mults (1, 2, 2, 2), 2 blocks, attention
                  at 16x16, dropout 0.1                                      35.7M (paper 35.7M)
  ddpm++_cifar10  Song et al. 2021, appendix H.2, the "DDPM++ cont." CIFAR-10 model (public
                  score_sde config vp/cifar10_ddpmpp_continuous): ch 128, mults (1, 2, 2, 2),
                  4 BigGAN residual blocks per level with 1x1 skip convs, skip rescaling by
                  1/sqrt 2, attention at 16x16 (once per up level), dropout 0.1, sinusoidal
                  embedding, box resampling                      61.80M (Karras et al. 2022,
                                                                  table 7: 61.80M)
  ncsn++          Song et al. 2021, appendix H.2, the "NCSN++ cont." CIFAR-10 model (config
                  ve/cifar10_ncsnpp_continuous): the DDPM++ trunk with FIR [1, 3, 3, 1]
                  resampling, Gaussian Fourier features (128 frequencies, scale 16) of the noise
                  level, and the "residual" progressive input (no progressive output; the
                  paper also describes "input_skip" / "output_skip", UNet options here)
                                                                 62.76M (Karras et al. 2022,
                                                                  table 7: 62.76M)
  adm             Dhariwal & Nichol 2021, table 10 (ImageNet 64x64): ch 192, mults (1, 2, 3, 4),
                  3 blocks, attention at 32, 16, 8 with 64 channels per head, BigGAN resampling,
                  scale-shift norm, 1000 classes, learned variance (6 output channels)
  unet_digits     8x8x1 digits: ch 16, mults (1, 2), 1 block, attention at 4x4, dropout 0.1
  unet_tiny       for tests: ch 8, mults (1, 2), 1 block, attention at 4x4
  mlp             2-D toys: width 256, 3 residual blocks
  classifier_digits  noisy classifier for digits: the encoder half of unet_digits, 10 logits
"""

import functools

from diffjax.models.classifier import NoisyClassifier
from diffjax.models.mlp import MLP
from diffjax.models.unet import UNet

_SONG = dict(
    ch=128,
    ch_mult=(1, 2, 2, 2),
    num_res_blocks=4,
    attn_resolutions=(16,),
    dropout=0.1,
    resblock_updown=True,
    skip_rescale=True,
    skip_conv_on_resample=True,
    attn_every_up_block=False,
)

PRESETS = {
    "ddpm_cifar10": functools.partial(
        UNet, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1
    ),
    "ddpm++_cifar10": functools.partial(UNet, **_SONG),
    "ncsn++": functools.partial(
        UNet,
        **_SONG,
        time_embedding="fourier",
        time_features=256,
        resample_kernel=(1, 3, 3, 1),
        progressive_input="residual",
    ),
    "adm": functools.partial(
        UNet,
        ch=192,
        ch_mult=(1, 2, 3, 4),
        num_res_blocks=3,
        attn_resolutions=(32, 16, 8),
        num_head_channels=64,
        dropout=0.1,
        resblock_updown=True,
        scale_shift_norm=True,
        num_classes=1000,
        out_channels=6,
    ),
    "unet_digits": functools.partial(
        UNet,
        ch=16,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        dropout=0.1,
        num_groups=8,
    ),
    "unet_tiny": functools.partial(
        UNet, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4
    ),
    "mlp": MLP,
    "classifier_digits": functools.partial(
        NoisyClassifier,
        ch=16,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        dropout=0.1,
        num_groups=8,
        num_outputs=10,
    ),
}
