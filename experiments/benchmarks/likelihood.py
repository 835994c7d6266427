"""Benchmark of the probability-flow ODE likelihood (issue 5, "Fast").

For each model (randomly initialised; the timings do not depend on training) it measures

- `divergence_over_forward_ratio`: time of one augmented drift evaluation (velocity plus a
  one-probe Hutchinson divergence through `jax.jvp`) over the time of one forward pass
  (`Denoiser.velocity`), both jitted, on the same batch; the target is <= 3;
- `speedup_vs_scipy`: end-to-end time of the bpd ODE solve of one batch with our on-device
  Dormand-Prince (`diffjax.likelihood.nll`, one jit, no host round trip) over the time of
  score_sde's approach, scipy's RK45 on the host calling the same jitted augmented drift, at
  the same tolerance and with the same probes; both after compilation; the target is >= 3.

Run:
  python experiments/benchmarks/likelihood.py --out experiments/results/likelihood.json
"""

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
from absl import app, flags

from diffjax import likelihood, models, processes
from diffjax.denoisers import Denoiser

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/results/likelihood_benchmark.json", "JSON to write")
flags.DEFINE_list("models", ["mlp:2", "unet_digits:8x8x1"], "model:shape pairs to benchmark")
flags.DEFINE_list("batch_sizes", ["16", "128"], "examples per batch, one case each")
flags.DEFINE_string("process", "rectified_flow", "process of the denoiser")
flags.DEFINE_string("kind", "velocity", "what the random network predicts")
flags.DEFINE_float("tol", 1e-5, "rtol = atol of both ODE solvers (score_sde's default)")
flags.DEFINE_integer("repeats", 20, "timed repetitions of the forward / drift (median)")
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


def _random_denoiser(key, name: str, shape: tuple[int, ...], batch: int):
    """A denoiser with random weights (the zero-initialised last layer perturbed too).

    The default, a velocity network under the linear interpolant, gives a smooth ODE and an NFE
    like a trained flow's; a random eps network under VP is stiff near t = 0 (eps / sigma).
    """
    model = models.get(name)
    k_init, k_noise, k_x = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (batch, *shape))
    params = model.init(k_init, x, jnp.full((batch,), 0.5))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(k_noise, len(leaves))
    params = tree.unflatten(
        [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )
    process = processes.get(FLAGS.process)
    den = Denoiser(lambda y, t: model.apply(params, y, t), FLAGS.kind, process)
    return den, x


def _scipy_nll(drift, x, tol: float, t_min: float) -> tuple[np.ndarray, int, float]:
    """score_sde's likelihood loop: scipy RK45 on the host over the jitted augmented drift."""
    batch = x.shape[0]
    shape = x.shape

    def fun(t, y):
        v, div = drift(jnp.asarray(y[:-batch].reshape(shape), jnp.float32), jnp.float32(t))
        return np.concatenate([np.asarray(v).reshape(-1), np.asarray(div)]).astype(np.float64)

    y0 = np.concatenate([np.asarray(x).reshape(-1), np.zeros(batch)]).astype(np.float64)
    start = time.perf_counter()
    sol = scipy.integrate.solve_ivp(fun, (t_min, 1.0), y0, rtol=tol, atol=tol, method="RK45")
    seconds = time.perf_counter() - start
    z, delta = sol.y[:-batch, -1].reshape(shape), sol.y[-batch:, -1]
    prior_std = processes.get(FLAGS.process).prior_std()
    prior = np.asarray(likelihood.gaussian_log_prob(jnp.asarray(z, jnp.float32), prior_std))
    return -(prior + delta), int(sol.nfev), seconds


def benchmark(key, name: str, shape: tuple[int, ...], batch_size: int) -> dict:
    den, x = _random_denoiser(key, name, shape, batch_size)
    k_probe = jax.random.fold_in(key, 1)
    t = jnp.float32(0.5)
    probes = likelihood._probes(k_probe, x, "hutchinson", "rademacher", 1)
    forward = jax.jit(lambda x, t: den.velocity(x, t))
    augmented = jax.jit(lambda x, t: likelihood.drift_and_divergence(den, x, t, probes, 1.0))
    t_fwd = _median_seconds(forward, x, t, repeats=FLAGS.repeats)
    t_div = _median_seconds(augmented, x, t, repeats=FLAGS.repeats)

    kw = dict(trace="hutchinson", probe="rademacher", rtol=FLAGS.tol, atol=FLAGS.tol)
    solve = jax.jit(lambda k, x: likelihood.nll(k, den, x, **kw))
    start = time.perf_counter()
    out = jax.block_until_ready(solve(k_probe, x))
    t_first = time.perf_counter() - start
    t_ours = _median_seconds(solve, k_probe, x, repeats=2)
    ref_nll, ref_nfe, t_scipy = _scipy_nll(augmented, x, FLAGS.tol, 1e-5)
    dim = int(np.prod(shape))
    return {
        "model": name,
        "shape": list(shape),
        "batch_size": batch_size,
        "forward_ms": 1e3 * t_fwd,
        "divergence_ms": 1e3 * t_div,
        "divergence_over_forward_ratio": t_div / t_fwd,
        "ours_seconds": t_ours,
        "ours_seconds_with_compile": t_first,
        "ours_nfe": int(out["nfe"]),
        "scipy_seconds": t_scipy,
        "scipy_nfe": ref_nfe,
        "speedup_vs_scipy": t_scipy / t_ours,
        "bpd_ours": float(np.mean(out["bpd"])),
        "bpd_scipy": float(np.mean(ref_nll) / (dim * np.log(2.0))),
        "max_abs_nll_difference_nats": float(np.max(np.abs(np.asarray(out["nll"]) - ref_nll))),
    }


def main(argv):
    del argv
    key = jax.random.key(FLAGS.seed)
    results = []
    for i, spec in enumerate(FLAGS.models):
        name, shape = spec.split(":")
        shape = tuple(map(int, shape.split("x")))
        for batch_size in map(int, FLAGS.batch_sizes):
            result = benchmark(jax.random.fold_in(key, i), name, shape, batch_size)
            print(json.dumps(result))
            results.append(result)
    report = {
        # Headline figures: the worst case over all models and batch sizes.
        "divergence_over_forward_ratio": max(r["divergence_over_forward_ratio"] for r in results),
        "speedup_vs_scipy": min(r["speedup_vs_scipy"] for r in results),
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "process": FLAGS.process,
        "kind": FLAGS.kind,
        "tol": FLAGS.tol,
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    app.run(main)
