"""Start-up of a run in one or many processes, and what it runs on.

A run in more than one process (a TPU pod slice: one process per host; a GPU cluster: one per
host or per GPU) starts JAX's distributed runtime before any device is used. The processes find
each other in one of two ways:

- **Given**: `--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or the
  environment variables `DIFFJAX_COORDINATOR_ADDRESS`, `DIFFJAX_NUM_PROCESSES`,
  `DIFFJAX_PROCESS_ID`; flags win). Process 0 listens on PORT of HOST; all N must be started.
- **Detected**, as `jax.distributed.initialize()` does it: Cloud TPU pod slices (the TPU
  metadata), SLURM (`srun`), Open MPI (`mpirun`) and Kubernetes indexed jobs. Only when the
  detected environment has more than one process is the runtime started.

A single process never starts it (`resolve` returns None).
"""

import dataclasses
import os
import socket
import time
from collections.abc import Mapping

import jax

from diffjax.errors import ConfigError, UserError

ENV = {
    "coordinator_address": "DIFFJAX_COORDINATOR_ADDRESS",
    "num_processes": "DIFFJAX_NUM_PROCESSES",
    "process_id": "DIFFJAX_PROCESS_ID",
}
# A parameter count above which a run on the CPU backend is almost certainly a mistaken install
# (the *_cifar10 UNets and DiT-B/XL are 35M-700M; the digits and toy models are under 10M).
CPU_PARAMS_WARNING = 20_000_000


class DistributedError(UserError, RuntimeError):
    """The distributed runtime could not start (a wrong address, a missing process, a timeout)."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process is in a multi-process run; `source` says how that was learnt."""

    coordinator_address: str | None  # None: detected by JAX
    num_processes: int
    process_id: int
    source: str


def _int(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} must be an integer") from None


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    detect: bool = True,
) -> Cluster | None:
    """This process's place in a multi-process run, or None for a single-process run.

    Args:
      coordinator_address, num_processes, process_id: the command-line flags (None: unset);
        each falls back to its environment variable (`ENV`).
      environ: the environment (default `os.environ`).
      detect: with none given, ask JAX's cluster detection (Cloud TPU, SLURM, Open MPI,
        Kubernetes).

    Raises:
      ConfigError: a partial or inconsistent set of the three, naming the flag.
    """
    environ = os.environ if environ is None else environ
    address = coordinator_address or environ.get(ENV["coordinator_address"]) or None
    count = num_processes
    if count is None:
        count = _int(ENV["num_processes"], environ.get(ENV["num_processes"]))
    index = process_id
    if index is None:
        index = _int(ENV["process_id"], environ.get(ENV["process_id"]))
    given = {"coordinator_address": address, "num_processes": count, "process_id": index}
    if any(v is not None for v in given.values()):
        missing = [f"--{k} (or {ENV[k]})" for k, v in given.items() if v is None]
        if count == 1 and index in (None, 0):
            return None
        if missing:
            raise ConfigError(f"a multi-process run needs {', '.join(missing)} as well")
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--process_id={index} must be in [0, --num_processes={count})")
        return Cluster(address, count, index, "flags / environment")
    if not detect:
        return None
    return _detect()


def _detect() -> Cluster | None:
    """JAX's own cluster detection (the environments `jax.distributed.initialize()` knows),
    without starting anything: None unless it finds more than one process."""
    try:  # private in jax 0.10.2 (pinned), used by jax.distributed.initialize() itself
        from jax._src.clusters import ClusterEnv
    except ImportError:
        return None
    for env in ClusterEnv._cluster_types:
        if env.opt_in_only_method or not env.is_env_present():
            continue
        count = env.get_process_count()
        if count is None or count <= 1:
            return None
        return Cluster(None, count, env.get_process_id(), env.__name__)
    return None


def initialize(cluster: Cluster | None, timeout_seconds: int = 300) -> None:
    """Starts JAX's distributed runtime for `cluster` (nothing for None); call it before any
    device is used. CPU collectives across processes use gloo.

    Raises:
      DistributedError: naming this process, the coordinator and the cause.
    """
    if cluster is None:
        return
    if cluster.coordinator_address and cluster.process_id != 0:
        # JAX aborts the process (SIGABRT, a C++ stack trace) when it cannot register with the
        # coordinator; a process that cannot reach it at all gets this one-line error instead.
        _wait_for_coordinator(cluster, timeout_seconds)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator_address,
            num_processes=cluster.num_processes,
            process_id=cluster.process_id,
            initialization_timeout=timeout_seconds,
        )
    except Exception as error:  # noqa: BLE001  (XLA raises plain RuntimeErrors / XlaRuntimeError)
        lines = str(error).strip().splitlines()
        where = cluster.coordinator_address or f"detected by {cluster.source}"
        raise DistributedError(
            f"process {cluster.process_id} of {cluster.num_processes} could not join the run "
            f"(coordinator {where}): {type(error).__name__}: {lines[0] if lines else ''}; check "
            "that every process was started with the same --coordinator_address and "
            "--num_processes, and that process 0 is reachable on that port"
        ) from error


def _wait_for_coordinator(cluster: Cluster, timeout_seconds: float) -> None:
    """Waits until process 0's coordinator accepts TCP connections.

    Raises:
      DistributedError: if it does not within `timeout_seconds`, naming the address.
    """
    host, _, port = cluster.coordinator_address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--coordinator_address={cluster.coordinator_address!r} must be HOST:PORT"
        )
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"process {cluster.process_id} of {cluster.num_processes} could not reach "
                    f"the coordinator {cluster.coordinator_address} (process 0) within "
                    f"{timeout_seconds} s ({type(error).__name__}: {error}); start process 0 "
                    "with the same --coordinator_address, or check the host, port and firewall"
                ) from error
            time.sleep(0.5)


def describe() -> str:
    """The backend and its size, e.g. "cpu, 8 devices, 1 process" or "tpu, 32 devices (4 per
    process), 8 processes"."""
    n, local, processes = jax.device_count(), jax.local_device_count(), jax.process_count()
    devices = f"{n} device{'s' * (n != 1)}"
    if processes > 1:
        devices += f" ({local} per process)"
    return f"{jax.default_backend()}, {devices}, {processes} process{'es' * (processes != 1)}"


def cpu_warning(num_params: int, config_name: str = "") -> str | None:
    """A warning when a model of accelerator size (`num_params` above `CPU_PARAMS_WARNING`)
    is about to train on the CPU backend, else None."""
    if jax.default_backend() != "cpu" or num_params <= CPU_PARAMS_WARNING:
        return None
    return (
        f"warning: training a {num_params / 1e6:.1f}M-parameter model{config_name} on the CPU "
        "backend: no TPU or GPU is visible to JAX. On a TPU VM install `pip install -e .[tpu]`, "
        "on a CUDA 12 GPU host `pip install -e .[cuda12]` (see the README)"
    )
