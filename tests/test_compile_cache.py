"""The persistent compilation cache: where it lives, that `diffjax.main` fills it and that a
second run of the same config reads its train step from it instead of compiling, and that an
empty `--compilation_cache=` turns it off."""

import os
import subprocess
import sys

import pytest

from diffjax import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_dir() == str(tmp_path / "diffjax" / "jax_compilation_cache")
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "mine"))
    assert compile_cache.default_dir() == str(tmp_path / "mine")
    monkeypatch.setenv(compile_cache.ENV, "")
    assert compile_cache.default_dir() == ""  # set but empty: off


def _train(tmp_path, workdir: str, *flags: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": ROOT,
        "TFDS_DATA_DIR": str(tmp_path / "data"),
        compile_cache.ENV: str(tmp_path / "default_cache"),
        # JAX logs each persistent-cache hit at debug level
        "JAX_DEBUG_LOG_MODULES": "jax._src.compiler",
    }
    cmd = [
        sys.executable,
        "-m",
        "diffjax.main",
        f"--config={ROOT}/configs/ddpm_toy2d.py",
        f"--workdir={tmp_path / workdir}",
        "--config.training.num_steps=2",
        "--config.training.sample_every=0",
        "--config.sample.num_steps=4",
        "--config.sample.num_samples=8",
        "--config.eval.at_end=False",
        *flags,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _entries(directory) -> set[str]:
    return set(os.listdir(directory)) if os.path.isdir(directory) else set()


@pytest.mark.slow
def test_a_second_run_reads_the_compiled_train_step_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _train(tmp_path, "one", f"--compilation_cache={cache}")
    stored = _entries(cache)
    assert any("train_step" in name for name in stored), stored
    assert "cache hit" not in first.stderr
    second = _train(tmp_path, "two", f"--compilation_cache={cache}")
    assert "Persistent compilation cache hit for 'jit_train_step'" in second.stderr
    assert _entries(cache) == stored  # nothing compiled afresh
    assert not _entries(tmp_path / "default_cache")  # the flag wins over the environment


@pytest.mark.slow
def test_an_empty_flag_turns_the_cache_off(tmp_path):
    _train(tmp_path, "run", "--compilation_cache=")
    assert not _entries(tmp_path / "default_cache")
