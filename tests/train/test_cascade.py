"""Cascaded super-resolution in the trainer: the SR network's conditioning path, its config
errors, SR sampling of test images, `mode=cascade` end to end, and the cascade configs through
the CLI."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import (
    cascade_base_shapes32,
    cascade_shapes32,
    cascade_sr16_shapes32,
    cascade_sr32_shapes32,
)
from diffjax.errors import ConfigError, WorkdirError
from diffjax.train import cascade, experiment, loop, runs
from tests.methods.digits_run import ROOT, train_losses

CONFIGS = ["cascade_base_shapes32", "cascade_sr16_shapes32", "cascade_sr32_shapes32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _tiny(module, data_dir, **overrides):
    """A stage config on 64 / 32 shapes32 images with unet_tiny, a few steps."""
    return runs.derive(
        module.get_config(),
        **{
            "data.kwargs.num_train": 64,
            "data.kwargs.num_test": 32,
            "data.kwargs.data_dir": data_dir,
            "model.name": "unet_tiny",
            "model.kwargs": {},
            "training.num_steps": 2,
            "training.batch_size": 8,
            "training.log_every": 1,
            "training.sample_every": 0,
            "eval.at_end": False,
            "sample.num_steps": 2,
            "sample.num_samples": 4,
            "optim.warmup_steps": 1,
            **overrides,
        },
    )


def _perturbed(params, key, scale=0.1):
    """Params with every leaf shifted, so zero-initialised layers (each residual block's last
    convolution) pass gradients to everything before them."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )


def test_the_sr_network_takes_the_low_res_image_and_level(data_dir):
    exp = experiment.build(_tiny(cascade_sr16_shapes32, data_dir))
    assert exp.dataset.shape == (16, 16, 3) and exp.super_resolution.low_res_size == 8
    params = exp.init_params(jax.random.key(0))
    # conv_in sees the noisy image and the upsampled low-res image: 3 + 3 channels.
    assert params["model"]["conv_in"]["kernel"].shape[2] == 6
    assert "low_res_t_embedding" in params["model"]
    model = _perturbed(params["model"], jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (4, 16, 16, 3))
    t = jnp.full((4,), 0.5)
    low = jax.random.normal(jax.random.key(3), (4, 8, 8, 3))
    level = jnp.full((4,), 0.1)

    def out(low, level):
        return jnp.sum(exp.apply_fn(model, x, t, {"low_res": low, "low_res_t": level}) ** 2)

    assert exp.apply_fn(model, x, t, {"low_res": low, "low_res_t": level}).shape == x.shape
    g_low, g_level = jax.jit(jax.grad(out, argnums=(0, 1)))(low, level)
    assert g_low.shape == low.shape and g_level.shape == level.shape
    assert float(jnp.min(jnp.abs(g_low).sum(axis=(1, 2, 3)))) > 0.0  # every example's low-res
    assert float(jnp.min(jnp.abs(g_level))) > 0.0  # every example's augmentation level


def test_the_training_loss_conditions_on_the_batchs_low_res_image(data_dir):
    """The loss's gradient reaches the level embedding, and the loss changes with the image's
    low-res content, through any objective (here DDPM's)."""
    exp = experiment.build(_tiny(cascade_sr16_shapes32, data_dir))
    params = {"model": _perturbed(exp.init_params(jax.random.key(0))["model"], jax.random.key(1))}
    loss = jax.jit(exp.make_loss())
    x = jax.random.uniform(jax.random.key(2), (8, 16, 16, 3), minval=-1.0, maxval=1.0)
    grads = jax.grad(lambda p: loss(p, {"x": x}, jax.random.key(3))[0])(params)
    embedding = grads["model"]["low_res_t_embedding"]
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(embedding)) > 0.0
    value = float(loss(params, {"x": x}, jax.random.key(3))[0])
    assert np.isfinite(value)
    # Same noise, same high-frequency residual, another low-res image: another loss.
    shifted = x + 0.5 * jnp.repeat(jnp.repeat(jnp.ones((8, 8, 8, 3)), 2, 1), 2, 2)
    assert float(loss(params, {"x": shifted}, jax.random.key(3))[0]) != value


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"super_resolution.low_res_size": 5},
            "super_resolution.low_res_size: low_res_size=5 must divide the data's image size 16",
        ),
        (
            {"super_resolution.low_res_size": 16},
            "low_res_size=16 must divide the data's image size 16 and be smaller than it",
        ),
        ({"super_resolution.low_res_size": -1}, "super_resolution.low_res_size=-1 must be >= 0"),
        (
            {"super_resolution.aug_max_level": 2.0},
            "super_resolution: aug_max_level=2.0 must lie in [0, 1]",
        ),
        (
            {
                "guidance.kind": "classifier_free",
                "guidance.scale": 1.0,
                "model.num_classes": 10,
                "model.p_uncond": 0.1,
            },  # fmt: skip
            "super_resolution with guidance.kind='classifier_free' is not supported",
        ),
    ],
)
def test_bad_super_resolution_configs_name_the_field(data_dir, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        experiment.build(_tiny(cascade_sr16_shapes32, data_dir, **overrides))


def test_a_config_without_the_section_is_an_ordinary_model(data_dir):
    config = _tiny(cascade_base_shapes32, data_dir)
    del config["super_resolution"]  # a config.json written before the field existed
    assert experiment.build(config).super_resolution is None


def test_sampling_an_sr_model_super_resolves_the_test_images(data_dir):
    exp = experiment.build(_tiny(cascade_sr16_shapes32, data_dir, **{"model.num_classes": 10}))
    params = exp.init_params(jax.random.key(0))
    low_res, labels = exp.test_low_res(40)  # 32 test images, cycled
    test = exp.dataset.as_array("test")
    expected = test["x"].reshape(32, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(low_res[:32], expected, atol=1e-6)
    np.testing.assert_allclose(low_res[32:], expected[:8], atol=1e-6)
    np.testing.assert_array_equal(labels[:32], test["label"])
    x = jax.jit(lambda p, k: exp.sample(p, k, 6))(params, jax.random.key(1))
    assert x.shape == (6, 16, 16, 3) and bool(jnp.all(jnp.isfinite(x)))
    direct = exp.super_resolve(params, jax.random.key(1), low_res[:6], labels[:6])
    np.testing.assert_allclose(x, direct, atol=1e-5)
    with pytest.raises(ValueError, match="samples from low_res and aug_key"):
        exp.denoiser(params, labels[:6])


def test_the_cascade_section_is_validated():
    with pytest.raises(ConfigError, match=re.escape("must list at least two workdirs")):
        cascade.CascadeConfig(stages=("a",), num_samples=4)
    with pytest.raises(ConfigError, match=re.escape("cascade.num_samples=0 must be >= 1")):
        cascade.CascadeConfig(stages=("a", "b"), num_samples=0)


def test_stages_must_chain(data_dir):
    base = experiment.build(_tiny(cascade_base_shapes32, data_dir))
    sr16 = experiment.build(_tiny(cascade_sr16_shapes32, data_dir))
    sr32 = experiment.build(_tiny(cascade_sr32_shapes32, data_dir))
    cascade.check_chain([base, sr16, sr32], ("b", "s16", "s32"))  # chains
    with pytest.raises(ConfigError, match=re.escape("cascade.stages[0]=s16 must be an ordinary")):
        cascade.check_chain([sr16, sr32], ("s16", "s32"))
    with pytest.raises(ConfigError, match=re.escape("cascade.stages[1]=b2 is not a super-res")):
        cascade.check_chain([base, base], ("b", "b2"))
    with pytest.raises(
        ConfigError,
        match=re.escape("cascade.stages[1]=s32 super-resolves (16, 16, 3) images, but stage 0 "),
    ):
        cascade.check_chain([base, sr32], ("b", "s32"))


def test_a_missing_stage_is_named(tmp_path):
    config = runs.derive(cascade_shapes32.get_config(), **{"cascade.stages": ("/nope/a", "b")})
    with pytest.raises(WorkdirError, match="/nope/a/config.json not found"):
        cascade.cascade(config, str(tmp_path / "chain"))


def test_nearest_upsampling_repeats_pixels():
    x = np.arange(4.0).reshape(1, 2, 2, 1)
    up = cascade.upsample_nearest(x, 4)
    np.testing.assert_array_equal(up[0, :, :, 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3],
                                                   [2, 2, 3, 3]])  # fmt: skip


@pytest.mark.slow
def test_the_cascade_mode_runs_end_to_end(data_dir, tmp_path):
    stages = []
    for name, module in (("base", cascade_base_shapes32), ("sr16", cascade_sr16_shapes32),
                         ("sr32", cascade_sr32_shapes32)):  # fmt: skip
        workdir = str(tmp_path / name)
        loop.train(_tiny(module, data_dir), workdir)
        stages.append(workdir)
    chain = tmp_path / "chain"
    cmd = [
        sys.executable, "-m", "diffjax.main",
        f"--config={os.path.join(ROOT, 'configs', 'cascade_shapes32.py')}", f"--workdir={chain}",
        f"--config.cascade.stages={tuple(stages)}", "--config.cascade.num_samples=8",
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(chain / "metrics.json") as f:
        metrics = json.load(f)
    assert np.isfinite(metrics["frechet"]) and metrics["num_samples"] == 8
    assert [s["shape"] for s in metrics["stages"]] == [[8, 8, 3], [16, 16, 3], [32, 32, 3]]
    assert [s["sample_level"] for s in metrics["stages"]] == [None, 0.05, 0.05]
    saved = np.load(chain / "samples.npz")
    assert saved["samples"].shape == (8, 32, 32, 3)
    assert [saved[f"stage_{i}"].shape[1] for i in range(3)] == [8, 16, 32]
    assert os.path.exists(chain / "cascade.png")


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_configs_train_and_sample_through_the_cli(name, data_dir, tmp_path):
    data = {"data.kwargs.num_train": 64, "data.kwargs.num_test": 32, "sample.num_steps": 3,
            "data.kwargs.data_dir": data_dir}  # fmt: skip
    losses = train_losses(name, tmp_path, num_steps=4, **data, **{"training.log_every": 2})
    assert len(losses) == 2 and all(np.isfinite(losses))
    train_losses(name, tmp_path, num_steps=4, **data, mode="sample")
    samples = [f for f in os.listdir(tmp_path / "samples") if f.startswith("sample_")]
    shape = np.load(tmp_path / "samples" / [f for f in samples if f.endswith(".npz")][0])
    size = {"cascade_base_shapes32": 8, "cascade_sr16_shapes32": 16}.get(name, 32)
    assert shape["samples"].shape == (4, size, size, 3)
