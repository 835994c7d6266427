"""Runs as objects: config.json round trip, derived configs, the optimizer of the recipe, and
teachers with clear errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import consistency_distillation_toy2d, progressive_distillation_toy2d
from diffjax.errors import WorkdirError
from diffjax.train import experiment, loop, runs
from tests.train import toy_runs


def test_derive_replaces_dotted_fields_and_keeps_the_original():
    config = toy_runs.flow_matching("unused")
    derived = runs.derive(config, **{"training.num_steps": 7, "teacher.workdir": "/x"})
    assert derived.training.num_steps == 7 and derived.teacher.workdir == "/x"
    assert config.training.num_steps == 40 and config.teacher.workdir == ""


def _matrices_only(params):
    """A weight-decay mask: decay the kernels, not the biases."""
    return jax.tree.map(lambda leaf: leaf.ndim > 1, params)


def test_the_optimizer_decays_only_where_the_recipe_masks(tmp_path):
    config = toy_runs.flow_matching(str(tmp_path / "data"))
    config.optim.update({"optimizer": "adamw", "weight_decay": 0.5, "grad_clip": 0.0})
    exp = experiment.build(config)
    recipe = dataclasses.replace(exp.recipe, weight_decay_mask=_matrices_only)
    optimizer, lr, create = runs.state_constructor(dataclasses.replace(exp, recipe=recipe))
    params = create(jax.random.PRNGKey(0)).params
    zero = jax.tree.map(jnp.zeros_like, params)
    # With zero gradients AdamW's update is the decay alone, -lr * wd * param, where masked.
    updates, _ = optimizer.update(zero, optimizer.init(params), params)
    mask = _matrices_only(params)
    assert any(jax.tree.leaves(mask)) and not all(jax.tree.leaves(mask))
    for u, p, m in zip(*map(jax.tree.leaves, (updates, params, mask)), strict=True):
        want = -float(lr(0)) * 0.5 * p if m else np.zeros_like(p)
        np.testing.assert_allclose(u, want, rtol=1e-6)


def test_teacher_is_the_ema_network_of_a_finished_run(tmp_path):
    data = str(tmp_path / "data")
    teacher_dir = str(tmp_path / "teacher")
    teacher_state = loop.train(toy_runs.flow_matching(data), teacher_dir)
    saved = runs.load_config(teacher_dir).to_json(sort_keys=True)
    assert saved == toy_runs.flow_matching(data).to_json(sort_keys=True)  # tuples become lists

    config = toy_runs.tiny(consistency_distillation_toy2d.get_config(), data, steps=2)
    config.eval.at_end = False
    config.teacher.workdir = teacher_dir
    config.model.dtype = "bfloat16"  # a float32 teacher's params run in the student's dtype
    state = loop.train(config, str(tmp_path / "cd"))
    for got, want in zip(
        jax.tree.leaves(state.frozen["teacher"]),
        jax.tree.leaves(teacher_state.ema_params["model"]),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    # The EMA target (mu0 > 0) is frozen beside the teacher.
    assert set(state.frozen) == {"teacher", "target"}


def test_teacher_errors_name_the_problem(tmp_path):
    data = str(tmp_path / "data")
    config = toy_runs.tiny(progressive_distillation_toy2d.get_config(), data)
    config.mode = "train"
    with pytest.raises(ValueError, match="teacher.workdir"):
        loop.train(config, str(tmp_path / "no_teacher"))
    with pytest.raises(WorkdirError, match="config.json"):
        runs.load_config(str(tmp_path / "missing"))

    teacher_dir = str(tmp_path / "teacher")
    loop.train(toy_runs.flow_matching(data, steps=2), teacher_dir)
    config.teacher.workdir = teacher_dir
    wrong_model = runs.derive(config, **{"model.kwargs.features": 16})
    with pytest.raises(ValueError, match="config.model"):
        loop.train(wrong_model, str(tmp_path / "wrong_model"))
    # A class-conditional student has another network than its unconditional teacher.
    conditional = runs.derive(config, **{"model.num_classes": 2})
    with pytest.raises(ValueError, match="config.model.*'num_classes': 2"):
        loop.train(conditional, str(tmp_path / "conditional"))
    wrong_kind = runs.derive(config, **{"loss.teacher_prediction": "eps"})
    with pytest.raises(ValueError, match="teacher_prediction='eps'.*'velocity'"):
        loop.train(wrong_kind, str(tmp_path / "wrong_kind"))
