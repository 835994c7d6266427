"""Latent diffusion's data (diffjax/train/latents.py): the cache, the scale factor, decoding,
the errors, and latent runs through the trainer and the CLI."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default, latent_dit_shapes32, vae_shapes32
from diffjax.errors import ConfigError
from diffjax.train import experiment, latents, loop, runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = {"num_train": 96, "num_test": 32}


def _shrink(config, data_dir, steps=2):
    config.data.kwargs.update({**DATA, "data_dir": data_dir})
    config.training.update(
        {"num_steps": steps, "batch_size": 16, "log_every": 1, "checkpoint_every": steps}
    )
    config.optim.warmup_steps = 0
    config.eval.at_end = False
    config.sample.num_samples = 4
    config.sample.num_steps = 2
    return config


def _vae_config(data_dir):
    config = _shrink(vae_shapes32.get_config(), data_dir)
    config.model.name = "kl_vae_tiny"
    return config


def _latent_config(data_dir, autoencoder_workdir, steps=2):
    config = _shrink(latent_dit_shapes32.get_config(), data_dir, steps)
    config.model.name = "dit_tiny"
    config.model.kwargs = ml_collections.ConfigDict()
    config.latent.autoencoder_workdir = str(autoencoder_workdir)
    return config


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A 2-step tiny autoencoder run on 96 shapes32 images: (workdir, data_dir)."""
    root = tmp_path_factory.mktemp("latents")
    data_dir, workdir = str(root / "tfds"), str(root / "vae")
    loop.train(_vae_config(data_dir), workdir)
    return workdir, data_dir


def _dataset(vae_run):
    workdir, data_dir = vae_run
    return experiment.build(_latent_config(data_dir, workdir)).dataset


def test_the_latents_are_the_posterior_means_scaled_to_unit_variance(vae_run):
    dataset = _dataset(vae_run)
    assert dataset.shape == (8, 8, 4) and dataset.num_classes == 10 and dataset.num_bins is None
    images = dataset.images.as_array("train")
    mean = jax.jit(dataset.autoencoder.encode)(images["x"])
    cached = dataset.latents("train")
    np.testing.assert_allclose(cached["z"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cached["label"], images["label"])
    assert dataset.scale == pytest.approx(1.0 / np.std(np.asarray(mean, np.float64)), rel=1e-5)
    x = dataset.as_array("train")["x"]
    assert x.shape == (96, 8, 8, 4)
    assert float(np.std(x, dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
    record = json.load(open(os.path.join(vae_run[0], "latents", "train.json")))
    assert record["scale_factor"] == pytest.approx(dataset.scale)
    assert record["autoencoder_step"] == 2 and record["num_examples"] == 96


def test_the_cache_is_reused_not_recomputed(vae_run, monkeypatch):
    _dataset(vae_run).latents("train")  # written by this or an earlier test
    path = os.path.join(vae_run[0], "latents", "train.npz")
    before = os.stat(path)

    def fail(*args):
        raise AssertionError("encoded again")

    monkeypatch.setattr(latents, "_encode_split", fail)
    again = _dataset(vae_run)  # a new dataset, as a new run builds
    assert again.latents("train")["z"].shape == (96, 8, 8, 4)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_the_cache_is_written_atomically(vae_run, monkeypatch):
    """A write that dies half-way leaves no cache (and no temporary file); the next reader
    encodes again. A cache of another autoencoder step is encoded again too."""
    directory = os.path.join(vae_run[0], "latents")
    path = os.path.join(directory, "test.npz")
    if os.path.exists(path):
        os.remove(path)
    real_savez = np.savez

    def dying_savez(file, **arrays):
        real_savez(file, z=arrays["z"][:3])  # part of the data reaches the disk
        raise OSError("disk died")

    monkeypatch.setattr(np, "savez", dying_savez)
    with pytest.raises(OSError, match="disk died"):
        _dataset(vae_run).latents("test")
    assert not os.path.exists(path)
    assert [f for f in os.listdir(directory) if "tmp" in f] == []
    monkeypatch.setattr(np, "savez", real_savez)
    assert _dataset(vae_run).latents("test")["z"].shape == (32, 8, 8, 4)
    with np.load(path) as f:
        assert int(f["step"]) == 2 and f["z"].shape == (32, 8, 8, 4)
    stale = dict(np.load(path))
    np.savez(path, **{**stale, "step": np.int64(1), "z": stale["z"] * 0.0})
    np.testing.assert_allclose(_dataset(vae_run).latents("test")["z"], stale["z"])


def test_samples_are_decoded_images(vae_run):
    workdir, data_dir = vae_run
    exp = experiment.build(_latent_config(data_dir, workdir))
    params = exp.init_params(jax.random.PRNGKey(0))
    x = jax.jit(lambda p, k: exp.sample(p, k, 3))(params, jax.random.PRNGKey(1))
    assert x.shape == (3, 32, 32, 3) and exp.image_dataset.shape == (32, 32, 3)
    z = jnp.ones((2, 8, 8, 4))
    expected = exp.latent.autoencoder.decode(z / exp.latent.scale)
    # float32 rounding of the same convolutions inside and outside jit
    np.testing.assert_allclose(jax.jit(exp.latent.decode)(z), expected, rtol=1e-5, atol=1e-5)


def test_errors_name_the_field(vae_run, tmp_path):
    workdir, data_dir = vae_run
    with pytest.raises(ConfigError, match="latent.autoencoder_workdir=.*no trained run there"):
        experiment.build(_latent_config(data_dir, tmp_path / "missing"))
    other = tmp_path / "ddpm"
    runs.save_config(default.get_config(), str(other))
    with pytest.raises(ConfigError, match="holds a method='ddpm' run, not a method=autoencoder"):
        experiment.build(_latent_config(data_dir, other))
    untrained = tmp_path / "untrained"
    runs.save_config(_vae_config(data_dir), str(untrained))
    with pytest.raises(ConfigError, match="latent.autoencoder_workdir=.*no checkpoint"):
        experiment.build(_latent_config(data_dir, untrained))
    config = _latent_config(data_dir, workdir)
    config.data.kwargs.num_train = 64
    with pytest.raises(ConfigError, match="was trained on data .* the autoencoder must encode"):
        experiment.build(config)
    config = _vae_config(data_dir)
    config.latent.autoencoder_workdir = workdir
    with pytest.raises(ConfigError, match="an autoencoder trains on the data"):
        experiment.build(config)
    config = _latent_config(data_dir, workdir)
    config.latent.unknown = 1
    with pytest.raises(ConfigError, match="unknown config field latent.unknown"):
        experiment.build(config)
    with pytest.raises(ValueError, match="dequantize=True needs discrete data"):
        _dataset(vae_run).loader("train", 4, seed=0, dequantize=True)


@pytest.mark.slow
def test_a_resumed_latent_run_is_the_uninterrupted_one(vae_run, tmp_path):
    workdir, data_dir = vae_run

    def config(steps):  # a constant rate: the first 2 steps do not depend on num_steps
        config = _latent_config(data_dir, workdir, steps=steps)
        config.optim.schedule = "constant"
        return config

    straight = loop.train(config(4), str(tmp_path / "a"))
    loop.train(config(2), str(tmp_path / "b"))
    resumed = loop.train(config(4), str(tmp_path / "b"))
    for a, b in zip(*map(jax.tree.leaves, (straight.params, resumed.params)), strict=True):
        np.testing.assert_array_equal(a, b)


def _cli(config_name, workdir, data_dir, *flags):
    cmd = [
        sys.executable, "-m", "diffjax.main", f"--config={ROOT}/configs/{config_name}.py",
        f"--workdir={workdir}", f"--config.data.kwargs.data_dir={data_dir}",
        *[f"--config.data.kwargs.{k}={v}" for k, v in DATA.items()],
        "--config.training.num_steps=3", "--config.training.batch_size=16",
        "--config.training.log_every=1", "--config.optim.warmup_steps=0",
        "--config.sample.num_samples=4", "--config.sample.num_steps=2",
        "--config.eval.num_samples=32", *flags,
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_configs_train_through_the_cli(tmp_path):
    """vae_shapes32 (metrics.json: reconstruction RMSE and Frechet), then latent_dit_shapes32
    on its latents (decoded sample grid, metrics.json of decoded images, mode=sample), and the
    pixel baseline dit_shapes32; a missing autoencoder is one line naming the field."""
    data_dir, vae = str(tmp_path / "tfds"), str(tmp_path / "vae")
    _cli("vae_shapes32", vae, data_dir, "--config.model.name=kl_vae_tiny")
    metrics = json.load(open(os.path.join(vae, "metrics.json")))
    assert metrics["step"] == 3 and metrics["latent_shape"] == [8, 8, 4]
    assert 0.0 < metrics["reconstruction_rmse"] < 2.0
    assert metrics["reconstruction_quality"]["frechet"] > 0.0
    tiny = ("--config.model.name=dit_tiny", "--config.model.kwargs={}")
    latent = str(tmp_path / "latent")
    _cli("latent_dit_shapes32", latent, data_dir, f"--config.latent.autoencoder_workdir={vae}",
         *tiny)  # fmt: skip
    metrics = json.load(open(os.path.join(latent, "metrics.json")))
    assert metrics["step"] == 3 and metrics["latent_scale_factor"] > 0.0
    assert np.load(os.path.join(latent, "samples", "samples_final.npz"))["samples"].shape == (
        4, 32, 32, 3,
    )  # fmt: skip
    _cli("latent_dit_shapes32", latent, data_dir, f"--config.latent.autoencoder_workdir={vae}",
         "--config.mode=sample", *tiny)  # fmt: skip
    assert os.path.exists(os.path.join(latent, "samples", "sample_ddim_2.png"))
    with pytest.raises(AssertionError, match="latent.autoencoder_workdir="):
        _cli("latent_dit_shapes32", str(tmp_path / "x"), data_dir,
             f"--config.latent.autoencoder_workdir={tmp_path / 'nothing'}", *tiny)  # fmt: skip
    pixel = str(tmp_path / "pixel")
    _cli("dit_shapes32", pixel, data_dir, "--config.eval.at_end=False")
    assert os.path.exists(os.path.join(pixel, "samples", "samples_final.png"))
