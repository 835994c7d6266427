"""mode=score_machine: samples of an analytic machine written like mode=sample's, the ideal
machine's samples are training images, bad machine fields name themselves."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import els_digits
from diffjax import main as cli
from diffjax.errors import ConfigError
from diffjax.train import score_machine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny(tmp_path, **machine):
    config = els_digits.get_config()
    config.data.kwargs = {"data_dir": str(tmp_path / "data")}
    config.sample.update({"num_samples": 4, "num_steps": 20})
    config.machine.update({"num_train": 6, **machine})
    return config


def test_ideal_machine_writes_training_images(tmp_path):
    report = score_machine.score_machine(tiny(tmp_path, name="ideal"), str(tmp_path / "run"))
    assert cli.MODES["score_machine"] is score_machine.score_machine
    assert report["nearest_train_rms_median"] < 1e-3  # memorisation
    samples = np.load(str(tmp_path / "run" / "samples" / "ideal_ddim_20.npz"))["samples"]
    assert samples.shape == (4, 8, 8, 1)
    with open(tmp_path / "run" / "samples" / "ideal_ddim_20.json") as f:
        assert json.load(f)["nfe"] == 20
    assert os.path.exists(report["png"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "elsa", "machine: unknown score machine 'elsa'"),
        ("patch_size", 4, "machine: patch_size=4 must be odd"),
        ("num_train", -1, "machine.num_train=-1"),
    ],
)
def test_bad_machine_fields_name_themselves(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        score_machine.build(tiny(tmp_path, **{"name": "els", field: value}))


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    workdir = tmp_path / "run"
    overrides = [
        "--config.sample.num_samples=4",
        "--config.sample.num_steps=10",
        "--config.machine.num_train=20",
    ]
    env = {**os.environ, "PYTHONPATH": ROOT, "TFDS_DATA_DIR": str(tmp_path / "data")}
    subprocess.run(
        [sys.executable, "-m", "diffjax.main", "--config=configs/els_digits.py",
         f"--workdir={workdir}", *overrides],
        cwd=ROOT, check=True, timeout=600, env=env,
    )  # fmt: skip
    samples = np.load(str(workdir / "samples" / "els_ddim_10.npz"))["samples"]
    assert samples.shape == (4, 8, 8, 1) and np.all(np.abs(samples) <= 1.0 + 1e-6)
