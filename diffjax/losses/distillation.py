"""Progressive distillation (Salimans & Ho 2022): one student DDIM step for two teacher steps.

Seed 004, "Progressive Distillation" (Algorithm 2 and the x-target derivation); seed 000,
"Progressive Distillation"; seed 001, "PROGRESSIVE DISTILLATION". With the student at N steps on
the grid t = i / N, t' = t - 1 / (2N), t'' = t - 1 / N, the teacher's two deterministic DDIM steps
(`Process.x_t` at the teacher's (x0, eps))

  z_t'  = alpha_t'  x_eta(z_t)  + sigma_t'  eps_eta(z_t),
  z_t'' = alpha_t'' x_eta(z_t') + sigma_t'' eps_eta(z_t'),

are matched by one student DDIM step t -> t'' exactly when the student predicts

  x_tilde = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t),

so the loss is w(lambda_t) ||x_tilde - x_theta(z_t)||^2, a denoising regression in x0 space onto
x_tilde with a weighting of `losses.vocabulary` (Salimans & Ho's truncated SNR max(SNR, 1) on the
x0 error is "truncated_snr", their SNR + 1 "snr_plus_one"; "inverse_snr" is the plain x0 error).
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax import Array

from diffjax import denoisers, predictions
from diffjax.denoisers import Denoiser
from diffjax.losses import vocabulary
from diffjax.losses.base import ApplyFn, LossFn, Objective
from diffjax.preconditioning import Preconditioning
from diffjax.processes import Process, expand


def distillation_target(teacher: Denoiser, z: Array, t: Array, num_steps: int) -> Array:
    """x_tilde of two teacher DDIM steps t -> t - 1/(2N) -> t - 1/N; z: [B, ...], t: [B]."""
    process = teacher.process
    t_mid, t_next = t - 0.5 / num_steps, t - 1.0 / num_steps
    z_mid = process.x_t(*teacher.x0_eps(z, t), t_mid)
    z_next = process.x_t(*teacher.x0_eps(z_mid, t_mid), t_next)
    ratio = expand(process.sigma(t_next) / process.sigma(t), z)
    return (z_next - ratio * z) / (
        expand(process.alpha(t_next), z) - ratio * expand(process.alpha(t), z)
    )


@dataclasses.dataclass(frozen=True)
class ProgressiveDistillationLoss(Objective):
    """w(t) SNR(t) ||x0_theta(z_t) - x_tilde||^2 at t = i / N, i ~ U{1..N}.

    Metrics: {"loss", "x0_mse"}. Reads `params["teacher"]`.

    Attributes:
      process: the forward process shared by teacher and student.
      prediction: what the student network outputs (a kind or a Preconditioning).
      teacher_prediction: what the teacher network outputs.
      student_steps: N, the student's steps (the teacher's are 2N).
      weighting: a name in `vocabulary.WEIGHTINGS` (eps space, as everywhere).
    """

    process: Process
    prediction: str | Preconditioning = "v"
    teacher_prediction: str = "v"
    student_steps: int = 128
    weighting: str = "truncated_snr"

    def __post_init__(self):
        if not isinstance(self.prediction, Preconditioning):
            predictions.check_kind(self.prediction)
        predictions.check_kind(self.teacher_prediction)
        object.__setattr__(self, "_weight", vocabulary.weighting(self.weighting))
        if self.student_steps < 1:
            raise ValueError(f"student_steps={self.student_steps} must be >= 1")

    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        process, n = self.process, self.student_steps

        def loss(params, batch, key):
            x0, cond = batch["x"], batch.get("label")
            k_i, k_eps, k_drop = jax.random.split(key, 3)
            t = jax.random.randint(k_i, x0.shape[:1], 1, n + 1).astype(jnp.float32) / n
            z, _ = process.marginal_sample(k_eps, x0, t)
            teacher = denoisers.from_network(
                apply_fn, params["teacher"], self.teacher_prediction, process, cond
            )
            target = jax.lax.stop_gradient(distillation_target(teacher, z, t, n))
            student = denoisers.from_network(
                apply_fn, params["model"], self.prediction, process, cond, k_drop
            )
            err = vocabulary.mean_per_example(jnp.square(student.x0(z, t) - target))
            # The eps-space weight times d eps / d x0 squared = SNR, read at t < 1: the linear
            # interpolant's SNR(1) = 0 would give inf * 0; the limit is the value just below.
            t_w = jnp.minimum(t, 1.0 - 1e-6)
            w_x0 = self._weight(process, t_w) * jnp.exp(process.log_snr(t_w))
            value = jnp.mean(w_x0 * err)
            return value, {"loss": value, "x0_mse": jnp.mean(err)}

        return loss
