"""Reflow on two moons: the 2- and 3-rectified flows of a trained 1-rectified flow.

First train the 1-rectified flow, then reflow it (two rounds of about a minute each):

  python -m diffjax.main --config=configs/rectified_flow_toy2d.py --workdir=/tmp/rf1
  python -m diffjax.main --config=configs/reflow_toy2d.py --workdir=/tmp/reflow \
      --config.teacher.workdir=/tmp/rf1

`/tmp/reflow/reflow.json` and `reflow.png`: straightness, transport cost and the Frechet
distance of 1, 2, 4, 8-step Euler samples for every round.
"""

import ml_collections

from configs import rectified_flow_toy2d


def get_config() -> ml_collections.ConfigDict:
    config = rectified_flow_toy2d.get_config()
    config.mode = "reflow"  # rounds of simulate-pairs-then-train
    config.reflow.rounds = 2  # the 2- and the 3-rectified flow
    config.reflow.num_pairs = 20000  # pairs per round (the two moons train split has 8000 points)
    config.training.num_steps = 2000  # optimizer steps per round, from the previous flow
    config.optim.warmup_steps = 0  # the round starts from a trained flow
    return config
