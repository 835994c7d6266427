"""Every method trains class-conditionally through `python -m diffjax.main` (slow): the Gaussian
family on digits with a tiny UNet, the flow family on eight_gaussians with the MLP, and the
distillation methods from a conditional teacher trained first."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.methods import digits_run

DIGITS = {"model.name": "unet_tiny", "model.num_classes": 10, "model.p_uncond": 0.1}
TOY = {
    "data.kwargs.distribution": "eight_gaussians",
    "model.kwargs.features": 32,
    "model.kwargs.num_blocks": 1,
    "model.num_classes": 8,
    "model.p_uncond": 0.1,
    "sample.num_steps": 8,
}
STEPS = 100


def _check(losses):
    assert len(losses) == STEPS // 10 and np.all(np.isfinite(losses)), losses


@pytest.mark.slow
@pytest.mark.parametrize(
    "config_name, overrides",
    [
        ("ddpm_digits", {"sample.num_steps": 5}),
        ("iddpm_digits", {"sample.num_steps": 5}),
        ("ncsn_digits", {"sample.options.steps_per_level": 2}),
        ("sde_digits", {"sample.num_steps": 5}),
        ("vdm_digits", {"sample.num_steps": 5}),
        ("edm_digits", {"sample.num_steps": 5}),
    ],
)
def test_gaussian_methods_train_on_digit_labels(tmp_path, config_name, overrides):
    _check(digits_run.train_losses(config_name, tmp_path, STEPS, **{**DIGITS, **overrides}))


@pytest.mark.slow
@pytest.mark.parametrize(
    "config_name, overrides",
    [
        ("flow_matching_toy2d", {}),
        ("ot_cfm_toy2d", {}),
        ("rectified_flow_toy2d", {}),
        ("consistency_toy2d", {"sample.num_steps": 1}),
        # The CFG target: guided towards the label, the null class learned by label dropout.
        ("meanflow_toy2d", {"sample.num_steps": 1, "loss.guidance_scale": 2, "loss.null_cond": 8}),
    ],
)
def test_flow_methods_train_on_toy_labels(tmp_path, config_name, overrides):
    _check(digits_run.train_losses(config_name, tmp_path, STEPS, **{**TOY, **overrides}))


@pytest.mark.slow
def test_distillation_methods_learn_from_a_conditional_teacher(tmp_path):
    teacher = tmp_path / "teacher"
    _check(digits_run.train_losses("flow_matching_toy2d", teacher, STEPS, **TOY))
    cd = digits_run.train_losses(
        "consistency_distillation_toy2d",
        tmp_path / "cd",
        STEPS,
        **{**TOY, "sample.num_steps": 1, "teacher.workdir": teacher},
    )
    _check(cd)
    # Progressive distillation: two rounds (2 -> 1 steps), each a conditional train run.
    flags = {
        **TOY,
        "mode": "distill",
        "teacher.workdir": teacher,
        "distill.start_steps": 2,
        "distill.end_steps": 1,
        "training.num_steps": STEPS,
        "training.batch_size": 32,
        "training.log_every": 10,
        "training.sample_every": 0,
        "sample.num_samples": 16,
        "eval.num_samples": 64,
    }
    del flags["sample.num_steps"]
    cmd = [
        sys.executable, "-m", "diffjax.main",
        f"--config={digits_run.ROOT}/configs/progressive_distillation_toy2d.py",
        f"--workdir={tmp_path / 'pd'}", *[f"--config.{k}={v}" for k, v in flags.items()],
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=digits_run.ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = json.loads((tmp_path / "pd" / "distill.json").read_text())["rounds"]
    assert [r["student_steps"] for r in rounds] == [2, 1]
    for r in rounds:
        with open(os.path.join(r["workdir"], "history.jsonl")) as f:
            _check([json.loads(line)["loss"] for line in f if '"loss"' in line])
