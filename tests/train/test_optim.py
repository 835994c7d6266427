"""The learning-rate schedule and the optimizer built from config fields."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffjax.train import optim


def test_warmup_then_cosine_matches_formula():
    lr = optim.learning_rate_schedule(1e-3, "cosine", warmup_steps=10, total_steps=110)
    np.testing.assert_allclose(lr(0), 0.0)
    np.testing.assert_allclose(lr(5), 0.5e-3, rtol=1e-6)
    np.testing.assert_allclose(lr(10), 1e-3, rtol=1e-6)
    # Half-way through the decay: cos(pi / 2) -> half the peak.
    np.testing.assert_allclose(lr(60), 0.5e-3, rtol=1e-5)
    np.testing.assert_allclose(lr(110), 0.0, atol=1e-12)


def test_constant_schedule_without_warmup():
    lr = optim.learning_rate_schedule(3e-4, "constant", warmup_steps=0, total_steps=100)
    np.testing.assert_allclose([lr(0), lr(99)], [3e-4, 3e-4], rtol=1e-6)


def test_clipping_bounds_the_update():
    opt = optim.make_optimizer(
        optimizer="adam",
        learning_rate=1.0,
        schedule="constant",
        warmup_steps=0,
        total_steps=10,
        b1=0.0,
        b2=0.0,
        weight_decay=0.0,
        grad_clip=1.0,
    )
    params = {"w": jnp.zeros(4)}
    grads = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}
    clipped, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    np.testing.assert_allclose(optax.global_norm(clipped), 1.0, rtol=1e-6)
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    # Adam with b1 = b2 = 0 steps by -sign(g) where g != 0.
    np.testing.assert_allclose(updates["w"], [-1.0, -1.0, 0.0, 0.0], atol=1e-3)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("optim.optimizer", {"optimizer": "sgdx"}),
        ("optim.schedule", {"schedule": "linear"}),
        ("optim.learning_rate", {"learning_rate": 0.0}),
        ("optim.grad_clip", {"grad_clip": -1.0}),
        ("optim.weight_decay", {"optimizer": "adam", "weight_decay": 0.1}),
    ],
)
def test_bad_values_name_the_field(field, kwargs):
    base = dict(
        optimizer="adamw",
        learning_rate=1e-3,
        schedule="cosine",
        warmup_steps=0,
        total_steps=10,
        b1=0.9,
        b2=0.999,
        weight_decay=0.0,
        grad_clip=1.0,
    )
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        optim.make_optimizer(**{**base, **kwargs})
