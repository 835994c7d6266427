# %% [markdown]
# # Exact likelihood through the probability-flow ODE
#
# `diffjax.likelihood.nll` integrates the probability-flow ODE from the data to t = 1 together
# with the divergence of its drift (instantaneous change of variables), giving -log p(x). On a
# toy whose density is known in closed form (eight Gaussians, with its exact denoiser) the
# number can be checked: the exact trace against the Hutchinson estimator, the error against
# the number of drift evaluations (NFE), and the whole density as a heat-map. Then the same on
# digits with a briefly trained network, as bits/dim.
#
# **Runtime on a CPU runtime: about 5 minutes** (1000 training steps for the digits model).

# %%
FAST = False

# %% [markdown]
# `FAST = True` is the shortened run the test suite executes (smaller batches and grids, 40
# training steps).
#
# ## 1. A toy with a known density
# x_0 is the `eight_gaussians` toy (`diffjax.data.toy2d`): its exact mixture denoiser under the
# VP process makes the ODE's density at t -> 0 the data density itself, known in closed form
# (`toy2d.log_prob`).

# %%
import functools
import json
import math
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

import diffjax.train
from configs import sde_digits
from diffjax import likelihood, processes
from diffjax.data import toy2d
from diffjax.train import generate

VP = processes.get("vp")
mixture = toy2d.eight_gaussians_mixture()
denoiser = mixture.denoiser(VP)
x = mixture.sample(jax.random.key(0), 100 if FAST else 500)
exact_nll = -toy2d.log_prob("eight_gaussians", x)


def nll(x, key=None, **options):
    """-log p(x) and its NFE through the probability-flow ODE (one jitted solve)."""
    solve = jax.jit(functools.partial(likelihood.nll, denoiser=denoiser, **options))
    return solve(key, x=x)


exact_trace = nll(x, trace="exact")
gap = exact_trace["nll"] - exact_nll
print(
    f"exact trace, dopri5: NFE {int(exact_trace['nfe'])}, "
    f"mean |error| {jnp.mean(jnp.abs(gap)):.2e} nats"
)

# %% [markdown]
# ### Exact trace vs Hutchinson
# The exact divergence costs one forward-mode pass per dimension; Hutchinson's estimator
# z^T (dF/dx) z costs one per probe z, whatever the dimension, and is unbiased: its error
# averages out over examples and shrinks as 1 / sqrt(probes) per example.

# %%
PROBES = [1, 4] if FAST else [1, 4, 16]
fig, ax = plt.subplots(figsize=(7, 4))
bins = np.linspace(-1.5, 1.5, 61)
for num_probes in tqdm(PROBES, desc="Hutchinson"):
    result = nll(x, jax.random.key(1), trace="hutchinson", num_probes=num_probes)
    error = np.asarray(result["nll"] - exact_nll)
    label = f"{num_probes} probe(s): mean {error.mean():+.3f}, std {error.std():.3f}"
    ax.hist(error, bins=bins, histtype="step", lw=2, label=label)
ax.axvline(0.0, color="k", lw=0.8)
ax.set(xlabel="estimated - exact -log p (nats)", ylabel="examples")
ax.set_title(f"Hutchinson estimates; exact trace error: {np.abs(gap).max():.1e} at most")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Error against NFE
# The adaptive Dormand-Prince solver (tolerances 1e-2 ... 1e-6) against fixed-step RK4, both
# with the exact trace: mean |computed - exact| -log p.

# %%
TOLERANCES = [1e-2, 1e-3] if FAST else [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
RK4_STEPS = [4, 8] if FAST else [4, 8, 16, 32, 64]
runs = {"dopri5": [], "rk4": []}
for tol in tqdm(TOLERANCES, desc="dopri5"):
    r = nll(x, trace="exact", rtol=tol, atol=tol)
    runs["dopri5"].append((int(r["nfe"]), float(jnp.mean(jnp.abs(r["nll"] - exact_nll)))))
for steps in tqdm(RK4_STEPS, desc="rk4"):
    r = nll(x, trace="exact", solver="rk4", num_steps=steps)
    runs["rk4"].append((int(r["nfe"]), float(jnp.mean(jnp.abs(r["nll"] - exact_nll)))))
fig, ax = plt.subplots(figsize=(6, 4))
for solver, points in runs.items():
    ax.plot(*np.array(points).T, "o-", label=solver)
ax.set(xscale="log", yscale="log", xlabel="NFE (augmented drift)", ylabel="mean |error| (nats)")
ax.legend()
plt.show()

# %% [markdown]
# ### The density, everywhere
# The ODE's log-density on a grid of points next to the exact one.

# %%
size = 24 if FAST else 80
axis = np.linspace(-1.25, 1.25, size)
grid = jnp.asarray(np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2), jnp.float32)
model = -nll(grid, trace="exact", rtol=1e-4, atol=1e-4)["nll"].reshape(size, size)
exact = toy2d.log_prob("eight_gaussians", grid).reshape(size, size)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
extent = (axis[0], axis[-1], axis[0], axis[-1])
for ax, image, title in [
    (axes[0], np.exp(model), "density through the ODE"),
    (axes[1], np.exp(exact), "exact density"),
]:
    shown = ax.imshow(image, origin="lower", extent=extent, cmap="magma")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax)
shown = axes[2].imshow(
    np.clip(model - exact, -0.5, 0.5), origin="lower", extent=extent, cmap="coolwarm"
)
axes[2].set_title("log p: ODE - exact (nats, clipped to +-0.5)")
fig.colorbar(shown, ax=axes[2])
plt.show()
peak = exact > np.log(0.01)  # where the density is not negligible
print(f"max |log p error| where p > 0.01: {np.abs(model - exact)[peak].max():.2e} nats")

# %% [markdown]
# ## 2. Digits: bits/dim of a trained network
# A VP score model (`configs/sde_digits.py`) trained briefly through the trainer, then
# `mode=eval_bpd` (`diffjax.train.generate.eval_bpd`, the CLI's `--config.mode=eval_bpd`): the
# dequantized bits/dim of test digits through the same ODE, with the Hutchinson trace. The
# digits have 17 grey levels, so a model that knows nothing (uniform) scores log2 17 = 4.09
# bits/dim.

# %%
config = diffjax.train.derive(
    sde_digits.get_config(),
    **{
        "training.num_steps": 40 if FAST else 1000,
        "optim.warmup_steps": 10 if FAST else 100,
        "training.sample_every": 0,
        "eval.at_end": False,  # this notebook measures bits/dim, not samples
        "eval.bpd_max_examples": 20 if FAST else 100,
        "eval.bpd_batch_size": 20 if FAST else 100,
        "eval.bpd_num_dequantizations": 1,
    },
)
workdir = tempfile.mkdtemp(prefix="diffjax_likelihood_")
diffjax.train.train(config, workdir)
bpd = generate.eval_bpd(diffjax.train.derive(config, mode="eval_bpd"), workdir)
print(json.dumps({k: v for k, v in bpd.items() if not isinstance(v, list)}, indent=1))
uniform = math.log2(17)
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(
    ["uniform over 17 levels", f"VP model, {int(bpd['step'])} steps"], [uniform, bpd["bpd_mean"]]
)
ax.errorbar(bpd["bpd_mean"], 1, xerr=2 * bpd["bpd_stderr"], color="k", capsize=4)
ax.set(xlabel="bits/dim on test digits (lower is better)")
plt.show()
