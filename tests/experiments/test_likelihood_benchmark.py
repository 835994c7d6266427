"""experiments/likelihood_benchmark.py: the references and one tiny run of every method."""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import likelihood_benchmark

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_reference_numbers_of_the_models_without_diffusion():
    refs = likelihood_benchmark.references(max_examples=100, dequantizations=2)
    assert refs["uniform"]["bpd_mean"] == pytest.approx(math.log2(17))
    # The number for independent per-pixel histograms on the same 100 test digits.
    assert refs["pixel_histogram"]["bpd_mean"] == pytest.approx(2.36, abs=0.01)
    # Both beat uniform; the GMM pays the dequantization gap the discrete histogram does not.
    assert refs["pixel_histogram"]["bpd_mean"] < refs["gmm"]["bpd_mean"] < math.log2(17)


def test_configs_train_the_named_method_with_its_overrides():
    config = likelihood_benchmark.make_config("score_sde_ml", 7, 10, 1)
    assert config.method == "score_sde" and config.loss.likelihood_weighting
    assert (config.training.num_steps, config.eval.at_end) == (7, False)
    assert config.eval.bpd_max_examples == 10 and config.eval.bpd_num_dequantizations == 1
    assert config.eval.bpd_batch_size == 10  # so exactly 10 test digits are evaluated
    methods = {
        likelihood_benchmark.make_config(n, 1, 1, 1).method for n in likelihood_benchmark.METHODS
    }
    assert methods == {"ddpm", "iddpm", "score_sde", "vdm", "flow_matching"}


@pytest.mark.slow
def test_every_method_trains_and_is_evaluated_through_the_cli_path(tmp_path):
    out = tmp_path / "likelihood.json"
    command = [
        sys.executable,
        "experiments/likelihood_benchmark.py",
        f"--workdir={tmp_path / 'runs'}",
        f"--out={out}",
        "--budgets=3",
        "--max_examples=10",
        "--dequantizations=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == set(likelihood_benchmark.METHODS)
    for name, row in rows.items():
        assert row["steps"] == 3 and row["num_examples"] == 10, name
        assert np.isfinite(row["bpd_mean"]) and row["nfe"] > 0, name
    # The methods with a variational bound report it (DDPM's, iDDPM's and VDM's).
    assert {n for n, r in rows.items() if "vlb_bpd_mean" in r} == {"ddpm", "iddpm", "vdm"}
    assert (tmp_path / "likelihood.png").exists()
    # A rerun reuses every finished run and its evaluation: nothing is rewritten.
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/bpd.json")}
    assert len(written) == len(likelihood_benchmark.METHODS)
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    assert {p: p.stat().st_mtime_ns for p in written} == written
    assert json.loads(out.read_text())["results"] == report["results"]
