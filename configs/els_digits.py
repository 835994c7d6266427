"""The equivariant local score (ELS) machine of the digits training set, sampled with DDIM.

  python -m diffjax.main --config=configs/els_digits.py --workdir=/tmp/els_digits

No training: `mode=score_machine` samples from the analytic machine (seed 000, "Analytic Theory";
diffjax/analytic/score_machines.py). The process, sampler and seed are those of
configs/ddpm_digits.py, so a network trained with that config and sampled with the same sampler
starts from the same noise. Variants: `--config.machine.name=ideal` (memorises the training set),
`--config.machine.name=ls`, `--config.machine.patch_size=3`,
`--config.machine.boundary_aware=False`.
"""

import ml_collections

from configs import ddpm_digits


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_digits.get_config()
    config.mode = "score_machine"  # diffjax/train/score_machine.py; train: the network to compare
    # unet_digits' own self-attention resolutions, a field so that
    # `--config.model.kwargs.attn_resolutions=()` trains the attention-free UNet
    config.model.kwargs = ml_collections.ConfigDict({"attn_resolutions": (4,)})
    config.sample.sampler = "ddim"  # deterministic, so machine and network are comparable
    config.sample.num_steps = 50  # DDIM steps over the T = 1000 grid
    config.sample.options = ml_collections.ConfigDict({"eta": 0.0})  # eta = 0: the ODE map
    config.machine = ml_collections.ConfigDict()
    config.machine.name = "els"  # ideal | ls | els | els_scheduled
    config.machine.patch_size = 5  # P of ls / els, odd, <= 2 * 8 - 1
    config.machine.patch_sizes = (3, 5)  # els_scheduled: P on each interval of t
    config.machine.t_edges = (0.5,)  # els_scheduled: P = 3 for t < 0.5, 5 above
    config.machine.boundary_aware = True  # compare patches of one padding pattern (seed Detail 2)
    config.machine.chunk_size = 16  # training images per scan step: 16 * 64 patches
    config.machine.num_train = 0  # the first num_train training images; 0: all 1500
    return config
