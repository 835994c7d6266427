"""Benchmark of mixed precision (issue 19, "Measured"): bfloat16 vs float32 compute of a train step.

For each case the trainer's own train step (`diffjax.train.state.make_train_step` with the
method's loss and the config's optimizer; float32 params and optimizer state either way) is
compiled with the network's `dtype` float32 and bfloat16, and it records

- `gflop` and `gbytes_accessed`: XLA's cost analysis of the compiled step
  (`jax.jit(step).lower(...).compile().cost_analysis()`; a multiply-add counts 2);
- `temp_mbytes`: the compiled step's scratch memory (activations kept for the backward pass)
  from its memory analysis;
- `step_ms`: the median wall time of one step, the two dtypes alternated over several rounds
  in one process (after warm-up) so that a change of load on the shared machine hits both;
- `bfloat16_over_float32`: the ratios of the above.

CPUs have no bfloat16 arithmetic units: XLA:CPU converts to float32 around each op, so the
wall-time ratio here says nothing of a TPU (whose matrix units take bfloat16 natively, at
twice the float32 rate and half the memory traffic) or of an Ampere-or-later GPU.

Run (about 4 CPU-minutes, mostly compilation; 14 minutes of wall time on the shared 2-core
machine at load average 14 that wrote mixed_precision.json):
  python experiments/benchmarks/mixed_precision.py \
      --out experiments/benchmarks/mixed_precision.json
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from configs import ddpm_cifar10
from diffjax import methods, models, processes
from diffjax.train import experiment, optim, settings, state

try:  # PYTHONPATH=. or imported by the tests
    from experiments.benchmarks.report import write_report
except ImportError:  # run as a script: experiments/benchmarks/ is on sys.path
    from report import write_report

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/benchmarks/mixed_precision.json", "JSON to write")
flags.DEFINE_list(
    "cases",
    ["ddpm_cifar10:4:32x32x3", "DiT-S/2:4:32x32x4"],
    "preset:batch:shape triples; every case trains with ddpm_cifar10's method and optimizer",
)
flags.DEFINE_integer("rounds", 4, "alternations of float32 and bfloat16")
flags.DEFINE_integer("steps_per_round", 2, "timed steps of each dtype per round")
flags.DEFINE_integer("seed", 0, "PRNG seed")

DTYPES = ("float32", "bfloat16")
NOTE = (
    "CPUs do not accelerate bfloat16: XLA:CPU computes it through float32 conversions, so "
    "step_ms of bfloat16 on this machine is no guide to a TPU (native bfloat16 matrix units at "
    "twice the float32 rate, half the memory traffic) or a recent GPU. gflop counts the same "
    "arithmetic in either dtype. temp_mbytes (the activations kept for the backward pass) is "
    "what bfloat16 saves in memory; gbytes_accessed on CPU also counts the conversions XLA:CPU "
    "inserts, so it need not fall here. Params, gradients and optimizer state are float32 in "
    "both."
)


def _compiled_step(name: str, dtype: str, batch: dict, key):
    """The compiled train step of preset `name` with compute `dtype`, and its initial state."""
    config = ddpm_cifar10.get_config()
    precision = settings.PrecisionConfig(dtype)
    model = models.get(name, dtype=precision.compute_dtype)  # the presets hold their dropout
    process = processes.get(config.process.name, **config.process.kwargs.to_dict())
    recipe = methods.get(config.method)(process=process, **config.loss.to_dict())
    loss_fn = recipe.make_loss(experiment.apply_fn_of(model))
    optim_config = settings.read(settings.OptimConfig, config.optim)
    schedule = optim.learning_rate_schedule(optim_config, config.training.num_steps)
    optimizer = optim.make_optimizer(optim_config, schedule, recipe.weight_decay_mask)

    def init_params(k):
        x, t = batch["x"][:1], jnp.zeros((1,))
        return {"model": model.init({"params": k}, x, t, train=False)["params"]}

    train_state = jax.jit(
        lambda k: state.create_train_state(k, init_params, optimizer, recipe.init_frozen)
    )(key)
    step = state.make_train_step(loss_fn, optimizer, optim_config.ema_decay)
    return jax.jit(step).lower(train_state, batch).compile(), train_state


def _costs(compiled) -> dict:
    cost = compiled.cost_analysis()
    memory = compiled.memory_analysis()
    return {
        "gflop": float(cost["flops"]) / 1e9,
        "gbytes_accessed": float(cost["bytes accessed"]) / 1e9,
        "temp_mbytes": memory.temp_size_in_bytes / 1e6,
    }


def _time_steps(compiled, train_state, batch, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        jax.block_until_ready(compiled(train_state, batch))
        times.append(time.perf_counter() - start)
    return times


def benchmark(name: str, batch_size: int, shape: tuple[int, ...], key) -> dict:
    """Costs and alternated step times of preset `name` on a batch [batch_size, *shape]."""
    k_x, k_init = jax.random.split(key)
    batch = {"x": jax.random.uniform(k_x, (batch_size, *shape), minval=-1.0, maxval=1.0)}
    steps, costs, times = {}, {}, {d: [] for d in DTYPES}
    for dtype in DTYPES:
        start = time.perf_counter()
        steps[dtype] = _compiled_step(name, dtype, batch, k_init)
        costs[dtype] = {**_costs(steps[dtype][0]), "compile_s": time.perf_counter() - start}
        _time_steps(*steps[dtype], batch, 2)  # warm-up
    for _ in range(FLAGS.rounds):
        for dtype in DTYPES:
            times[dtype] += _time_steps(*steps[dtype], batch, FLAGS.steps_per_round)
    result = {"preset": name, "batch": batch_size, "shape": list(shape)}
    for dtype in DTYPES:
        result[dtype] = {**costs[dtype], "step_ms": 1e3 * float(np.median(times[dtype]))}
        params = steps[dtype][1].params
        result[dtype]["param_dtypes"] = sorted({str(p.dtype) for p in jax.tree.leaves(params)})
    result["bfloat16_over_float32"] = {
        k: result["bfloat16"][k] / result["float32"][k]
        for k in ("gflop", "gbytes_accessed", "temp_mbytes", "step_ms")
    }
    return result


def main(argv):
    del argv
    key = jax.random.key(FLAGS.seed)
    results = []
    for case in FLAGS.cases:
        name, batch, shape = case.split(":")
        dims = tuple(int(d) for d in shape.split("x"))
        key, sub = jax.random.split(key)
        results.append(benchmark(name, int(batch), dims, sub))
        print(json.dumps(results[-1]), flush=True)
        _write(results)  # after every case: a long run keeps what it measured


def _write(results: list[dict]) -> None:
    write_report(
        FLAGS.out,
        {
            "note": NOTE,
            "rounds": FLAGS.rounds,
            "steps_per_round": FLAGS.steps_per_round,
            "results": results,
        },
    )


if __name__ == "__main__":
    app.run(main)
