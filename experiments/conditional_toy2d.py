"""Class-conditional flow matching on eight_gaussians (configs/flow_matching_toy2d_cond.py,
trained through the CLI path): per class k, the sliced Wasserstein-1 distance of samples drawn
for k to exact draws of that class's component N(mu_k, 0.1^2 I), for the conditional model
(w = 0) and classifier-free guidance w = 1, 3, next to two references: the unconditional model
(null label) against the same component (what ignoring the label costs) and the exact
component against itself (the finite-sample floor).
  python experiments/conditional_toy2d.py --out experiments/results/conditional_toy2d.json
"""

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags

from configs import flow_matching_toy2d_cond
from diffjax.data import toy2d
from diffjax.evaluation.sliced import sliced_w1
from diffjax.train import loop, runs, settings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/conditional_toy2d.json", "JSON output.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/diffjax_conditional_toy2d", "Where the run is.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps.")
_SAMPLES = flags.DEFINE_integer("num_samples", 2000, "Samples per class.")

SCALES = (0.0, 1.0, 3.0)


def main(argv):
    del argv
    started = time.time()
    config = flow_matching_toy2d_cond.get_config()
    config.training.num_steps = _STEPS.value
    workdir = _WORKDIR.value
    if not os.path.exists(os.path.join(workdir, "metrics.json")):
        loop.train(config, workdir)
    exp, state = runs.restore_latest(config, workdir)
    mixture = toy2d.eight_gaussians_mixture()
    n, key = _SAMPLES.value, jax.random.PRNGKey(1)
    per_class = {}
    x_init = exp.recipe.process.prior_sample(jax.random.PRNGKey(2), (n, 2))

    def unconditional(params, null):
        denoiser = exp.recipe.denoiser(exp.apply_fn, params, null)
        return exp.sampler(key, denoiser, x_init, num_steps=exp.sample_num_steps)

    null = jnp.full((n,), 8, jnp.int32)  # the null label: the unconditional model
    x_uncond = np.asarray(jax.jit(unconditional)(state.ema_params, null))
    for k in range(8):
        exact = np.asarray(mixture.component(k).sample(jax.random.fold_in(key, k), n))
        exact2 = np.asarray(mixture.component(k).sample(jax.random.fold_in(key, 100 + k), n))
        entry = {"floor": sliced_w1(exact2, exact, key)}
        for w in SCALES:
            g = settings.GuidanceConfig("classifier_free" if w else "", w, (0.0, 1.0), "")
            sampling = dataclasses.replace(exp.sampling, labels=(k,))
            run = dataclasses.replace(exp, guidance=g, sampling=sampling)
            x = jax.jit(lambda p, e=run: e.sample(p, key, n))(state.ema_params)
            entry[f"w={w:g}"] = sliced_w1(np.asarray(x), exact, key)
        entry["unconditional"] = sliced_w1(x_uncond, exact, key)
        per_class[str(k)] = entry
        print(k, entry)
    names = ["floor", *[f"w={w:g}" for w in SCALES], "unconditional"]
    mean = {name: float(np.mean([e[name] for e in per_class.values()])) for name in names}
    results = {
        "config": {"steps": _STEPS.value, "num_samples": n, "workdir": workdir},
        "per_class": per_class,
        "mean_over_classes": mean,
        "seconds": time.time() - started,
    }
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, name in enumerate(names):
        vals = [per_class[str(k)][name] for k in range(8)]
        ax.bar(np.arange(8) + 0.15 * i, vals, width=0.15, label=name)
    ax.set(xlabel="class k (mode at angle 2 pi k / 8)", ylabel="sliced W1 to N(mu_k, 0.1^2 I)",
           yscale="log")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.splitext(_OUT.value)[0] + ".png", dpi=120)
    print(json.dumps(mean, indent=1))


if __name__ == "__main__":
    app.run(main)
