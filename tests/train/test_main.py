"""Config loading, command-line overrides and clear errors for bad config values."""

import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from diffjax.train import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "configs", "default.py")


def _parse(*overrides):
    argv = ["prog", f"--config={DEFAULT}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=fv, lock_config=True, sys_argv=argv)
    fv(argv)
    return fv.config


def test_overrides_from_the_command_line():
    config = _parse("--config.training.num_steps=7", "--config.sample.sampler=ddim")
    assert config.training.num_steps == 7
    assert config.sample.sampler == "ddim"
    assert config.training.batch_size == 128


def test_mistyped_override_fails():
    with pytest.raises(Exception, match="num_stepz"):
        _parse("--config.training.num_stepz=7")


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("method", "ddpx", "method"),
        ("model.name", "unet_bogus", "model"),
        ("data.name", "digitz", "dataset"),
        ("process.name", "vpx", "process"),
        ("sample.sampler", "eulerx", "sampler"),
    ],
)
def test_unknown_names_list_the_valid_ones(field, value, kind):
    config = _parse()
    with config.unlocked():
        section, _, name = field.rpartition(".")
        (config[section] if section else config)[name] = value
    with pytest.raises(ValueError, match=rf"unknown {kind}.*{value}.*valid"):
        experiment.build(config)


def test_unknown_mode_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffjax.main",
            f"--config={DEFAULT}",
            f"--workdir={tmp_path}",
            "--config.mode=trian",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode != 0
    valid = "distill, edit, eval_bpd, evaluate, reflow, sample, train"
    assert f"unknown mode 'trian'; valid modes: {valid}" in result.stderr
