# %% [markdown]
# # The analytic theory: where a convolutional diffusion model's new images come from
#
# The exact denoiser of a training set only reproduces training images. Kamb & Ganguli (2024,
# "An analytic theory of creativity in convolutional diffusion models") restrict it the way a
# convolutional network is restricted, and get machines that compose new images as mosaics of
# training patches:
#
# - **ideal**: E[x0 | x_t] under the training set (a softmax over training images);
# - **LS** (locality): each pixel's posterior over training images seen through its P x P window;
# - **ELS** (locality + translation equivariance): each pixel's posterior over every P x P patch
#   of every training image at every position (boundary-aware: only patches cut by the zero
#   padding the same way).
#
# Each is a `Denoiser` (`diffjax.analytic.score_machines`), so every sampler runs it. Here they
# sample digits from the same noise as a trained UNet, and we measure how well each predicts the
# network's images and how far its images are from the training set.
#
# **Runtime on a CPU runtime: about 6 minutes** (training the UNet is 2000 steps). A GPU or TPU
# runtime runs it unchanged.

# %%
FAST = False

# %% [markdown]
# `FAST = True` is the shortened run the test suite executes (fewer training digits, images,
# steps).
#
# ## The machines, from the same noise
# The process and the deterministic sampler (DDIM, eta = 0) are those of
# `configs/els_digits.py`, the CLI's `mode=score_machine`.

# %%
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

import diffjax.train
from configs import els_digits
from diffjax import data, processes, samplers
from diffjax.analytic import receptive_field, score_machines

config = els_digits.get_config()
train = jnp.asarray(data.get("digits").as_array("train")["x"])  # [1500, 8, 8, 1] in [-1, 1]
if FAST:
    train = train[:200]
process = processes.get(config.process.name, **config.process.kwargs)
num_images, num_steps = (8, 10) if FAST else (16, 50)
x1 = process.prior_sample(jax.random.key(0), (num_images, *train.shape[1:]))
sample = jax.jit(samplers.get("ddim", eta=0.0), static_argnames="num_steps")

machines = {
    "ideal": score_machines.ideal(train),
    "LS, P = 5": score_machines.local(train, 5),
    **{
        f"ELS, P = {p}": score_machines.equivariant_local(train, p, boundary_aware=True)
        for p in (3, 5, 7)
    },
}
images = {}
for name, machine in tqdm(machines.items(), desc="machines"):
    images[name] = np.asarray(sample(jax.random.key(1), machine.denoiser(process), x1, num_steps))


def show_rows(rows: dict, title: str) -> None:
    fig, axes = plt.subplots(len(rows), num_images, figsize=(num_images * 0.7, len(rows) * 0.8))
    for r, (name, x) in enumerate(rows.items()):
        for c in range(num_images):
            axes[r, c].imshow(x[c, ..., 0], cmap="gray", vmin=-1, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    plt.show()


def nearest_training_image(x: np.ndarray) -> np.ndarray:
    flat_x, flat_train = x.reshape(len(x), -1), np.asarray(train).reshape(len(train), -1)
    index = np.argmin(((flat_x[:, None] - flat_train[None]) ** 2).sum(-1), axis=1)
    return np.asarray(train)[index]


rows = dict(images)
rows["nearest training\nimage of ELS, P = 5"] = nearest_training_image(images["ELS, P = 5"])
show_rows(rows, "The same noise through each machine (DDIM, eta = 0)")

# %% [markdown]
# The ideal machine returns training images; the local machines do not. The RMS distance of each
# image to its nearest training image:

# %%
distances = {
    name: np.asarray(score_machines.nearest_distance(jnp.asarray(x), train))
    for name, x in images.items()
}
fig, ax = plt.subplots(figsize=(6, 3))
ax.boxplot(list(distances.values()), tick_labels=list(distances))
ax.set_ylabel("RMS distance to the nearest\ntraining image")
ax.tick_params(axis="x", labelsize=8)
plt.show()
for name, d in distances.items():
    print(f"{name:>10}: median {np.median(d):.3f}")

# %% [markdown]
# ## A trained convolutional UNet, and how close each machine comes to it
# The UNet of `configs/els_digits.py` without self-attention, trained with the CLI's trainer,
# samples from the same noise with the same sampler. Per image, r^2 = 1 - |machine - network|^2
# / |network - its mean|^2.

# %%
train_config = diffjax.train.derive(
    config, **{"mode": "train", "model.kwargs.attn_resolutions": (), "eval.at_end": False}
)
if FAST:
    train_config = diffjax.train.derive(
        train_config,
        **{"training.num_steps": 40, "optim.warmup_steps": 10, "training.sample_every": 0},
    )
workdir = tempfile.mkdtemp(prefix="diffjax_els_")
diffjax.train.train(train_config, workdir)
exp, state = diffjax.train.restore_latest(train_config, workdir)
network = exp.denoiser(state.ema_params, None)
images["network"] = np.asarray(sample(jax.random.key(1), network, x1, num_steps))


def r2(machine: np.ndarray, net: np.ndarray) -> np.ndarray:
    flat_m, flat_n = machine.reshape(len(net), -1), net.reshape(len(net), -1)
    residual = ((flat_m - flat_n) ** 2).sum(-1)
    spread = ((flat_n - flat_n.mean(-1, keepdims=True)) ** 2).sum(-1)
    return 1.0 - residual / spread


# %% [markdown]
# ## The network's receptive field against t
# The effective patch size at each t is the smallest odd window around a pixel holding 90% of
# |d x0_hat_p / d x| (`receptive_field.calibrate`, one `jax.vjp` per t). An ELS machine whose P
# follows it (`score_machines.scheduled`) is the theory's calibrated machine.

# %%
ts = np.linspace(0.02, 0.98, 7 if FAST else 25)
sizes = receptive_field.calibrate(network, train[:32], jax.random.key(2), ts)
patch_sizes, t_edges = receptive_field.schedule(ts, sizes)
calibrated = score_machines.scheduled(train, patch_sizes, t_edges, boundary_aware=True)
images["ELS, calibrated P(t)"] = np.asarray(
    sample(jax.random.key(1), calibrated.denoiser(process), x1, num_steps)
)

fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 3.5))
ax_p.step(ts, sizes, where="mid")
ax_p.set(xlabel="t", ylabel="effective patch size P", title="the UNet's receptive field")
scores = {name: r2(x, images["network"]) for name, x in images.items() if name != "network"}
ax_r.boxplot(list(scores.values()), tick_labels=list(scores))
ax_r.set(ylabel="r^2 vs the network", title="how well each machine predicts the UNet")
ax_r.tick_params(axis="x", labelsize=7, rotation=20)
plt.tight_layout()
plt.show()
print("calibrated P by t:", ", ".join(f"{t:.2f}: {p}" for t, p in zip(ts, sizes, strict=True)))
for name, s in scores.items():
    print(f"{name:>20}: median r^2 {np.median(s):.2f}")

show_rows(
    {k: images[k] for k in ("network", "ELS, calibrated P(t)", "ELS, P = 5", "ideal")},
    "The UNet next to the machines, from the same noise",
)

# %% [markdown]
# `python experiments/els_digits.py` runs the full measurement (100 images, an attention UNet
# too, the patch-mosaic figure); its table is in the README's "The analytic theory".
