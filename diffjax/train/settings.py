"""The trainer's config sections as frozen dataclasses, each validated when it is built.

`read(TrainingConfig, config.training)` turns one ConfigDict section into its typed object;
a bad value, or a section with a missing or extra field, raises a `ConfigError` (a ValueError)
naming the field (`training.batch_size=0 must be >= 1`), which `python -m diffjax.main` prints
as one line. Only the edge (`experiment.build`, and the chain modes for their own sections)
calls `read`; the rest of the trainer takes these objects.
"""

import contextlib
import dataclasses
import types
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import jax.numpy as jnp
import ml_collections
import numpy as np

from diffjax.errors import ConfigError
from diffjax.losses.conditioning import LabelDropout, SuperResolution

OPTIMIZERS = ("adam", "adamw")
# `config.model.dtype` -> the networks' compute dtype (their params stay float32).
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SCHEDULES = ("constant", "cosine")

Section = TypeVar("Section")


def read(cls: type[Section], section: ml_collections.ConfigDict) -> Section:
    """The typed object `cls` of one config section (e.g. `config.training`).

    Raises:
      ConfigError: for a bad value, or a missing or extra field, naming the field.
    """
    values = section.to_dict()
    fields = dataclasses.fields(cls)
    valid = [f.name for f in fields]
    extra = [name for name in values if name not in valid]
    if extra:
        raise ConfigError(
            f"unknown config field {cls.section}.{extra[0]}; valid fields: {', '.join(valid)}"
        )
    required = (f.name for f in fields if f.default is dataclasses.MISSING)
    missing = [name for name in required if name not in values]
    if missing:
        raise ConfigError(f"config field {cls.section}.{missing[0]} is missing")
    with naming(cls.section):
        return cls(**values)


@contextlib.contextmanager
def naming(field: str):
    """Re-raises a ValueError or TypeError raised inside as a `ConfigError` prefixed with the
    config `field` that was being read: a registry, a constructor's keywords or a dataclass
    does not know which field of the config it was given. A ConfigError passes unchanged.
    """
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{field}: {e}") from e


def _check_at_least(section: str, values: Mapping[str, int], minimum: int) -> None:
    for field, value in values.items():
        if value < minimum:
            raise ConfigError(f"{section}.{field}={value} must be >= {minimum}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """`config.training`: the length and bookkeeping of a run.

    Attributes:
      num_steps: total optimizer steps (>= 1).
      batch_size: the global batch (>= 1; must also divide over the devices).
      log_every: steps between metric writes (>= 1).
      checkpoint_every: steps between checkpoints, one more at the end (>= 1).
      keep_checkpoints: how many recent checkpoints to keep.
      sample_every: steps between sample grids; 0 disables.
      allow_config_change: resume although guarded fields changed (`workdirs.GUARDED`: loss
        options, batch size, seed, ...); fields that fix the checkpoints' meaning never may.
      grad_accum_steps: micro-batches per optimizer step (>= 1, dividing `batch_size`): the
        step averages their gradients, so `batch_size` stays the batch of one update while
        only `batch_size / grad_accum_steps` examples are in memory at once. Defaults to 1
        for a config.json written before the field existed.
    """

    section: ClassVar[str] = "training"  # its name in the config

    num_steps: int
    batch_size: int
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    sample_every: int
    allow_config_change: bool = False
    grad_accum_steps: int = 1

    def __post_init__(self):
        counts = ("num_steps", "batch_size", "log_every", "checkpoint_every", "grad_accum_steps")
        _check_at_least("training", {f: getattr(self, f) for f in counts}, 1)
        _check_at_least("training", {"sample_every": self.sample_every}, 0)
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(
                f"training.batch_size={self.batch_size} must be divisible by "
                f"training.grad_accum_steps={self.grad_accum_steps}"
            )

    @property
    def micro_batch_size(self) -> int:
        """Examples per micro-batch: what one forward and backward pass holds in memory."""
        return self.batch_size // self.grad_accum_steps


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """`config.mesh`: the device mesh's shape over the axes `data` and `fsdp`.

    The batch is split over data x fsdp; parameters, EMA and optimizer state are split over
    `fsdp` (`sharding.LOGICAL_AXIS_RULES`). A checkpoint restores onto any mesh.

    Attributes:
      data: devices along `data`; -1 takes the devices the other axis leaves.
      fsdp: devices along `fsdp` (1: parameters replicated); -1 as for `data`.
    """

    section: ClassVar[str] = "mesh"  # its name in the config

    data: int = -1
    fsdp: int = 1

    def __post_init__(self):
        for field, value in self.axes.items():
            if value != -1 and value < 1:
                raise ConfigError(f"mesh.{field}={value} must be >= 1, or -1 for the rest")
        if list(self.axes.values()).count(-1) > 1:
            raise ConfigError(f"mesh={self.axes}: at most one axis may be -1 (the rest)")

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> "MeshConfig":
        """Reads `config.mesh` (a config.json written before it existed: all devices on
        `data`)."""
        return read(cls, config.mesh) if "mesh" in config else cls()

    @property
    def axes(self) -> dict[str, int]:
        """{"data": ..., "fsdp": ...} as configured (-1 unresolved)."""
        return {"data": self.data, "fsdp": self.fsdp}

    def shape(self, num_devices: int) -> dict[str, int]:
        """The mesh shape over `num_devices`, -1 resolved.

        Raises:
          ConfigError: if the product does not equal (or, with -1, divide) the device count.
        """
        axes = self.axes
        fixed = int(np.prod([v for v in axes.values() if v != -1]))
        product = " x ".join(f"{k}={v}" for k, v in axes.items())
        if -1 in axes.values():
            if num_devices % fixed:
                raise ConfigError(
                    f"mesh: {product}: the fixed axes' product {fixed} does not divide the "
                    f"{num_devices} devices"
                )
            return {k: num_devices // fixed if v == -1 else v for k, v in axes.items()}
        if fixed != num_devices:
            raise ConfigError(
                f"mesh: {product} = {fixed} devices, but there are {num_devices}; set the "
                "product to the device count or one axis to -1"
            )
        return dict(axes)


@dataclasses.dataclass(frozen=True)
class ConditioningConfig:
    """`config.model.num_classes` and `config.model.p_uncond`: class-conditional training.

    Attributes:
      num_classes: 0 for an unconditional model; N > 0 for a model conditioned on the dataset's
        N classes (the network's label table has a null row N).
      p_uncond: probability that a training label is replaced by the null class N, so the
        network also learns the unconditional model (classifier-free guidance training).
    """

    num_classes: int
    p_uncond: float

    def __post_init__(self):
        _check_at_least("model", {"num_classes": self.num_classes}, 0)
        if not 0.0 <= self.p_uncond < 1.0:
            raise ConfigError(f"model.p_uncond={self.p_uncond} must be in [0, 1)")
        if self.p_uncond > 0.0 and not self.conditional:
            raise ConfigError(
                f"model.p_uncond={self.p_uncond} drops class labels, but model.num_classes=0 "
                "is an unconditional model; set model.num_classes to the dataset's classes"
            )

    @classmethod
    def of_model(cls, model: ml_collections.ConfigDict) -> "ConditioningConfig":
        """Reads `config.model` (a config.json written before these fields existed is
        unconditional)."""
        return cls(int(model.get("num_classes", 0)), float(model.get("p_uncond", 0.0)))

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def label_dropout(self) -> LabelDropout | None:
        """The training labels' dropout; None for an unconditional model."""
        return LabelDropout(self.num_classes, self.p_uncond) if self.conditional else None

    def check_dataset(self, dataset_name: str, dataset_num_classes: int | None) -> None:
        """Raises a ValueError unless a conditional model has the dataset's classes."""
        if not self.conditional:
            return
        if dataset_num_classes is None:
            raise ConfigError(
                f"model.num_classes={self.num_classes} needs class labels, but dataset "
                f"{dataset_name!r} has none (set model.num_classes=0)"
            )
        if self.num_classes != dataset_num_classes:
            raise ConfigError(
                f"model.num_classes={self.num_classes} must equal the {dataset_num_classes} "
                f"classes of dataset {dataset_name!r}"
            )

    def train_batch(self, batch: Mapping[str, Any]) -> dict:
        """A host's batch as the loss takes it: without "label" for an unconditional model;
        for a conditional one, with its labels checked (cheap NumPy, before sharding).

        Raises:
          ValueError: a conditional model's batch without labels or with a label outside
            [0, num_classes), naming model.num_classes and the offending value.
        """
        if not self.conditional:
            return {k: v for k, v in batch.items() if k != "label"}
        if "label" not in batch:
            raise ConfigError(
                f"model.num_classes={self.num_classes} trains on class labels, but the batch "
                f"holds only {sorted(batch)}"
            )
        labels = np.asarray(batch["label"])
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.size:
            raise ConfigError(
                f"a training label {int(bad[0])} lies outside [0, model.num_classes="
                f"{self.num_classes})"
            )
        return dict(batch)


@dataclasses.dataclass(frozen=True)
class SuperResolutionConfig:
    """`config.super_resolution`: a super-resolution model of a cascade (0: an ordinary model).

    Attributes:
      low_res_size: side of the low-resolution input the model is conditioned on (0: none);
        it must divide the data's image side and be smaller than it.
      aug_max_level: Gaussian noise-conditioning augmentation: training noises the low-res
        input to a time s ~ U[0, aug_max_level] of the run's process (0: no augmentation).
      sample_level: the fixed augmentation time s_0 of sampling.
    """

    section: ClassVar[str] = "super_resolution"

    low_res_size: int = 0
    aug_max_level: float = 0.0
    sample_level: float = 0.0

    def __post_init__(self):
        _check_at_least("super_resolution", {"low_res_size": self.low_res_size}, 0)
        if self.low_res_size:
            with naming("super_resolution"):
                self.augmentation  # noqa: B018  (validates the levels)

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> "SuperResolutionConfig":
        """Reads `config.super_resolution` (a config.json without it is no SR model)."""
        if "super_resolution" not in config:
            return cls()
        return read(cls, config.super_resolution)

    @property
    def augmentation(self) -> SuperResolution | None:
        """The conditioning of `losses.conditioning`; None for an ordinary model."""
        if not self.low_res_size:
            return None
        return SuperResolution(self.low_res_size, self.aug_max_level, self.sample_level)


@dataclasses.dataclass(frozen=True)
class PrecisionConfig:
    """`config.model.dtype`: the network's compute dtype.

    Parameters, gradients and optimizer state stay float32 whatever it is (Flax casts each
    layer's float32 params to `dtype` where it computes); the models keep normalisation
    statistics and the attention softmax in float32 and return float32, so losses, schedules
    and samplers never see bfloat16.

    Attributes:
      dtype: a name in `COMPUTE_DTYPES`: "float32", or "bfloat16" (fast on TPUs and recent
        GPUs; CPUs do not accelerate it).
    """

    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"unknown model.dtype {self.dtype!r}; valid: {', '.join(COMPUTE_DTYPES)}"
            )

    @classmethod
    def of_model(cls, model: ml_collections.ConfigDict) -> "PrecisionConfig":
        """Reads `config.model` (a config.json written before the field existed is float32)."""
        return cls(str(model.get("dtype", "float32")))

    @property
    def compute_dtype(self) -> Any:
        """The jnp dtype the models take as `dtype`."""
        return COMPUTE_DTYPES[self.dtype]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """`config.optim`: Adam(W) with warm-up and a decay schedule, clipping, and the EMA.

    Attributes:
      optimizer: "adam" or "adamw".
      learning_rate: peak learning rate after warm-up (> 0).
      schedule: "constant" or "cosine" (decay to 0 at `training.num_steps`).
      warmup_steps: linear warm-up from 0 (>= 0).
      b1: Adam beta1.
      b2: Adam beta2.
      weight_decay: decoupled weight decay; non-zero only with "adamw".
      grad_clip: global-norm clipping (>= 0; 0 disables).
      ema_decay: EMA of the params used for sampling and evaluation, in [0, 1).
    """

    section: ClassVar[str] = "optim"  # its name in the config

    optimizer: str
    learning_rate: float
    schedule: str
    warmup_steps: int
    b1: float
    b2: float
    weight_decay: float
    grad_clip: float
    ema_decay: float

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optim.optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown optim.schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}"
            )
        if self.learning_rate <= 0:
            raise ConfigError(f"optim.learning_rate={self.learning_rate} must be > 0")
        _check_at_least("optim", {"warmup_steps": self.warmup_steps}, 0)
        if self.weight_decay and self.optimizer != "adamw":
            raise ConfigError("optim.weight_decay needs optim.optimizer='adamw'")
        if self.grad_clip < 0:
            raise ConfigError(f"optim.grad_clip={self.grad_clip} must be >= 0 (0 disables)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay={self.ema_decay} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """`config.sample`: the sampler of sample grids, `mode=sample` and the evaluation.

    Attributes:
      sampler: a name in `diffjax.samplers`; "" uses the method's default.
      num_steps: sampler steps (>= 0; 0 uses the sampler's default).
      clip_x0: clip the x0 prediction to [-1, 1] while sampling discrete data.
      num_samples: samples per grid and per `mode=sample` run.
      options: extra sampler keywords (read-only), on top of the method's defaults when
        `sampler` is the method's own.
      labels: the classes to draw, cycled over the samples, for a conditional (or
        classifier-guided) model; () cycles through every class.
    """

    section: ClassVar[str] = "sample"  # its name in the config

    sampler: str
    num_steps: int
    clip_x0: bool
    num_samples: int
    options: Mapping[str, Any]
    labels: tuple[int, ...] = ()

    def __post_init__(self):
        if self.num_steps < 0:
            raise ConfigError(f"sample.num_steps={self.num_steps} must be >= 0 (0: default)")
        # Frozen all the way down: an Experiment's sampler was built from these options.
        object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))
        object.__setattr__(self, "labels", tuple(int(v) for v in self.labels))
        if any(v < 0 for v in self.labels):
            raise ConfigError(f"sample.labels={self.labels} must be class indices >= 0")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """`config.eval`: sample quality (metrics.json) and `mode=eval_bpd`.

    Attributes:
      num_samples: generated samples for the Frechet distance.
      at_end: evaluate sample quality when training finishes.
      bpd_batch_size: test examples per jitted bits/dim batch (must divide over the devices).
      bpd_max_examples: test examples for bits/dim; 0: the whole split.
      bpd_num_dequantizations: uniform dequantizations averaged per example.
      bpd_trace: "exact" or "hutchinson" divergence.
      bpd_num_probes: Hutchinson probes per example.
      bpd_rtol: Dormand-Prince relative tolerance.
      bpd_atol: Dormand-Prince absolute tolerance.
      bpd_t_min: start of the ODE (the data end).
    """

    section: ClassVar[str] = "eval"  # its name in the config

    num_samples: int
    at_end: bool
    bpd_batch_size: int
    bpd_max_examples: int
    bpd_num_dequantizations: int
    bpd_trace: str
    bpd_num_probes: int
    bpd_rtol: float
    bpd_atol: float
    bpd_t_min: float


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """`config.teacher`: a trained run to learn from and/or start from.

    Attributes:
      workdir: workdir of a finished `mode=train` run ("" for none).
      init_student: start `params["model"]` from the teacher's EMA params.
    """

    section: ClassVar[str] = "teacher"  # its name in the config

    workdir: str
    init_student: bool


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """`config.distill`: the rounds of `mode=distill` (read only in that mode).

    Attributes:
      start_steps: the first student's sampling steps (its teacher takes twice as many).
      end_steps: the last student's steps (>= 1), reached by halving `start_steps`.
    """

    section: ClassVar[str] = "distill"  # its name in the config

    start_steps: int
    end_steps: int

    def __post_init__(self):
        if self.end_steps < 1 or self.student_steps[-1] != self.end_steps:
            raise ConfigError(
                f"distill.start_steps={self.start_steps} must halve down to "
                f"distill.end_steps={self.end_steps} >= 1"
            )

    @property
    def student_steps(self) -> list[int]:
        """The students' step counts: `start_steps` halved while even and above `end_steps`."""
        steps = [self.start_steps]
        while steps[-1] > self.end_steps and steps[-1] % 2 == 0:
            steps.append(steps[-1] // 2)
        return steps


@dataclasses.dataclass(frozen=True)
class ReflowConfig:
    """`config.reflow`: the rounds of `mode=reflow` (read only in that mode).

    Attributes:
      rounds: reflow rounds k (>= 1); round k trains the (k + 1)-rectified flow.
      num_pairs: (noise, sample) pairs simulated per round (>= 1).
      ode_steps: RK4 steps of the pair simulation and the path metrics (>= 1).
      pair_batch_size: examples per jitted simulation batch (>= 1).
      eval_nfes: Euler step counts (each >= 1) at which every flow is scored.
    """

    section: ClassVar[str] = "reflow"  # its name in the config

    rounds: int
    num_pairs: int
    ode_steps: int
    pair_batch_size: int
    eval_nfes: tuple[int, ...]

    def __post_init__(self):
        counts = ("rounds", "num_pairs", "ode_steps", "pair_batch_size")
        _check_at_least("reflow", {f: getattr(self, f) for f in counts}, 1)
        if not self.eval_nfes or min(self.eval_nfes) < 1:
            raise ConfigError(f"reflow.eval_nfes={self.eval_nfes} must be positive step counts")
        # A config read back from config.json holds a list; the object keeps an immutable tuple.
        object.__setattr__(self, "eval_nfes", tuple(self.eval_nfes))


EDIT_KINDS = ("inpaint", "sdedit", "invert", "interpolate")
EDIT_MASKS = ("lower_half", "random")


@dataclasses.dataclass(frozen=True)
class EditConfig:
    """`config.edit`: what `mode=edit` does to test images (read only in that mode).

    Attributes:
      kind: inpaint (RePaint) | sdedit | invert (DDIM inversion, then decoding) | interpolate.
      num_images: test images to edit (>= 1; 2 per path for interpolate).
      num_steps: reverse steps of RePaint / SDEdit, DDIM steps of inversion (>= 1).
      mask: inpaint's known region: lower_half (the upper half is filled) | random.
      known_fraction: fraction of known pixels of the random mask, in (0, 1).
      jump_length: RePaint's jump length j (>= 1).
      resamplings: RePaint's resamplings r (>= 1; 1 is plain replacement).
      t0: SDEdit's starting time, in (0, 1].
      num_points: points of each interpolation path (>= 2).
    """

    section: ClassVar[str] = "edit"  # its name in the config

    kind: str
    num_images: int
    num_steps: int
    mask: str
    known_fraction: float
    jump_length: int
    resamplings: int
    t0: float
    num_points: int

    def __post_init__(self):
        if self.kind not in EDIT_KINDS:
            raise ConfigError(f"edit.kind={self.kind!r}; valid: {', '.join(EDIT_KINDS)}")
        if self.mask not in EDIT_MASKS:
            raise ConfigError(f"edit.mask={self.mask!r}; valid: {', '.join(EDIT_MASKS)}")
        counts = ("num_images", "num_steps", "jump_length", "resamplings")
        _check_at_least("edit", {f: getattr(self, f) for f in counts}, 1)
        if self.kind == "inpaint" and self.jump_length > self.num_steps:
            raise ConfigError(
                f"edit.jump_length={self.jump_length} must be <= edit.num_steps={self.num_steps}"
            )
        if not 0.0 < self.known_fraction < 1.0:
            raise ConfigError(f"edit.known_fraction={self.known_fraction} must lie in (0, 1)")
        if not 0.0 < self.t0 <= 1.0:
            raise ConfigError(f"edit.t0={self.t0} must lie in (0, 1]")
        if self.num_points < 2:
            raise ConfigError(f"edit.num_points={self.num_points} must be >= 2")


GUIDANCE_KINDS = ("", "classifier_free", "classifier")


@dataclasses.dataclass(frozen=True)
class LatentConfig:
    """`config.latent`: train on the latents of an autoencoder run (latent diffusion).

    Attributes:
      autoencoder_workdir: workdir of a trained `method=autoencoder` run on the same data; the
        train split is encoded once into its `latents/` cache (`diffjax.train.latents`); ""
        trains on the data itself.
    """

    section: ClassVar[str] = "latent"  # its name in the config

    autoencoder_workdir: str = ""

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> "LatentConfig":
        """Reads `config.latent` (a config.json written before it existed has none)."""
        latent = config.get("latent")
        return cls() if latent is None else read(cls, latent)


@dataclasses.dataclass(frozen=True)
class GuidanceConfig:
    """`config.guidance`: how samples are guided (`diffjax.guidance`); "" samples unguided.

    Attributes:
      kind: "" | classifier_free (needs a conditional model trained with model.p_uncond > 0) |
        classifier (the noisy classifier run in `classifier_workdir`).
      scale: w of classifier-free guidance ((1 + w) cond - w uncond; 0: conditional) or s of
        classifier guidance (eps - s sigma grad log p); >= 0.
      t_interval: classifier-free guidance acts only for t in [lo, hi].
      classifier_workdir: a finished `method=noisy_classifier` run on the same process and data.
    """

    kind: str
    scale: float
    t_interval: tuple[float, float]
    classifier_workdir: str

    def __post_init__(self):
        if self.kind not in GUIDANCE_KINDS:
            raise ConfigError(f"guidance.kind={self.kind!r}; valid: {GUIDANCE_KINDS}")
        if self.scale < 0:
            raise ConfigError(f"guidance.scale={self.scale} must be >= 0")
        if len(self.t_interval) != 2:
            raise ConfigError(f"guidance.t_interval={self.t_interval} must be a pair (lo, hi)")
        lo, hi = self.t_interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(
                f"guidance.t_interval={tuple(self.t_interval)} needs 0 <= lo <= hi <= 1"
            )
        object.__setattr__(self, "t_interval", (float(lo), float(hi)))
        if (self.kind == "classifier") != bool(self.classifier_workdir):
            raise ConfigError(
                "guidance.classifier_workdir names the noisy classifier run exactly when "
                f"guidance.kind='classifier' (got kind={self.kind!r}, "
                f"classifier_workdir={self.classifier_workdir!r})"
            )

    @classmethod
    def of(cls, config: ml_collections.ConfigDict) -> "GuidanceConfig":
        """Reads `config.guidance` (a config.json written before it existed is unguided)."""
        g = config.get("guidance")
        if g is None:
            return cls("", 0.0, (0.0, 1.0), "")
        return cls(g.kind, float(g.scale), tuple(g.t_interval), g.classifier_workdir)

    def check_model(self, conditioning: "ConditioningConfig") -> None:
        """Raises a ValueError for classifier-free guidance of an unconditional model."""
        if self.kind == "classifier_free" and not conditioning.conditional:
            raise ConfigError(
                "guidance.kind='classifier_free' needs a conditional model trained with label "
                "dropout (model.num_classes > 0, model.p_uncond > 0)"
            )
