# %% [markdown]
# # diffjax quickstart: train, sample, measure
#
# Trains the default job (`configs/default.py`: DDPM with a small UNet on scikit-learn's 8x8
# digits, offline) with the trainer the command line uses, then samples the trained network with
# three samplers and shows the loss curve and the Frechet distance of its samples next to its
# floor (train vs test) and ceiling (noise).
#
# **Runtime on a CPU runtime: about 6 minutes** (Colab's 2 vCPUs; training is 2000 steps). A
# GPU or TPU runtime runs it unchanged.

# %%
FAST = False

# %% [markdown]
# `FAST = True` is the shortened run the test suite executes (40 steps, fewer samples).
#
# ## Train
# `diffjax.train.train(config, workdir)` is `python -m diffjax.main --config=... --workdir=...`:
# the same jitted step, checkpoints, logs and final evaluation. `derive` overrides dotted fields
# as `--config.training.num_steps=...` does.

# %%
import json
import os
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

import diffjax.train
from configs import default
from diffjax.evaluation import plots

config = default.get_config()
if FAST:
    config = diffjax.train.derive(
        config,
        **{
            "training.num_steps": 40,
            "optim.warmup_steps": 10,
            "training.log_every": 10,
            "training.checkpoint_every": 40,
            "training.sample_every": 0,
            "sample.num_steps": 10,
            "eval.num_samples": 64,
        },
    )
workdir = tempfile.mkdtemp(prefix="diffjax_quickstart_")
state = diffjax.train.train(config, workdir)
print("trained to step", int(state.step), "in", workdir)

# %% [markdown]
# ## The loss curve
# Every `training.log_every` steps the trainer appends the metrics to `history.jsonl`.

# %%
with open(os.path.join(workdir, "history.jsonl")) as f:
    history = [json.loads(line) for line in f]
steps = np.array([h["step"] for h in history])
loss = np.array([h["loss"] for h in history])
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(steps, loss)
ax.set(xlabel="step", ylabel="loss (eps MSE)", yscale="log", title="training loss")
plt.show()

# %% [markdown]
# ## Three samplers, one network
# `restore_latest` returns the run's `Experiment` (dataset, network, recipe, sampler) and the
# newest checkpoint. `with_sampling` swaps the sampler: ancestral DDPM, deterministic DDIM and
# the second-order DPM-Solver, each with its own number of network evaluations (NFE).

# %%
exp, state = diffjax.train.restore_latest(config, workdir)
SAMPLERS = {"ddpm": 100, "ddim": 25, "dpm_solver": 10}  # sampler -> steps
fig, axes = plt.subplots(1, len(SAMPLERS), figsize=(13, 4.6))
for ax, (name, num_steps) in zip(axes, tqdm(SAMPLERS.items(), desc="samplers"), strict=True):
    run = exp.with_sampling(sampler=name, num_steps=num_steps, options={})
    x = jax.jit(run.sample, static_argnums=2)(state.ema_params, jax.random.key(1), 64)
    ax.imshow(plots.image_grid(np.asarray(x))[..., 0], cmap="gray")
    ax.set_title(f"{name}: {num_steps} steps, NFE {run.sampler.nfe(num_steps)}")
    ax.axis("off")
plt.show()

# %% [markdown]
# ## How good are the samples?
# At the end of training the trainer wrote `metrics.json`: the Frechet distance of
# `eval.num_samples` samples to the test split, in the feature space of a digits classifier,
# next to the same distance for real training digits (the floor a perfect model reaches) and for
# Gaussian noise (the ceiling).

# %%
with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
bars = {
    "floor: train digits": metrics["frechet_floor_train_vs_test"],
    "this model's samples": metrics["frechet"],
    "ceiling: noise": metrics["frechet_ceiling_noise"],
}
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(list(bars), list(bars.values()), color=["tab:green", "tab:blue", "tab:gray"])
for i, value in enumerate(bars.values()):
    ax.text(value, i, f" {value:.3g}", va="center")
ax.set(xscale="log", xlabel="Frechet distance to the test split (lower is better)")
plt.show()
print(json.dumps(metrics, indent=1))
