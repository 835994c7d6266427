"""`mode=distill` from the command line: every halving is a run whose teacher is the previous
one, the report holds the teacher and each student, and a rerun resumes instead of retraining."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import progressive_distillation_toy2d
from diffjax.train import distill, loop, runs
from tests.train import toy_runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _distill(workdir, teacher_dir, data_dir):
    cmd = [
        sys.executable,
        "-m",
        "diffjax.main",
        f"--config={ROOT}/configs/progressive_distillation_toy2d.py",
        f"--workdir={workdir}",
        f"--config.teacher.workdir={teacher_dir}",
        "--config.distill.start_steps=2",
        "--config.model.kwargs.features=32",
        "--config.model.kwargs.num_blocks=1",
        "--config.training.num_steps=10",
        "--config.training.batch_size=64",
        "--config.training.checkpoint_every=10",
        "--config.optim.ema_decay=0.9",
        "--config.sample.num_samples=16",
        "--config.eval.num_samples=200",
    ]
    env = {**os.environ, "TFDS_DATA_DIR": data_dir, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_distill_halves_from_the_teacher_and_resumes(tmp_path):
    data = str(tmp_path / "data")
    teacher_dir = str(tmp_path / "teacher")
    teacher = toy_runs.flow_matching(data)
    teacher.data.kwargs = {"distribution": "moons"}  # the CLI run reads data from TFDS_DATA_DIR
    os.environ["TFDS_DATA_DIR"] = data
    try:
        loop.train(teacher, teacher_dir)
    finally:
        del os.environ["TFDS_DATA_DIR"]
    workdir = tmp_path / "pd"
    _distill(workdir, teacher_dir, data)

    report = json.loads((workdir / "distill.json").read_text())
    assert report["teacher"]["nfe"] == 4 and report["teacher"]["workdir"] == teacher_dir
    assert [r["student_steps"] for r in report["rounds"]] == [2, 1]
    assert all(0 < r["frechet"] < r["frechet_ceiling_noise"] for r in report["rounds"])
    assert (workdir / "distill.png").exists()
    first, second = (str(workdir / f"student_{n:04d}") for n in (2, 1))
    assert runs.load_config(first).teacher.workdir == teacher_dir
    assert runs.load_config(second).teacher.workdir == first
    assert runs.load_config(second).loss.student_steps == 1

    # The second student's teacher is the first student's EMA network.
    _, first_state = runs.restore_latest(runs.load_config(first), first)
    _, second_state = runs.restore_latest(runs.load_config(second), second)
    for got, want in zip(
        jax.tree.leaves(second_state.frozen["teacher"]),
        jax.tree.leaves(first_state.ema_params["model"]),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)

    # A rerun finds every round finished: no step is trained again.
    history = (workdir / "student_0001" / "history.jsonl").read_text()
    _distill(workdir, teacher_dir, data)
    assert (workdir / "student_0001" / "history.jsonl").read_text() == history
    rerun = json.loads((workdir / "distill.json").read_text())
    assert [r["step"] for r in rerun["rounds"]] == [10, 10]


def test_distill_asks_the_recipe_for_its_chain_modes(tmp_path):
    config = toy_runs.tiny(progressive_distillation_toy2d.get_config(), str(tmp_path / "data"))
    config.teacher.workdir = str(tmp_path / "teacher")
    config.method = "flow_matching"
    config.loss = {"prediction": "velocity"}
    with pytest.raises(
        ValueError,
        match=r"mode=distill needs a method whose Recipe supports it \(chain_modes\); "
        "method 'flow_matching' does not",
    ):
        distill.distill(config, str(tmp_path / "pd"))
