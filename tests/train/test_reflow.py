"""`mode=reflow`: the pairs are the teacher's ODE map, each round trains from the previous flow,
and the report holds straightness, transport cost and sample quality per round."""

import json

import jax
import numpy as np
import pytest

from configs import progressive_distillation_toy2d, reflow_toy2d
from diffjax.methods import rectified_flow
from diffjax.train import loop, reflow, runs
from tests.train import toy_runs


def test_reflow_round_trains_on_the_teachers_ode_pairs(tmp_path):
    data = str(tmp_path / "data")
    teacher_dir = str(tmp_path / "rf1")
    loop.train(toy_runs.flow_matching(data), teacher_dir)
    config = toy_runs.tiny(reflow_toy2d.get_config(), data, steps=20)
    config.teacher.workdir = teacher_dir
    config.reflow.update({"rounds": 1, "num_pairs": 512, "ode_steps": 20, "pair_batch_size": 256})
    config.reflow.eval_nfes = (1, 2)
    workdir = tmp_path / "reflow"
    result = reflow.reflow(config, str(workdir))

    assert json.loads((workdir / "reflow.json").read_text()) == result
    assert (workdir / "reflow.png").exists()
    assert [r["workdir"] for r in result["rounds"]] == [teacher_dir, str(workdir / "round_1")]
    for r in result["rounds"]:
        assert r["straightness"] >= 0 and r["transport_cost"] > 0
        assert set(r["frechet_by_nfe"]) == {"1", "2"}
    round_config = runs.load_config(str(workdir / "round_1"))
    assert round_config.teacher.workdir == teacher_dir and round_config.teacher.init_student

    # The pairs are (Z_0, Z_1) of the teacher's RK4 solve.
    pairs = np.load(workdir / "round_1" / "pairs.npz")
    exp, state = runs.restore_latest(runs.load_config(teacher_dir), teacher_dir)
    velocity = exp.recipe.denoiser(exp.apply_fn, state.ema_params).velocity
    z0, _, _ = jax.jit(rectified_flow.simulate, static_argnums=(0, 2, 3))(
        velocity, pairs["noise"][:64], 20, "rk4"
    )
    np.testing.assert_allclose(pairs["x"][:64], z0, atol=1e-5)


def test_reflow_asks_the_recipe_for_its_chain_modes(tmp_path):
    config = toy_runs.tiny(progressive_distillation_toy2d.get_config(), str(tmp_path / "data"))
    config.teacher.workdir = str(tmp_path / "teacher")
    with pytest.raises(ValueError, match="method 'progressive_distillation' does not"):
        reflow.reflow(config, str(tmp_path / "reflow"))


def test_reflow_refuses_a_conditional_model(tmp_path):
    config = toy_runs.tiny(reflow_toy2d.get_config(), str(tmp_path / "data"))
    config.teacher.workdir = str(tmp_path / "teacher")
    config.model.num_classes = 2  # moons
    with pytest.raises(ValueError, match="needs model.num_classes=0, got model.num_classes=2"):
        reflow.reflow(config, str(tmp_path / "reflow"))
