"""Benchmark of the networks (issue 6, "Performance"): throughput and achieved GFLOP/s.

For each preset (randomly initialised, the zero-initialised layers perturbed so no branch is
trivially zero) on a batch of its input shape it measures, after compilation:

- `forward_images_per_s`: batch / median time of the jitted forward pass (eval mode);
- `train_images_per_s`: batch / median time of the jitted forward + backward of a squared-error
  loss (train mode, dropout on), i.e. what one training step costs without the optimizer;
- `*_gflop`: XLA's cost analysis of the compiled computation (a multiply-add counts 2);
- `*_achieved_gflop_per_s`: flops / time, to compare with the machine's peak.

Run:
  python experiments/benchmarks/models.py --out experiments/results/benchmarks_models.json
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from diffjax import models

try:  # PYTHONPATH=. or imported by the tests
    from experiments.benchmarks.report import write_report
    from experiments.benchmarks.unets import perturbed_init
except ImportError:  # run as a script: experiments/benchmarks/ is on sys.path
    from report import write_report
    from unets import perturbed_init

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/results/benchmarks_models.json", "JSON to write")
flags.DEFINE_list(
    "cases",
    [
        "unet_tiny:128:8x8x1",
        "unet_digits:128:8x8x1",
        "dit_tiny:128:8x8x1",
        "dit_digits:128:8x8x1",
        "mlp:1024:2",
        "ddpm_cifar10:8:32x32x3",
        "ddpm++_cifar10:8:32x32x3",
        "ncsn++:8:32x32x3",
        "DiT-S/2:8:32x32x3",
    ],
    "preset:batch:shape triples to benchmark",
)
flags.DEFINE_integer("repeats", 10, "timed repetitions (median)")
flags.DEFINE_integer("seed", 0, "PRNG seed")


def _median_seconds(fn, *args, repeats: int) -> float:
    """Median wall time of fn(*args) after one warm-up call, waiting for the device."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    return float(cost["flops"])


def benchmark(name: str, batch: int, shape: tuple[int, ...], key, repeats: int) -> dict:
    """Forward and forward + backward throughput of preset `name` on [batch, *shape]."""
    model = models.get(name)
    k_x, k_t, k_init, k_drop = jax.random.split(key, 4)
    x = jax.random.normal(k_x, (batch, *shape))
    t = jax.random.uniform(k_t, (batch,))
    params = perturbed_init(model, k_init, x, t)

    def loss(p, x, t, key):
        out = model.apply(p, x, t, train=True, rngs={"dropout": key})
        return jnp.mean(jnp.square(out - x))

    forward = jax.jit(model.apply).lower(params, x, t).compile()
    train = jax.jit(jax.value_and_grad(loss)).lower(params, x, t, k_drop).compile()
    fwd_s = _median_seconds(forward, params, x, t, repeats=repeats)
    train_s = _median_seconds(train, params, x, t, k_drop, repeats=repeats)
    fwd_flops, train_flops = _flops(forward), _flops(train)
    return {
        "preset": name,
        "batch": batch,
        "shape": list(shape),
        "params": int(sum(p.size for p in jax.tree.leaves(params))),
        "forward_ms": 1e3 * fwd_s,
        "forward_images_per_s": batch / fwd_s,
        "forward_gflop": fwd_flops / 1e9,
        "forward_achieved_gflop_per_s": fwd_flops / fwd_s / 1e9,
        "train_ms": 1e3 * train_s,
        "train_images_per_s": batch / train_s,
        "train_gflop": train_flops / 1e9,
        "train_achieved_gflop_per_s": train_flops / train_s / 1e9,
    }


def main(argv):
    del argv
    key = jax.random.key(FLAGS.seed)
    results = []
    for case in FLAGS.cases:
        name, batch, shape = case.split(":")
        dims = tuple(int(d) for d in shape.split("x"))
        key, sub = jax.random.split(key)
        results.append(benchmark(name, int(batch), dims, sub, FLAGS.repeats))
        print(json.dumps(results[-1]), flush=True)
    write_report(FLAGS.out, {"results": results})


if __name__ == "__main__":
    app.run(main)
