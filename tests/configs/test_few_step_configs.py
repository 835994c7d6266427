"""The flow and few-step configs build, and the single-run ones train through `diffjax.main`
(distill and reflow chains: tests/train/test_distill.py, test_reflow.py)."""

import importlib

import pytest

from diffjax.train import experiment
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
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_builds(name, tmp_path):
    config = importlib.import_module(f"configs.{name}").get_config()
    config.data.kwargs.data_dir = str(tmp_path)
    exp = experiment.build(config)
    mode, method, process, sampler = EXPECTED[name]
    assert (config.mode, config.method, config.process.name) == (mode, method, process)
    assert (config.sample.sampler or exp.recipe.sampler) == sampler
    assert exp.recipe.teacher == (
        name in ("consistency_distillation_toy2d", "progressive_distillation_toy2d")
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["consistency_toy2d", "meanflow_toy2d"])
def test_trains_through_main(name, tmp_path):
    losses = digits_run.train_losses(name, tmp_path, num_steps=100)
    assert losses[-1] < losses[0], losses
