"""The typed config sections: every config builds them, and each bad value is a ConfigError (a
ValueError) naming its config field."""

import dataclasses
import importlib
import pkgutil
import re

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import configs
from configs import default, flow_matching_toy2d, flow_matching_toy2d_cond, meanflow_toy2d
from diffjax.errors import ConfigError
from diffjax.train import experiment, settings

SECTIONS = {
    "training": settings.TrainingConfig,
    "optim": settings.OptimConfig,
    "sample": settings.SampleConfig,
    "eval": settings.EvalConfig,
    "teacher": settings.TeacherConfig,
    "distill": settings.DistillConfig,
    "reflow": settings.ReflowConfig,
    "edit": settings.EditConfig,
    "super_resolution": settings.SuperResolutionConfig,
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
    with pytest.raises(ConfigError, match=r"unknown config field training\.num_stepz; valid"):
        settings.read(settings.TrainingConfig, config.training)
    fields = config.training.to_dict()
    del fields["num_stepz"], fields["log_every"]
    with pytest.raises(ConfigError, match=r"config field training\.log_every is missing"):
        settings.read(settings.TrainingConfig, ml_collections.ConfigDict(fields))


@pytest.mark.parametrize(
    ("section", "fields", "message"),
    [
        ("training", {"num_steps": 0}, "training.num_steps=0 must be >= 1"),
        ("training", {"batch_size": 0}, "training.batch_size=0 must be >= 1"),
        ("training", {"log_every": 0}, "training.log_every=0 must be >= 1"),
        ("training", {"checkpoint_every": 0}, "training.checkpoint_every=0 must be >= 1"),
        ("training", {"sample_every": -1}, "training.sample_every=-1 must be >= 0"),
        ("training", {"grad_accum_steps": 0}, "training.grad_accum_steps=0 must be >= 1"),
        (
            "training",
            {"batch_size": 128, "grad_accum_steps": 3},
            "training.batch_size=128 must be divisible by training.grad_accum_steps=3",
        ),
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
        ("edit", {"num_steps": 5}, "edit.jump_length=10 must be <= edit.num_steps=5"),
        (
            "super_resolution",
            {"low_res_size": -2},
            "super_resolution.low_res_size=-2 must be >= 0",
        ),
        (
            "super_resolution",
            {"low_res_size": 8, "sample_level": 1.5},
            "super_resolution: sample_level=1.5 must lie in [0, 1]",
        ),
    ],
)
def test_bad_values_name_the_field(section, fields, message):
    config = default.get_config()
    config[section].update(fields)
    with pytest.raises(ValueError, match=re.escape(message)):
        settings.read(SECTIONS[section], config[section])


def test_model_dtype_is_the_networks_compute_dtype_and_old_configs_are_float32():
    config = default.get_config()
    assert experiment.build(config).model.dtype == jnp.float32
    config.model.dtype = "bfloat16"
    exp = experiment.build(config)
    assert exp.model.dtype == jnp.bfloat16 and exp.model.param_dtype == jnp.float32
    config.model.dtype = "float16"
    with pytest.raises(ConfigError, match="unknown model.dtype 'float16'; valid: float32, bf"):
        experiment.build(config)
    config.model.dtype = "float32"
    config.model.kwargs.dtype = "bfloat16"
    with pytest.raises(ConfigError, match="set model.dtype .* not model.kwargs.dtype"):
        experiment.build(config)
    old = default.get_config().to_dict()  # a config.json written before the fields existed
    del old["model"]["dtype"], old["training"]["grad_accum_steps"]
    exp = experiment.build(ml_collections.ConfigDict(old))
    assert exp.model.dtype == jnp.float32 and exp.training.grad_accum_steps == 1
    assert exp.training.micro_batch_size == exp.training.batch_size


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


@pytest.mark.parametrize(
    ("num_classes", "p_uncond", "message"),
    [
        (-1, 0.0, "model.num_classes=-1 must be >= 0"),
        (10, 1.0, "model.p_uncond=1.0 must be in [0, 1)"),
        (10, -0.5, "model.p_uncond=-0.5 must be in [0, 1)"),
        (0, 0.1, "model.p_uncond=0.1 drops class labels, but model.num_classes=0"),
    ],
)
def test_bad_conditioning_names_the_field(num_classes, p_uncond, message):
    config = default.get_config()
    config.model.update({"num_classes": num_classes, "p_uncond": p_uncond})
    with pytest.raises(ValueError, match=re.escape(message)):
        settings.ConditioningConfig.of_model(config.model)


def test_training_labels_are_checked_on_the_host():
    x = np.zeros((3, 2), np.float32)
    unconditional = settings.ConditioningConfig(0, 0.0)
    assert set(unconditional.train_batch({"x": x, "label": np.full(3, -1)})) == {"x"}
    conditional = settings.ConditioningConfig(8, 0.1)
    batch = conditional.train_batch({"x": x, "label": np.array([0, 7, 3])})
    np.testing.assert_array_equal(batch["label"], [0, 7, 3])
    for bad in (8, -1):
        with pytest.raises(ValueError, match=re.escape(f"label {bad} lies outside [0, model.num_")):
            conditional.train_batch({"x": x, "label": np.array([0, bad, 3])})
    with pytest.raises(ValueError, match="model.num_classes=8 trains on class labels"):
        conditional.train_batch({"x": x})


def _with_model(config, **fields):
    config.model.update(fields)
    return config


@pytest.mark.parametrize(
    ("make_config", "message"),
    [
        (
            lambda: _with_model(default.get_config(), num_classes=11),
            "model.num_classes=11 must equal the 10 classes of dataset 'digits'",
        ),
        (
            lambda: _with_model(
                _toy(flow_matching_toy2d.get_config(), "swiss_roll"), num_classes=2
            ),
            "model.num_classes=2 needs class labels, but dataset 'toy2d' has none",
        ),
        (
            lambda: _with_model(
                default.get_config(), kwargs=ml_collections.ConfigDict({"num_classes": 10})
            ),
            "set model.num_classes (checked against the data), not its kwargs",
        ),
        (
            lambda: _guided_meanflow(num_classes=8, p_uncond=0.1, null_cond=7),
            "loss.guidance_scale=2.0 needs loss.null_cond=7 to equal model.num_classes=8",
        ),
        (
            lambda: _guided_meanflow(num_classes=8, p_uncond=0.0, null_cond=8),
            "loss.guidance_scale=2.0 needs model.p_uncond > 0",
        ),
    ],
)
def test_the_experiment_checks_the_labels(make_config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        experiment.build(make_config())


def _toy(config, distribution):
    config.data.kwargs = ml_collections.ConfigDict({"distribution": distribution})
    return config


def _guided_meanflow(num_classes, p_uncond, null_cond):
    config = _toy(meanflow_toy2d.get_config(), "eight_gaussians")
    config.loss.guidance_scale = 2.0
    config.loss.null_cond = null_cond
    return _with_model(config, num_classes=num_classes, p_uncond=p_uncond)


def test_a_conditional_experiment_builds_the_labelled_network():
    exp = experiment.build(flow_matching_toy2d_cond.get_config())
    assert exp.model.num_classes == 8 and exp.conditioning.label_dropout.p_uncond == 0.1
    np.testing.assert_array_equal(exp.sample_labels(10), [0, 1, 2, 3, 4, 5, 6, 7, 0, 1])
    assert experiment.build(default.get_config()).sample_labels(10) is None
