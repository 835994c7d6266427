"""Shared by the tests of the trainer: tiny toy2d configs, and `python -m diffjax.main` on
configs/ddpm_toy2d.py in a subprocess."""

import os
import subprocess
import sys

import ml_collections

from configs import flow_matching_toy2d


def tiny(config: ml_collections.ConfigDict, data_dir: str, steps: int = 40):
    """`config` shrunk to seconds: a small MLP, few steps, few samples."""
    config.data.kwargs.data_dir = data_dir
    config.model.kwargs = ml_collections.ConfigDict({"features": 32, "num_blocks": 1})
    config.training.update(
        {"num_steps": steps, "batch_size": 64, "log_every": 10, "checkpoint_every": steps}
    )
    config.optim.warmup_steps = 0
    config.optim.ema_decay = 0.9
    config.sample.num_samples = 16
    config.eval.num_samples = 200
    return config


def flow_matching(data_dir: str, steps: int = 40) -> ml_collections.ConfigDict:
    return tiny(flow_matching_toy2d.get_config(), data_dir, steps)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def toy2d_cli(
    workdir, data_dir, config: ml_collections.ConfigDict, *flags: str, devices: int = 1, **popen
) -> subprocess.Popen:
    """Starts `python -m diffjax.main` on configs/ddpm_toy2d.py with `config`'s training fields,
    `sample.num_samples` and `eval.at_end`, then `flags`, on `devices` simulated CPU devices,
    the datasets in `data_dir`; `popen` goes to subprocess.Popen."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "TFDS_DATA_DIR": str(data_dir),
        "PYTHONPATH": ROOT,
    }
    cmd = [
        sys.executable,
        "-m",
        "diffjax.main",
        f"--config={ROOT}/configs/ddpm_toy2d.py",
        f"--workdir={workdir}",
        *[f"--config.training.{k}={v}" for k, v in config.training.items()],
        f"--config.sample.num_samples={config.sample.num_samples}",
        f"--config.eval.at_end={config.eval.at_end}",
        *flags,
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, **popen)


def run_toy2d_cli(*args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """`toy2d_cli` run to the end with its output captured as text."""
    proc = toy2d_cli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
