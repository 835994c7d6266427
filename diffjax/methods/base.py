"""The Recipe: what one method of the seeds is made of (process, prediction, objective, sampler).

A method file builds a Recipe from typed keyword arguments: its objective (`diffjax.losses`)
validates them on construction, so a bad option fails when the method is built. The trainer only
talks to Recipes.

Parameters: the trainer keeps the trained tree `{"model": <network params>, **aux}` where `aux`
is what `Recipe.init_aux` returns (e.g. VDM's learned schedule under "schedule"), and beside it
the frozen tree: `"teacher"` (the trained network a distillation method learns from, loaded by
the trainer from `config.teacher.workdir`) and what `Recipe.init_frozen` returns (e.g. the EMA
target network of consistency training under "target"), which takes no gradient and is moved
only by `Recipe.update_frozen`. Losses receive both trees merged, and the batch carries the
training step under "step" (for curricula such as consistency training's N(k)).
`ApplyFn` (`diffjax.losses.base`) is the network as a pure function.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from jax import Array

from diffjax import denoisers
from diffjax.denoisers import Denoiser
from diffjax.losses.base import ApplyFn, LossFn, Objective, Params
from diffjax.preconditioning import Preconditioning
from diffjax.processes import Process


def _no_aux(key: Array) -> dict:
    del key
    return {}


def _no_frozen(params: Params) -> dict:
    del params
    return {}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One method: its process, what the network predicts, its loss and its default sampler.

    Attributes:
      name: the registered method name.
      process: the forward process (for learned schedules, the one `bind_process` completes).
      prediction: the kind the network outputs ("eps", "x0", "v", "score", "velocity") or the
        `Preconditioning` that makes it one.
      objective: the validated objective; `objective(apply_fn)` is the loss (see `make_loss`).
      sampler: default sampler name in `diffjax.samplers`.
      sampler_options: default keyword options for that sampler.
      out_channels_factor: network output channels per data channel (2 for learned variance).
      init_aux: key -> dict of extra trainable params beside "model".
      bind_process: params -> the process with any learned parts bound (identity by default).
      vlb: for methods with a variational bound (DDPM, VDM), `vlb(denoiser, x0, key, num_bins)`
        -> an unbiased estimate of the bound in nats per example [B]; `mode=eval_bpd` reports it
        beside the probability-flow ODE's bits/dim.
      teacher_prediction: the loss reads `params["teacher"]`, a trained network of the same
        architecture predicting this kind (consistency distillation, progressive distillation);
        None for methods without a teacher.
      init_frozen: trained params -> dict of extra frozen params (e.g. {"target": ...}).
      update_frozen: (frozen, trained params after the update, step) -> frozen, run after every
        optimizer step (e.g. the EMA target network); None leaves the frozen params as they are.
      chain_modes: the chained trainer modes this method runs in: "distill" (progressive
        distillation rounds, the loss option `student_steps` halving) and/or "reflow" (the loss
        reads reflow pairs from `batch["noise"]`).
      weight_decay_mask: params -> a pytree of bools, True where decoupled weight decay applies
        (None: everywhere).
      generative: False for a noisy classifier p(y | x_t, t) (prediction None, no sampler): the
        network returns logits and the trainer reports accuracy instead of samples.
      reconstructs: an autoencoder (generative False): the network maps x to (x_hat, mean,
        logvar) with the data's channels, and the trainer reports reconstruction quality.
      num_times: times per example the network sees: 1 (t [B]) or 2 (MeanFlow's (t, t - r),
        [B, 2]); the parameters are initialised with that shape.
    """

    name: str
    process: Process
    prediction: str | Preconditioning | None
    objective: Objective
    sampler: str
    sampler_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    out_channels_factor: int = 1
    init_aux: Callable[[Array], dict] = _no_aux
    bind_process: Callable[[Params], Process] | None = None
    vlb: Callable[[Denoiser, Array, Array, int], Array] | None = None
    teacher_prediction: str | None = None
    init_frozen: Callable[[Params], dict] = _no_frozen
    update_frozen: Callable[[dict, Params, Array], dict] | None = None
    chain_modes: frozenset[str] = frozenset()
    weight_decay_mask: Callable[[Params], Any] | None = None
    num_times: int = 1
    generative: bool = True
    reconstructs: bool = False

    def __post_init__(self):
        if self.num_times not in (1, 2):
            raise ValueError(f"Recipe {self.name}: num_times={self.num_times} must be 1 or 2")
        if self.generative == (self.prediction is None):
            raise ValueError(f"Recipe {self.name}: a generative recipe has a prediction, a "
                             "classifier (generative=False) none")  # fmt: skip
        if self.reconstructs and self.generative:
            raise ValueError(f"Recipe {self.name}: an autoencoder (reconstructs) is not generative")

    def process_for(self, params: Params) -> Process:
        """The process with the learned parts of `params` bound in."""
        return self.process if self.bind_process is None else self.bind_process(params)

    def make_loss(self, apply_fn: ApplyFn) -> LossFn:
        """loss(params, batch, key) -> (scalar, metrics) of the network `apply_fn`;
        `batch["x"]` holds the data [B, ...] and `batch.get("label")` the optional labels [B]."""
        return self.objective(apply_fn)

    def denoiser(self, apply_fn: ApplyFn, params: Params, cond: Array | None = None) -> Denoiser:
        """The trained network as a Denoiser (evaluation mode, `params` the whole tree); a pytree
        whose leaves are the params, so a jitted sampler taking it compiles once.

        Raises:
          ValueError: for a classifier recipe (it has no Denoiser).
        """
        if not self.generative:
            raise ValueError(f"method {self.name!r} trains a classifier, not a generative model")
        return denoisers.from_network(
            apply_fn, params["model"], self.prediction, self.process_for(params), cond
        )
