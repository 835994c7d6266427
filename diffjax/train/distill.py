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
from diffjax.train import loop, outputs, runs


def _check(config: ml_collections.ConfigDict) -> list[int]:
    """The students' step counts, halving from start_steps to end_steps."""
    if config.method != "progressive_distillation":
        raise ValueError(
            f"mode=distill needs method='progressive_distillation', got {config.method!r}"
        )
    if not config.teacher.workdir:
        raise ValueError("mode=distill needs --config.teacher.workdir: a trained run to distil")
    start, end = config.distill.start_steps, config.distill.end_steps
    steps = [start]
    while steps[-1] > end and steps[-1] % 2 == 0:
        steps.append(steps[-1] // 2)
    if end < 1 or steps[-1] != end:
        raise ValueError(
            f"distill.start_steps={start} must halve down to distill.end_steps={end} >= 1"
        )
    return steps


def _teacher_quality(config: ml_collections.ConfigDict, workdir: str, num_steps: int) -> dict:
    """The first teacher's sample quality with `num_steps` DDIM steps (its own sampler off)."""
    teacher_config = runs.derive(
        runs.load_config(config.teacher.workdir),
        **{"sample.sampler": "ddim", "sample.num_steps": num_steps, "sample.options": {"eta": 0.0}},
        **{"eval.num_samples": config.eval.num_samples},
    )
    exp, state = runs.restore_latest(teacher_config, config.teacher.workdir)
    return outputs.evaluate_sample_quality(
        teacher_config, exp, state, os.path.join(workdir, "teacher_eval")
    )


def distill(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every round of progressive distillation; returns and writes distill.json."""
    student_steps = _check(config)
    teacher_report = _teacher_quality(config, workdir, 2 * student_steps[0])
    rounds = []
    teacher_workdir = config.teacher.workdir
    teacher_prediction = config.loss.teacher_prediction
    for n in student_steps:
        round_dir = os.path.join(workdir, f"student_{n:04d}")
        round_config = runs.derive(
            config,
            **{
                "mode": "train",
                "teacher.workdir": teacher_workdir,
                "teacher.init_student": True,
                "loss.student_steps": n,
                "loss.teacher_prediction": teacher_prediction,
                "sample.sampler": "",
                "sample.num_steps": n,
                "eval.at_end": True,
            },
        )
        loop.train(round_config, round_dir)
        report = outputs.read_json(os.path.join(round_dir, "metrics.json"))
        rounds.append({"student_steps": n, "nfe": n, "workdir": round_dir, **report})
        teacher_workdir, teacher_prediction = round_dir, config.loss.prediction
    teacher = {"nfe": 2 * student_steps[0], "workdir": config.teacher.workdir}
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
