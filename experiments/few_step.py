"""Few-step generation on 2-D two moons: sample quality against the number of network calls,
every model trained through the CLI path (`diffjax.train`: `mode=train`, `distill`, `reflow`)
with its config in `configs/`:

  flow_matching_toy2d             flow matching (= the 1-rectified flow), teacher of the others
  ot_cfm_toy2d                    OT-CFM (exact minibatch OT coupling)
  reflow_toy2d                    the 2-rectified flow (one reflow round from flow matching)
  consistency_toy2d               consistency training (iCT)
  consistency_distillation_toy2d  consistency distillation from flow matching (Heun steps)
  progressive_distillation_toy2d  teacher 32 DDIM steps -> 16 -> 8 -> 4 -> 2 -> 1
  meanflow_toy2d                  MeanFlow

Each model samples with its method's sampler at NFE in {1, 2, 4, 8, 16} (Euler for the flows,
multistep consistency sampling, MeanFlow's sampler; each distilled student at its own step
count) and is scored with the offline Frechet distance to the test split
(`diffjax.evaluation.sample_quality`) and, because a Frechet distance of 2-D points only compares
means and covariances, the sliced Wasserstein-1 distance (mean over 64 random directions of the
exact 1-D W1). The straightness and transport cost of the flow-matching and reflowed flows (seed
002, reflow table) come from `reflow.json`.

  python experiments/few_step.py --out experiments/results/few_step.json --steps 3000

writes the JSON and a PNG of both metrics against NFE beside it; the runs stay in --workdir
(rerunning resumes or reuses them).
"""

import importlib
import json
import os
import time

import jax
import matplotlib
import numpy as np
from absl import app, flags, logging

from diffjax.evaluation.sliced import sliced_w1
from diffjax.train import distill, experiment, loop, outputs, reflow, runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUT = flags.DEFINE_string("out", "experiments/results/few_step.json", "JSON output path.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/diffjax_few_step", "Where the runs live.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps per model (per round for PD: 1/3).")
_SAMPLES = flags.DEFINE_integer("num_samples", 4000, "Samples per evaluation.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every run and of the evaluation.")

NFES = (1, 2, 4, 8, 16)
SINGLE_RUNS = {
    "flow_matching": "flow_matching_toy2d",
    "ot_cfm": "ot_cfm_toy2d",
    "consistency_training": "consistency_toy2d",
    "consistency_distillation": "consistency_distillation_toy2d",
    "meanflow": "meanflow_toy2d",
}


def _config(name: str, **updates):
    config = importlib.import_module(f"configs.{name}").get_config()
    updates = {"seed": _SEED.value, "training.num_steps": _STEPS.value, **updates}
    if config.method == "consistency":
        updates["loss.total_steps"] = _STEPS.value
    return runs.derive(config, **updates)


def main(argv):
    del argv
    started = time.time()
    root = _WORKDIR.value
    eval_key = jax.random.PRNGKey(_SEED.value + 1)
    workdirs = {name: os.path.join(root, name) for name in SINGLE_RUNS}
    fm_dir = workdirs["flow_matching"]
    for name, config_name in SINGLE_RUNS.items():
        teacher = fm_dir if name == "consistency_distillation" else ""
        loop.train(_config(config_name, **{"teacher.workdir": teacher}), workdirs[name])
    reflow_report = reflow.reflow(
        _config("reflow_toy2d", **{"teacher.workdir": fm_dir, "reflow.rounds": 1}),
        os.path.join(root, "reflow"),
    )
    workdirs["rectified_flow_2"] = os.path.join(root, "reflow", "round_1")
    pd_config = _config(
        "progressive_distillation_toy2d",
        **{"teacher.workdir": fm_dir, "training.num_steps": max(_STEPS.value // 3, 1)},
    )
    pd_report = distill.distill(pd_config, os.path.join(root, "progressive_distillation"))

    exp = experiment.build(_config("flow_matching_toy2d"))
    quality = outputs.quality_ruler(exp, os.path.join(root, "flow_matching"))
    test_x = exp.dataset.as_array("test")["x"]
    train_x = exp.dataset.as_array("train")["x"]
    n = _SAMPLES.value

    def score(x) -> dict:
        x = np.asarray(x)
        return {"frechet": quality.frechet(x), "sliced_w1": sliced_w1(x, test_x, eval_key)}

    curves = {}
    for name, workdir in workdirs.items():
        run_config = runs.load_config(workdir)
        _, state = runs.restore_latest(run_config, workdir)
        for nfe in NFES:
            sampler = run_config.sample.sampler
            if name in ("flow_matching", "ot_cfm", "rectified_flow_2"):
                sampler = "euler"
            cfg = runs.derive(run_config, **{"sample.sampler": sampler, "sample.num_steps": nfe})
            run_exp = experiment.build(cfg)
            x = jax.jit(lambda p, e=run_exp: e.sample(p, eval_key, n))(state.ema_params)
            curves.setdefault(name, []).append({"nfe": nfe, **score(x)})
            logging.info("%s NFE %d: %s", name, nfe, curves[name][-1])
    for r in sorted(pd_report["rounds"], key=lambda r: r["nfe"]):
        run_config = runs.load_config(r["workdir"])
        run_exp, state = runs.restore_latest(run_config, r["workdir"])
        x = jax.jit(lambda p, e=run_exp: e.sample(p, eval_key, n))(state.ema_params)
        curves.setdefault("progressive_distillation", []).append({"nfe": r["nfe"], **score(x)})

    paths = {f"round_{r['round']}": r for r in reflow_report["rounds"]}
    results = {
        "config": {"steps": _STEPS.value, "num_samples": n, "nfe": NFES, "workdir": root},
        "flow_matching_paths": {k: paths["round_0"][k] for k in ("straightness", "transport_cost")},
        "rectified_flow_2_paths": {
            k: paths["round_1"][k] for k in ("straightness", "transport_cost")
        },
        "curves": curves,
        "floor_train_vs_test": quality.report(train_x[:n])["frechet"],
        "floor_sliced_w1": sliced_w1(train_x[:n], test_x, eval_key),
        "seconds": time.time() - started,
    }
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(results, f, indent=2)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("frechet", "sliced_w1"), strict=True):
        for name, entries in curves.items():
            ax.plot([e["nfe"] for e in entries], [e[metric] for e in entries], "o-", label=name)
        floor = results["floor_train_vs_test" if metric == "frechet" else "floor_sliced_w1"]
        ax.axhline(floor, color="k", ls=":", label="train vs test")
        ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel=metric, xticks=NFES)
        ax.set_xticklabels([str(v) for v in NFES])
    axes[1].legend(fontsize=7)
    fig.suptitle(f"two moons, {_STEPS.value} training steps per model (CLI runs)")
    fig.tight_layout()
    fig.savefig(os.path.splitext(_OUT.value)[0] + ".png", dpi=120)
    print(json.dumps(results["curves"], indent=1))


if __name__ == "__main__":
    app.run(main)
