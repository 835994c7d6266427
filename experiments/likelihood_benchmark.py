"""Likelihood benchmark on scikit-learn's digits: which method gives the best bits/dim, and when.

Every likelihood-relevant method is trained through the CLI's trainer (`loop.train`, the same
code as `python -m diffjax.main`) on its digits config at equal budgets (optimizer steps, batch
128), then evaluated with `mode=eval_bpd` (`generate.eval_bpd`) on the first `--max_examples`
test digits:

  ddpm           configs/default.py        eps, L_simple (Ho et al. 2020)
  iddpm          configs/iddpm_digits.py   cosine schedule, learned variance, hybrid loss
  score_sde_ml   configs/sde_digits.py     VP SDE, likelihood weighting lambda = g^2
                                           (Song et al. 2021, "maximum likelihood training")
  vdm            configs/vdm_digits.py     learned schedule, continuous-time VLB (Kingma et al.)
  flow_matching  configs/flow_matching_digits.py

Two numbers per run: bits/dim by the probability-flow ODE (uniformly dequantized, score_sde's
convention; `diffjax.evaluation.bpd`) and by the method's own variational bound where it has one
(DDPM, iDDPM and VDM), each with its standard error over test digits, the ODE's NFE and the
wall times. Next to them, three references on the same test digits that use no diffusion:
uniform over the 17 grey levels (log2 17 bits), independent per-pixel histograms of the
training digits (a discrete model: it pays no dequantization gap) and a full-covariance
Gaussian mixture of 10 components fitted to 5 dequantizations of every training digit (scored
on dequantized test digits with the Jacobian of the ODE numbers).

  python experiments/likelihood_benchmark.py --out experiments/results/likelihood_digits.json

writes the JSON and a PNG of bits/dim against training steps beside it. Runs live in
--workdir/<method>_<steps>; a finished run and its bpd.json are reused, so an interrupted
benchmark resumes.
"""

import json
import math
import os
import time

import matplotlib
import numpy as np
from absl import app, flags
from sklearn.mixture import GaussianMixture

from configs import default, flow_matching_digits, iddpm_digits, sde_digits, vdm_digits
from diffjax import data
from diffjax.evaluation import bpd
from diffjax.train import generate, loop

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FLAGS = flags.FLAGS

_GMM_COPIES = 5  # dequantized copies of each training digit the reference GMM is fitted to

# name -> (config module, overrides applied after get_config()); the method's own defaults else.
METHODS = {
    "ddpm": (default, {}),
    "iddpm": (iddpm_digits, {}),
    "score_sde_ml": (sde_digits, {"loss.likelihood_weighting": True}),
    "vdm": (vdm_digits, {}),
    "flow_matching": (flow_matching_digits, {}),
}


def make_config(name: str, steps: int, max_examples: int, dequantizations: int):
    """The method's digits config for a run of `steps` steps that only trains (no Frechet)."""
    module, overrides = METHODS[name]
    config = module.get_config()
    config.training.num_steps = steps
    config.eval.at_end = False  # the benchmark measures likelihood, not samples
    config.eval.bpd_max_examples = max_examples
    # whole batches are evaluated: a batch no larger than the examples asked for
    config.eval.bpd_batch_size = min(config.eval.bpd_batch_size, max_examples)
    config.eval.bpd_num_dequantizations = dequantizations
    for field, value in overrides.items():
        section, key = field.split(".")
        config[section][key] = value
    return config


def run(name: str, steps: int, root: str, max_examples: int, dequantizations: int) -> dict:
    """Train (unless finished before) and evaluate one method at one budget."""
    config = make_config(name, steps, max_examples, dequantizations)
    workdir = os.path.join(root, f"{name}_{steps}")
    timing_path = os.path.join(workdir, "train_seconds.json")
    if not os.path.exists(timing_path):
        started = time.time()
        loop.train(config, workdir)
        with open(timing_path, "w") as f:
            json.dump({"train_seconds": time.time() - started}, f)
    with open(timing_path) as f:
        train_seconds = json.load(f)["train_seconds"]
    report_path = os.path.join(workdir, "bpd.json")
    report = {}
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
    if (report.get("step"), report.get("num_examples")) != (steps, max_examples):
        report = generate.eval_bpd(config, workdir)  # and writes bpd.json
    # "method" names the benchmark's entry; eval_bpd's is the recipe's ("score_sde").
    return {**report, "method": name, "steps": steps, "train_seconds": train_seconds}


def references(
    max_examples: int, dequantizations: int, components: int = 10, seed: int = 0
) -> dict:
    """Bits/dim of models without diffusion on the first `max_examples` test digits."""
    dataset = data.get("digits")
    num_bins = dataset.num_bins
    train_v = np.asarray(bpd.quantize(dataset.as_array("train")["x"], num_bins))
    test_v = np.asarray(bpd.quantize(dataset.as_array("test", max_examples)["x"], num_bins))
    train_v, test_v = train_v.reshape(len(train_v), -1), test_v.reshape(len(test_v), -1)
    dim = train_v.shape[1]

    def stats(bits: np.ndarray) -> dict:
        return {
            "bpd_mean": float(bits.mean()),
            "bpd_stderr": float(bits.std(ddof=1) / len(bits) ** 0.5),
        }

    # Per-pixel histograms with add-1/2 (Krichevsky-Trofimov) counts: no zero probabilities.
    counts = np.stack([np.bincount(train_v[:, d], minlength=num_bins) for d in range(dim)])
    probs = (counts + 0.5) / (counts.sum(1, keepdims=True) + 0.5 * num_bins)
    histogram = -np.log2(probs[np.arange(dim), test_v]).sum(1) / dim

    rng = np.random.default_rng(seed)

    def dequantized(v: np.ndarray, copies: int = 1) -> np.ndarray:
        v = np.concatenate([v] * copies)
        return 2.0 * (v + rng.uniform(size=v.shape)) / num_bins - 1.0

    def gmm_bits(gmm: GaussianMixture, v: np.ndarray) -> np.ndarray:
        nll = np.mean([-gmm.score_samples(dequantized(v)) for _ in range(dequantizations)], 0)
        return np.asarray(bpd.bits_per_dim(nll, dim, num_bins))

    # Several dequantizations of every training digit: the model is of the dequantized density.
    gmm = GaussianMixture(components, covariance_type="full", random_state=seed)
    gmm.fit(dequantized(train_v, _GMM_COPIES))
    return {
        "uniform": {"bpd_mean": math.log2(num_bins), "bpd_stderr": 0.0},
        "pixel_histogram": stats(histogram),
        "gmm": {"components": components, **stats(gmm_bits(gmm, test_v))},
    }


def plot(results: list[dict], refs: dict, path: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, name in enumerate(sorted({r["method"] for r in results})):
        rows = sorted((r for r in results if r["method"] == name), key=lambda r: r["steps"])
        steps = [r["steps"] for r in rows]
        color = f"C{i}"
        ax.errorbar(
            steps,
            [r["bpd_mean"] for r in rows],
            [r["bpd_stderr"] for r in rows],
            color=color,
            marker="o",
            label=f"{name} ODE",
        )
        if "vlb_bpd_mean" in rows[0]:
            ax.errorbar(
                steps,
                [r["vlb_bpd_mean"] for r in rows],
                [r["vlb_bpd_stderr"] for r in rows],
                color=color,
                marker="s",
                linestyle="--",
                label=f"{name} VLB",
            )
    for j, (name, ref) in enumerate(refs.items()):
        ax.axhline(ref["bpd_mean"], color="gray", linestyle=":", alpha=0.4 + 0.2 * j)
        ax.annotate(name, (ax.get_xlim()[0], ref["bpd_mean"]), fontsize=7, color="gray")
    ax.set(
        xscale="log",
        xlabel="training steps",
        ylabel="test bits/dim (lower is better)",
        title="Likelihood on digits: probability-flow ODE (solid) and own VLB (dashed)",
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    names = FLAGS.methods or list(METHODS)
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise app.UsageError(f"unknown methods {unknown}; valid: {sorted(METHODS)}")
    budgets = sorted(int(b) for b in FLAGS.budgets)
    refs = references(FLAGS.max_examples, FLAGS.dequantizations, FLAGS.gmm_components)
    results = [
        run(name, steps, FLAGS.workdir, FLAGS.max_examples, FLAGS.dequantizations)
        for steps in budgets
        for name in names
    ]
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump({"references": refs, "results": results}, f, indent=1)
    plot(results, refs, os.path.splitext(FLAGS.out)[0] + ".png")
    for r in results:
        vlb = f"  VLB {r['vlb_bpd_mean']:.3f}" if "vlb_bpd_mean" in r else ""
        print(f"{r['method']:>14} {r['steps']:>6}: ODE {r['bpd_mean']:.3f}{vlb}")


def _define_flags() -> None:
    # Defined only when run as a script: tests import this module next to other
    # modules (diffjax.main, other experiments) that define flags of the same names.
    flags.DEFINE_string("out", "experiments/results/likelihood_digits.json", "JSON output.")
    flags.DEFINE_string("workdir", "/tmp/diffjax_likelihood_digits", "Where runs live.")
    flags.DEFINE_list("budgets", ["2000", "10000", "30000"], "Training steps per run.")
    flags.DEFINE_list("methods", None, "Subset of METHODS to run (default: all).")
    flags.DEFINE_integer("max_examples", 100, "Test digits evaluated.")
    flags.DEFINE_integer("dequantizations", 5, "Dequantizations per digit.")
    flags.DEFINE_integer("gmm_components", 10, "Components of the reference GMM.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
