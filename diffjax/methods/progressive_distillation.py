"""Progressive distillation (Salimans & Ho 2022): one student DDIM step for two teacher steps.

Seed 004, "Progressive Distillation" (Algorithm 2 and the x-target derivation); seed 000,
"Progressive Distillation"; seed 001, "PROGRESSIVE DISTILLATION". With the student at N steps on
the grid t = i / N, t' = t - 1 / (2N), t'' = t - 1 / N, the teacher's two deterministic DDIM steps

  z_t'  = alpha_t'  x_eta(z_t)  + (sigma_t'  / sigma_t ) (z_t  - alpha_t  x_eta(z_t)),
  z_t'' = alpha_t'' x_eta(z_t') + (sigma_t'' / sigma_t') (z_t' - alpha_t' x_eta(z_t')),

are matched by one student DDIM step t -> t'' exactly when the student predicts

  x_tilde = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t),

so the loss is w(lambda_t) ||x_tilde - x_theta(z_t)||^2 with lambda_t = log(alpha_t^2 / sigma_t^2)
and w "snr_trunc" = max(e^lambda, 1) (Salimans & Ho's truncated SNR), "snr_plus_one" = 1 + e^lambda
or "uniform". Each round the student (initialised from the teacher) becomes the next teacher
and N halves; the rounds are the trainer's `distill` mode. The teacher is `params["teacher"]`,
called with the student's apply_fn and predicting `teacher_prediction`; the student may
predict any kind (the paper's is "v"), converted to x_0 for the loss.
"""

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.methods.base import ApplyFn, Batch, LossFn, Params, Recipe
from diffjax.predictions import KINDS, Denoiser
from diffjax.processes import Process, expand

WEIGHTINGS = ("snr_trunc", "snr_plus_one", "uniform")


def ddim_step(x0_hat: Array, z: Array, t: Array, s: Array, process: Process) -> Array:
    """Deterministic DDIM step z_t -> z_s = alpha_s x0 + (sigma_s / sigma_t)(z_t - alpha_t x0).

    x0_hat (the x0 estimate), z: [B, ...]; t, s: [B].
    """
    a_t, s_t = expand(process.alpha(t), z), expand(process.sigma(t), z)
    a_s, s_s = expand(process.alpha(s), z), expand(process.sigma(s), z)
    return a_s * x0_hat + (s_s / s_t) * (z - a_t * x0_hat)


def distillation_target(teacher: Denoiser, z: Array, t: Array, num_steps: int) -> Array:
    """x_tilde of two teacher DDIM steps t -> t - 1/(2N) -> t - 1/N; z: [B, ...], t: [B]."""
    process = teacher.process
    t_mid, t_next = t - 0.5 / num_steps, t - 1.0 / num_steps
    z_mid = ddim_step(teacher.x0(z, t), z, t, t_mid, process)
    z_next = ddim_step(teacher.x0(z_mid, t_mid), z_mid, t_mid, t_next, process)
    ratio = expand(process.sigma(t_next) / process.sigma(t), z)
    return (z_next - ratio * z) / (
        expand(process.alpha(t_next), z) - ratio * expand(process.alpha(t), z)
    )


def progressive_distillation(
    process: Process,
    prediction: str = "v",
    teacher_prediction: str = "v",
    student_steps: int = 128,
    weighting: str = "snr_trunc",
) -> Recipe:
    """One round of progressive distillation into a student of `student_steps` DDIM steps.

    Args:
      process: the forward process shared by teacher and student.
      prediction: what the student network outputs.
      teacher_prediction: what the teacher network outputs.
      student_steps: N, the student's steps (the teacher's are 2N).
      weighting: w(lambda_t): "snr_trunc", "snr_plus_one" or "uniform".

    Raises:
      ValueError: for unknown kinds or weightings, or N < 1.
    """
    for kind in (prediction, teacher_prediction):
        if kind not in KINDS:
            raise ValueError(f"unknown prediction kind {kind!r}; valid: {', '.join(KINDS)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown {weighting=}; valid: {', '.join(WEIGHTINGS)}")
    if student_steps < 1:
        raise ValueError(f"{student_steps=} must be >= 1")

    def make_loss(apply_fn: ApplyFn) -> LossFn:
        def loss(params: Params, batch: Batch, key: Array) -> tuple[Array, dict[str, Array]]:
            x0, cond = batch["x"], batch.get("cond")
            k_i, k_eps, k_drop = jax.random.split(key, 3)
            b = x0.shape[0]
            i = jax.random.randint(k_i, (b,), 1, student_steps + 1)
            t = i.astype(jnp.float32) / student_steps
            z, _ = process.marginal_sample(k_eps, x0, t)
            teacher = Denoiser(
                lambda x, s: apply_fn(params["teacher"], x, s, cond), teacher_prediction, process
            )
            target = jax.lax.stop_gradient(distillation_target(teacher, z, t, student_steps))
            student = Denoiser(
                lambda x, s: apply_fn(params["model"], x, s, cond, k_drop), prediction, process
            )
            err = jnp.mean(jnp.square(student.x0(z, t) - target).reshape(b, -1), axis=-1)
            snr = jnp.square(process.alpha(t) / process.sigma(t))
            if weighting == "snr_trunc":
                w = jnp.maximum(snr, 1.0)
            elif weighting == "snr_plus_one":
                w = snr + 1.0
            else:
                w = jnp.ones_like(snr)
            value = jnp.mean(w * err)
            return value, {"loss": value, "x0_mse": jnp.mean(err)}

        return loss

    return Recipe(
        name="progressive_distillation",
        process=process,
        prediction=prediction,
        make_loss=make_loss,
        sampler="ddim",
        sampler_options={"eta": 0.0},
        teacher_prediction=teacher_prediction,
        chain_modes=frozenset({"distill"}),
    )
