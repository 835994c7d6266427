"""The autoencoder recipe: what it tells the trainer, its options and errors."""

import pytest

from diffjax import methods, processes
from diffjax.losses.autoencoder import AutoencoderLoss
from diffjax.methods.base import Recipe

PROCESS = processes.get("ddpm_linear")


def test_recipe():
    recipe = methods.get("autoencoder")(process=PROCESS, reconstruction="l2", beta=0.5)
    assert (recipe.name, recipe.prediction, recipe.sampler) == ("autoencoder", None, "")
    assert not recipe.generative and recipe.reconstructs
    assert recipe.objective == AutoencoderLoss("l2", 0.5)
    assert methods.get("autoencoder")(process=PROCESS).objective == AutoencoderLoss("l1", 1e-4)
    with pytest.raises(ValueError, match="an autoencoder .reconstructs. is not generative"):
        Recipe("x", PROCESS, "eps", AutoencoderLoss(), "ddpm", reconstructs=True)


def test_bad_options():
    with pytest.raises(ValueError, match="unknown reconstruction 'ssim'"):
        methods.get("autoencoder")(process=PROCESS, reconstruction="ssim")
    with pytest.raises(TypeError, match="weighting"):
        methods.get("autoencoder")(process=PROCESS, weighting="snr")
