"""The train step: gradients reach only the trained params, the frozen ones move only by the
recipe's hook, the loss sees the step, the EMA follows its formula, and accumulated
micro-batches update as the whole batch does."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import dit_digits
from diffjax import models
from diffjax.train import experiment, runs, state


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


def _regression_loss(apply_fn):
    """A deterministic loss (the key is ignored): the MSE of the network's x -> 2 x."""

    def loss(params, batch, key):
        del key
        pred = apply_fn({"params": params["model"]}, batch["x"], 0.5 * jnp.ones(len(batch["x"])))
        value = jnp.mean(jnp.square(pred - 2.0 * batch["x"]))
        return value, {"mse": value}

    return loss


def test_accumulated_micro_batches_give_the_update_of_the_whole_batch():
    model = models.get("mlp", features=16, num_blocks=1)
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
    init = model.init(jax.random.PRNGKey(0), x, jnp.zeros(16))["params"]
    loss = _regression_loss(model.apply)
    for optimizer in (optax.sgd(0.1), optax.adam(1e-2)):
        st = state.create_train_state(jax.random.PRNGKey(2), lambda k: {"model": init}, optimizer)
        results = {}
        for k in (1, 4):
            step = jax.jit(state.make_train_step(loss, optimizer, 0.9, grad_accum_steps=k))
            new, metrics = step(st, {"x": x})
            new, metrics = step(new, {"x": 0.5 * x})  # a second update sees the optimizer state
            results[k] = (new, metrics)
        (a, ma), (b, mb) = results[1], results[4]
        close = functools.partial(np.testing.assert_allclose, atol=1e-6)
        jax.tree.map(close, a.params, b.params)
        jax.tree.map(close, a.opt_state, b.opt_state)
        for name in ("loss", "mse", "grad_norm"):
            np.testing.assert_allclose(ma[name], mb[name], rtol=1e-5)
        assert int(b.step) == 2


def test_each_micro_batch_gets_its_own_key_and_strided_examples():
    batch = {"x": jnp.arange(12.0)}
    key = jax.random.PRNGKey(3)

    def fn(micro_batch, micro_key):
        return {"x": micro_batch["x"], "u": jax.random.uniform(micro_key)}

    out = jax.jit(lambda b, k: state.accumulate(fn, b, k, 3))(batch, key)
    # micro-batch i holds examples i, i + 3, ...: the mean over the three is [1, 4, 7, 10].
    np.testing.assert_allclose(out["x"], [1.0, 4.0, 7.0, 10.0])
    draws = [jax.random.uniform(jax.random.fold_in(key, i)) for i in range(3)]
    np.testing.assert_allclose(out["u"], np.mean(draws), rtol=1e-6)
    with pytest.raises(ValueError, match="does not split into 5 micro-batches"):
        state.accumulate(fn, batch, key, 5)
    with pytest.raises(ValueError, match="grad_accum_steps=0"):
        state.make_train_step(_loss, optax.sgd(0.1), 0.5, grad_accum_steps=0)


def test_a_bfloat16_accumulating_step_keeps_params_and_optimizer_state_float32():
    config = dit_digits.get_config()
    config.model.update({"name": "dit_tiny", "dtype": "bfloat16"})
    config.training.grad_accum_steps = 2
    exp = experiment.build(config)
    optimizer, _, create = runs.state_constructor(exp)
    st = create(jax.random.PRNGKey(0))
    step = jax.jit(state.make_train_step(exp.make_loss(), optimizer, 0.9, grad_accum_steps=2))
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, *exp.dataset.shape), minval=-1, maxval=1)
    st, metrics = step(st, {"x": x})
    for tree in (st.params, st.ema_params, st.opt_state):
        floats = [a for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)]
        assert floats and {a.dtype for a in floats} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
