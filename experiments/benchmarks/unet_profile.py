"""Profile of the UNet on CPU against the same architecture in PyTorch / diffusers (issue 14).

Times, after compilation / warm-up, the median of:

- `forward_ms`: the jitted forward pass (eval mode);
- `train_ms`: the jitted value_and_grad of a mean squared error (dropout off, so both
  frameworks run the same arithmetic), i.e. a training step without the optimizer;
- with --submodules, the pieces of one residual block in isolation at the shapes the net uses
  (GroupNorm, conv 3x3, the time-embedding Dense, attention, nearest upsampling, a ResBlock).

Two sizes: "small" (ch 32, mults (1, 2, 2), 2 blocks, attention at 4x4, 8 groups, batch 64 of
8x8x1, 1,623,169 params) and "ddpm_cifar10" (the preset, batch 8 of 32x32x3, 35,746,307).
With --framework=torch the same networks are diffusers' UNet2DModel (one attention head, as
the diffjax default), run under torch.inference_mode / autograd; torch and diffusers are not
diffjax dependencies, so that mode runs in an environment that has them.

--hlo_dir writes the optimised HLO of both computations, to read which fusions and
convolutions XLA emitted.

Run:
  python experiments/benchmarks/unet_profile.py --sizes=small,ddpm_cifar10 --out=/tmp/jax.json
  python experiments/benchmarks/unet_profile.py --framework=torch --out=/tmp/torch.json
"""

import json
import os
import platform
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "framework",
    "jax",
    ["jax", "torch", "both"],
    "which implementation to time; both alternates blocks of the two in one process",
)
flags.DEFINE_integer("rounds", 5, "framework=both: alternating blocks of `repeats` calls each")
flags.DEFINE_integer("sampler_steps", 0, "jax: also time a DDIM loop of this many steps")
flags.DEFINE_list("sizes", ["small", "ddpm_cifar10"], "networks to time")
flags.DEFINE_integer("repeats", 20, "timed repetitions (median)")
flags.DEFINE_integer("warmup", 3, "untimed calls first")
flags.DEFINE_bool("submodules", False, "also time the pieces of a residual block (jax)")
flags.DEFINE_string("hlo_dir", None, "write the optimised HLO here (jax)")
flags.DEFINE_string("out", None, "JSON to write (default: print only)")

# name -> (UNet fields, batch, H W C); the published / issue-14 networks.
SIZES = {
    "small": (
        dict(
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=2,
            attn_resolutions=(4,),
            num_groups=8,
            dropout=0.0,
        ),
        64,
        (8, 8, 1),
    ),
    "ddpm_cifar10": (
        dict(
            ch=128,
            ch_mult=(1, 2, 2, 2),
            num_res_blocks=2,
            attn_resolutions=(16,),
            num_groups=32,
            dropout=0.0,
        ),
        8,
        (32, 32, 3),
    ),
}


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
    for level, mult in enumerate(fields["ch_mult"]):
        c = fields["ch"] * mult
        hw = size // 2**level
        x = jax.random.normal(key, (batch, hw, hw, c))
        emb = jax.random.normal(key, (batch, 4 * fields["ch"]))
        pieces = {
            "group_norm": (unet._group_norm(c, fields["num_groups"], jnp.float32, jnp.float32),),
            "conv3x3": (unet._conv(c, (3, 3)),),
            "resblock": (unet.ResBlock(c, 0.0, num_groups=fields["num_groups"]), emb, False),
            "attention": (unet.AttentionBlock(1, num_groups=fields["num_groups"]),),
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

    fields, batch, shape = SIZES[name]
    model = UNet(**fields)
    k_x, k_t, k_init, k_perturb = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k_x, (batch, *shape))
    t = jax.random.uniform(k_t, (batch,))
    params = jax.jit(model.init)(k_init, x, t)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(k_perturb, len(leaves))
    # Perturb the zero-initialised layers so no branch is trivially zero.
    params = jax.tree.unflatten(
        tree, [p + 0.01 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    )

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


def _torch_model(name: str):
    """diffusers' UNet2DModel with the architecture of SIZES[name]."""
    from diffusers import UNet2DModel

    fields, _, shape = SIZES[name]
    channels = tuple(fields["ch"] * m for m in fields["ch_mult"])
    attn = [shape[0] // 2**i in fields["attn_resolutions"] for i in range(len(channels))]
    return UNet2DModel(
        sample_size=shape[0],
        in_channels=shape[2],
        out_channels=shape[2],
        block_out_channels=channels,
        layers_per_block=fields["num_res_blocks"],
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        norm_num_groups=fields["num_groups"],
        norm_eps=1e-6,
        attention_head_dim=None,  # one head per attention, as diffjax's default
        dropout=0.0,
    )


def _torch_fns(name: str) -> tuple[dict, dict]:
    """{"forward", "train"} callables of the diffusers network (train mode for "train")."""
    import torch

    _, batch, shape = SIZES[name]
    torch.manual_seed(0)
    model = _torch_model(name)
    x = torch.randn(batch, shape[2], shape[0], shape[1])
    t = torch.randint(0, 1000, (batch,))

    def forward():
        model.eval()
        with torch.inference_mode():
            return model(x, t).sample

    def train():
        model.train()
        model.zero_grad(set_to_none=True)
        loss = torch.mean(torch.square(model(x, t).sample - x))
        loss.backward()

    info = {
        "params": int(sum(p.numel() for p in model.parameters())),
        "threads": torch.get_num_threads(),
    }
    return {"forward": forward, "train": train}, info


def _time_all(fns: dict) -> dict:
    return {f"{k}_ms": _median_ms(fn, FLAGS.repeats, FLAGS.warmup) for k, fn in fns.items()}


def _both(name: str) -> dict:
    """Alternating blocks of jax and torch calls; per kind the min over blocks of the block
    medians (the least disturbed by other load on the machine) and the ratio jax / torch."""
    jax_fns, jax_info = _jax_fns(name)
    torch_fns, torch_info = _torch_fns(name)
    blocks = {f"{fw}_{k}": [] for fw in ("jax", "torch") for k in ("forward", "train")}
    for _ in range(FLAGS.rounds):
        for kind in ("forward", "train"):
            for fw, fns in (("jax", jax_fns), ("torch", torch_fns)):
                blocks[f"{fw}_{kind}"].append(_median_ms(fns[kind], FLAGS.repeats, FLAGS.warmup))
    result = {"jax": jax_info, "torch": torch_info}
    for kind in ("forward", "train"):
        j, t = min(blocks[f"jax_{kind}"]), min(blocks[f"torch_{kind}"])
        result[f"jax_{kind}_ms"], result[f"torch_{kind}_ms"] = j, t
        result[f"{kind}_ratio"] = j / t
        result[f"{kind}_blocks"] = {fw: blocks[f"{fw}_{kind}"] for fw in ("jax", "torch")}
    return result


def _run(name: str) -> dict:
    if FLAGS.framework == "both":
        return _both(name)
    fns, info = (_jax_fns if FLAGS.framework == "jax" else _torch_fns)(name)
    return {**info, **_time_all(fns)}


def main(argv):
    del argv
    results = {}
    for name in FLAGS.sizes:
        results[name] = _run(name)
        print(json.dumps({name: results[name]}), flush=True)
    report = {
        "framework": FLAGS.framework,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
        },
        "results": results,
    }
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    app.run(main)
