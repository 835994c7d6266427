"""The noisy classifier of classifier guidance on digits, on the default DDPM's process:
  python -m diffjax.main --config=configs/classifier_digits.py --workdir=/tmp/classifier_digits
then guide any digits model trained on the same process with it:
  python -m diffjax.main --config=configs/default.py --workdir=/tmp/run --config.mode=sample \\
      --config.guidance.kind=classifier --config.guidance.scale=2 \\
      --config.guidance.classifier_workdir=/tmp/classifier_digits
metrics.json reports its test accuracy on x_t at t = 0, 0.25, 0.5, 0.75, 1.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.method = "noisy_classifier"  # diffjax.methods.noisy_classifier
    config.model.name = "classifier_digits"  # UNet encoder + pooled head, one logit per digit
    config.loss = ml_collections.ConfigDict(
        {"time_distribution": "uniform"}  # t = i / T, i ~ U{1..T}, as the diffusion model
    )
    config.optim.learning_rate = 1e-3  # peak learning rate after warm-up
    config.training.num_steps = 2000  # about 2 minutes on 2 CPU cores
    config.training.sample_every = 0  # a classifier draws no samples
    return config
