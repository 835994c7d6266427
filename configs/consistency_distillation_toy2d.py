"""Consistency distillation on two moons from a trained flow-matching teacher (Heun steps of its
PF-ODE), with the EMA target network of Song et al. 2023 (mu = 0.95):

  python -m diffjax.main --config=configs/flow_matching_toy2d.py --workdir=/tmp/fm_toy2d
  python -m diffjax.main --config=configs/consistency_distillation_toy2d.py \
      --workdir=/tmp/cd_toy2d --config.teacher.workdir=/tmp/fm_toy2d
"""

import ml_collections

from configs import consistency_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = consistency_toy2d.get_config()
    config.loss.mode = "cd"  # distil the teacher's PF-ODE
    config.loss.teacher_prediction = "velocity"  # what the flow-matching teacher outputs
    config.loss.teacher_solver = "heun"  # one Heun step between adjacent times
    config.loss.metric = "l2"  # Song et al. 2023 (LPIPS for images)
    config.loss.weighting = "uniform"  # lambda = 1
    config.loss.time_distribution = "uniform"  # n uniform on {1 .. N - 1}
    config.loss.schedule = "constant"  # N = s1 throughout
    config.loss.s1 = 18  # N of CD on CIFAR-10
    config.loss.mu0 = 0.95  # EMA decay of the target network
    return config
