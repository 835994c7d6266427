"""Progressive distillation: one student DDIM step on the x-target equals two teacher DDIM steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes, samplers
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.denoisers import Denoiser
from diffjax.losses.distillation import distillation_target
from diffjax.methods import progressive_distillation as pd

MEAN = jnp.array([0.5, -1.0])
COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])
VP = processes.VP()


def _ddim(x0_hat, z, t, s):
    """The DDIM step written out: alpha_s x0 + sigma_s (z - alpha_t x0) / sigma_t (scalar t, s)."""
    a_t, s_t, a_s, s_s = VP.alpha(t), VP.sigma(t), VP.alpha(s), VP.sigma(s)
    return a_s * x0_hat + s_s * (z - a_t * x0_hat) / s_t


@pytest.mark.parametrize("n, i", [(4, 1), (16, 7)])  # last step to t = 0, and a middle one
def test_one_student_step_reproduces_two_teacher_steps(n, i):
    teacher = GaussianMixture.gaussian(MEAN, COV).denoiser(VP)
    t, t_mid, t_next = i / n, (i - 0.5) / n, (i - 1) / n
    z = jax.random.normal(jax.random.key(0), (64, 2)) * 1.3
    tb = jnp.full((64,), t)
    x_tilde = jax.jit(distillation_target, static_argnums=(0, 3))(teacher, z, tb, n)

    two = _ddim(teacher.x0(z, t), z, t, t_mid)
    two = _ddim(teacher.x0(two, t_mid), two, t_mid, t_next)
    one = _ddim(x_tilde, z, t, t_next)
    np.testing.assert_allclose(one, two, atol=2e-5)

    # The same through the library's DDIM sampler: a student predicting x_tilde takes one step.
    ddim = samplers.get("ddim", eta=0.0)
    student = Denoiser(lambda x, s: distillation_target(teacher, x, s, n), "x0", VP)
    key = jax.random.key(1)
    one_lib = jax.jit(lambda z: ddim(key, student, z, timesteps=jnp.array([t, t_next])))(z)
    two_lib = jax.jit(lambda z: ddim(key, teacher, z, timesteps=jnp.array([t, t_mid, t_next])))(z)
    np.testing.assert_allclose(one_lib, two_lib, atol=2e-5)
    np.testing.assert_allclose(two_lib, two, atol=2e-5)


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_loss_is_zero_for_the_exact_student(prediction):
    """A student whose x0 is the x-target has zero loss, whatever kind it outputs."""
    n = 8
    teacher = GaussianMixture.gaussian(MEAN, COV).denoiser(VP)

    def apply_fn(params, x, t, cond=None, key=None):
        if "teacher" in params:
            return teacher.x0(x, t)
        x_tilde = distillation_target(teacher, x, t, n)
        eps = (x - VP.alpha(t)[:, None] * x_tilde) / VP.sigma(t)[:, None]
        a, s = VP.alpha(t)[:, None], VP.sigma(t)[:, None]
        return {"x0": x_tilde, "eps": eps, "v": a * eps - s * x_tilde}[prediction]

    recipe = pd.progressive_distillation(
        VP, prediction=prediction, teacher_prediction="x0", student_steps=n
    )
    params = {"model": {"student": jnp.zeros(())}, "teacher": {"teacher": jnp.zeros(())}}
    x0 = GaussianMixture.gaussian(MEAN, COV).sample(jax.random.key(2), 256)
    value, metrics = jax.jit(recipe.make_loss(apply_fn))(params, {"x": x0}, jax.random.key(3))
    assert float(metrics["x0_mse"]) < 1e-9
    # A student predicting the teacher's one-step x0 is wrong by a positive amount.
    wrong = pd.progressive_distillation(
        VP, prediction="x0", teacher_prediction="x0", student_steps=n
    )
    bad, _ = jax.jit(wrong.make_loss(lambda p, x, t, c=None, k=None: teacher.x0(x, t)))(
        params, {"x": x0}, jax.random.key(3)
    )
    assert float(bad) > 1e-4 and np.isfinite(float(value))


def test_builder_validates():
    with pytest.raises(ValueError, match="kind"):
        pd.progressive_distillation(VP, prediction="noise")
    with pytest.raises(ValueError, match="weighting"):
        pd.progressive_distillation(VP, weighting="elbo")
    with pytest.raises(ValueError, match="student_steps"):
        pd.progressive_distillation(VP, student_steps=0)


def test_the_teacher_sees_the_students_labels():
    """Student and teacher are called with the batch's (already dropped) labels."""
    calls = []

    def apply_fn(params, x, t, cond=None, key=None):
        calls.append((float(params["id"]), cond))
        return jnp.zeros_like(x)

    recipe = pd.progressive_distillation(VP, student_steps=4)
    labels = jnp.array([0, 3, 10, 7])  # 10: a dropped label (the null class)
    params = {"model": {"id": jnp.array(0.0)}, "teacher": {"id": jnp.array(1.0)}}
    recipe.make_loss(apply_fn)(params, {"x": jnp.ones((4, 2)), "label": labels}, jax.random.key(0))
    assert {who for who, _ in calls} == {0.0, 1.0}
    for _, cond in calls:
        np.testing.assert_array_equal(cond, labels)
