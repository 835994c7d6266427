"""Command line: `python -m diffjax.main --config=configs/default.py --workdir=DIR`.

Override any config field: `--config.training.num_steps=200`. `config.mode` picks what to do.
Sampler options, which depend on the sampler, are set the same way:
`--config.sample.options.eta=0.0`; the sampler checks their names when it is built.

A mistake in the command or the config (`diffjax.errors.UserError`) ends the run with one line,
`error: <message>`, on stderr and exit status 1; `--verbosity=1` adds its traceback.

Several processes (a TPU pod slice, a GPU cluster) run the same command; each starts JAX's
distributed runtime first (`diffjax.distributed`: detected on Cloud TPU / SLURM / Open MPI /
Kubernetes, or `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`). A process
that fails prints `error (process I of N): <message>`. SIGTERM (preemption) saves a checkpoint
at the next step all processes agree on and exits 0; the same command resumes.
"""

import ast
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from diffjax import _registry, compile_cache, distributed
from diffjax.errors import ConfigError, UserError
from diffjax.train import (
    cascade,
    distill,
    edit,
    generate,
    loop,
    preemption,
    reflow,
    score_machine,
    settings,
)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs.")
flags.mark_flags_as_required(["config", "workdir"])
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "HOST:PORT of process 0 in a multi-process run (default $DIFFJAX_COORDINATOR_ADDRESS; "
    "unset: detected on Cloud TPU / SLURM / Open MPI / Kubernetes, else one process).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in the run (default $DIFFJAX_NUM_PROCESSES)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index in [0, num_processes) (default $DIFFJAX_PROCESS_ID)."
)
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    None,
    "Directory of JAX's persistent compilation cache (default $DIFFJAX_COMPILATION_CACHE, else "
    "~/.cache/diffjax/jax_compilation_cache); empty: off. See diffjax.compile_cache.",
)
_STARTUP_TIMEOUT = flags.DEFINE_integer(
    "startup_timeout", 300, "Seconds a multi-process run waits for all its processes to join."
)

MODES = {
    "train": loop.train,
    "sample": generate.sample,
    "evaluate": generate.evaluate,
    "eval_bpd": generate.eval_bpd,
    "distill": distill.distill,
    "reflow": reflow.reflow,
    "edit": edit.edit,
    "score_machine": score_machine.score_machine,
    "cascade": cascade.cascade,
}

_SAMPLER_OPTION = re.compile(r"--?config\.sample\.options\.(\w+)=(.*)", re.DOTALL)
_CONFIG_OVERRIDE = re.compile(r"--?(no)?config\.([\w.]+)")
_VERBOSITY = re.compile(r"--?(?:verbosity|v)=(-?\d+)")


def _literal(text: str):
    """A command-line value as Python: a literal (0.0, 3, True, "x", (1, 2)), a float absl would
    also read (inf, nan), or else the string itself (`--config.sample.options.predictor=ald`)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _one_line(message: str) -> str:
    """A multi-line absl or config_flags message (a config file's traceback) as its first and
    last lines."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def _unknown_field(error: Exception, argv: list[str]) -> ConfigError | None:
    """The ConfigError of an override of a field the config does not have, or None when `error`
    is not that. config_flags raises an AttributeError of a KeyError whose message is the
    missing key (and a suggestion), not the override's path; the path is found in `argv`."""
    message = error
    while isinstance(message, BaseException) and message.args:
        message = message.args[0]
    key, _, hint = str(message).partition("\n")
    key = key.strip("'\"")
    paths = [m[2] for m in map(_CONFIG_OVERRIDE.match, argv) if m]
    path = next((p for p in paths if key in p.split(".")), None)
    if path is None:
        return None
    hint = f" ({hint[0].lower()}{hint[1:]})" if hint else ""
    return ConfigError(f"unknown config field {path}{hint}")


def split_sampler_options(argv: list[str]) -> tuple[dict, list[str]]:
    """The `--config.sample.options.NAME=VALUE` arguments of `argv` as {NAME: value} (values by
    `_literal`), and the other arguments."""
    options, rest = {}, []
    for arg in argv:
        match = _SAMPLER_OPTION.fullmatch(arg)
        if match:
            options[match[1]] = _literal(match[2])
        else:
            rest.append(arg)
    return options, rest


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with sampler options and one-line errors.

    `--config.sample.options.NAME=VALUE` arguments are taken out before absl parses (the locked
    config has no field NAME, and which names are valid depends on the sampler), then put into
    `config.sample.options` (`_literal` values); any other override of a missing field still
    fails. Every parsing failure is a ConfigError naming the flag or field.
    """
    options, rest = split_sampler_options(argv)
    # config_flags reads its overrides from sys.argv itself, not from the list it parses.
    sys.argv = rest
    try:
        unparsed = flags.FLAGS(rest)
    except flags.Error as e:
        raise ConfigError(_one_line(str(e))) from e
    except (AttributeError, KeyError) as e:
        error = _unknown_field(e, rest)
        if error is None:
            raise
        raise error from e
    try:
        sample_options = _CONFIG.value.sample.options
    except OSError as e:  # config_flags defers a missing config file to the first access
        raise ConfigError(f"--config: {str(e).strip().splitlines()[-1].strip()}") from e
    with sample_options.unlocked():
        for name, value in options.items():
            try:
                sample_options[name] = value
            except TypeError as e:  # a value of another type than the config's own option
                raise ConfigError(f"sample.options.{name}={value!r}: {e}") from e
    return unparsed


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}: flags take the form --name=value")
    config = _CONFIG.value
    if flags.FLAGS.verbosity < 1:
        # orbax logs every save at INFO; the progress bar and <workdir>/train_log.txt say what
        # matters.
        logging.set_verbosity(logging.WARNING)
    # Before the first compilation: a program compiled by an earlier run is read from disk.
    cache = _COMPILATION_CACHE.value
    compile_cache.enable(compile_cache.default_dir() if cache is None else cache)
    # Before anything touches a device: a multi-process run must see all its devices.
    distributed.initialize(
        distributed.resolve(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value),
        timeout_seconds=_STARTUP_TIMEOUT.value,
    )
    with settings.naming("mode"):
        run = _registry.lookup("mode", MODES, config.mode)
    result = run(config, _WORKDIR.value)
    if isinstance(result, dict):
        print(result)


def _verbosity() -> int:
    """`--verbosity`, also after a flag failed to parse before absl reached it."""
    if flags.FLAGS.is_parsed():
        return flags.FLAGS.verbosity
    levels = [int(m[1]) for m in map(_VERBOSITY.fullmatch, sys.argv) if m]
    return levels[-1] if levels else 0


def _process() -> str:
    """ " (process I of N)" in a multi-process run, else ""."""
    try:
        count = jax.process_count() if jax.distributed.is_initialized() else 1
        return f" (process {jax.process_index()} of {count})" if count > 1 else ""
    except Exception:  # noqa: BLE001  (describing the failure must not fail)
        return ""


def run() -> None:
    """`main` under absl; a UserError ends the process with `error: <message>` on one line
    (with its traceback too at `--verbosity=1` or higher) and exit status 1. A preempted run
    (SIGTERM) exits 0 after its checkpoint, saying how to resume."""
    try:
        app.run(main, flags_parser=_parse_flags)
    except preemption.Preempted as e:
        print(f"{e}{_process()}", file=sys.stderr)
        sys.exit(0)
    except UserError as e:
        if _verbosity() >= 1:
            raise
        print(f"error{_process()}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
