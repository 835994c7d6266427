"""The flow and few-step configs build, and the single-run ones train through `diffjax.main`
(distill and reflow chains: tests/train/test_distill.py, test_reflow.py)."""

import importlib
import json
import math

import jax
import jax.numpy as jnp
import pytest

from diffjax import methods, models, processes, samplers
from tests.methods import digits_run

EXPECTED = {
    # config: (mode, method, process, sampler)
    "flow_matching_toy2d": ("train", "flow_matching", "rectified_flow", "euler"),
    "ot_cfm_toy2d": ("train", "ot_cfm", "rectified_flow", "euler"),
    "rectified_flow_toy2d": ("train", "rectified_flow", "rectified_flow", "euler"),
    "reflow_toy2d": ("reflow", "rectified_flow", "rectified_flow", "euler"),
    "consistency_toy2d": ("train", "consistency", "rectified_flow", "consistency"),
    "consistency_distillation_toy2d": ("train", "consistency", "rectified_flow", "consistency"),
    "progressive_distillation_toy2d": (
        "distill",
        "progressive_distillation",
        "rectified_flow",
        "ddim",
    ),
    "meanflow_toy2d": ("train", "meanflow", "rectified_flow", "meanflow"),
    "rectified_flow_cifar10": ("train", "rectified_flow", "rectified_flow", "dopri5"),
    "consistency_cifar10": ("train", "consistency", "edm", "consistency"),
    "meanflow_cifar10": ("train", "meanflow", "rectified_flow", "meanflow"),
    "progressive_distillation_cifar10": ("distill", "progressive_distillation", "cosine", "ddim"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_builds(name):
    """Method, process, sampler and network (shapes only: no data, no memory for CIFAR)."""
    config = importlib.import_module(f"configs.{name}").get_config()
    process = processes.get(config.process.name, **config.process.kwargs.to_dict())
    recipe = methods.get(config.method)(process=process, **config.loss.to_dict())
    mode, method, process_name, sampler = EXPECTED[name]
    assert (config.mode, config.method, config.process.name) == (mode, method, process_name)
    sampler_name = config.sample.sampler or recipe.sampler
    assert sampler_name == sampler
    samplers.get(sampler_name, **(recipe.sampler_options if not config.sample.sampler else {}))
    assert (recipe.teacher_prediction is not None) == (
        config.method == "progressive_distillation" or config.loss.get("mode") == "cd"
    )
    shape = (2, 2) if config.data.name == "toy2d" else (2, 32, 32, 3)
    model = models.get(config.model.name, out_channels=shape[-1], **config.model.kwargs)
    times = jnp.zeros((2,) if recipe.num_times == 1 else (2, recipe.num_times))
    out = jax.eval_shape(
        lambda x, t: model.init_with_output(jax.random.key(0), x, t)[0],
        jnp.zeros(shape),
        times,
    )
    assert out.shape == shape


@pytest.mark.slow
@pytest.mark.parametrize("name", ["consistency_toy2d", "meanflow_toy2d"])
def test_trains_through_main(name, tmp_path):
    """1500 steps through the CLI learn: one-step samples end far closer to the data than noise.

    (Consistency training's loss is no progress measure: its target is the model itself, and
    iCT's curriculum doubles N, and with it the weight 1 / (s_{n+1} - s_n), along the run.)"""
    overrides = {"eval.at_end": True, "eval.num_samples": 500}
    losses = digits_run.train_losses(name, tmp_path, num_steps=1500, **overrides)
    assert all(map(math.isfinite, losses)), losses
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["frechet"] < 0.1 * metrics["frechet_ceiling_noise"], metrics


@pytest.mark.parametrize("name", ["consistency_toy2d", "consistency_cifar10"])
def test_curriculum_length_follows_the_training_length(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    config.training.num_steps = 123
    assert config.loss.to_dict()["total_steps"] == 123
