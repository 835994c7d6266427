"""`mode=distill`: progressive distillation from a trained teacher down to a few steps.

Seed 004, "Progressive Distillation" (Algorithm 2), Salimans & Ho 2022: round r trains a student
of N_r DDIM steps, initialised from its teacher, to match two teacher steps with one; the student
becomes the next teacher and N halves, from `distill.start_steps` (the first teacher samples
with twice as many) down to `distill.end_steps`. Each round is a complete `mode=train` run in
`<workdir>/student_<N>` (resumable like any run: rerunning the command skips finished rounds'
training and continues an interrupted one), with `training.num_steps` steps. After every halving
the student's samples at its own step count are scored with the offline Frechet distance;
`<workdir>/distill.json` and `distill.png` hold the sample quality against the step count,
the teacher's included.
"""

import os

import jax
import ml_collections
import numpy as np

from diffjax.evaluation import plots
from diffjax.train import experiment, loop, outputs, runs, settings


def _teacher_quality(exp: experiment.Experiment, workdir: str, num_steps: int) -> dict:
    """The first teacher's sample quality with `num_steps` DDIM steps (its own sampler off),
    scored on as many samples as the students."""
    teacher_exp, state = runs.restore_latest(
        runs.load_config(exp.teacher.workdir), exp.teacher.workdir
    )
    teacher_exp = teacher_exp.with_sampling(
        sampler="ddim", num_steps=num_steps, options={"eta": 0.0}
    )
    return outputs.evaluate_sample_quality(
        teacher_exp, state, os.path.join(workdir, "teacher_eval"), exp.eval.num_samples
    )


def distill(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every round of progressive distillation; returns and writes distill.json.

    Raises:
      ConfigError: (a ValueError) if the method's Recipe does not run in this mode
        (`chain_modes`), if no teacher is named, or for bad `config.distill` values.
    """
    exp = experiment.build(config)
    with settings.naming("mode"):
        runs.check_chain_mode(exp, "distill", "a trained run to distil")
    student_steps = settings.read(settings.DistillConfig, config.distill).student_steps
    teacher_report = _teacher_quality(exp, workdir, 2 * student_steps[0])
    rounds = []
    teacher_workdir = exp.teacher.workdir
    teacher_prediction = exp.recipe.teacher_prediction
    for n in student_steps:
        round_dir = os.path.join(workdir, f"student_{n:04d}")
        loop.train(runs.round_config(config, teacher_workdir, n, teacher_prediction), round_dir)
        report = outputs.read_json(os.path.join(round_dir, "metrics.json"))
        rounds.append({"student_steps": n, "nfe": n, "workdir": round_dir, **report})
        # Each student teaches the next round, whose teacher then predicts what this one does.
        teacher_workdir, teacher_prediction = round_dir, exp.recipe.prediction
    teacher = {"nfe": 2 * student_steps[0], "workdir": exp.teacher.workdir}
    result = {"teacher": {**teacher, **teacher_report}, "rounds": rounds}
    if jax.process_index() == 0:
        outputs.write_json(os.path.join(workdir, "distill.json"), result)
        nfes = [2 * student_steps[0]] + [r["nfe"] for r in rounds]
        values = [teacher_report["frechet"]] + [r["frechet"] for r in rounds]
        plots.save_quality_vs_nfe(
            os.path.join(workdir, "distill.png"),
            {"teacher, then each student (DDIM)": (nfes, values)},
            floor=float(np.mean([r["frechet_floor_train_vs_test"] for r in rounds])),
            title="progressive distillation",
        )
    return result
