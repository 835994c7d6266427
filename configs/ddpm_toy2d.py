"""DDPM (eps prediction, T = 100 linear schedule) on 2-D two moons with the residual MLP.

A seconds-long run used by the trainer tests and a quick sanity check of a new machine:

  python -m diffjax.main --config=configs/ddpm_toy2d.py --workdir=/tmp/ddpm_toy2d
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.name = "toy2d"  # analytic 2-D toys, offline
    config.data.kwargs = ml_collections.ConfigDict({"distribution": "moons"})  # toy2d.load

    config.model.name = "mlp"  # residual MLP for vectors
    config.process.kwargs = ml_collections.ConfigDict({"num_steps": 100})  # T of ddpm_linear

    config.optim.learning_rate = 1e-3  # peak learning rate
    config.optim.warmup_steps = 50  # linear warm-up

    config.training.num_steps = 2000  # optimizer steps
    config.training.batch_size = 256  # toy batches are cheap
    config.training.log_every = 100  # steps between metric writes
    config.training.checkpoint_every = 500  # steps between checkpoints
    config.training.sample_every = 0  # no intermediate scatter plots

    config.sample.num_steps = 0  # all T = 100 ancestral steps
    config.sample.num_samples = 2000  # points per scatter plot
    config.eval.num_samples = 2000  # samples for the Frechet distance at the end
    return config
