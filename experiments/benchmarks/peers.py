"""diffjax against PyTorch / diffusers on the same UNets, on this CPU (issue 14, "Peers").

Two architectures, built in both libraries with equal parameter counts (checked):

- `ddpm_cifar10`: diffusers' `UNet2DModel` configured as the google/ddpm-cifar10-32 checkpoint
  (written out below, nothing is downloaded) against diffjax's `ddpm_cifar10` preset with
  dropout 0: 35,746,307 params, batch 8 x 32x32x3;
- `unet_8x8`: ch 32, mults (1, 2, 2), 2 residual blocks, attention at 4x4, 8 groups, one channel:
  1,623,169 params, batch 64 x 8x8x1.

Measures (float32, CPU), each a median over the timed calls of every round:

- `forward`: one evaluation-mode forward pass (torch under `inference_mode`);
- `train_step`: x_t = alpha x0 + sigma eps at a random DDPM step (linear betas, T = 1000), the
  network, the MSE on eps, the gradient and an Adam update (diffjax: one `jax.jit` with
  `optax.adam`, state donated; torch: `torch.optim.Adam`);
- `ddim50`: 50 deterministic DDIM steps from noise (diffjax: the `ddim` sampler, one jitted
  `lax.scan`; torch: diffusers' `DDIMScheduler` loop under `inference_mode`).

The two libraries never run at once: each round times one library then the other (the order
swaps every round), after a warm-up of both; JAX's compile times are reported apart.
`ratio_diffjax_over_pytorch` < 1 means diffjax is faster. PyTorch and diffusers are the
optional extra `peers` (`pip install -e ".[peers]"`).

Run (6 minutes on the idle 2-core machine that wrote experiments/results/benchmarks_peers.json;
DDIM-50 of the CIFAR-10 UNet is most of it):
  PYTHONPATH=. python experiments/benchmarks/peers.py --rounds=3 --repeats=3 --sample_rounds=1

writes the JSON and a bar chart of the ratios beside it (same name, .png).

Threads: torch defaults to one OpenMP thread per core, JAX to an Eigen pool of all cores. On a
CPU that other processes also load, torch's OpenMP threads wait on each other (the 8x8 UNet's
forward took 4 s with torch's 2 threads and 0.1 s with `--torch_threads=1` at load average 6):
measure on an idle machine, and check `machine.load_average_1m` in the JSON.
"""

import importlib
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from diffjax import methods, processes, samplers
from diffjax.models.unet import UNet
from diffjax.train import experiment

try:  # PYTHONPATH=. or imported by the tests
    from experiments.benchmarks.report import write_report
    from experiments.benchmarks.unets import CASES, Case
except ImportError:  # run as a script: experiments/benchmarks/ is on sys.path
    from report import write_report
    from unets import CASES, Case

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/results/benchmarks_peers.json", "JSON to write; PNG beside")
flags.DEFINE_list("cases", ["unet_8x8", "ddpm_cifar10"], "architectures to compare (CASES)")
flags.DEFINE_integer("rounds", 3, "alternations of the two libraries")
flags.DEFINE_integer("repeats", 3, "timed forward passes and train steps per library per round")
flags.DEFINE_integer("sample_repeats", 1, "timed DDIM-50 runs per library per round")
flags.DEFINE_integer(
    "sample_rounds", 1, "rounds that also time DDIM-50 (the first ones; it costs 50 forwards)"
)
flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: torch's default)")
flags.DEFINE_integer("seed", 0, "seed of both libraries' inits and inputs")

INSTALL_HINT = 'peers.py needs PyTorch and diffusers: pip install -e ".[peers]"'
LIBRARIES = ("diffjax", "pytorch")
MEASURES = ("forward", "train_step", "ddim50")
NUM_TRAIN_STEPS = 1000  # T of the linear DDPM schedule (betas 1e-4 .. 0.02)
DDIM_STEPS = 50
NOTE = (
    "Medians of wall time on a shared CPU; ratio = diffjax / pytorch (< 1: diffjax faster). "
    "float32, torch eager (no torch.compile), JAX jitted; JAX compile time is excluded from "
    "the medians and reported under compile_s."
)


def import_peers():
    """(torch, diffusers), or SystemExit with the one-line install hint."""
    try:
        torch = importlib.import_module("torch")
        diffusers = importlib.import_module("diffusers")
    except ImportError as e:
        raise SystemExit(f"{INSTALL_HINT} ({e})") from None
    return torch, diffusers


def diffjax_model(case: Case) -> UNet:
    """The diffjax side of `case`, dropout 0."""
    return UNet(**case.unet, dropout=0.0)


def count_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def diffjax_param_count(case: Case) -> int:
    """Parameters of the diffjax network (shapes only, nothing allocated)."""
    model = diffjax_model(case)
    x = jnp.zeros((1, *case.shape))
    return count_params(jax.eval_shape(model.init, jax.random.key(0), x, jnp.zeros((1,))))


def check_param_counts(name: str, counts: dict[str, int]) -> None:
    """Raises a ValueError unless both libraries' networks have the same number of params."""
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{lib} {n:,}" for lib, n in counts.items())
        raise ValueError(f"case {name}: the two networks differ in parameter count: {detail}")


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Wall seconds of n calls of fn (which waits for its result)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


class JaxSide:
    """The compiled diffjax forward, train step and DDIM-50 of one case, with their inputs."""

    def __init__(self, case: Case, seed: int):
        model = diffjax_model(case)
        apply_fn = experiment.apply_fn_of(model)
        process = processes.get("ddpm_linear", num_steps=NUM_TRAIN_STEPS)
        recipe = methods.get("ddpm")(process=process)
        sampler = samplers.get("ddim")
        k_init, k_x, k_t, k_noise, self.key = jax.random.split(jax.random.key(seed), 5)
        shape = (case.batch, *case.shape)
        self.x0 = jax.random.normal(k_x, shape)
        self.t = jax.random.randint(k_t, (case.batch,), 1, NUM_TRAIN_STEPS + 1) / NUM_TRAIN_STEPS
        self.noise = jax.random.normal(k_noise, shape)
        init = jax.jit(lambda k: model.init(k, self.x0[:1], self.t[:1])["params"])
        self.params = init(k_init)
        self.num_params = count_params(self.params)
        optimizer = optax.adam(1e-4)

        def forward(params, x, t):
            return apply_fn(params, x, t)

        def train_step(params, opt_state, x0, key):
            k_t, k_eps = jax.random.split(key)
            i = jax.random.randint(k_t, (x0.shape[0],), 1, NUM_TRAIN_STEPS + 1)
            t = i / NUM_TRAIN_STEPS  # [B]
            eps = jax.random.normal(k_eps, x0.shape)
            alpha = process.alpha(t)[:, None, None, None]  # [B, 1, 1, 1]
            sigma = process.sigma(t)[:, None, None, None]

            def loss(p):
                return jnp.mean(jnp.square(apply_fn(p, alpha * x0 + sigma * eps, t) - eps))

            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

        def ddim(params, noise):
            denoiser = recipe.denoiser(apply_fn, {"model": params})
            return sampler(jax.random.key(0), denoiser, noise, num_steps=DDIM_STEPS)

        # A copy to train (donated every step), so forward and DDIM keep the initial weights.
        self.state = (jax.tree.map(jnp.copy, self.params), jax.jit(optimizer.init)(self.params))
        self.step_count = 0
        self.compile_s = {}
        self.forward = self._compile("forward", jax.jit(forward), self.params, self.x0, self.t)
        self.train_step = self._compile(
            "train_step", jax.jit(train_step, donate_argnums=(0, 1)), *self.state, self.x0, self.key
        )
        self.ddim = self._compile("ddim50", jax.jit(ddim), self.params, self.noise)

    def _compile(self, name: str, jitted, *args):
        start = time.perf_counter()
        compiled = jitted.lower(*args).compile()
        self.compile_s[name] = time.perf_counter() - start
        return compiled

    def run(self, measure: str) -> None:
        """One call of `measure`, waited for."""
        if measure == "forward":
            jax.block_until_ready(self.forward(self.params, self.x0, self.t))
        elif measure == "train_step":
            key = jax.random.fold_in(self.key, self.step_count)
            params, opt_state, loss = self.train_step(*self.state, self.x0, key)
            self.state = (params, opt_state)
            self.step_count += 1
            jax.block_until_ready(loss)
        else:
            jax.block_until_ready(self.ddim(self.params, self.noise))


class TorchSide:
    """The diffusers network of one case, its Adam train step and its DDIM-50 loop."""

    def __init__(self, case: Case, seed: int, torch, diffusers):
        self.torch = torch
        torch.manual_seed(seed)
        self.model = diffusers.UNet2DModel(**case.diffusers).eval()
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.trained = diffusers.UNet2DModel(**case.diffusers).train()
        self.trained.load_state_dict(self.model.state_dict())
        self.optimizer = torch.optim.Adam(self.trained.parameters(), lr=1e-4)
        shape = (case.batch, case.shape[2], case.shape[0], case.shape[1])  # NCHW
        self.x0 = torch.randn(shape)
        self.steps = torch.randint(1, NUM_TRAIN_STEPS + 1, (case.batch,)).float()
        self.noise = torch.randn(shape)
        betas = torch.linspace(1e-4, 0.02, NUM_TRAIN_STEPS, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0).float()
        self.scheduler = diffusers.DDIMScheduler(
            num_train_timesteps=NUM_TRAIN_STEPS,
            beta_start=1e-4,
            beta_end=0.02,
            beta_schedule="linear",
            clip_sample=False,  # diffjax's ddim does not clip either
        )
        self.scheduler.set_timesteps(DDIM_STEPS)

    def forward(self):
        with self.torch.inference_mode():
            return self.model(self.x0, self.steps).sample

    def train_step(self):
        torch = self.torch
        i = torch.randint(1, NUM_TRAIN_STEPS + 1, (self.x0.shape[0],))
        ac = self.alphas_cumprod[i - 1].view(-1, 1, 1, 1)
        eps = torch.randn_like(self.x0)
        x_t = ac.sqrt() * self.x0 + (1.0 - ac).sqrt() * eps
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(self.trained(x_t, i.float()).sample, eps)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def ddim(self, timesteps=None):
        x = self.noise
        with self.torch.inference_mode():
            for t in self.scheduler.timesteps if timesteps is None else timesteps:
                eps = self.model(x, t).sample
                x = self.scheduler.step(eps, t, x).prev_sample
        return x

    def run(self, measure: str) -> None:
        {"forward": self.forward, "train_step": self.train_step, "ddim50": self.ddim}[measure]()


def summarize(times: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Medians in ms and ratios diffjax / pytorch from raw seconds.

    Args:
      times: times[library][measure] = wall seconds of each timed call.

    Returns:
      {"median_ms": {measure: {library: ms}}, "ratio_diffjax_over_pytorch": {measure: r}}
      for the measures (in MEASURES order) both libraries have times of, and when both
      ddim50 and forward are there "ddim50_over_50_forwards": {library: the sampling loop's
      time over that of its 50 network evaluations}.
    """
    measures = [m for m in MEASURES if times["diffjax"].get(m) and times["pytorch"].get(m)]
    median_ms = {
        m: {lib: 1e3 * float(np.median(times[lib][m])) for lib in LIBRARIES} for m in measures
    }
    ratios = {m: median_ms[m]["diffjax"] / median_ms[m]["pytorch"] for m in measures}
    summary = {"median_ms": median_ms, "ratio_diffjax_over_pytorch": ratios}
    if "ddim50" in median_ms and "forward" in median_ms:  # what the loop adds to its forwards
        summary["ddim50_over_50_forwards"] = {
            lib: median_ms["ddim50"][lib] / (DDIM_STEPS * median_ms["forward"][lib])
            for lib in LIBRARIES
        }
    return summary


def benchmark(name: str, torch, diffusers) -> dict[str, Any]:
    """Builds both sides of CASES[name], checks their sizes, warms up, times the rounds."""
    case = CASES[name]
    jax_side = JaxSide(case, FLAGS.seed)
    torch_side = TorchSide(case, FLAGS.seed, torch, diffusers)
    counts = {"diffjax": jax_side.num_params, "pytorch": torch_side.num_params}
    check_param_counts(name, counts)
    for measure in ("forward", "train_step", "train_step"):
        jax_side.run(measure)
        torch_side.run(measure)
    # DDIM warm-up: torch runs two steps of the loop; the diffjax scan is compiled ahead of
    # time (lower().compile()) and a full warm-up run would cost 50 forward passes.
    torch_side.ddim(torch_side.scheduler.timesteps[:2])
    sides = {"diffjax": jax_side, "pytorch": torch_side}
    times = {lib: {m: [] for m in MEASURES} for lib in LIBRARIES}
    for r in range(FLAGS.rounds):
        for lib in LIBRARIES if r % 2 == 0 else LIBRARIES[::-1]:
            for measure in MEASURES:
                n = FLAGS.sample_repeats if measure == "ddim50" else FLAGS.repeats
                n = 0 if measure == "ddim50" and r >= FLAGS.sample_rounds else n
                times[lib][measure] += _timed(lambda m=measure, s=sides[lib]: s.run(m), n)
        print(f"{name} round {r + 1}/{FLAGS.rounds}: {summarize(times)['median_ms']}", flush=True)
    return {
        "case": name,
        "batch": case.batch,
        "shape": list(case.shape),
        "params": counts,
        "diffusers_config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in case.diffusers.items()
        },  # fmt: skip
        "compile_s": jax_side.compile_s,
        **summarize(times),
        "times_ms": {
            lib: {m: [1e3 * s for s in seconds] for m, seconds in by_measure.items()}
            for lib, by_measure in times.items()
        },
    }


def plot_ratios(results: list[dict[str, Any]], path: str) -> None:
    """Bar chart of time_diffjax / time_pytorch per case and measure, a line at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(results), 1)
    for k, row in enumerate(results):
        ratios = [row["ratio_diffjax_over_pytorch"].get(m, np.nan) for m in MEASURES]
        xs = np.arange(len(MEASURES)) + (k - (len(results) - 1) / 2) * width
        bars = ax.bar(xs, ratios, width, label=f"{row['case']} (batch {row['batch']})")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_xticks(np.arange(len(MEASURES)), MEASURES)
    ax.set_ylabel("time diffjax / time PyTorch (< 1: diffjax faster)")
    ax.set_title("diffjax vs diffusers UNets, CPU float32 (median wall time)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    torch, diffusers = import_peers()
    if FLAGS.torch_threads:
        torch.set_num_threads(FLAGS.torch_threads)
    unknown = [c for c in FLAGS.cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case {unknown[0]!r}; cases: {', '.join(CASES)}")
    header = {
        "note": NOTE,
        "rounds": FLAGS.rounds,
        "repeats": FLAGS.repeats,
        "sample_repeats": FLAGS.sample_repeats,
        "sample_rounds": FLAGS.sample_rounds,
        "threads": {
            "torch_num_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "os_cpu_count": os.cpu_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        },
        "versions": {
            lib: importlib.import_module(lib).__version__
            for lib in ("jax", "jaxlib", "flax", "optax", "torch", "diffusers")
        },
    }
    results = []
    for name in FLAGS.cases:
        results.append(benchmark(name, torch, diffusers))
        print(name, results[-1]["ratio_diffjax_over_pytorch"], flush=True)
        write_report(FLAGS.out, {**header, "results": results})  # keeps finished cases
    plot_ratios(results, os.path.splitext(FLAGS.out)[0] + ".png")


if __name__ == "__main__":
    app.run(main)
