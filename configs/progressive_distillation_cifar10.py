"""Progressive distillation on CIFAR-10 (Salimans & Ho 2022): v-prediction teacher on the cosine
process distilled by halving down to 1 step.

  python -m diffjax.main --config=configs/ddpm_cifar10.py --workdir=$TEACHER \
      --config.process.name=cosine --config.loss.prediction=v
  python -m diffjax.main --config=configs/progressive_distillation_cifar10.py \
      --workdir=$WORKDIR --config.teacher.workdir=$TEACHER

Paper: the student predicts v and is initialised from its teacher, the loss weight is the
truncated SNR max(SNR, 1), each halving trains 50k steps at batch 128 (CIFAR-10), from 8192
teacher steps (here 1024 by default: set distill.start_steps) down to 1, 2, 4 or 8 steps;
reported FID 2.57 with 4 steps. The teacher must share this network, process and data.
"""

import ml_collections

from configs import ddpm_cifar10


def get_config() -> ml_collections.ConfigDict:
    config = ddpm_cifar10.get_config()  # cifar10, ddpm_cifar10 UNet (35.7M), batch 128
    config.mode = "distill"
    config.method = "progressive_distillation"
    config.process.name = "cosine"  # alpha = cos(pi t / 2), the continuous cosine schedule
    config.process.kwargs = ml_collections.ConfigDict()
    config.loss = ml_collections.ConfigDict(
        {
            "prediction": "v",  # the student's output
            "teacher_prediction": "v",  # the first teacher's output (later: the student's)
            "student_steps": 512,  # set per round by mode=distill
            "weighting": "truncated_snr",  # max(SNR, 1) on the x0 error
        }
    )
    config.teacher.init_student = True
    config.distill.start_steps = 512  # the first student; its teacher samples with 1024 steps
    config.distill.end_steps = 1
    config.optim.learning_rate = 1e-4
    config.optim.warmup_steps = 0
    config.training.num_steps = 50_000  # per halving
    config.sample.sampler = ""  # DDIM (eta = 0) at the student's step count
    return config
