"""The edge where a ConfigDict becomes typed objects: dataset, network, recipe, sampler and
the trainer's config sections.

`build(config)` is where a run's config is read: the registries get plain keyword arguments and
the trainer's sections become the validated dataclasses of `settings.py`. The rest of the
trainer takes the Experiment; the ConfigDict itself only travels on to `runs.py`, which writes
it as the run's config.json (how chained runs find their teacher).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import Array

from diffjax import data, denoisers, guidance, methods, models, processes, samplers
from diffjax.errors import ConfigError
from diffjax.losses import conditioning
from diffjax.losses.base import LossFn
from diffjax.methods.base import ApplyFn, Params, Recipe
from diffjax.train import settings


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
      sampler: the sampler function of `sampling` (None for a classifier recipe).
      seed: seeds init, data order, training noise and sampling.
      training: `config.training`.
      optim: `config.optim`.
      sampling: `config.sample`.
      eval: `config.eval`.
      teacher: `config.teacher`.
      conditioning: `config.model.num_classes` and `config.model.p_uncond`.
      guidance: `config.guidance`.
      mesh: `config.mesh`, the device mesh's shape.
      classifier: `(x_t, t) -> logits` of the noisy classifier run named by
        `guidance.classifier_workdir` (a `Partial` over its params), attached by
        `runs.attach_classifier`; None otherwise.
      super_resolution: `config.super_resolution` of a super-resolution model (its `cond`
        carries the noise-augmented low-res image), None otherwise.
      latent: for latent diffusion (`latent.autoencoder_workdir`), the `latents.LatentDataset`
        that is also `dataset`: samples are decoded by it, and measured against its images.
    """

    dataset: Any
    model: nn.Module
    recipe: Recipe
    apply_fn: ApplyFn
    sampler: Callable | None
    seed: int
    training: settings.TrainingConfig
    optim: settings.OptimConfig
    sampling: settings.SampleConfig
    eval: settings.EvalConfig
    teacher: settings.TeacherConfig
    conditioning: settings.ConditioningConfig
    guidance: settings.GuidanceConfig
    mesh: settings.MeshConfig
    classifier: Callable[[Array, Array], Array] | None = None
    super_resolution: conditioning.SuperResolution | None = None
    latent: Any = None

    @property
    def sampler_name(self) -> str:
        """`sampling.sampler`, or the method's default sampler when that is ""."""
        return self.sampling.sampler or self.recipe.sampler

    @property
    def sample_num_steps(self) -> int | None:
        """Sampler steps, or None for the sampler's default."""
        return self.sampling.num_steps or None

    @property
    def clip_x0(self) -> bool:
        """Clip the x0 prediction to [-1, 1] while sampling: only for discrete data, which the
        pipeline scales into [-1, 1]."""
        return self.sampling.clip_x0 and self.dataset.num_bins is not None

    @property
    def image_dataset(self) -> Any:
        """The dataset samples are measured against: the images a latent run encodes, else
        `dataset`."""
        return self.dataset if self.latent is None else self.latent.images

    def with_sampling(self, **fields) -> "Experiment":
        """This Experiment with some `sampling` fields replaced (e.g. `sampler="euler",
        num_steps=4, options={}`), to score one trained network with several samplers."""
        sampling = dataclasses.replace(self.sampling, **fields)
        sampler = _fitted(_sampler(self.recipe, sampling), self.dataset)
        return dataclasses.replace(self, sampling=sampling, sampler=sampler)

    def init_params(self, key: Array) -> Params:
        """`{"model": network params, **recipe aux params}` from one key, plain arrays."""
        return nn.meta.unbox(self._init_annotated(key))

    def logical_params(self) -> Params:
        """The tree of `init_params` with each leaf's logical axis names (a PartitionSpec of
        names; `PartitionSpec()` for a leaf the network does not annotate), for
        `sharding.state_shardings`. Nothing is initialised."""
        abstract = jax.eval_shape(self._init_annotated, jax.random.PRNGKey(0))
        return nn.get_partition_spec(abstract)

    def _init_annotated(self, key: Array) -> Params:
        """`init_params` with the network's kernels still in their logical-axis boxes."""
        model_key, aux_key = jax.random.split(key)
        x = jnp.zeros((1, *self.dataset.shape), jnp.float32)
        t = jnp.zeros((1,) if self.recipe.num_times == 1 else (1, self.recipe.num_times))
        cond = None
        if (sr := self.super_resolution) is not None:  # the low-res input's channels and level
            low = jnp.zeros((1, *sr.low_res_shape(self.dataset.shape)), jnp.float32)
            cond = sr.cond(low, jnp.zeros((1,)), None)
        model_params = self.model.init({"params": model_key}, x, t, cond=cond, train=False)
        return {"model": model_params["params"], **self.recipe.init_aux(aux_key)}

    def make_loss(self) -> LossFn:
        """The recipe's loss of the network, behind the label dropout of a conditional model
        and, for a super-resolution model, the low-res conditioning (labels dropped first)."""
        loss = conditioning.with_super_resolution(
            self.recipe.make_loss(self.apply_fn), self.super_resolution, self.recipe.process_for
        )
        return conditioning.with_label_dropout(loss, self.conditioning.label_dropout)

    def sample_labels(self, num_samples: int) -> Array | None:
        """The class of each sample [n]: `sample.labels` cycled, by default every class in turn
        (one class per column of a `num_classes`-wide grid); None for an unconditional model
        that no classifier guides.

        Raises:
          ValueError: for a `sample.labels` class outside [0, num_classes).
        """
        classes = self.conditioning.num_classes
        if self.guidance.kind == "classifier":
            classes = self.dataset.num_classes
        if not classes:
            return None
        chosen = self.sampling.labels or tuple(range(classes))
        if max(chosen) >= classes:
            raise ValueError(f"sample.labels={chosen} must lie in [0, {classes})")
        return jnp.asarray(chosen, jnp.int32)[jnp.arange(num_samples) % len(chosen)]

    def denoiser(
        self,
        params: Params,
        labels: Array | None,
        low_res: Array | None = None,
        aug_key: Array | None = None,
    ) -> denoisers.Denoiser:
        """The network of `params` as the samplers see it: conditioned on `labels` (a
        conditional model) and, for a super-resolution model, on `low_res` [B, h, h, C] noised
        at `super_resolution.sample_level` with `aug_key`; guided as `guidance` says, x0
        clipped as `clip_x0` says.

        Raises:
          ValueError: for classifier guidance without its classifier attached, or a
            super-resolution model without its low-res input and key.
        """
        g = self.guidance
        if g.kind == "classifier_free":
            process = self.recipe.process_for(params)
            denoiser = guidance.classifier_free(
                self.apply_fn, params["model"], self.recipe.prediction, process, labels,
                self.conditioning.num_classes, g.scale, g.t_interval,
            )  # fmt: skip
        else:
            cond = labels if self.conditioning.conditional else None
            if (sr := self.super_resolution) is not None:
                if low_res is None or aug_key is None:
                    raise ValueError("a super-resolution model samples from low_res and aug_key")
                cond = sr.sample_cond(aug_key, low_res, self.recipe.process_for(params), cond)
            denoiser = self.recipe.denoiser(self.apply_fn, params, cond)
        if g.kind == "classifier":
            if self.classifier is None:
                raise ValueError(
                    "guidance.kind='classifier' needs the classifier of guidance.classifier_workdir"
                    " (runs.attach_classifier)"
                )
            denoiser = guidance.classifier(denoiser, self.classifier, labels, g.scale)
        return denoisers.clip_x0(denoiser) if self.clip_x0 else denoiser

    def sample(self, params: Params, key: Array, num_samples: int) -> Array:
        """Draws `num_samples` samples [n, *shape] with the configured sampler (jittable); a
        conditional model draws sample i of class `sample_labels(n)[i]`. A super-resolution
        model super-resolves the first test images (`test_low_res`), with their labels."""
        if self.super_resolution is not None:
            low_res, labels = self.test_low_res(num_samples)
            return self.super_resolve(params, key, low_res, labels)
        denoiser = self.denoiser(params, self.sample_labels(num_samples))
        return self.sample_denoiser(denoiser, key, num_samples)

    def test_low_res(self, num_samples: int) -> tuple[Array, Array | None]:
        """The low-res images [n, h, h, C] of the first test images (cycled) and their labels
        [n] (None for an unconditional model): what a super-resolution run's samples start
        from."""
        test = self.dataset.as_array("test", num_samples)
        index = np.arange(num_samples) % len(test["x"])
        low_res = self.super_resolution.low_res(jnp.asarray(test["x"][index]))
        labels = jnp.asarray(test["label"][index]) if self.conditioning.conditional else None
        return low_res, labels

    def super_resolve(
        self, params: Params, key: Array, low_res: Array, labels: Array | None = None
    ) -> Array:
        """Samples [n, *shape] of a super-resolution model conditioned on low_res [n, h, h, C]
        (augmented at `super_resolution.sample_level`) and, if conditional, labels [n]."""
        aug_key, key = jax.random.split(key)
        denoiser = self.denoiser(params, labels, low_res, aug_key)
        return self.sample_denoiser(denoiser, key, low_res.shape[0])

    def sample_denoiser(self, denoiser: denoisers.Denoiser, key: Array, num_samples: int) -> Array:
        """`num_samples` samples of any `denoiser` with the configured sampler, from the noise
        `sample` draws for the same key (so a network and an analytic model start alike); a
        latent run's samples are decoded to images."""
        init_key, sample_key = jax.random.split(key)
        x_init = denoiser.process.prior_sample(init_key, (num_samples, *self.dataset.shape))
        x = self.sampler(sample_key, denoiser, x_init, num_steps=self.sample_num_steps)
        return x if self.latent is None else self.latent.decode(x)


def _sampler(recipe: Recipe, sampling: settings.SampleConfig) -> Callable:
    """The sampler of `sampling`; the method's own sampler starts from the method's options.

    Raises:
      ConfigError: for an unknown sampler, an option it does not take (naming
        `sample.options.<name>` and listing its options) or a bad option value.
    """
    name = sampling.sampler or recipe.sampler
    with settings.naming("sample.sampler"):
        valid = samplers.option_names(name)
    # samplers.get checks the names too, but only here is the config field known.
    for option in sampling.options:
        if option not in valid:
            raise ConfigError(
                f"sample.options.{option}: unknown option {option!r} of sampler {name!r}; "
                f"valid options: {', '.join(valid) or 'none'}"
            )
    options = dict(recipe.sampler_options) if name == recipe.sampler else {}
    options.update(sampling.options)
    with settings.naming("sample.options"):
        return samplers.get(name, **options)


def _fitted(sampler: Callable, dataset) -> Callable:
    """`sampler` fitted to the training split if it `needs_data` (the cold sampler's mixture
    start, `samplers.cold.Cold.fit_to_data`); other samplers unchanged."""
    if getattr(sampler, "needs_data", False):
        return sampler.fit_to_data(dataset.as_array("train")["x"])
    return sampler


def build(config: ml_collections.ConfigDict) -> Experiment:
    """Builds the Experiment of `config`.

    Raises:
      ConfigError: (a ValueError) for unknown names (listing the valid ones), keywords a
        dataset, process, method or model does not take, and bad values, each naming the config
        field.
    """
    sections = {
        "training": settings.read(settings.TrainingConfig, config.training),
        "optim": settings.read(settings.OptimConfig, config.optim),
        "sampling": settings.read(settings.SampleConfig, config.sample),
        "eval": settings.read(settings.EvalConfig, config.eval),
        "teacher": settings.read(settings.TeacherConfig, config.teacher),
        "mesh": settings.MeshConfig.of(config),
    }
    with settings.naming("model"):
        sections["conditioning"] = settings.ConditioningConfig.of_model(config.model)
    with settings.naming("guidance"):
        sections["guidance"] = settings.GuidanceConfig.of(config)
    sections["guidance"].check_model(sections["conditioning"])
    cond = sections["conditioning"]
    with settings.naming("data"):
        dataset = data.get(config.data.name, **config.data.kwargs.to_dict())
    cond.check_dataset(config.data.name, dataset.num_classes)
    super_resolution = settings.SuperResolutionConfig.of(config).augmentation
    latent = None
    with settings.naming("latent"):
        latent_config = settings.LatentConfig.of(config)
    if latent_config.autoencoder_workdir:
        # Imported here: latents restores the autoencoder through runs, which imports this module.
        from diffjax.train import latents, runs

        if config.method == "autoencoder":
            raise ConfigError("latent.autoencoder_workdir: an autoencoder trains on the data")
        dataset = latent = latents.LatentDataset.of(
            latent_config.autoencoder_workdir,
            dataset,
            runs.comparable(config, "data"),
        )
    with settings.naming("process"):
        process = processes.get(config.process.name, **config.process.kwargs.to_dict())
    with settings.naming("method"):
        make_recipe = methods.get(config.method)
    with settings.naming("loss"):
        recipe = make_recipe(process=process, **config.loss.to_dict())
        recipe.objective.check_conditioning(cond.num_classes, cond.p_uncond)
    if super_resolution is not None:
        _check_super_resolution(super_resolution, dataset, recipe, sections["guidance"])
    with settings.naming("model"):
        precision = settings.PrecisionConfig.of_model(config.model)
    model_kwargs = config.model.kwargs.to_dict()
    if "num_classes" in model_kwargs:
        raise ConfigError("set model.num_classes (checked against the data), not its kwargs")
    if "dtype" in model_kwargs:
        raise ConfigError("set model.dtype (float32 | bfloat16), not model.kwargs.dtype")
    if cond.conditional:
        model_kwargs["num_classes"] = cond.num_classes
    if recipe.generative or recipe.reconstructs:
        outputs = {"out_channels": dataset.shape[-1] * recipe.out_channels_factor}
    elif dataset.num_classes is None:
        raise ConfigError(
            f"method {config.method!r} classifies, but {config.data.name!r} has no labels"
        )
    else:
        outputs = {"num_outputs": dataset.num_classes}  # a classifier's logits
    with settings.naming("model"):
        model = models.get(
            config.model.name, dtype=precision.compute_dtype, **outputs, **model_kwargs
        )
    return Experiment(
        dataset=dataset,
        model=model,
        recipe=recipe,
        apply_fn=apply_fn_of(model),
        sampler=_fitted(_sampler(recipe, sections["sampling"]), dataset)
        if recipe.generative
        else None,
        seed=config.seed,
        super_resolution=super_resolution,
        latent=latent,
        **sections,
    )


def _check_super_resolution(sr, dataset, recipe: Recipe, guidance_config) -> None:
    """Raises a ConfigError naming the field unless a super-resolution model can be built."""
    with settings.naming("super_resolution.low_res_size"):
        sr.check_image(dataset.shape)
    if not recipe.generative:
        raise ConfigError(f"super_resolution: method {recipe.name!r} is not generative")
    if guidance_config.kind == "classifier_free":
        raise ConfigError(
            "super_resolution with guidance.kind='classifier_free' is not supported (its two "
            "network calls carry labels only); use guidance.kind='' or 'classifier'"
        )
