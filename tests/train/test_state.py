"""The train step: gradients reach only the trained params, the frozen ones move only by the
recipe's hook, the loss sees the step, and the EMA follows its formula."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffjax.train import state


def _loss(params, batch, key):
    """(w - teacher)^2 summed, plus a term that would pull the teacher if it were trained."""
    del key
    value = jnp.sum(jnp.square(params["model"]["w"] - params["teacher"]["w"]))
    value = value + jnp.sum(params["teacher"]["w"])
    return value, {"step_seen": batch["step"].astype(jnp.float32)}


def _bump_target(frozen, params, step):
    """target <- target + step + w: shows the hook runs after the update with the old step."""
    return {**frozen, "target": frozen["target"] + step + params["model"]["w"]}


def test_frozen_params_take_no_update_and_the_hook_moves_them():
    optimizer = optax.sgd(0.1)
    init = {"model": {"w": jnp.array([1.0, -2.0])}}
    teacher = {"w": jnp.array([0.5, 0.5])}
    st = state.create_train_state(
        jax.random.PRNGKey(0),
        lambda key: init,
        optimizer,
        init_frozen=lambda p: {"teacher": teacher, "target": jnp.zeros(2)},
    )
    step = jax.jit(state.make_train_step(_loss, optimizer, 0.5, _bump_target))
    w = np.array([1.0, -2.0])
    ema = w.copy()
    target = np.zeros(2)
    for k in range(3):
        st, metrics = step(st, {"x": jnp.zeros((4, 2))})
        assert float(metrics["step_seen"]) == k
        w = w - 0.1 * 2 * (w - np.asarray(teacher["w"]))
        ema = 0.5 * ema + 0.5 * w
        target = target + k + w
        np.testing.assert_allclose(st.params["model"]["w"], w, rtol=1e-6)
        np.testing.assert_allclose(st.ema_params["model"]["w"], ema, rtol=1e-6)
        np.testing.assert_allclose(st.frozen["target"], target, rtol=1e-6)
        np.testing.assert_array_equal(st.frozen["teacher"]["w"], teacher["w"])
    assert int(st.step) == 3
