"""Shared by the Gaussian-core method tests: a tiny digits config trained through `diffjax.main`."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_losses(config_name: str, workdir, num_steps: int = 60, **overrides) -> list[float]:
    """Runs `python -m diffjax.main --config=configs/<config_name>.py` for `num_steps` small
    steps (with `overrides` of dotted config fields) and returns the logged losses (every 10
    steps)."""
    flags = {
        "training.num_steps": num_steps,
        "training.batch_size": 32,
        "training.log_every": 10,
        "training.sample_every": 0,
        "eval.at_end": False,
        "sample.num_samples": 4,
        "optim.warmup_steps": 10,
        **overrides,
    }
    cmd = [
        sys.executable, "-m", "diffjax.main",
        f"--config={os.path.join(ROOT, 'configs', config_name + '.py')}", f"--workdir={workdir}",
        *[f"--config.{k}={v}" for k, v in flags.items()],
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(workdir, "history.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]
