"""The noisy classifier of classifier guidance (Dhariwal & Nichol 2021), trained as a method.

Seed 000, "Classifier Guidance": sampling adds s grad_x log p_phi(y | x_t, t) to the score, so
p_phi is trained on x_t of the same process as the diffusion model, at every t
(`losses.NoisyClassifierLoss`). A run of this method is named by a generative run's
`guidance.classifier_workdir`; the trainer reports its test accuracy at several t instead of
samples (`Recipe.generative` is False). Its network is a classifier (`models.get
("classifier_digits")`: the UNet encoder with a pooled head), with one output per class.
"""

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.processes import Process


def noisy_classifier(
    process: Process, time_distribution: str = "uniform", t_min: float = 1e-5
) -> Recipe:
    """The noisy-classifier recipe.

    Args:
      process: the diffusion model's forward process.
      time_distribution: a name in `losses.TIME_DISTRIBUTIONS`.
      t_min: smallest t of a continuous process.

    Raises:
      ValueError: for an unknown time distribution or t_min outside [0, 1).
    """
    return Recipe(
        name="noisy_classifier",
        process=process,
        prediction=None,
        objective=losses.NoisyClassifierLoss(process, time_distribution, t_min),
        sampler="",
        generative=False,
    )
