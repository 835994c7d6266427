"""The typed config sections: every config builds them, and each bad value is a ValueError
naming its config field."""

import dataclasses
import importlib
import pkgutil
import re

import pytest

import configs
from configs import default
from diffjax.train import experiment, settings

SECTIONS = {
    "training": settings.TrainingConfig,
    "optim": settings.OptimConfig,
    "sample": settings.SampleConfig,
    "eval": settings.EvalConfig,
    "teacher": settings.TeacherConfig,
    "distill": settings.DistillConfig,
    "reflow": settings.ReflowConfig,
}


@pytest.mark.parametrize("name", [m.name for m in pkgutil.iter_modules(configs.__path__)])
def test_every_config_reads_into_typed_sections(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    for section, cls in SECTIONS.items():
        typed = settings.read(cls, config[section])
        assert {f.name for f in dataclasses.fields(typed)} == set(config[section].keys())


def test_sections_are_frozen_and_hold_immutable_values():
    config = default.get_config()
    sample = settings.read(settings.SampleConfig, config.sample)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.num_steps = 3
    with pytest.raises(TypeError):
        sample.options["eta"] = 1.0
    config.reflow.eval_nfes = [1, 2]  # as read back from config.json
    assert settings.read(settings.ReflowConfig, config.reflow).eval_nfes == (1, 2)


def test_a_missing_or_extra_field_is_named():
    config = default.get_config()
    with config.unlocked():
        config.training.num_stepz = 3
    with pytest.raises(TypeError, match="num_stepz"):
        settings.read(settings.TrainingConfig, config.training)


@pytest.mark.parametrize(
    ("section", "fields", "message"),
    [
        ("training", {"num_steps": 0}, "training.num_steps=0 must be >= 1"),
        ("training", {"batch_size": 0}, "training.batch_size=0 must be >= 1"),
        ("training", {"log_every": 0}, "training.log_every=0 must be >= 1"),
        ("training", {"checkpoint_every": 0}, "training.checkpoint_every=0 must be >= 1"),
        ("training", {"sample_every": -1}, "training.sample_every=-1 must be >= 0"),
        ("optim", {"optimizer": "sgdx"}, "unknown optim.optimizer 'sgdx'; valid: adam, adamw"),
        ("optim", {"schedule": "linear"}, "unknown optim.schedule 'linear'; valid: constant"),
        ("optim", {"learning_rate": 0.0}, "optim.learning_rate=0.0 must be > 0"),
        ("optim", {"warmup_steps": -1}, "optim.warmup_steps=-1 must be >= 0"),
        ("optim", {"grad_clip": -1.0}, "optim.grad_clip=-1.0 must be >= 0"),
        (
            "optim",
            {"optimizer": "adam", "weight_decay": 0.1},
            "optim.weight_decay needs optim.optimizer='adamw'",
        ),
        ("optim", {"ema_decay": 1.0}, "optim.ema_decay=1.0 must be in [0, 1)"),
        ("sample", {"num_steps": -1}, "sample.num_steps=-1 must be >= 0"),
        (
            "distill",
            {"start_steps": 6, "end_steps": 1},
            "distill.start_steps=6 must halve down to distill.end_steps=1",
        ),
        ("distill", {"start_steps": 8, "end_steps": 0}, "distill.end_steps=0 >= 1"),
        ("reflow", {"rounds": 0}, "reflow.rounds=0 must be >= 1"),
        ("reflow", {"num_pairs": 0}, "reflow.num_pairs=0 must be >= 1"),
        ("reflow", {"ode_steps": 0}, "reflow.ode_steps=0 must be >= 1"),
        ("reflow", {"pair_batch_size": 0}, "reflow.pair_batch_size=0 must be >= 1"),
        ("reflow", {"eval_nfes": (2, 0)}, "reflow.eval_nfes=(2, 0) must be positive"),
        ("reflow", {"eval_nfes": ()}, "reflow.eval_nfes=() must be positive"),
    ],
)
def test_bad_values_name_the_field(section, fields, message):
    config = default.get_config()
    config[section].update(fields)
    with pytest.raises(ValueError, match=re.escape(message)):
        settings.read(SECTIONS[section], config[section])


def test_distill_halves_from_start_to_end():
    config = default.get_config()
    config.distill.update({"start_steps": 8, "end_steps": 2})
    assert settings.read(settings.DistillConfig, config.distill).student_steps == [8, 4, 2]


def test_the_experiment_reads_and_checks_the_sections():
    config = default.get_config()
    config.sample.num_steps = 7
    exp = experiment.build(config)
    assert exp.sampling.num_steps == exp.sample_num_steps == 7
    assert exp.training == settings.read(settings.TrainingConfig, config.training)
    assert exp.with_sampling(num_steps=0).sample_num_steps is None
    config.training.batch_size = 0
    with pytest.raises(ValueError, match=re.escape("training.batch_size=0 must be >= 1")):
        experiment.build(config)
