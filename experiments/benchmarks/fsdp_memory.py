"""Per-device memory of a train step, replicated vs FSDP (issue 19, "Measured").

For each model it builds the trainer's own train step (DDPM eps loss, AdamW with clipping, EMA:
`diffjax.train.state`) and its state shardings (`diffjax.train.sharding.state_shardings` from
the network's logical axis names) on 8 simulated CPU devices, once with mesh data=8 x fsdp=1
(parameters replicated) and once with data=1 x fsdp=8, lowers and compiles it on abstract
inputs (`jax.ShapeDtypeStruct` carrying the shardings: nothing is allocated) and reads
the compiled step's `memory_analysis()`:

- `state_bytes_per_device`: the TrainState's arguments on one device (params, EMA, Adam's two
  moments; step and key), from the shard shapes the compiled step takes;
- `argument_bytes` / `output_bytes` / `temp_bytes` / `alias_bytes`: XLA's per-device figures
  (the state is donated, so its outputs alias its arguments);
- `state_reduction`: replicated over FSDP state bytes per device (the target is >= 6).

Run (about 5 minutes on 2 CPU cores, mostly compiling DiT-XL/2):
  python experiments/benchmarks/fsdp_memory.py
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import functools  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from diffjax import methods, models, processes  # noqa: E402
from diffjax.train import experiment, optim, settings, sharding, state  # noqa: E402

try:  # PYTHONPATH=. or imported by the tests
    from experiments.benchmarks.report import write_report  # noqa: E402
except ImportError:  # run as a script: experiments/benchmarks/ is on sys.path
    from report import write_report  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/benchmarks/fsdp_memory.json", "JSON to write")
flags.DEFINE_list(
    "cases",
    ["DiT-XL/2:32x32x4:1000", "ddpm++_cifar10:32x32x3:0"],
    "model:input shape:classes (DiT-XL/2 on ImageNet-256 latents, DDPM++ on CIFAR-10)",
)
flags.DEFINE_integer("batch_size", 64, "global batch (8 examples per device)")

MESHES = {"replicated": {"data": 8, "fsdp": 1}, "fsdp": {"data": 1, "fsdp": 8}}


def _step_and_state(name: str, shape: tuple[int, ...], num_classes: int):
    """The train step and the abstract TrainState, with the network's logical axis names."""
    conditional = {"num_classes": num_classes} if num_classes else {}
    model = models.get(name, out_channels=shape[-1], **conditional)
    x = jnp.zeros((1, *shape))

    def init_annotated(key):
        return {"model": model.init({"params": key}, x, jnp.zeros((1,)), train=False)["params"]}

    def init_params(key):
        return nn.meta.unbox(init_annotated(key))

    config = settings.OptimConfig("adamw", 1e-4, "constant", 0, 0.9, 0.999, 0.0, 1.0, 0.9999)
    optimizer = optim.make_optimizer(config, optim.learning_rate_schedule(config, 1000))
    create = functools.partial(
        state.create_train_state, init_params=init_params, optimizer=optimizer
    )
    recipe = methods.get("ddpm")(process=processes.get("ddpm_linear", num_steps=1000))
    loss = recipe.make_loss(experiment.apply_fn_of(model))
    step = state.make_train_step(loss, optimizer, config.ema_decay)
    abstract = jax.eval_shape(create, jax.random.PRNGKey(0))
    logical = nn.get_partition_spec(jax.eval_shape(init_annotated, jax.random.PRNGKey(0)))
    return step, abstract, logical


def _measure(step, abstract, logical, mesh_shape, shape, num_classes) -> dict:
    mesh = sharding.make_mesh(settings.MeshConfig(**mesh_shape))
    shardings = sharding.state_shardings(abstract, logical, mesh)
    state_in = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )
    batch_sharding = sharding.batch_sharding(mesh)
    batch = {
        "x": jax.ShapeDtypeStruct((FLAGS.batch_size, *shape), jnp.float32, sharding=batch_sharding)
    }
    if num_classes:
        batch["label"] = jax.ShapeDtypeStruct(
            (FLAGS.batch_size,), jnp.int32, sharding=batch_sharding
        )
    jitted = jax.jit(
        step,
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    start = time.perf_counter()
    compiled = jitted.lower(state_in, batch).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    state_bytes = sum(
        math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize
        for x, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True)
    )
    return {
        "mesh": mesh_shape,
        "state_bytes_per_device": state_bytes,
        "argument_bytes": memory.argument_size_in_bytes,
        "output_bytes": memory.output_size_in_bytes,
        "temp_bytes": memory.temp_size_in_bytes,
        "alias_bytes": memory.alias_size_in_bytes,
        "compile_seconds": seconds,
    }


def main(argv):
    del argv
    if jax.device_count() != 8:
        raise SystemExit(f"needs 8 devices (XLA_FLAGS), found {jax.device_count()}")
    results = []
    for case in FLAGS.cases:
        name, dims, classes = case.split(":")
        shape = tuple(int(d) for d in dims.split("x"))
        step, abstract, logical = _step_and_state(name, shape, int(classes))
        num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params))
        row = {"model": name, "input_shape": shape, "num_params": num_params}
        for label, mesh_shape in MESHES.items():
            row[label] = _measure(step, abstract, logical, mesh_shape, shape, int(classes))
            print(name, label, row[label], flush=True)
        row["state_reduction"] = (
            row["replicated"]["state_bytes_per_device"] / row["fsdp"]["state_bytes_per_device"]
        )
        row["argument_reduction"] = (
            row["replicated"]["argument_bytes"] / row["fsdp"]["argument_bytes"]
        )
        results.append(row)
    write_report(
        FLAGS.out,
        {
            "devices": "8 simulated CPU devices",
            "global_batch_size": FLAGS.batch_size,
            "jax": jax.__version__,
            "results": results,
        },
    )
    for row in results:
        print(f"{row['model']}: state per device / {row['state_reduction']:.2f} with fsdp=8")


if __name__ == "__main__":
    app.run(main)
