"""Sample quality against the number of network evaluations (NFE) for every sampler.

Trains the default digits model (`configs/default.py`: DDPM, eps prediction, ddpm_linear with
T = 1000, small UNet) in --workdir, or loads it when the workdir already holds the finished run,
then draws --num_samples samples with each sampler at several NFE budgets (the largest step count
whose NFE fits the budget; dopri5 at several tolerances, its NFE measured) from the same noise,
with the trainer's sampling path (EMA params, x0 clipped to [-1, 1]), and records the offline
Frechet distance to the test split (`diffjax.evaluation.sample_quality`) next to its floor (real
train vs test) and ceiling (noise vs test).

  PYTHONPATH=. python experiments/sampler_nfe_sweep.py \
      --out experiments/results/sampler_nfe_sweep.json

writes the JSON and a PNG of Frechet distance against NFE (log axis) beside it.
"""

import json
import os
import sys
import time

import jax
import matplotlib
import numpy as np
from absl import app, flags, logging

from configs import default
from diffjax import denoisers, samplers
from diffjax.evaluation.sample_quality import SampleQuality
from diffjax.train import loop, runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string(
    "out", "experiments/results/sampler_nfe_sweep.json", "JSON output path; the PNG goes beside."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", "/tmp/diffjax_sampler_sweep", "Training workdir (reused when already trained)."
)
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3000, "Training steps of the default model.")
_SAMPLES = flags.DEFINE_integer("num_samples", 500, "Samples per (sampler, NFE) point.")
_NFES = flags.DEFINE_list("nfes", ["10", "20", "50", "100", "200"], "NFE budgets.")
_TOLERANCES = flags.DEFINE_list("tolerances", ["1e-1", "1e-2", "1e-3"], "dopri5 rtol = atol.")

# (label, registered name, options): the curves of the plot.
SWEEP = (
    ("ddpm", "ddpm", {}),
    ("ddim", "ddim", {}),
    ("euler_maruyama", "euler_maruyama", {}),
    ("predictor_corrector", "predictor_corrector", {"snr": 0.01}),
    ("annealed_langevin", "annealed_langevin", {"steps_per_level": 5}),
    ("euler", "euler", {}),
    ("heun", "heun", {}),
    ("rk4", "rk4", {}),
    ("dpm_solver-2", "dpm_solver", {"order": 2}),
    ("dpm_solver-3", "dpm_solver", {"order": 3}),
    ("dpm_solver_pp-2M", "dpm_solver_pp", {"order": 2}),
    ("dpm_solver_pp-3M", "dpm_solver_pp", {"order": 3}),
    ("edm_heun", "edm_heun", {}),
)


def steps_for_budget(sampler: samplers.Sampler, budget: int) -> int | None:
    """The largest step count whose NFE fits `budget` (None if one step is already over)."""
    if sampler.nfe(1) > budget:
        return None
    n = 1
    while sampler.nfe(n + 1) <= budget:
        n += 1
    return n


def main(argv):
    del argv
    config = default.get_config()
    config.training.num_steps = _TRAIN_STEPS.value
    config.training.sample_every = 0
    config.eval.at_end = False
    workdir = _WORKDIR.value
    start = time.perf_counter()
    loop.train(config, workdir)  # returns at once when the workdir holds the finished run
    train_seconds = time.perf_counter() - start
    exp, state = runs.restore_latest(config, workdir)
    params = state.ema_params

    train, test = exp.dataset.as_array("train"), exp.dataset.as_array("test")
    key = jax.random.PRNGKey(config.seed)
    quality = SampleQuality.fit(
        os.path.join(workdir, "eval_features"),
        train["x"],
        train["label"],
        test["x"],
        key,
        test_y=test["label"],
    )
    process = exp.recipe.process_for(params)
    denoiser = denoisers.clip_x0(exp.recipe.denoiser(exp.apply_fn, params))
    init_key, sample_key = jax.random.split(jax.random.fold_in(key, 1))
    x_init = process.prior_sample(init_key, (_SAMPLES.value, *exp.dataset.shape))

    def run(sampler, **call):
        fn = jax.jit(lambda k, x: sampler(k, denoiser, x, **call))
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(sample_key, x_init))
        return out, time.perf_counter() - t0

    results = []
    for label, name, options in SWEEP:
        sampler = samplers.get(name, **options)
        for budget in sorted({int(b) for b in _NFES.value}):
            num_steps = steps_for_budget(sampler, budget)
            if num_steps is None:
                continue
            x, seconds = run(sampler, num_steps=num_steps)
            results.append(
                {
                    "sampler": label,
                    "name": name,
                    "options": options,
                    "num_steps": num_steps,
                    "nfe": sampler.nfe(num_steps),
                    "frechet": quality.frechet(np.asarray(x)),
                    "seconds_with_compile": seconds,
                }
            )
            logging.info("%s", results[-1])
    for tol in sorted({float(t) for t in _TOLERANCES.value}, reverse=True):
        sampler = samplers.get("dopri5", rtol=tol, atol=tol)
        (x, stats), seconds = run(sampler, return_stats=True)
        results.append(
            {
                "sampler": "dopri5",
                "name": "dopri5",
                "options": {"rtol": tol, "atol": tol},
                "num_steps": int(stats["num_steps"]),
                "nfe": int(stats["nfe"]),
                "frechet": quality.frechet(np.asarray(x)),
                "seconds_with_compile": seconds,
            }
        )
        logging.info("%s", results[-1])

    reference = quality.report(np.asarray(x_init))  # floor and ceiling at this sample size
    payload = {
        "command": " ".join(sys.argv),
        "config": "configs/default.py",
        "train_steps": config.training.num_steps,
        "train_seconds_this_run": train_seconds,
        "num_samples": _SAMPLES.value,
        "frechet_floor_train_vs_test": reference["frechet_floor_train_vs_test"],
        "frechet_ceiling_noise": reference["frechet_ceiling_noise"],
        "classifier_test_accuracy": reference["classifier_test_accuracy"],
        "results": results,
    }
    out = _OUT.value
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(payload, f, indent=2)
    plot(payload, os.path.splitext(out)[0] + ".png")
    logging.info("wrote %s", out)


def plot(payload: dict, path: str) -> None:
    """Frechet distance against NFE, one curve per sampler, with the floor as a dashed line."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    labels = dict.fromkeys(r["sampler"] for r in payload["results"])
    markers = "os^vD<>ph*Xd8P"
    for i, label in enumerate(labels):
        rows = sorted(
            (r for r in payload["results"] if r["sampler"] == label), key=lambda r: r["nfe"]
        )
        ax.plot(
            [r["nfe"] for r in rows],
            [r["frechet"] for r in rows],
            marker=markers[i % len(markers)],
            label=label,
        )
    ax.axhline(payload["frechet_floor_train_vs_test"], color="k", ls="--", label="floor (train)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel("Frechet distance to test (offline features)")
    ax.set_title(
        f"default digits model ({payload['train_steps']} training steps), "
        f"{payload['num_samples']} samples per point"
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    app.run(main)
