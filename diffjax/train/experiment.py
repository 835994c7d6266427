"""The edge where a ConfigDict becomes typed objects: dataset, network, recipe and sampler.

Library code never sees a ConfigDict; this module reads every field the trainer uses and hands
plain keyword arguments to the registries.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax import Array

from diffjax import data, denoisers, methods, models, processes, samplers
from diffjax.methods.base import ApplyFn, Params, Recipe


def apply_fn_of(module: nn.Module) -> ApplyFn:
    """The network as `apply_fn(model_params, x, t, cond=None, key=None)`; a key means training
    mode with that dropout key."""

    def apply_fn(params, x, t, cond=None, key=None):
        rngs = {} if key is None else {"dropout": key}
        return module.apply({"params": params}, x, t, cond=cond, train=key is not None, rngs=rngs)

    return apply_fn


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What one config describes, built and validated.

    Attributes:
      dataset: a `diffjax.data` Dataset.
      model: the Flax network.
      recipe: the method's Recipe.
      apply_fn: `model` as a pure function.
      sampler: the configured sampler function.
      sample_num_steps: sampler steps, or None for the sampler's default.
      clip_x0: clip the x0 prediction to [-1, 1] while sampling (only for discrete data,
        which the pipeline scales into [-1, 1]).
    """

    dataset: Any
    model: nn.Module
    recipe: Recipe
    apply_fn: ApplyFn
    sampler: Callable
    sample_num_steps: int | None
    clip_x0: bool

    def init_params(self, key: Array) -> Params:
        """`{"model": network params, **recipe aux params}` from one key."""
        model_key, aux_key = jax.random.split(key)
        x = jnp.zeros((1, *self.dataset.shape), jnp.float32)
        t = jnp.zeros((1,) if self.recipe.num_times == 1 else (1, self.recipe.num_times))
        model_params = self.model.init({"params": model_key}, x, t, cond=None, train=False)
        return {"model": model_params["params"], **self.recipe.init_aux(aux_key)}

    def sample(self, params: Params, key: Array, num_samples: int) -> Array:
        """Draws `num_samples` samples [n, *shape] with the configured sampler (jittable)."""
        init_key, sample_key = jax.random.split(key)
        process = self.recipe.process_for(params)
        x_init = process.prior_sample(init_key, (num_samples, *self.dataset.shape))
        denoiser = self.recipe.denoiser(self.apply_fn, params)
        if self.clip_x0:
            denoiser = denoisers.clip_x0(denoiser)
        return self.sampler(sample_key, denoiser, x_init, num_steps=self.sample_num_steps)


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Builds the Experiment of `config`; unknown names raise errors listing the valid ones."""
    dataset = data.get(config.data.name, **config.data.kwargs.to_dict())
    process = processes.get(config.process.name, **config.process.kwargs.to_dict())
    recipe = methods.get(config.method)(process=process, **config.loss.to_dict())
    channels = dataset.shape[-1]
    model = models.get(
        config.model.name,
        out_channels=channels * recipe.out_channels_factor,
        **config.model.kwargs.to_dict(),
    )
    sampler_name = config.sample.sampler or recipe.sampler
    options = dict(recipe.sampler_options) if sampler_name == recipe.sampler else {}
    options.update(config.sample.options.to_dict())
    sampler = samplers.get(sampler_name, **options)
    if config.sample.num_steps < 0:
        raise ValueError(f"sample.num_steps={config.sample.num_steps} must be >= 0 (0: default)")
    return Experiment(
        dataset=dataset,
        model=model,
        recipe=recipe,
        apply_fn=apply_fn_of(model),
        sampler=sampler,
        sample_num_steps=config.sample.num_steps or None,
        clip_x0=config.sample.clip_x0 and dataset.num_bins is not None,
    )
