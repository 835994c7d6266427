# %% [markdown]
# # Flows and few-step generation on 2-D data
#
# Trains, through the trainer the command line uses, on two moons (`diffjax.data.toy2d`):
# flow matching, a rectified flow and its reflow (the 2-rectified flow, trained on pairs the
# first flow simulates), then a consistency model and MeanFlow. The flows' trajectories show how
# reflow straightens paths; the few-step models are sampled in 1 and 2 steps next to the flows
# integrated with as few Euler steps.
#
# **Runtime on a CPU runtime: about 4 minutes** (five small MLPs of 1000 steps each).

# %%
FAST = False

# %% [markdown]
# `FAST = True` is the shortened run the test suite executes (100 training steps per model).
#
# ## Train
# Every model is its config in `configs/` run by `diffjax.train.train`; reflow is the CLI's
# `--config.mode=reflow` (`diffjax.train.reflow.reflow`), which simulates (noise, sample) pairs
# with the teacher flow, trains the next flow on them and measures both.

# %%
import os
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

import diffjax.train
from configs import (
    consistency_toy2d,
    flow_matching_toy2d,
    meanflow_toy2d,
    rectified_flow_toy2d,
    reflow_toy2d,
)
from diffjax import samplers
from diffjax.evaluation.sliced import sliced_w1
from diffjax.train import reflow

STEPS = 100 if FAST else 1000
root = tempfile.mkdtemp(prefix="diffjax_flows_")


def config_of(module, **overrides):
    """The config of `module` with this notebook's training length (and `overrides`)."""
    config = module.get_config()
    updates = {"training.num_steps": STEPS, "eval.num_samples": 500 if FAST else 2000}
    if config.method == "consistency":  # its discretisation schedule spans the whole run
        updates["loss.total_steps"] = STEPS
    return diffjax.train.derive(config, **updates, **overrides)


workdirs = {
    "flow matching": flow_matching_toy2d,
    "1-rectified flow": rectified_flow_toy2d,
    "consistency (iCT)": consistency_toy2d,
    "MeanFlow": meanflow_toy2d,
}
for name, module in tqdm(list(workdirs.items()), desc="training"):
    workdirs[name] = os.path.join(root, name.split(" ")[0])
    diffjax.train.train(config_of(module), workdirs[name])
reflow_config = config_of(
    reflow_toy2d,
    **{
        "teacher.workdir": workdirs["1-rectified flow"],
        "reflow.rounds": 1,
        "reflow.num_pairs": 1000 if FAST else 5000,
        "reflow.ode_steps": 20 if FAST else 100,
    },
)
report = reflow.reflow(reflow_config, os.path.join(root, "reflow"))
workdirs["2-rectified flow (reflow)"] = os.path.join(root, "reflow", "round_1")

# %% [markdown]
# ## Straightness
# Each flow carries the same 256 noise points (t = 1) to data (t = 0) along 64 Euler steps. A
# path is straight when its velocity is constant: the straightness S = int E||(Z_0 - Z_1) / T -
# dZ_t/dt||^2 dt (seed 002, "Rectified Flow") is 0 exactly for straight paths at constant
# speed; here it is measured on the Euler paths drawn. `reflow.json` holds the reflow run's own
# measurement along RK4 paths of the 1- and 2-rectified flow.

# %%
NUM_PATHS, NUM_STEPS = 256, 64
z = jax.random.normal(jax.random.key(0), (NUM_PATHS, 2))
euler = samplers.get("euler")
flows = ["flow matching", "1-rectified flow", "2-rectified flow (reflow)"]
fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharex=True, sharey=True)
for ax, name in zip(axes, flows, strict=True):
    exp, state = diffjax.train.restore_latest(
        diffjax.train.load_config(workdirs[name]), workdirs[name]
    )
    denoiser = exp.denoiser(state.ema_params, None)
    _, path = jax.jit(
        lambda z, d=denoiser: euler(None, d, z, num_steps=NUM_STEPS, return_trajectory=True)
    )(z)
    path = np.asarray(path)  # [steps + 1, paths, 2], from t = 1 down to t_min
    ts = np.asarray(euler.timesteps(denoiser.process, NUM_STEPS))
    dt = (ts[:-1] - ts[1:])[:, None, None]
    chord = (path[-1] - path[0]) / (ts[0] - ts[-1])
    straightness = np.mean(np.sum(dt * np.square(np.diff(path, axis=0) / dt - chord), axis=(0, 2)))
    ax.plot(path[:, :, 0], path[:, :, 1], color="tab:blue", alpha=0.15, lw=0.7)
    ax.scatter(*path[0].T, s=4, color="tab:gray", label="noise, t = 1")
    ax.scatter(*path[-1].T, s=4, color="tab:red", label="sample, t = 0")
    ax.set_title(f"{name}: straightness {straightness:.3g}")
axes[0].legend(loc="lower left")
plt.show()
for r in report["rounds"]:
    print(
        f"reflow.json, {r['round'] + 1}-rectified flow: straightness {r['straightness']:.3g}, "
        f"transport cost {r['transport_cost']:.3g}"
    )

# %% [markdown]
# ## One and two steps
# The consistency model and MeanFlow are trained to jump: one network call maps noise to data.
# The flows, integrated with as few Euler steps, land near the mean instead (the straighter
# 2-rectified flow less so). Each panel gives the sliced Wasserstein-1 distance of 2000 samples
# to the test split; the dotted reference is 2000 training points against the test split.

# %%
NUM_SAMPLES = 2000
key = jax.random.key(1)
models = ["flow matching", "2-rectified flow (reflow)", "consistency (iCT)", "MeanFlow"]
fig, axes = plt.subplots(2, len(models), figsize=(16, 7.5), sharex=True, sharey=True)
for column, name in enumerate(tqdm(models, desc="few-step sampling")):
    config = diffjax.train.load_config(workdirs[name])
    exp, state = diffjax.train.restore_latest(config, workdirs[name])
    test = exp.dataset.as_array("test")["x"]
    for row, num_steps in enumerate((1, 2)):
        sampler = "euler" if "flow" in name else exp.sampler_name
        run = exp.with_sampling(sampler=sampler, num_steps=num_steps, options={})
        x = np.asarray(jax.jit(run.sample, static_argnums=2)(state.ema_params, key, NUM_SAMPLES))
        ax = axes[row, column]
        ax.scatter(*test[:NUM_SAMPLES].T, s=2, color="lightgray")
        ax.scatter(*x.T, s=2)
        ax.set_title(f"{name}, {num_steps} step(s): W1 {sliced_w1(x, test, key):.3f}", fontsize=9)
floor = sliced_w1(exp.dataset.as_array("train")["x"][:NUM_SAMPLES], test, key)
fig.suptitle(f"sliced W1 to the test split; train vs test: {floor:.3f}")
plt.show()
