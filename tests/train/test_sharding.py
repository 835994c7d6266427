"""The sharding policy: mesh shapes, logical axis rules per leaf, and training on 8 simulated
devices over data x fsdp with the numbers of one device, restoring across meshes."""

import json
import os
import shutil
import subprocess
import sys
import types

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import AbstractMesh, PartitionSpec

from configs import ddpm_toy2d
from diffjax.errors import ConfigError
from diffjax.train import checkpoint, experiment, runs, settings, sharding, writer
from tests.train import toy_runs

ROOT = toy_runs.ROOT
MESH_2X4 = AbstractMesh((2, 4), sharding.MESH_AXES)


def test_mesh_shape_resolves_the_rest_and_names_a_mismatch():
    assert settings.MeshConfig().shape(8) == {"data": 8, "fsdp": 1}
    assert settings.MeshConfig(data=2, fsdp=-1).shape(8) == {"data": 2, "fsdp": 4}
    with pytest.raises(ConfigError, match=r"mesh: data=2 x fsdp=2 = 4 devices, but there are 8"):
        settings.MeshConfig(data=2, fsdp=2).shape(8)
    with pytest.raises(ConfigError, match=r"mesh: data=-1 x fsdp=3.*does not divide the 8"):
        settings.MeshConfig(fsdp=3).shape(8)
    with pytest.raises(ConfigError, match=r"mesh.fsdp=0 must be >= 1"):
        settings.MeshConfig(fsdp=0)
    with pytest.raises(ConfigError, match="at most one axis"):
        settings.MeshConfig(data=-1, fsdp=-1)
    with pytest.raises(ConfigError, match="mesh: data=-1 x fsdp=3"):
        sharding.make_mesh(settings.MeshConfig(fsdp=3), jax.devices() * 8)


def test_config_reads_the_mesh_and_old_configs_default_to_data_parallel():
    config = ddpm_toy2d.get_config()
    config.mesh.fsdp = 4
    assert experiment.build(config).mesh == settings.MeshConfig(data=-1, fsdp=4)
    old = ml_collections.ConfigDict(config.to_dict())
    del old["mesh"]  # a config.json written before the field existed
    assert settings.MeshConfig.of(old) == settings.MeshConfig(data=-1, fsdp=1)
    config.mesh.tensor = 2
    with pytest.raises(ConfigError, match="unknown config field mesh.tensor"):
        experiment.build(config)


def test_a_batch_must_split_over_data_times_fsdp():
    sharding.check_batch_size(16, MESH_2X4, "training.batch_size")
    with pytest.raises(ConfigError, match=r"training.batch_size=12 .*data=2 x fsdp=4 = 8"):
        sharding.check_batch_size(12, MESH_2X4, "training.batch_size")


def test_rules_split_per_leaf_and_replicate_what_does_not_divide():
    spec = PartitionSpec("embed", "mlp")
    assert sharding.mesh_spec((64, 256), spec, MESH_2X4) == PartitionSpec("fsdp", None)
    assert sharding.mesh_spec((6, 256), spec, MESH_2X4) == PartitionSpec(None, None)
    conv = PartitionSpec(None, None, "conv_in", "conv_out")
    assert sharding.mesh_spec((3, 3, 3, 128), conv, MESH_2X4) == PartitionSpec(
        None, None, None, "fsdp"
    )
    no_split = PartitionSpec(None, None, None, None)
    assert sharding.mesh_spec((3, 3, 128, 3), conv, MESH_2X4) == no_split
    # a mesh axis is used once per array
    both = PartitionSpec("embed", "embed")
    assert sharding.mesh_spec((8, 8), both, MESH_2X4) == PartitionSpec("fsdp", None)
    one = AbstractMesh((8, 1), sharding.MESH_AXES)
    assert sharding.mesh_spec((64, 256), spec, one) == PartitionSpec(None, None)


def test_state_leaves_follow_their_parameter_and_the_rest_is_replicated():
    exp = experiment.build(ddpm_toy2d.get_config())  # MLP of width 256
    _, _, create = runs.state_constructor(exp)
    abstract = jax.eval_shape(create, jax.random.PRNGKey(0))
    logical = exp.logical_params()
    assert logical["model"]["Dense_3"]["kernel"] == PartitionSpec("mlp", "embed")
    assert logical["model"]["Dense_3"]["bias"] == PartitionSpec()
    shardings = sharding.state_shardings(abstract, logical, MESH_2X4)
    mu = shardings.opt_state[1][0].mu
    for tree in (shardings.params, shardings.ema_params, mu, shardings.opt_state[1][0].nu):
        assert tree["model"]["Dense_3"]["kernel"].spec == PartitionSpec(None, "fsdp")
        assert tree["model"]["Dense_0"]["kernel"].spec == PartitionSpec(None, "fsdp")
        assert tree["model"]["Dense_3"]["bias"].spec == PartitionSpec()
    assert shardings.step.spec == shardings.key.spec == PartitionSpec()
    params = exp.init_params(jax.random.PRNGKey(0))
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(params)), "boxes leaked"


def test_an_unknown_logical_axis_is_a_config_error_naming_the_model():
    exp = types.SimpleNamespace(
        seed=0, logical_params=lambda: {"model": {"w": PartitionSpec("embed", "vocab")}}
    )

    def create(key):
        return {"params": {"model": {"w": jax.numpy.zeros((8, 8))}}, "key": key}

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), sharding.MESH_AXES)
    with pytest.raises(ConfigError, match=r"model.name: parameter model/w .*'vocab'"):
        runs.state_shardings(exp, create, mesh)


# ----- 8 simulated devices: the CLI in subprocesses ---------------------------------------


def _config(num_steps=20):
    config = ddpm_toy2d.get_config()
    config.training.update(
        {"num_steps": num_steps, "log_every": 5, "checkpoint_every": 10, "batch_size": 64}
    )
    config.sample.num_samples = 16
    config.eval.at_end = False
    return config


def _run(workdir, data_dir, config, devices, mesh=None):
    flags = [f"--config.mesh.{k}={v}" for k, v in (mesh or {}).items()]
    proc = toy_runs.run_toy2d_cli(workdir, data_dir, config, *flags, devices=devices)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _final_state(config, workdir, data_dir):
    config = ml_collections.ConfigDict(config.to_dict())
    config.data.kwargs.data_dir = str(data_dir)
    exp = experiment.build(config)
    _, _, create = runs.state_constructor(exp)
    abstract = jax.eval_shape(create, jax.random.PRNGKey(config.seed))
    # onto this process's one device, whatever mesh wrote the checkpoint
    abstract = checkpoint.abstract_like(abstract, sharding.replicated(sharding.make_mesh()))
    manager = checkpoint.make_manager(str(workdir), config.training.keep_checkpoints)
    try:
        return checkpoint.restore(manager, abstract)
    finally:
        manager.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 20-step run on one device: (workdir, data_dir)."""
    root = tmp_path_factory.mktemp("one_device")
    _run(root / "run", root / "data", _config(), devices=1)
    return root / "run", root / "data"


def _assert_same_run(config, reference, workdir, data_dir):
    ref_dir, ref_data = reference
    losses = [[h["loss"] for h in writer.read_history(str(d))] for d in (ref_dir, workdir)]
    assert len(losses[0]) == 4
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    a, b = _final_state(config, ref_dir, ref_data), _final_state(config, workdir, data_dir)
    assert int(a.step) == int(b.step) == 20
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mesh", [{"data": 2, "fsdp": 4}, {"data": 8, "fsdp": 1}, {"data": 1, "fsdp": 8}]
)
def test_eight_devices_over_data_and_fsdp_train_as_one(tmp_path, reference, mesh):
    config = _config()
    _run(tmp_path / "run", tmp_path / "data", config, devices=8, mesh=mesh)
    _assert_same_run(config, reference, tmp_path / "run", tmp_path / "data")


@pytest.mark.slow
def test_fsdp_checkpoint_on_8_devices_continues_on_4_data_parallel(tmp_path, reference):
    config = _config()
    workdir = tmp_path / "run"
    _run(workdir, tmp_path / "data", config, devices=8, mesh={"data": 1, "fsdp": 8})
    shutil.rmtree(workdir / "checkpoints" / "20")  # resume from step 10 on another mesh
    proc = _run(workdir, tmp_path / "data", config, devices=4, mesh={"data": 4, "fsdp": 1})
    assert "resuming from the checkpoint of step 10" in proc.stderr
    _assert_same_run(config, reference, workdir, tmp_path / "data")


_SHARDED_STATE = """
import jax
from configs import ddpm_toy2d
from diffjax.train import experiment, outputs, runs, sharding
config = ddpm_toy2d.get_config()
config.mesh.data, config.mesh.fsdp = 2, 4
config.sample.num_steps = 4
exp = experiment.build(config)
mesh = sharding.make_mesh(exp.mesh)
_, _, create = runs.state_constructor(exp)
_, shardings = runs.state_shardings(exp, create, mesh)
state = jax.jit(create, out_shardings=shardings)(jax.random.PRNGKey(0))
for tree in (state.params, state.ema_params, state.opt_state[1][0].mu):
    kernel = tree["model"]["Dense_3"]["kernel"]  # [256, 256]: ("mlp", "embed")
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp"), kernel.sharding
    assert kernel.addressable_shards[0].data.shape == (256, 64)
bias = state.params["model"]["Dense_3"]["bias"]
assert bias.sharding.is_fully_replicated
# sampling splits its 16 draws: each device runs the network on 2 of them
draw = outputs.sample_function(exp, mesh, 16)
hlo = draw.lower(state.ema_params, jax.random.PRNGKey(1)).compile().as_text()
assert "f32[2,256]" in hlo and "f32[16,256]" not in hlo
print("ok")
"""


def test_state_is_born_split_over_fsdp_and_sampling_splits_its_draws(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": ROOT,
        "TFDS_DATA_DIR": str(tmp_path),  # tfds prepares the toy data here, printing to stdout
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED_STATE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("\nok"), proc.stderr[-3000:]


_EVALUATIONS = """
import json, sys
import numpy as np
from configs import classifier_digits, default
from diffjax.train import edit, generate, loop, outputs, runs
root, fsdp = sys.argv[1], int(sys.argv[2])
report = {}
for name, module in [("ddpm", default), ("classifier", classifier_digits)]:
    config = module.get_config()
    config.data.kwargs = {"data_dir": root + "/data"}
    config.process.kwargs = {"num_steps": 50}
    config.training.update({"num_steps": 10, "log_every": 10, "checkpoint_every": 10})
    config.training.update({"sample_every": 0, "batch_size": 32})
    config.sample.update({"num_steps": 10, "num_samples": 8})
    config.eval.at_end = False
    config.eval.update({"bpd_batch_size": 16, "bpd_max_examples": 16})
    config.eval.update({"bpd_num_dequantizations": 1, "bpd_rtol": 1e-3, "bpd_atol": 1e-3})
    config.edit.update({"num_images": 8, "num_steps": 10})
    workdir = f"{root}/{name}"
    if fsdp == 1:
        loop.train(config, workdir)
    config.mesh.fsdp = fsdp
    if name == "classifier":
        exp, state = runs.restore_latest(config, workdir)
        report["accuracy_by_t"] = outputs.evaluate_classifier(exp, state, workdir)["accuracy_by_t"]
        continue
    bpd = generate.eval_bpd(config, workdir)
    report |= {k: bpd[k] for k in ("bpd_mean", "vlb_bpd_mean")}
    for kind in ("inpaint", "interpolate"):
        config.edit.kind = kind
        out = edit.edit(config, workdir)
        grid = np.load(out["png"][:-4] + ".npz")["samples"]  # inputs, what it saw, results
        report[kind] = [float(np.abs(grid).sum()), out.get("unknown_rmse", 0.0)]
print(json.dumps(report))
"""


@pytest.mark.slow
def test_evaluations_split_over_an_fsdp_mesh_give_the_numbers_of_one_device(tmp_path):
    """eval_bpd (ODE and VLB), edit and the noisy classifier's accuracy on fsdp=8: the numbers
    of one device (the batch split over the mesh by `sharding.jit_over_batch`)."""
    reports = []
    for devices in (1, 8):
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": ROOT,
        }
        proc = subprocess.run(
            [sys.executable, "-c", _EVALUATIONS, str(tmp_path), str(devices)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    one, eight = reports
    assert one.keys() == eight.keys()
    for key in one:
        np.testing.assert_allclose(
            jax.tree.leaves(eight[key]), jax.tree.leaves(one[key]), rtol=1e-4, err_msg=key
        )
