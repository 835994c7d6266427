"""A tiny UNet and a tiny DiT train on digits through `python -m diffjax.main` and lower the loss.

Slow (two short training runs in subprocesses); run with `pytest -m slow`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, model", [("default.py", "unet_tiny"), ("dit_digits.py", "dit_tiny")]
)
def test_trains_on_digits_through_main(tmp_path, config, model):
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "diffjax.main",
        f"--config={ROOT}/configs/{config}",
        f"--workdir={workdir}",
        f"--config.model.name={model}",
        "--config.training.num_steps=300",
        "--config.training.log_every=25",
        "--config.training.sample_every=0",
        "--config.eval.at_end=False",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=1800)
    records = [json.loads(line) for line in (workdir / "history.jsonl").read_text().splitlines()]
    losses = np.array([r["loss"] for r in records if "loss" in r])
    # The eps-prediction loss starts at E|eps|^2 = 1 (zero-initialised output layer); the mean
    # of the last quarter of the logged losses must be clearly below the first logged value.
    assert len(losses) >= 8
    assert np.all(np.isfinite(losses))
    assert losses[-len(losses) // 4 :].mean() < 0.6 * losses[0], losses
