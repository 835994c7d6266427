"""Progressive distillation on two moons: a flow-matching teacher (32 DDIM steps) distilled to 16,
8, 4, 2 and 1 steps, one round of `training.num_steps` each:

  python -m diffjax.main --config=configs/flow_matching_toy2d.py --workdir=/tmp/fm_toy2d
  python -m diffjax.main --config=configs/progressive_distillation_toy2d.py \
      --workdir=/tmp/pd_toy2d --config.teacher.workdir=/tmp/fm_toy2d

`/tmp/pd_toy2d/distill.json` and `distill.png`: the Frechet distance after every halving.
"""

import ml_collections

from configs import flow_matching_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = flow_matching_toy2d.get_config()
    config.mode = "distill"  # rounds of halving
    config.method = "progressive_distillation"
    config.loss = ml_collections.ConfigDict(
        {
            "prediction": "velocity",  # the student keeps the teacher's parameterisation
            "teacher_prediction": "velocity",  # the flow-matching teacher's output
            "student_steps": 16,  # set per round by mode=distill
            "weighting": "inverse_snr",  # x0 error unweighted | truncated_snr | snr_plus_one
        }
    )
    config.distill.start_steps = 16  # first student: 16 steps (its teacher: 32)
    config.distill.end_steps = 1  # down to one step
    config.training.num_steps = 1000  # optimizer steps per halving
    config.optim.warmup_steps = 0  # each student starts from its trained teacher
    # The EMA starts at the teacher's weights: a short average, or the few-step student is
    # blended with its many-step teacher (0.999 over 1000 steps keeps 37% of the teacher).
    config.optim.ema_decay = 0.99
    config.sample.sampler = ""  # the method's DDIM (eta = 0) at the student's steps
    return config
