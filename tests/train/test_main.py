"""Config loading, command-line overrides and clear errors for bad config values."""

import os
import re
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from diffjax import main as cli
from diffjax.errors import ConfigError
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


def test_sampler_options_are_taken_out_of_the_command_line():
    argv = [
        "prog",
        "--config.sample.options.eta=0.0",
        "--config.training.num_steps=7",
        "--config.sample.options.predictor=ancestral",
        "--config.sample.options.s_tmax=inf",
        "--config.sample.options.denoise=False",
    ]
    options, rest = cli.split_sampler_options(argv)
    inf = float("inf")
    assert options == {"eta": 0.0, "predictor": "ancestral", "s_tmax": inf, "denoise": False}
    assert rest == ["prog", "--config.training.num_steps=7"]


def test_an_unknown_sampler_option_names_the_field_and_lists_the_valid_ones():
    config = _parse("--config.sample.sampler=ddim")
    with config.sample.options.unlocked():
        config.sample.options.etaa = 0.0
    message = "sample.options.etaa: unknown option 'etaa' of sampler 'ddim'; valid options: eta$"
    with pytest.raises(ConfigError, match=message):
        experiment.build(config)


def _main(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "diffjax.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=120,
    )


# absl log lines (I0101 12:00:00.000 ...) and Python / JAX warnings may precede the error.
_LOG_LINE = re.compile(r"^[IWE]\d{4} |warning", re.IGNORECASE)

_VALID_MODES = "cascade, distill, edit, eval_bpd, evaluate, reflow, sample, score_machine, train"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--config.training.num_stepz=7"],
            'unknown config field training.num_stepz (did you mean "num_steps"',
        ),
        (["--config.training.num_steps=abc"], "--config.training.num_steps=abc: invalid"),
        (
            ["--config.sample.sampler=ddim", "--config.sample.options.etaa=0.0"],
            "sample.options.etaa: unknown option 'etaa' of sampler 'ddim'; valid options: eta",
        ),
        (["--config.mode=trian"], f"unknown mode 'trian'; valid modes: {_VALID_MODES}"),
        ([], "flag --workdir=None: Flag --workdir must have a value"),
    ],
    ids=["unknown_field", "bad_type", "unknown_option", "unknown_mode", "no_workdir"],
)
def test_a_bad_command_is_one_line_without_traceback(tmp_path, args, message):
    workdir = [f"--workdir={tmp_path}"] if args else []  # the last case leaves it out
    result = _main(f"--config={DEFAULT}", *workdir, *args)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if not _LOG_LINE.search(line)] == lines[-1:], result.stderr
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr


def test_verbosity_shows_the_traceback_of_a_bad_command(tmp_path):
    result = _main(
        f"--config={DEFAULT}", f"--workdir={tmp_path}", "--verbosity=1", "--config.mode=trian"
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "ConfigError: mode: unknown mode 'trian'" in result.stderr
