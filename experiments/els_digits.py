"""How well the analytic score machines predict trained UNets on scikit-learn's digits
(seed 000, "Analytic Theory"; Kamb & Ganguli 2024, arXiv 2412.20292).

Two DDPM networks of configs/els_digits.py (unet_digits, eps prediction) are trained through the
trainer: `conv` without self-attention (model.kwargs.attn_resolutions=()) and `attn` with it at
4 x 4. Then the networks and the ideal, LS (several P) and ELS machines (several P, boundary
aware, and P following the conv network's calibrated receptive field) sample from the same
noise with the same deterministic sampler (DDIM, eta = 0, 50 steps). Reported: the per-image
r^2 = 1 - |machine - network|^2 / |network - mean(network)|^2 (median and quartiles over the
images), next to the paper's medians (ELS vs CNN ~0.94-0.96 on MNIST / FashionMNIST / CIFAR-10
/ CelebA, 0.77 against a UNet with self-attention); the calibrated P against t; the RMS distance
of each sample to its nearest training image; a patch-mosaic figure.

  python experiments/els_digits.py --out experiments/results/els_digits.json

writes the JSON and a PNG beside it; runs and machine samples stay in --workdir (reused).
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags

from configs import els_digits
from diffjax.analytic import receptive_field, score_machines
from diffjax.evaluation import plots
from diffjax.train import loop, runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/els_digits.json", "JSON output.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/els_exp", "Where runs and samples live.")
_STEPS = flags.DEFINE_integer("steps", 2000, "Training steps of the conv network.")
_ATTN_STEPS = flags.DEFINE_integer("attn_steps", 1000, "Training steps of the attention network.")
_MACHINES = flags.DEFINE_list(
    "machines",
    "ideal,ls_P3,els_P3,ls_P5,els_P5,ls_P7,els_P7,els_calibrated",
    "Which machines to sample (ideal, ls_P<P>, els_P<P> for P in PATCH_SIZES, els_calibrated).",
)
_NETWORKS = flags.DEFINE_list("networks", "conv,attn", "Which networks to train and compare.")
_SAMPLES = flags.DEFINE_integer("num_samples", 100, "Images per sampler (r^2 over these).")

PATCH_SIZES = (3, 5, 7)  # fixed P of the LS and ELS machines
NETWORKS = {"conv": (), "attn": (4,)}  # name -> self-attention resolutions of unet_digits
CALIBRATION_TS = np.linspace(0.02, 0.98, 17)  # times at which the receptive field is measured
PAPER = {"els_vs_cnn_median": [0.94, 0.96], "els_vs_unet_attention_median": 0.77}


def _config(attn, steps):
    config = els_digits.get_config()
    config.mode = "train"
    config.model.kwargs.attn_resolutions = attn
    config.training.num_steps = steps
    config.training.sample_every = 0
    config.eval.at_end = False
    return config


def _network(attn, steps, workdir):
    """(experiment, state) of the network trained in `workdir` (trained first if missing)."""
    config = _config(attn, steps)
    if not os.path.exists(os.path.join(workdir, "checkpoints", str(steps))):
        loop.train(config, workdir)
    return runs.restore_latest(config, workdir)


def _cached(path, make):
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        start = time.perf_counter()
        x = np.asarray(make())
        np.savez(path, samples=x, seconds=time.perf_counter() - start)
    with np.load(path) as f:
        return f["samples"], float(f["seconds"])


def r2(machine, network):
    """Per-image r^2 of `machine` [B, ...] as a prediction of `network` [B, ...]: [B]."""
    axes = tuple(range(1, network.ndim))
    res = np.sum((machine - network) ** 2, axes)
    tot = np.sum((network - network.mean(axes, keepdims=True)) ** 2, axes)
    return 1.0 - res / tot


def _summary(values):
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3)}


def _mosaic(ax_row, sample, train, patch_size, pixels):
    """One boundary-aware ELS sample and, for each pixel, the training patch of its padding
    pattern nearest to its window (by the seed's theorem the patch whose centre the pixel
    converged to)."""
    query = score_machines.patches(jnp.asarray(sample[None]), patch_size)[0]  # [H, W, P P]
    bank = score_machines.patches(jnp.asarray(train), patch_size)  # [N, H, W, P P]
    flat = np.asarray(bank).reshape(-1, bank.shape[-1])
    pattern = score_machines.padding_pattern(*sample.shape[:2], patch_size)  # [H, W]
    patterns = np.broadcast_to(pattern, bank.shape[:3]).reshape(-1)
    ax_row[0].imshow(sample[..., 0], cmap="gray", vmin=-1, vmax=1)
    ax_row[0].set_title(f"ELS sample (P={patch_size})")
    found = []
    for ax, (i, j), color in zip(ax_row[1:], pixels, ["r", "g", "b", "m"], strict=False):
        dist = np.sum((flat - np.asarray(query[i, j])) ** 2, -1)
        k = int(np.argmin(np.where(patterns == pattern[i, j], dist, np.inf)))
        n, pi, pj = np.unravel_index(k, bank.shape[:3])
        r = patch_size // 2
        padded = np.pad(train[n, ..., 0], r)
        ax.imshow(padded, cmap="gray", vmin=-1, vmax=1)
        ax.add_patch(plt.Rectangle((pj - 0.5, pi - 0.5), patch_size, patch_size, fill=False,
                                   color=color, lw=2))  # fmt: skip
        ax.set_title(f"pixel ({i},{j}) <- train #{n} at ({pi},{pj})", fontsize=7)
        ax_row[0].add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, color=color, lw=2))
        error = float(abs(train[n, pi, pj, 0] - sample[i, j, 0]))
        found.append(
            {"pixel": [i, j], "train_index": int(n), "position": [int(pi), int(pj)],
             "centre_error": error}
        )  # fmt: skip
    for ax in ax_row:
        ax.axis("off")
    return found


def main(argv):
    del argv
    started = time.time()
    root = _WORKDIR.value
    n = _SAMPLES.value
    steps = {"conv": _STEPS.value, "attn": _ATTN_STEPS.value}
    nets = {
        name: _network(attn, steps[name], os.path.join(root, name))
        for name, attn in NETWORKS.items()
        if name in _NETWORKS.value
    }
    exp, _ = nets["conv"]
    key = jax.random.PRNGKey(exp.seed)
    train = np.asarray(exp.dataset.as_array("train")["x"])
    network_samples = {}
    for name, (e, state) in nets.items():
        network_samples[name], _ = _cached(
            os.path.join(root, "samples", f"net_{name}.npz"),
            lambda e=e, state=state: jax.jit(e.sample, static_argnums=2)(state.ema_params, key, n),
        )

    # The conv network's receptive field against t, on noised training images.
    conv_exp, conv_state = nets["conv"]
    conv = conv_exp.denoiser(conv_state.ema_params, None)
    calibrated = receptive_field.calibrate(
        conv, jnp.asarray(train[:64]), jax.random.PRNGKey(1), CALIBRATION_TS
    )
    sizes, edges = receptive_field.schedule(CALIBRATION_TS, calibrated)

    machines = {"ideal": score_machines.ideal(train)}
    for p in PATCH_SIZES:
        machines[f"ls_P{p}"] = score_machines.local(train, p, chunk_size=100)
        machines[f"els_P{p}"] = score_machines.equivariant_local(train, p, True, chunk_size=16)
    machines["els_calibrated"] = score_machines.scheduled(train, sizes, edges, True, 16)
    machines = {k: v for k, v in machines.items() if k in _MACHINES.value}
    draw = jax.jit(lambda m: exp.sample_denoiser(m.denoiser(exp.recipe.process), key, n))
    results, samples = {}, {}
    for label, machine in machines.items():
        samples[label], seconds = _cached(
            os.path.join(root, "samples", f"{label}_{sizes}_{edges}.npz")
            if label == "els_calibrated"
            else os.path.join(root, "samples", f"{label}.npz"),
            lambda machine=machine: draw(machine),
        )
        results[label] = {"seconds": seconds}
        for net, x in network_samples.items():
            results[label][f"r2_vs_{net}"] = _summary(r2(samples[label], x))
        print(label, results[label], flush=True)

    def nearest(x):
        return np.asarray(score_machines.nearest_distance(jnp.asarray(x), jnp.asarray(train)))

    distances = {k: nearest(v) for k, v in {**samples, **network_samples}.items()}
    els_labels = [k for k in results if k.startswith("els")]
    best_els = max(els_labels, key=lambda k: results[k]["r2_vs_conv"]["median"])
    best_ls = max(
        (k for k in results if k.startswith("ls")), key=lambda k: results[k]["r2_vs_conv"]["median"]
    )

    fig = plt.figure(figsize=(16, 13))
    grid = fig.add_gridspec(3, 5)
    ax = fig.add_subplot(grid[0, :3])
    labels = list(results)
    for offset, net in [(-0.2, "conv"), (0.2, "attn")][: len(nets)]:
        values = [r2(samples[k], network_samples[net]) for k in labels]
        color = "tab:blue" if net == "conv" else "tab:orange"
        ax.boxplot(values, positions=np.arange(len(labels)) + offset, widths=0.35,
                   showfliers=False, patch_artist=True, boxprops={"facecolor": color})  # fmt: skip
    ax.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=8)
    ax.axhline(0.9, color="gray", ls=":")
    ax.set_ylabel("per-image r^2 vs network (blue: conv, orange: attn)")
    ax.set_ylim(-0.5, 1.0)
    ax = fig.add_subplot(grid[0, 3:])
    ax.step(CALIBRATION_TS, calibrated, where="mid")
    ax.set_xlabel("t")
    ax.set_ylabel("effective patch size P (90% of |d x0_p / d x|)")
    ax.set_title("conv UNet receptive field")
    ax = fig.add_subplot(grid[1, :2])
    for k in ["ideal", best_ls, best_els, *nets]:
        ax.hist(distances[k], bins=30, range=(0, 0.6), histtype="step", label=k, lw=1.5)
    ax.set_xlabel("RMS distance to nearest training image")
    ax.legend()
    ax = fig.add_subplot(grid[1, 2:])
    shown = {"conv": network_samples["conv"], best_els: samples[best_els],
             **{k: v for k, v in network_samples.items() if k != "conv"},
             best_ls: samples[best_ls], "ideal": samples["ideal"]}  # fmt: skip
    rows = list(shown.values())
    ax.imshow(plots.image_grid(np.concatenate([r[:12] for r in rows]), 12), cmap="gray")
    ax.set_title(f"same noise; rows: {', '.join(shown)}", fontsize=9)
    ax.axis("off")
    # The patch size of the last steps (smallest t) fixes the final pixels.
    els_p = int(best_els.split("P")[-1]) if "P" in best_els else sizes[0]
    els_sample = samples[best_els][0]
    mosaic = _mosaic(
        [fig.add_subplot(grid[2, i]) for i in range(5)], els_sample, train, els_p,
        [(1, 3), (3, 2), (4, 5), (6, 4)],
    )  # fmt: skip
    fig.tight_layout()
    png = os.path.splitext(_OUT.value)[0] + ".png"
    os.makedirs(os.path.dirname(png) or ".", exist_ok=True)
    fig.savefig(png, dpi=110)

    payload = {
        "num_samples": n,
        "num_train": int(train.shape[0]),
        "train_steps": steps,
        "sampler": "ddim eta=0, 50 steps, same noise for every machine and network",
        "r2": results,
        "paper": PAPER,
        "best_els": best_els,
        "best_ls": best_ls,
        "ordering_els_gt_ls_gt_ideal_vs_conv": bool(
            results[best_els]["r2_vs_conv"]["median"]
            > results[best_ls]["r2_vs_conv"]["median"]
            > results["ideal"]["r2_vs_conv"]["median"]
        ),
        "calibration": {
            "ts": CALIBRATION_TS.tolist(),
            "patch_size": calibrated.tolist(),
            "schedule": {"patch_sizes": list(sizes), "t_edges": list(edges)},
        },
        "nearest_train_rms_median": {k: float(np.median(v)) for k, v in distances.items()},
        "mosaic": mosaic,
        "png": png,
        "seconds": time.time() - started,
    }
    with open(_OUT.value, "w") as f:
        json.dump(payload, f, indent=2)
    print(json.dumps({k: payload[k] for k in ("best_els", "ordering_els_gt_ls_gt_ideal_vs_conv")}))


if __name__ == "__main__":
    app.run(main)
