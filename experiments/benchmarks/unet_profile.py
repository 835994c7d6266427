"""Where the UNet's time goes on XLA:CPU (issue 14, "Profile and fix"): the profile behind
the fixes, next to `peers.py`, which compares whole networks with PyTorch.

For each case of `unets.CASES` (the same networks, batch and shapes), the median after
compilation of:

- `forward_ms` and `train_ms` (the jitted value_and_grad of a squared error, dropout off);
- with --submodules, the pieces of a residual block in isolation at every level's shape
  (GroupNorm, conv 3x3, a ResBlock, attention, the time-embedding Dense, nearest upsampling):
  the profile that found XLA:CPU's convolutions on maps smaller than the kernel 7-12x slower
  than one patch matmul (`diffjax.models.unet._conv`);
- with --sampler_steps=N, the DDIM loop of N steps against the same N network calls in a bare
  `lax.scan` (what the sampler's own arithmetic adds).

--hlo_dir writes the optimised HLO of the forward and the train computation, to read which
fusions and convolutions XLA emitted.

Run:
  python experiments/benchmarks/unet_profile.py --submodules --sampler_steps=50 \
      --out=experiments/results/unet_profile.json
"""

import os
import time

import numpy as np
from absl import app, flags

try:  # PYTHONPATH=. or imported by the tests
    from experiments.benchmarks.report import write_report
    from experiments.benchmarks.unets import CASES, perturbed_init
except ImportError:  # run as a script: experiments/benchmarks/ is on sys.path
    from report import write_report
    from unets import CASES, perturbed_init

FLAGS = flags.FLAGS
flags.DEFINE_integer("sampler_steps", 0, "also time a DDIM loop of this many steps")
flags.DEFINE_list("cases", list(CASES), "networks of unets.CASES to profile")
flags.DEFINE_integer("repeats", 20, "timed repetitions (median)")
flags.DEFINE_integer("warmup", 3, "untimed calls first")
flags.DEFINE_bool("submodules", False, "also time the pieces of a residual block")
flags.DEFINE_string("hlo_dir", None, "write the optimised HLO here")
flags.DEFINE_string("out", None, "JSON to write (default: print only)")


def _median_ms(fn, repeats: int, warmup: int) -> float:
    """Median wall time in ms of fn() after `warmup` calls; fn waits for its result."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _jax_time(fn, *args) -> float:
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    return _median_ms(lambda: jax.block_until_ready(compiled(*args)), FLAGS.repeats, FLAGS.warmup)


def _jax_submodules(fields: dict, batch: int, shape: tuple[int, ...]) -> dict:
    """Forward and forward + backward ms of the pieces of a ResBlock at the net's shapes."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from diffjax.models import unet

    key = jax.random.key(1)
    out = {}
    size = shape[0]
    groups = fields.get("num_groups", 32)
    for level, mult in enumerate(fields["ch_mult"]):
        c = fields["ch"] * mult
        hw = size // 2**level
        x = jax.random.normal(key, (batch, hw, hw, c))
        emb = jax.random.normal(key, (batch, 4 * fields["ch"]))
        pieces = {
            "group_norm": (unet._group_norm(c, groups, jnp.float32, jnp.float32),),
            "conv3x3": (unet._conv(c, (3, 3)),),
            "resblock": (unet.ResBlock(c, 0.0, num_groups=groups), emb, False),
            "attention": (unet.AttentionBlock(1, num_groups=groups),),
        }
        for name, (module, *rest) in pieces.items():
            params = module.init(key, x, *rest)

            def fwd(p, x, module=module, rest=rest):
                return module.apply(p, x, *rest)

            def loss(p, x, module=module, rest=rest):
                return jnp.mean(jnp.square(module.apply(p, x, *rest)))

            out[f"{name}_{hw}x{hw}x{c}"] = {
                "forward_ms": _jax_time(fwd, params, x),
                "train_ms": _jax_time(jax.value_and_grad(loss, argnums=(0, 1)), params, x),
            }
        dense = nn.Dense(c)
        p = dense.init(key, emb)
        out[f"time_dense_{c}"] = {"forward_ms": _jax_time(dense.apply, p, nn.silu(emb))}
        out[f"upsample_{hw}x{hw}x{c}"] = {
            "forward_ms": _jax_time(lambda x: unet._resample(x, "up", (1, 1)), x)
        }
    return out


def _jax_fns(name: str) -> tuple[dict, dict]:
    """{"forward", "train"[, "sampler", "n_forwards"]} callables that wait for the result."""
    import jax
    import jax.numpy as jnp

    from diffjax.models.unet import UNet

    case = CASES[name]
    fields, batch, shape = {**case.unet, "dropout": 0.0}, case.batch, case.shape
    model = UNet(**fields)
    k_x, k_t, k_init = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k_x, (batch, *shape))
    t = jax.random.uniform(k_t, (batch,))
    params = perturbed_init(model, k_init, x, t)

    def loss(p, x, t):
        return jnp.mean(jnp.square(model.apply(p, x, t, train=True) - x))

    forward = jax.jit(model.apply).lower(params, x, t).compile()
    train = jax.jit(jax.value_and_grad(loss)).lower(params, x, t).compile()
    if FLAGS.hlo_dir:
        os.makedirs(FLAGS.hlo_dir, exist_ok=True)
        for kind, compiled in (("forward", forward), ("train", train)):
            with open(os.path.join(FLAGS.hlo_dir, f"{name}_{kind}.hlo"), "w") as f:
                f.write(compiled.as_text())
    fns = {
        "forward": lambda: jax.block_until_ready(forward(params, x, t)),
        "train": lambda: jax.block_until_ready(train(params, x, t)),
    }
    if FLAGS.sampler_steps:
        from diffjax import processes, samplers
        from diffjax.denoisers import Denoiser

        n = FLAGS.sampler_steps
        ddim = samplers.get("ddim", eta=0.0)

        def sample(params, x):
            denoiser = Denoiser(lambda x, t: model.apply(params, x, t), "eps", processes.VP())
            return ddim(jax.random.key(0), denoiser, x, num_steps=n)

        def n_forwards(params, x):
            # The same n network calls in a scan without the sampler's arithmetic.
            def body(x, t):
                return x + 0.01 * model.apply(params, x, jnp.full((batch,), t)), None

            return jax.lax.scan(body, x, jnp.linspace(1.0, 0.0, n))[0]

        sample = jax.jit(sample).lower(params, x).compile()
        n_forwards = jax.jit(n_forwards).lower(params, x).compile()
        fns["sampler"] = lambda: jax.block_until_ready(sample(params, x))
        fns["n_forwards"] = lambda: jax.block_until_ready(n_forwards(params, x))
    info = {"params": int(sum(p.size for p in jax.tree.leaves(params)))}
    if FLAGS.submodules:
        info["submodules"] = _jax_submodules(fields, batch, shape)
    return fns, info


def _time_all(fns: dict) -> dict:
    return {f"{k}_ms": _median_ms(fn, FLAGS.repeats, FLAGS.warmup) for k, fn in fns.items()}


def main(argv):
    del argv
    results = {}
    for name in FLAGS.cases:
        fns, info = _jax_fns(name)
        results[name] = {**info, **_time_all(fns)}
        print({name: results[name]}, flush=True)
    if FLAGS.out:
        write_report(FLAGS.out, {"results": results})


if __name__ == "__main__":
    app.run(main)
