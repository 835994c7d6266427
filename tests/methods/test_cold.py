"""Cold diffusion: the restoration loss against exact values, the recipe and its errors, the
configs (their numbers and a few steps through `python -m diffjax.main`)."""

import dataclasses
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import methods, processes, samplers
from diffjax.data import shapes
from diffjax.degradations import Degradation, GaussianBlur, GaussianNoise, Mask
from diffjax.methods.cold import RestorationLoss
from diffjax.processes import expand
from tests.methods.digits_run import train_losses

COSINE = processes.get("cosine")
CONFIGS = ["cold_blur_shapes32", "cold_pixelate_shapes32", "cold_mask_shapes32",
           "cold_noise_shapes32"]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Shift(Degradation):
    """D(x, t) = x + t e."""

    e: jax.Array

    def operator(self, x0, t):
        return x0 + expand(t, x0) * self.e


def _loss(objective, apply_fn, x0, seed=0):
    fn = jax.jit(lambda x: objective(apply_fn)({"model": {}}, {"x": x}, jax.random.PRNGKey(seed)))
    return float(fn(x0)[0])


X0 = jax.random.uniform(jax.random.PRNGKey(0), (4096, 2, 2, 1), minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("d", [GaussianBlur(), Mask(noise=0.1), GaussianNoise(COSINE)])
def test_zero_restorer_costs_the_data_norm(d):
    """R = 0: the loss is mean |x0| (l1) or mean x0^2 (l2) whatever t and the noise are."""
    zero = lambda params, x, t, cond=None, key=None: jnp.zeros_like(x)  # noqa: E731
    x0 = X0[:8] * 0.5 + 0.2
    assert _loss(RestorationLoss(d), zero, x0) == pytest.approx(float(jnp.abs(x0).mean()))
    l2 = RestorationLoss(d, norm="l2")
    assert _loss(l2, zero, x0) == pytest.approx(float(jnp.square(x0).mean()))


def test_restorer_sees_the_degradation_time():
    """On D = x + t e the restorer x - t e is perfect (loss 0, so it got the t of D), and the
    identity restorer costs E_t[t] mean|e| = mean|e| / 2 for t ~ U(0, 1]."""
    e = jnp.full((1, *X0.shape[1:]), 0.3)
    objective = RestorationLoss(_Shift(e))
    perfect = lambda params, x, t, cond=None, key=None: x - expand(t, x) * e  # noqa: E731
    identity = lambda params, x, t, cond=None, key=None: x  # noqa: E731
    assert _loss(objective, perfect, X0) == pytest.approx(0.0, abs=1e-6)
    # Monte Carlo over 4096 draws of t: std of the mean 0.3 * 0.29 / 64 ~ 1.4e-3.
    assert _loss(objective, identity, X0) == pytest.approx(0.15, abs=6e-3)


def test_recipe_and_errors():
    recipe = methods.get("cold_diffusion")(process=COSINE, degradation="mask")
    assert (recipe.name, recipe.prediction, recipe.sampler) == ("cold_diffusion", "x0", "cold")
    assert recipe.sampler_options["degradation"] == Mask() and recipe.sampler_options["from_noise"]
    noise = methods.get("cold_diffusion")(process=COSINE, degradation="noise")
    assert noise.objective.degradation == GaussianNoise(COSINE)
    with pytest.raises(ValueError, match="unknown degradation 'smear'; valid degradations: blur"):
        methods.get("cold_diffusion")(process=COSINE, degradation="smear")
    with pytest.raises(ValueError, match="unknown norm 'l3'; valid norms: l1, l2"):
        methods.get("cold_diffusion")(process=COSINE, norm="l3")
    with pytest.raises(ValueError, match="sigma_max=-1.0 must be > 0"):
        methods.get("cold_diffusion")(process=COSINE, degradation_kwargs={"sigma_max": -1.0})


def test_config_channel_std_is_the_data_rms_channel_mean():
    """channel_std 0.32 (cold_blur_shapes32 and the cold sampler's default): the RMS
    per-channel mean of shapes32 images."""
    config = importlib.import_module("configs.cold_blur_shapes32").get_config()
    images, _ = shapes.draw(np.random.default_rng(0), 2000)
    means = (images.astype(np.float32) / 127.5 - 1.0).mean(axis=(1, 2))
    rms = float(np.sqrt(np.mean(np.square(means))))
    assert config.loss.sampler_options.channel_std == pytest.approx(rms, abs=0.01)
    default = samplers.get("cold", degradation=Mask()).channel_std  # the sampler's default too
    assert default == config.loss.sampler_options.channel_std


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_build(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    recipe = methods.get(config.method)(
        process=processes.get(config.process.name), **config.loss.to_dict()
    )
    assert recipe.objective.degradation.__class__.__name__.lower().startswith(
        {"blur": "gaussianblur", "pixelate": "pixelate", "mask": "mask", "noise": "gaussiannoise"}[
            config.loss.degradation
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_configs_train_and_sample_through_the_cli(name, tmp_path):
    data = {"data.kwargs.num_train": 64, "data.kwargs.num_test": 32, "sample.num_steps": 3,
            "data.kwargs.data_dir": str(tmp_path / "tfds")}  # fmt: skip
    losses = train_losses(name, tmp_path, num_steps=4, **data, **{"training.log_every": 2})
    assert len(losses) == 2 and all(np.isfinite(losses))
    train_losses(name, tmp_path, num_steps=4, **data, mode="sample")
    assert os.path.exists(tmp_path / "samples")
