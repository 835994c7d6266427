"""Methods by name: `diffjax.methods.get(name)(**options) -> Recipe`.

Each method of the seeds is one file in this package exposing a builder that validates its
keyword options and returns a `Recipe`.
"""

from collections.abc import Callable

from diffjax import _registry
from diffjax.methods import (
    autoencoder,
    cold,
    consistency,
    ddpm,
    edm,
    flow_matching,
    iddpm,
    meanflow,
    ncsn,
    noisy_classifier,
    progressive_distillation,
    rectified_flow,
    score_sde,
    vdm,
)
from diffjax.methods.base import Recipe

_METHODS: dict[str, Callable[..., Recipe]] = {
    "ddpm": ddpm.ddpm,
    "iddpm": iddpm.iddpm,
    "ncsn": ncsn.ncsn,
    "score_sde": score_sde.score_sde,
    "vdm": vdm.vdm,
    "edm": edm.edm,
    "flow_matching": flow_matching.flow_matching,
    "ot_cfm": flow_matching.ot_cfm,
    "rectified_flow": rectified_flow.rectified_flow,
    "consistency": consistency.consistency,
    "progressive_distillation": progressive_distillation.progressive_distillation,
    "meanflow": meanflow.meanflow,
    "noisy_classifier": noisy_classifier.noisy_classifier,
    "cold_diffusion": cold.cold_diffusion,
    "autoencoder": autoencoder.autoencoder,
}


def get(name: str) -> Callable[..., Recipe]:
    """The builder of the method registered as `name`; unknown names list the valid ones."""
    return _registry.lookup("method", _METHODS, name)


def names() -> list[str]:
    return sorted(_METHODS)
