"""`mode=score_machine`: sample from an analytic score machine of the config's training set.

The machine (`diffjax.analytic.score_machines`: ideal, ls, els, els_scheduled) replaces the
network; the dataset, process, sampler and seed come from the config as in `mode=sample`, and
the start noise is drawn the same way as `Experiment.sample`'s, so a trained run of the same
config and seed starts from the same x_1. Writes `samples/<machine>_<sampler>_<steps>.{png,npz,
json}` with the sampling time and how far each sample lies from its nearest training image.
"""

import dataclasses
import os
import time
from typing import ClassVar

import jax
import ml_collections
import numpy as np

from diffjax.analytic import score_machines
from diffjax.errors import ConfigError
from diffjax.train import experiment, outputs, settings


@dataclasses.dataclass(frozen=True)
class MachineConfig:
    """`config.machine`: which score machine, of which training images.

    Attributes:
      name: a name in `score_machines.MACHINES`.
      patch_size: P of ls / els (odd); unused by ideal and els_scheduled.
      patch_sizes: P per time interval of els_scheduled.
      t_edges: the boundaries between els_scheduled's intervals.
      boundary_aware: els / els_scheduled compare patches of the same padding pattern only.
      chunk_size: training images per scan step (memory against speed).
      num_train: the first num_train training images; 0: all.
    """

    section: ClassVar[str] = "machine"  # its name in the config

    name: str
    patch_size: int
    patch_sizes: tuple[int, ...]
    t_edges: tuple[float, ...]
    boundary_aware: bool
    chunk_size: int
    num_train: int

    def __post_init__(self):
        if self.num_train < 0:
            raise ConfigError(f"machine.num_train={self.num_train} must be >= 0 (0: all)")

    def keywords(self) -> dict:
        """The keywords `score_machines.get(name, train, ...)` takes for this machine."""
        kw = {"chunk_size": self.chunk_size}
        if self.name in ("ls", "els"):
            kw["patch_size"] = self.patch_size
        if self.name in ("els", "els_scheduled"):
            kw["boundary_aware"] = self.boundary_aware
        if self.name == "els_scheduled":
            kw.update(patch_sizes=tuple(self.patch_sizes), t_edges=tuple(self.t_edges))
        return kw


def build(config: ml_collections.ConfigDict):
    """(experiment, machine config, machine, training images [N, H, W, C]) of `config`.

    Raises:
      ConfigError: for a bad `machine` field (naming it), a process with learned parts.
    """
    exp = experiment.build(config)
    mc = settings.read(MachineConfig, config.machine)
    if exp.recipe.bind_process is not None:
        raise ConfigError(f"process.name: a learned schedule needs a network; {exp.recipe.name}")
    train = np.asarray(exp.dataset.as_array("train")["x"])[: mc.num_train or None]
    with settings.naming("machine"):
        machine = score_machines.get(mc.name, train, **mc.keywords())
    return exp, mc, machine, train


def score_machine(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Samples `sample.num_samples` from `config.machine`; writes the grid, arrays and JSON."""
    exp, mc, machine, train = build(config)
    n = exp.sampling.num_samples
    fn = jax.jit(lambda m, key: exp.sample_denoiser(m.denoiser(exp.recipe.process), key, n))
    key = jax.random.PRNGKey(exp.seed)
    start = time.perf_counter()
    compiled = fn.lower(machine, key).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    x = np.asarray(jax.block_until_ready(compiled(machine, key)))
    seconds = time.perf_counter() - start
    num_steps = len(exp.sampler.timesteps(exp.recipe.process, exp.sample_num_steps)) - 1
    name = f"{mc.name}_{exp.sampler_name}_{num_steps}"
    distance = np.asarray(score_machines.nearest_distance(x, train))
    report = {
        "machine": mc.name,
        **mc.keywords(),
        "num_train": int(train.shape[0]),
        "sampler": exp.sampler_name,
        "num_steps": num_steps,
        "nfe": exp.sampler.nfe(num_steps),
        "num_samples": n,
        "seconds": seconds,
        "compile_seconds": compile_seconds,
        "nearest_train_rms_median": float(np.median(distance)),
        "png": outputs.save_samples(workdir, name, x),
    }
    outputs.write_json(os.path.join(workdir, "samples", name + ".json"), report)
    return report
