"""Exact likelihood of a trained 2-D flow against the true density (issue 5, trained-model check).

Trains (or resumes) a config on the `eight_gaussians` toy, whose density is known exactly
(`diffjax.data.toy2d.eight_gaussians_mixture`), then evaluates on test points x_i

  model cross-entropy  CE = mean_i -log p_model(x_i)   (probability-flow ODE, exact trace),
  true entropy         H  = mean_i -log p_true(x_i),
  KL(p_true || p_model) = mean_i [log p_true(x_i) - log p_model(x_i)] >= 0,

with standard errors over the test points (the KL's paired). The check: CE is above H and
close to it. The PNG beside the JSON shows the true and the model density on a grid and
log p_model against log p_true on the test points.

  python experiments/likelihood_toy2d.py --out experiments/results/likelihood_toy2d.json
  python experiments/likelihood_toy2d.py --config=vp   # a VP score model instead
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags

from configs import default, rectified_flow_toy2d
from diffjax import likelihood
from diffjax.data import toy2d
from diffjax.train import loop, runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/results/likelihood_toy2d.json", "JSON (PNG beside)")
flags.DEFINE_string("workdir", "/tmp/diffjax_likelihood_toy2d", "training workdir (resumed)")
flags.DEFINE_enum("config", "rectified_flow", ["rectified_flow", "vp"], "model family")
flags.DEFINE_integer("num_steps", 3000, "training steps")
flags.DEFINE_integer("num_test", 1000, "test points")
flags.DEFINE_integer("grid", 64, "density grid points per axis")


def make_config(name: str):
    """rectified_flow_toy2d on eight_gaussians, or the same MLP as an eps-model of the VP SDE."""
    config = rectified_flow_toy2d.get_config()
    if name == "vp":
        base = default.get_config()
        config.method = base.method  # ddpm: eps prediction, denoising loss
        config.loss = base.loss
        config.process.name = "vp"  # continuous VP SDE, beta in [0.1, 20]
        config.process.kwargs = {}
        config.sample.sampler = ""
    config.data.kwargs.distribution = "eight_gaussians"
    config.training.num_steps = FLAGS.num_steps
    config.eval.at_end = False
    return config


def main(argv):
    del argv
    config = make_config(FLAGS.config)
    workdir = os.path.join(FLAGS.workdir, FLAGS.config)
    loop.train(config, workdir)
    exp, state = runs.restore_latest(config, workdir)
    denoiser = exp.recipe.denoiser(exp.apply_fn, state.ema_params)
    truth = toy2d.eight_gaussians_mixture()
    nll = jax.jit(lambda x: likelihood.nll(None, denoiser, x, trace="exact"))

    x = jnp.asarray(exp.dataset.as_array("test", FLAGS.num_test)["x"])
    out = nll(x)
    model_nll = np.asarray(out["nll"], np.float64)
    true_nll = -np.asarray(truth.log_prob(x, 0.0, exp.recipe.process), np.float64)
    n, dim = x.shape[0], x.shape[1]

    def stats(v):
        return float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(n))

    ce, ce_se = stats(model_nll)
    h, h_se = stats(true_nll)
    kl, kl_se = stats(model_nll - true_nll)
    bits = dim * math.log(2.0)
    report = {
        "config": FLAGS.config,
        "method": config.method,
        "process": config.process.name,
        "training_steps": int(state.step),
        "num_test": n,
        "cross_entropy_nats": ce,
        "cross_entropy_stderr": ce_se,
        "true_entropy_nats": h,
        "true_entropy_stderr": h_se,
        "kl_nats": kl,
        "kl_stderr": kl_se,
        "cross_entropy_bpd": ce / bits,
        "true_entropy_bpd": h / bits,
        "nfe": int(out["nfe"]),
    }
    print(json.dumps(report, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(report, f, indent=1)

    lin = np.linspace(-1.25, 1.25, FLAGS.grid, dtype=np.float32)
    grid = jnp.asarray(np.stack(np.meshgrid(lin, lin), -1).reshape(-1, 2))
    model_grid = np.exp(-np.asarray(nll(grid)["nll"])).reshape(FLAGS.grid, FLAGS.grid)
    true_grid = np.exp(np.asarray(truth.log_prob(grid, 0.0, exp.recipe.process)))
    true_grid = true_grid.reshape(FLAGS.grid, FLAGS.grid)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    extent = (lin[0], lin[-1], lin[0], lin[-1])
    vmax = true_grid.max()
    for ax, dens, title in [(axes[0], true_grid, "true density"), (axes[1], model_grid, "model")]:
        ax.imshow(dens, origin="lower", extent=extent, vmin=0, vmax=vmax, cmap="magma")
        ax.set_title(f"{title} ({FLAGS.config}, exact PF-ODE)" if dens is model_grid else title)
    axes[2].scatter(-true_nll, -model_nll, s=3, alpha=0.5)
    lo, hi = min(-true_nll.max(), -model_nll.max()), max(-true_nll.min(), -model_nll.min())
    axes[2].plot([lo, hi], [lo, hi], "k--", lw=1)
    axes[2].set_xlabel("log p_true(x)")
    axes[2].set_ylabel("log p_model(x) (PF-ODE)")
    axes[2].set_title(
        f"test points: H = {h:.3f}, CE = {ce:.3f}, KL = {kl:.3f} +- {kl_se:.3f} nats", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(os.path.splitext(FLAGS.out)[0] + ".png", dpi=110)


if __name__ == "__main__":
    app.run(main)
