"""The trainer: state, optimizer, sharding, checkpoints, metric writers and the loop.

From Python (a notebook, a script) the CLI's work is a call per mode with a config and a
workdir: `train(config, workdir)` is `--config.mode=train` (the other modes are the functions
of `diffjax.main.MODES`, e.g. `diffjax.train.reflow.reflow`), and `restore_latest(config,
workdir)` returns the Experiment and TrainState of a finished run (`load_config(workdir)`
reads the config it ran with; `derive(config, **updates)` overrides dotted fields as the
command line does).
"""

from diffjax.train.loop import train
from diffjax.train.runs import derive, load_config, restore_latest

__all__ = ["derive", "load_config", "restore_latest", "train"]
