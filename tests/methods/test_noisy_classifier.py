"""The noisy classifier as a method: a Recipe without prediction or sampler, whose loss is the
noisy cross-entropy (tests/losses/test_classification.py checks its optimum)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, methods, processes
from diffjax.methods.base import Recipe


def test_recipe_is_a_classifier():
    recipe = methods.get("noisy_classifier")(process=processes.get("ddpm_linear", num_steps=10))
    assert not recipe.generative and recipe.prediction is None
    assert isinstance(recipe.objective, losses.NoisyClassifierLoss)
    with pytest.raises(ValueError, match="classifier"):
        recipe.denoiser(lambda *a, **k: None, {"model": {}})
    apply_fn = lambda p, x, t, cond=None, key=None: jnp.zeros((x.shape[0], 3))  # noqa: E731
    batch = {"x": jnp.zeros((4, 2)), "label": jnp.array([0, 1, 2, 0])}
    value, metrics = jax.jit(recipe.make_loss(apply_fn))({"model": {}}, batch, jax.random.key(0))
    np.testing.assert_allclose(value, np.log(3.0), rtol=1e-6)  # uniform logits: log K


def test_generative_flag_and_prediction_agree():
    proc = processes.get("vp")
    objective = losses.NoisyClassifierLoss(proc)
    with pytest.raises(ValueError, match="generative"):
        Recipe(name="x", process=proc, prediction=None, objective=objective, sampler="")
    with pytest.raises(ValueError, match="generative"):
        Recipe("x", proc, "eps", objective, "ddpm", generative=False)
