"""mode=edit on a briefly trained digits model: every kind writes its grid and numbers, RePaint
keeps the known pixels exactly, and bad settings name their field."""

import copy
import json
import os

import numpy as np
import pytest

from configs import default
from diffjax.train import edit, loop


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    config = default.get_config()
    config.data.kwargs = {"data_dir": str(root / "data")}
    config.training.update({"num_steps": 20, "log_every": 10, "checkpoint_every": 20})
    config.training.sample_every = 0
    config.process.kwargs = {"num_steps": 50}
    config.sample.num_steps = 10
    config.sample.num_samples = 4
    config.eval.at_end = False
    loop.train(config, str(root / "run"))
    return config, str(root / "run")


@pytest.mark.parametrize("kind", ["inpaint", "sdedit", "invert", "interpolate"])
def test_every_kind_writes_its_grid_and_numbers(trained, kind):
    config, workdir = copy.deepcopy(trained[0]), trained[1]
    config.edit.update({"kind": kind, "num_images": 4, "num_steps": 10, "num_points": 3})
    config.edit.update({"jump_length": 2, "resamplings": 2})
    report = edit.edit(config, workdir)
    assert os.path.exists(report["png"])
    with open(os.path.join(workdir, f"edit_{kind}.json")) as f:
        assert json.load(f)["kind"] == kind
    if kind == "inpaint":
        assert report["known_max_error"] == 0.0  # RePaint keeps the known pixels exactly
        assert report["unknown_rmse"] > 0.0
        assert {"accuracy_input", "accuracy_noise_filled", "accuracy_result"} <= set(report)
    if kind == "invert":
        assert np.isfinite(report["reconstruction_rmse"])
    samples = np.load(os.path.join(workdir, "samples", f"edit_{kind}.npz"))["samples"]
    rows = {"inpaint": 3, "sdedit": 2, "invert": 3, "interpolate": 3}[kind]  # one per example
    assert samples.shape == (4 * rows, 8, 8, 1)


@pytest.mark.parametrize(
    "field, value", [("kind", "paint"), ("mask", "left"), ("t0", 0.0), ("resamplings", 0)]
)
def test_bad_settings_name_their_field(trained, field, value):
    config, workdir = copy.deepcopy(trained[0]), trained[1]
    config.edit[field] = value
    with pytest.raises(ValueError, match=f"edit.{field}"):
        edit.edit(config, workdir)
