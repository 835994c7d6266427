"""Guidance through the trainer: a noisy classifier trains as a method and guides a digits model
in mode=sample; classifier-free guidance samples a conditional model; bad settings name their
field."""

import copy
import os

import numpy as np
import pytest

from configs import classifier_digits, ddpm_digits_cond, default
from diffjax.train import generate, loop


def _short(config, root):
    config.data.kwargs = {"data_dir": str(root / "data")}
    config.process.kwargs = {"num_steps": 50}
    config.training.update({"num_steps": 30, "log_every": 10, "checkpoint_every": 30})
    config.training.sample_every = 0
    config.sample.num_steps = 10
    config.sample.num_samples = 20
    config.eval.num_samples = 100
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("guidance")
    out = {}
    for name, module in [("classifier", classifier_digits), ("uncond", default),
                         ("cond", ddpm_digits_cond)]:  # fmt: skip
        config = _short(module.get_config(), root)
        config.eval.at_end = name == "classifier"
        loop.train(config, str(root / name))
        out[name] = (config, str(root / name))
    return out


def test_the_classifier_run_reports_its_accuracy_at_every_t(runs):
    config, workdir = runs["classifier"]
    metrics = generate.outputs.read_json(os.path.join(workdir, "metrics.json"))
    assert set(metrics["accuracy_by_t"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    assert not os.path.exists(os.path.join(workdir, "samples"))  # a classifier draws none


@pytest.mark.parametrize("kind", ["classifier", "classifier_free"])
def test_guided_sampling_through_mode_sample(runs, kind):
    name = "uncond" if kind == "classifier" else "cond"
    config, workdir = copy.deepcopy(runs[name][0]), runs[name][1]
    config.guidance.update({"kind": kind, "scale": 2.0})
    if kind == "classifier":
        config.guidance.classifier_workdir = runs["classifier"][1]
    report = generate.sample(config, workdir)
    x = np.load(report["png"].replace(".png", ".npz"))["samples"]
    assert x.shape == (20, 8, 8, 1) and np.all(np.isfinite(x))


def test_bad_guidance_names_its_field(runs):
    config, workdir = copy.deepcopy(runs["uncond"][0]), runs["uncond"][1]
    config.guidance.kind = "classifier_free"
    with pytest.raises(ValueError, match="guidance.kind"):
        generate.sample(config, workdir)
    config.guidance.kind = "classifier"
    with pytest.raises(ValueError, match="guidance.classifier_workdir"):
        generate.sample(config, workdir)
    config.guidance.classifier_workdir = runs["cond"][1]  # a generative run, not a classifier
    with pytest.raises(ValueError, match="noisy_classifier"):
        generate.sample(config, workdir)
    config.guidance.update({"kind": "", "classifier_workdir": "", "scale": -1.0})
    with pytest.raises(ValueError, match="guidance.scale"):
        generate.sample(config, workdir)


def test_sample_labels_cycle_the_chosen_classes(tmp_path):
    from diffjax.train import experiment

    config = ddpm_digits_cond.get_config()
    config.data.kwargs = {"data_dir": str(tmp_path / "data")}
    exp = experiment.build(config)
    np.testing.assert_array_equal(exp.sample_labels(12), np.arange(12) % 10)
    config.sample.labels = (3, 7)
    np.testing.assert_array_equal(experiment.build(config).sample_labels(5), [3, 7, 3, 7, 3])
    config.sample.labels = (10,)
    with pytest.raises(ValueError, match="sample.labels"):
        experiment.build(config).sample_labels(4)
