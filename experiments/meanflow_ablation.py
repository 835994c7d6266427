"""MeanFlow on two moons, one factor at a time: what one-step generation needs.

Every run is `configs/meanflow_toy2d.py` at the paper's settings (`PAPER_SETTINGS`, its defaults
before this ablation) trained through the CLI path (`diffjax.train.loop`) at the iCT budget of
experiments/few_step.py (3000 steps) with one factor changed:

  time_distribution  the logit-normal (mean, std) of each draw of (r, t), or uniform
  r_neq_t            the fraction of examples with r != t (1 - loss.equal_fraction)
  adaptive_power     p of the adaptive weight 1 / (||D||^2 + c)^p
  network_times      what the network is fed: (t, t - r) (the paper's) or (r, t)
  time_scale         the network sees time_scale x those times (its embedding's frequencies)
  optim              learning rate
  budget             training steps (--budgets, default 10k and 30k)

then "combined": forward selection from the best single change (each next-best factor's value
kept only if it helps); its result is "selected", the defaults of configs/meanflow_toy2d.py.
Each run is scored as few_step.py scores it: 4000 samples of the EMA parameters from the
method's sampler at 1 and 2 NFE (the selected run and the paper's settings at few_step's 1 to
16), the sliced W1
(`diffjax.evaluation.sliced`) to the test split with the evaluation key PRNGKey(seed + 1).

  python experiments/meanflow_ablation.py --out experiments/results/meanflow_ablation.json

writes the JSON and a PNG (1-NFE and 2-NFE sliced W1 per factor) beside it. Runs stay in
--workdir, and rerunning reuses finished ones; `--factors` trains and reports a subset (so two
processes can train disjoint factors, and a last full run collects them).
"""

import hashlib
import json
import os
import time

import jax
import matplotlib
import numpy as np
from absl import app, flags, logging

from configs import meanflow_toy2d
from diffjax.errors import WorkdirError
from diffjax.evaluation.sliced import sliced_w1
from diffjax.methods import meanflow
from diffjax.train import experiment, loop, runs, workdirs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FLAGS = flags.FLAGS


NFES = (1, 2)
ROW_NFES = (1, 2, 4, 8, 16)  # few_step.py's, for the README row of the selected run
# The point every factor moves from: the paper's ImageNet settings (Geng et al. 2025, table 1),
# which were this config's defaults before the ablation, with the flow-matching toy's optimizer.
PAPER_SETTINGS = {
    "loss.time_distribution": "logit_normal",
    "loss.time_distribution_kwargs": dict(meanflow.PAPER_TIME_DISTRIBUTION),
    "loss.equal_fraction": 0.75,
    "loss.adaptive_power": 1.0,
    "loss.network_times": "t_gap",
    "loss.time_scale": 1.0,
    "optim.learning_rate": 1e-3,
    "training.batch_size": 256,
}
# The factors as {label: dotted config overrides}; every factor's first entry is the baseline.
BASELINE = "baseline"
FACTORS = {
    "time_distribution": {
        BASELINE: {},  # logit-normal (-0.4, 1.0), the paper's ImageNet choice
        "logit_normal(0, 1)": {"loss.time_distribution_kwargs": {"mean": 0.0, "std": 1.0}},
        "logit_normal(0, 2)": {"loss.time_distribution_kwargs": {"mean": 0.0, "std": 2.0}},
        "uniform": {"loss.time_distribution": "uniform", "loss.time_distribution_kwargs": {}},
    },
    "r_neq_t": {
        BASELINE: {},  # 0.25
        "0.5": {"loss.equal_fraction": 0.5},
        "0.75": {"loss.equal_fraction": 0.25},
        "1.0": {"loss.equal_fraction": 0.0},
    },
    "adaptive_power": {
        BASELINE: {},  # p = 1
        "0.5": {"loss.adaptive_power": 0.5},
        "0": {"loss.adaptive_power": 0.0},
    },
    "network_times": {
        BASELINE: {},  # (t, t - r)
        "(r, t)": {"loss.network_times": "r_t"},
    },
    "time_scale": {
        BASELINE: {},  # 1: the MLP's sinusoidal embedding of 1000 t
        "0.01": {"loss.time_scale": 0.01},
        "0.001": {"loss.time_scale": 0.001},
        "0.0001": {"loss.time_scale": 0.0001},
    },
    "optim": {
        BASELINE: {},  # lr 1e-3, batch 256
        "lr 3e-3": {"optim.learning_rate": 3e-3},
        "lr 3e-4": {"optim.learning_rate": 3e-4},
    },
    "budget": {BASELINE: {}},  # --steps; the longer ones come from --budgets
}
COMBINED = "combined"  # the factors' best values together (`_combine`)


def _config(overrides: dict):
    base = {"seed": FLAGS.seed, "training.num_steps": FLAGS.steps, **PAPER_SETTINGS}
    return runs.derive(meanflow_toy2d.get_config(), **{**base, **overrides})


def _run_name(factor: str, label: str) -> str:
    if label == BASELINE:
        return BASELINE
    return f"{factor}_{''.join(c if c.isalnum() or c == '.' else '_' for c in label)}"


def _combined_name(overrides: dict) -> str:
    """A combined run's workdir name, one per set of overrides."""
    digest = hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()
    return f"{COMBINED}_{digest[:8]}"


def _train_and_score(name: str, overrides: dict, test_x: np.ndarray, nfes=NFES) -> dict:
    """Trains one run (or reuses a finished one) and scores its samples at each of `nfes`;
    train_seconds is None for a reused run."""
    workdir, config = os.path.join(FLAGS.workdir, name), _config(overrides)
    if os.path.exists(os.path.join(workdir, runs.CONFIG_FILE)):  # loop.train would resume it
        diff = workdirs.changes(runs.load_config(workdir).to_dict(), config.to_dict())
        if diff:
            raise WorkdirError(f"{workdir} holds a run of another config ({diff}): new --workdir")
    try:  # a finished run is only restored: loop.train would build and compile it first
        _, state = runs.restore_latest(config, workdir)
    except WorkdirError:
        state = None
    seconds = None
    if state is None or int(state.step) < config.training.num_steps:
        started = time.time()
        state = loop.train(config, workdir)
        seconds = time.time() - started
    eval_key = jax.random.PRNGKey(FLAGS.seed + 1)
    with open(os.path.join(workdir, "history.jsonl")) as f:  # `diffjax.train.writer`'s
        last = json.loads(f.readlines()[-1])
    # ||u_theta - u_tgt||^2 at the last logged step: how noisy the regression target is.
    entry = {"overrides": overrides, "train_seconds": seconds}
    entry["squared_error"] = last["squared_error"]
    for nfe in nfes:
        run_exp = experiment.build(runs.derive(config, **{"sample.num_steps": nfe}))
        x = jax.jit(lambda p, e=run_exp: e.sample(p, eval_key, FLAGS.num_samples))(state.ema_params)
        entry[f"sliced_w1_nfe{nfe}"] = sliced_w1(np.asarray(x), test_x, eval_key)
    logging.info("%s: %s", name, entry)
    return entry


def _budgets() -> dict:
    """The budget factor's entries beyond the baseline, {"10k": {"training.num_steps": ...}}."""
    return {f"{int(n) // 1000}k": {"training.num_steps": int(n)} for n in FLAGS.budgets}


def _best_per_factor(results: dict) -> list[tuple[str, dict]]:
    """("factor=label", entry) of the best value of every factor in `results` but the budget,
    where it beats the factor's baseline; best first."""
    picks = []
    for factor, entries in results.items():
        label = min(entries, key=lambda k: entries[k]["sliced_w1_nfe1"])
        if factor != "budget" and label != BASELINE:
            picks.append((f"{factor}={label}", entries[label]))
    return sorted(picks, key=lambda pick: pick[1]["sliced_w1_nfe1"])


def _combine(results: dict, test_x: np.ndarray) -> tuple[dict, dict]:
    """Forward selection: from the best single change, add each next-best factor's value and
    keep it only if the 1-NFE sliced W1 drops.

    Returns:
      ({label: entry} of the runs, the overrides of the best of them).
    """
    (label, best), *rest = _best_per_factor(results)
    runs_ = {f"+{label}": best}
    for label, entry in rest:
        trial = {**best["overrides"], **entry["overrides"]}
        runs_[f"+{label}"] = _train_and_score(_combined_name(trial), trial, test_x)
        if runs_[f"+{label}"]["sliced_w1_nfe1"] < best["sliced_w1_nfe1"]:
            best = runs_[f"+{label}"]
    return runs_, best["overrides"]


def _plot(results: dict, path: str) -> None:
    factors = list(results)
    fig, axes = plt.subplots(1, len(factors), figsize=(3.2 * len(factors), 3.6), sharey=True)
    for ax, factor in zip(np.atleast_1d(axes), factors, strict=True):
        labels = list(results[factor])
        pos = np.arange(len(labels))
        for i, nfe in enumerate(NFES):
            values = [results[factor][k][f"sliced_w1_nfe{nfe}"] for k in labels]
            ax.bar(pos + 0.4 * (i - 0.5), values, width=0.4, label=f"{nfe} NFE")
        ax.axhline(0.05, color="k", ls=":", lw=1)  # the target of issue 18
        ax.set_xticks(pos, labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(factor, fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("sliced W1 to the test split")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(f"MeanFlow on two moons, {FLAGS.steps} steps unless 'budget' (dotted: 0.05)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv):
    del argv
    started = time.time()
    unknown = sorted(set(FLAGS.factors) - set(FACTORS) - {COMBINED})
    if unknown:
        raise ValueError(f"unknown --factors {unknown}; valid: {', '.join([*FACTORS, COMBINED])}")
    chosen = FLAGS.factors or [*FACTORS, COMBINED]
    factors = {**FACTORS, "budget": {**FACTORS["budget"], **_budgets()}}
    test_x = experiment.build(_config({})).dataset.as_array("test")["x"]
    results = {}
    for factor in (f for f in factors if f in chosen):
        results[factor] = {
            label: _train_and_score(_run_name(factor, label), overrides, test_x)
            for label, overrides in factors[factor].items()
        }
    selected = None
    if COMBINED in chosen:
        combined, best = _combine(results, test_x)
        results[COMBINED] = {BASELINE: results[next(iter(results))][BASELINE], **combined}
        # The chosen settings (configs/meanflow_toy2d.py's) and the paper's, at few_step's NFE.
        singles = [_run_name(f, k) for f in factors for k, o in factors[f].items() if o == best]
        name = singles[0] if singles else _combined_name(best)
        selected = {
            "overrides": best,
            "paper": _train_and_score(BASELINE, {}, test_x, ROW_NFES),
            "chosen": _train_and_score(name, best, test_x, ROW_NFES),
        }
    output = {
        "config": {"steps": FLAGS.steps, "num_samples": FLAGS.num_samples, "seed": FLAGS.seed},
        "paper_settings": PAPER_SETTINGS,
        "results": results,
        "selected": selected,
        "floor_sliced_w1": sliced_w1(
            experiment.build(_config({})).dataset.as_array("train")["x"][: FLAGS.num_samples],
            test_x,
            jax.random.PRNGKey(FLAGS.seed + 1),
        ),
        "seconds": time.time() - started,
    }
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(output, f, indent=2)
    _plot(results, os.path.splitext(FLAGS.out)[0] + ".png")
    print(json.dumps(results, indent=1))


def _define_flags() -> None:
    # Defined only when run as a script: tests import this module next to other
    # modules (diffjax.main, other experiments) that define flags of the same names.
    flags.DEFINE_string("out", "experiments/results/meanflow_ablation.json", "JSON path.")
    flags.DEFINE_string("workdir", "/tmp/diffjax_meanflow_ablation", "Where runs live.")
    flags.DEFINE_integer("steps", 3000, "Training steps of every run but the budget ones.")
    flags.DEFINE_integer("num_samples", 4000, "Samples per evaluation (few_step's).")
    flags.DEFINE_integer("seed", 0, "Seed of every run and of the evaluation.")
    flags.DEFINE_list("factors", [], "Factors to run (default: all, then combined).")
    flags.DEFINE_list("budgets", ["10000", "30000"], "Training steps of factor budget.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
