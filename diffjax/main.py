"""Command line: `python -m diffjax.main --config=configs/default.py --workdir=DIR`.

Override any config field: `--config.training.num_steps=200`. `config.mode` picks what to do.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from diffjax import _registry
from diffjax.train import distill, edit, generate, loop, reflow

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs.")
flags.mark_flags_as_required(["config", "workdir"])

MODES = {
    "train": loop.train,
    "sample": generate.sample,
    "evaluate": generate.evaluate,
    "eval_bpd": generate.eval_bpd,
    "distill": distill.distill,
    "reflow": reflow.reflow,
    "edit": edit.edit,
}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    # orbax logs every save at INFO; the progress bar and <workdir>/train_log.txt say what matters.
    logging.set_verbosity(logging.WARNING)
    run = _registry.lookup("mode", MODES, config.mode)
    result = run(config, _WORKDIR.value)
    if isinstance(result, dict):
        print(result)


if __name__ == "__main__":
    app.run(main)
