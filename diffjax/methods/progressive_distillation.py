"""Progressive distillation (Salimans & Ho 2022): one student DDIM step for two teacher steps.

Seed 004, "Progressive Distillation" (Algorithm 2 and the x-target derivation); seed 000,
"Progressive Distillation"; seed 001, "PROGRESSIVE DISTILLATION". The objective and its
derivation are `losses.ProgressiveDistillationLoss`. Each round the student (initialised from
the teacher) becomes the next teacher and N halves; the rounds are the trainer's `distill` mode
(`Recipe.chain_modes`). The teacher is `params["teacher"]`, called with the student's apply_fn
and predicting `teacher_prediction`; the student may predict any kind (the paper's is "v"),
converted to x_0 for the loss.
"""

from diffjax import losses
from diffjax.methods.base import Recipe
from diffjax.processes import Process


def progressive_distillation(
    process: Process,
    prediction: str = "v",
    teacher_prediction: str = "v",
    student_steps: int = 128,
    weighting: str = "truncated_snr",
) -> Recipe:
    """One round of progressive distillation into a student of `student_steps` DDIM steps.

    Args:
      process: the forward process shared by teacher and student.
      prediction: what the student network outputs.
      teacher_prediction: what the teacher network outputs.
      student_steps: N, the student's steps (the teacher's are 2N).
      weighting: a name in `losses.WEIGHTINGS`, eps-space as everywhere: "truncated_snr" is
        the paper's max(SNR, 1) on the x0 error, "snr_plus_one" its SNR + 1, "inverse_snr" the
        plain x0 error.

    Raises:
      ValueError: for unknown kinds or weightings, or N < 1.
    """
    objective = losses.ProgressiveDistillationLoss(
        process, prediction, teacher_prediction, student_steps, weighting
    )
    return Recipe(
        name="progressive_distillation",
        process=process,
        prediction=prediction,
        objective=objective,
        sampler="ddim",
        sampler_options={"eta": 0.0},
        teacher_prediction=teacher_prediction,
        chain_modes=frozenset({"distill"}),
    )
