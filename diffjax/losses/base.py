"""The objective interface: a validated, frozen description that builds a pure loss function.

An `Objective` is a frozen dataclass of its options, checked on construction (a bad name or value
fails when the method is built, not at the first step). Called on the network it returns

  loss(params, batch, key) -> (scalar, metrics dict)

with params = {"model": <network params>, **aux, **frozen} (see `diffjax.methods.base`),
batch = {"x": [B, ...], "label": optional int [B] class labels (absent or None for an
unconditional model; already passed through the trainer's label dropout, see `conditioning`),
"step": the training step, ...}.

`ApplyFn` is the network as a pure function:
  apply_fn(model_params, x: [B, ...], t: [B] or [B, K], cond=None, key=None) -> output [B, ...]
with `key` the dropout key (None means evaluation mode).
"""

import abc
from collections.abc import Callable, Mapping
from typing import Any

from jax import Array

ApplyFn = Callable[..., Array]
Params = Any
Batch = Mapping[str, Array]
LossFn = Callable[[Params, Batch, Array], tuple[Array, dict[str, Array]]]


class Objective(abc.ABC):
    """A training objective; subclasses are frozen dataclasses validated in `__post_init__`."""

    @abc.abstractmethod
    def __call__(self, apply_fn: ApplyFn) -> LossFn:
        """The loss of the network `apply_fn`."""

    def check_conditioning(self, num_classes: int, p_uncond: float) -> None:
        """Raises a ValueError (naming the config fields) if this objective cannot train a
        network with `num_classes` classes (0: unconditional) and label dropout `p_uncond`;
        every objective can by default."""
        del num_classes, p_uncond
