"""Every `python -m diffjax.main` command of README.md's bash blocks runs as written, on tiny
sizes, in README order among the commands that share a workdir (later commands sample from,
evaluate and learn from earlier commands' workdirs); chains that share none run side by side.

Each `/tmp/<name>` workdir becomes a directory of pytest's tmp_path, and `TINY` is appended to
every command: it only shrinks sizes (steps, batches, sample counts), never changes what a
command does. A command that cannot run this way is skipped by name in `SKIPPED`, with why.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys
from concurrent import futures

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMAND = "python -m diffjax.main"

# The same for every command, so a run and the commands that read its workdir agree on it.
TINY = (
    "--config.training.num_steps=2",
    "--config.training.batch_size=16",
    "--config.sample.num_samples=4",
    "--config.sample.num_steps=2",
    "--config.eval.at_end=False",
    "--config.eval.num_samples=16",
    "--config.distill.start_steps=2",  # one halving, 2 -> 1 steps
    "--config.reflow.num_pairs=32",
    "--config.reflow.pair_batch_size=16",
    "--config.reflow.ode_steps=2",
    "--config.reflow.eval_nfes=(1,)",
    "--config.edit.num_images=2",
    "--config.edit.num_steps=10",  # RePaint jumps 10 steps (edit.jump_length)
)

SKIPPED = {
    # A template: <run> and DIR are placeholders for the user's config and workdir.
    "python -m diffjax.main --config=configs/<run>.py --workdir=DIR --config.mode=eval_bpd",
    # CIFAR-10 on a fresh machine: downloads it and prepares it with TensorFlow (the prepare
    # extra); tests/data/test_catalogue.py prepares it offline from a fake archive in the real
    # format and trains a step through the command line.
    "python -m diffjax.main --config=configs/ddpm_cifar10.py --workdir=/tmp/ddpm_cifar10 "
    "--config.data.kwargs.data_dir=$HOME/tensorflow_datasets",
    # A TPU pod slice (through gcloud), SLURM, and two GPU hosts: each needs its cluster.
    # tests/train/test_multiprocess.py runs the coordinator flags with two processes on
    # 127.0.0.1.
    'python -m diffjax.main --config=configs/ddpm_cifar10.py --workdir=/mnt/shared/ddpm_cifar10"',
    "python -m diffjax.main --config=configs/ddpm_cifar10.py --workdir=/shared/ddpm_cifar10",
    *(
        "python -m diffjax.main --config=configs/ddpm_cifar10.py --workdir=/shared/ddpm_cifar10 "
        f"--coordinator_address=10.0.0.1:8476 --num_processes=2 --process_id={i}"
        for i in (0, 1)
    ),
}


def readme_commands(text: str) -> list[str]:
    """The `python -m diffjax.main ...` commands of the bash blocks of `text`, in order, with
    backslash continuations joined and what precedes them on a line (`pip install -e . &&`)
    dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if COMMAND in line and not line.startswith("#"):
                commands.append(" ".join(line[line.index(COMMAND) :].split()))
    return commands


def _workdirs(command: str) -> set[str]:
    return set(re.findall(r"/tmp/[\w.-]+", command))


def chains(commands: list[str]) -> list[list[str]]:
    """`commands` grouped so that each group holds, in their order, all commands that share a
    /tmp workdir directly or through others; no two groups share one."""
    groups: list[list[str]] = []
    for command in commands:
        linked = [g for g in groups if _workdirs(command) & set().union(*map(_workdirs, g))]
        groups = [g for g in groups if g not in linked]
        groups.append(sorted([*sum(linked, []), command], key=commands.index))
    return groups


def _runnable(command: str, tmp: pathlib.Path) -> list[str]:
    """`command` as argv, its /tmp workdirs under `tmp`, with `TINY` appended."""
    command = re.sub(r"/tmp/([\w.-]+)", lambda m: str(tmp / m[1]), command)
    return [sys.executable, *shlex.split(command)[1:], *TINY]


COMMANDS = readme_commands(README.read_text())


def test_the_readme_commands_are_found_and_the_skipped_ones_exist():
    assert len(COMMANDS) >= 15
    assert SKIPPED <= set(COMMANDS), "a skipped command is no longer in the README"


def test_chains_keep_the_order_of_commands_sharing_a_workdir():
    commands = ["a /tmp/x", "b /tmp/y", "c /tmp/z", "d /tmp/y /tmp/x", "e /tmp/x"]
    linked = ["a /tmp/x", "b /tmp/y", "d /tmp/y /tmp/x", "e /tmp/x"]
    assert sorted(chains(commands)) == [linked, ["c /tmp/z"]]


@pytest.mark.slow
def test_readme_commands_run_in_order(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # Several commands compile the same train or sample step (the same config, another
        # workdir); the persistent cache compiles each once.
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
    }

    def run_chain(chain: list[str]) -> list[str]:
        """Runs `chain` in order up to its first failure; returns the failure, if any."""
        for command in chain:
            if command in SKIPPED:
                continue
            result = subprocess.run(
                _runnable(command, tmp_path / "tmp"),
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
                timeout=600,
            )
            if result.returncode != 0:
                return [f"{command}\n{result.stderr[-3000:]}"]
        return []

    # Two at a time (the CPUs of the machine the README's timings assume), longest first.
    with futures.ThreadPoolExecutor(2) as pool:
        failures = sum(pool.map(run_chain, sorted(chains(COMMANDS), key=len, reverse=True)), [])
    assert not failures, "\n\n".join(failures)
