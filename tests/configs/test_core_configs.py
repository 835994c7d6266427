"""The Gaussian-core configs (digits and CIFAR-10) build their method, process and network."""

import importlib

import pytest

from diffjax import methods, models, processes

DIGITS = ["ddpm", "iddpm", "ncsn", "sde", "vdm", "edm"]
FULL = ["ddpm", "iddpm", "ddpmpp", "ncsnpp", "vdm", "edm"]
EXPECTED = {
    "ddpm": ("ddpm", "ddpm_linear"),
    "iddpm": ("iddpm", "ddpm_cosine"),
    "ncsn": ("ncsn", "ve"),
    "sde": ("score_sde", "vp"),
    "ddpmpp": ("score_sde", "vp"),
    "ncsnpp": ("score_sde", "ve"),
    "vdm": ("vdm", "vdm_learned"),
    "edm": ("edm", "edm"),
}


def _build(module_name):
    config = importlib.import_module(f"configs.{module_name}").get_config()
    process = processes.get(config.process.name, **config.process.kwargs.to_dict())
    recipe = methods.get(config.method)(process=process, **config.loss.to_dict())
    model = models.get(
        config.model.name, out_channels=3 * recipe.out_channels_factor, **config.model.kwargs
    )
    return config, recipe, model


@pytest.mark.parametrize(
    "module_name", [f"{m}_digits" for m in DIGITS] + [f"{m}_cifar10" for m in FULL]
)
def test_config_builds(module_name):
    config, recipe, model = _build(module_name)
    method, process = EXPECTED[module_name.rsplit("_", 1)[0]]
    assert (config.method, config.process.name, recipe.name) == (method, process, method)
    assert model is not None and config.training.num_steps > 0
    if module_name.endswith("_digits"):
        assert config.data.name == "digits" and config.model.name == "unet_digits"
    else:
        assert config.data.name == "cifar10"


def test_vdm_schedule_ends():
    """VDM's CIFAR-10 config has the paper's gamma range (-13.3, 5); digits (17 levels) starts
    at the same sigma_0 per level spacing."""
    from diffjax.methods.vdm import gamma_min_for

    cifar = importlib.import_module("configs.vdm_cifar10").get_config().process.kwargs
    digits = importlib.import_module("configs.vdm_digits").get_config().process.kwargs
    assert (cifar.gamma_min, cifar.gamma_max) == (-13.3, 5.0)
    assert digits.gamma_min == pytest.approx(gamma_min_for(17), abs=0.005)
    assert digits.gamma_max == 5.0
