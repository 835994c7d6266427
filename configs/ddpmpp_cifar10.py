"""DDPM++ (continuous VP SDE) on CIFAR-10 (Song et al. 2021), score-matching with sigma^2 weights.

  python -m diffjax.main --config=configs/ddpmpp_cifar10.py --workdir=$WORKDIR

Paper: DDPM++ cont. (VP), batch 128, lr 2e-4, 1.3M steps, EMA 0.9999; reported FID 2.55 with
the predictor-corrector sampler. `--config.process.name=subvp` gives the sub-VP variant;
`--config.loss.likelihood_weighting=True` the likelihood-weighted (ELBO) objective.
"""

import ml_collections

from configs import ddpm_cifar10, sde_digits


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_cifar10.get_config()
    digits = sde_digits.get_config()
    config.method = digits.method  # score_sde
    config.process = digits.process  # vp, beta 0.1 .. 20
    config.loss = digits.loss  # eps (scaled score), sigma^2 weighting, t_min 1e-5
    config.model.name = "ddpm++_cifar10"  # Song et al.'s DDPM++ (4 blocks, skip rescale)
    config.model.kwargs = ml_collections.ConfigDict({"dropout": 0.1})
    config.training.num_steps = 1_300_000
    config.sample.sampler = "predictor_corrector"  # reverse diffusion + Langevin corrector
    config.sample.num_steps = 1000
    return config
