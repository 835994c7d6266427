"""Start-up: which runs start the distributed runtime, with which parameters; the backend line
and the CPU warning. (Two real processes: tests/train/test_multiprocess.py.)"""

import os
from unittest import mock

import pytest

from diffjax import distributed
from diffjax.errors import ConfigError


def test_a_single_process_starts_nothing():
    assert distributed.resolve(environ={}, detect=False) is None
    assert distributed.resolve(environ={}) is None  # no cluster on the test machine
    env = {"DIFFJAX_NUM_PROCESSES": "1"}
    assert distributed.resolve(environ=env) is None


def test_flags_win_over_the_environment():
    env = {
        "DIFFJAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "DIFFJAX_NUM_PROCESSES": "4",
        "DIFFJAX_PROCESS_ID": "3",
    }
    assert distributed.resolve(environ=env) == distributed.Cluster(
        "10.0.0.1:1234", 4, 3, "flags / environment"
    )
    cluster = distributed.resolve("127.0.0.1:99", 2, 1, environ=env)
    assert (cluster.coordinator_address, cluster.num_processes, cluster.process_id) == (
        "127.0.0.1:99",
        2,
        1,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (("127.0.0.1:1", 2, None), r"--process_id \(or DIFFJAX_PROCESS_ID\)"),
        ((None, 2, 0), r"--coordinator_address \(or DIFFJAX_COORDINATOR_ADDRESS\)"),
        (("127.0.0.1:1", 2, 2), r"--process_id=2 must be in \[0, --num_processes=2\)"),
    ],
)
def test_a_partial_or_inconsistent_set_names_the_flag(args, message):
    with pytest.raises(ConfigError, match=message):
        distributed.resolve(*args, environ={})


def test_a_non_integer_environment_variable_is_named():
    with pytest.raises(ConfigError, match="DIFFJAX_NUM_PROCESSES='two'"):
        distributed.resolve(environ={"DIFFJAX_NUM_PROCESSES": "two"})


def test_slurm_with_several_tasks_is_detected():
    slurm = {
        "SLURM_JOB_ID": "7",
        "SLURM_STEP_NODELIST": "node[01-02]",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "0",
    }
    with mock.patch.dict(os.environ, slurm):
        cluster = distributed.resolve()
    assert (cluster.num_processes, cluster.process_id) == (2, 1)
    assert cluster.coordinator_address is None and "Slurm" in cluster.source
    with mock.patch.dict(os.environ, {**slurm, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}):
        assert distributed.resolve() is None


def test_describe_names_backend_devices_and_processes():
    text = distributed.describe()  # "cpu, 1 device, 1 process" (XLA_FLAGS may add devices)
    assert (
        text.startswith("cpu, ")
        and text.endswith(" device, 1 process")
        or text.endswith(" devices, 1 process")
    )


def test_an_accelerator_sized_model_on_the_cpu_warns_once():
    assert distributed.cpu_warning(1_000_000) is None
    warning = distributed.cpu_warning(35_700_000)
    assert "35.7M-parameter model on the CPU backend" in warning
    assert "pip install -e .[tpu]" in warning
