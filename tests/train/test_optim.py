"""The learning-rate schedule and the optimizer built from an OptimConfig."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffjax.train import optim
from diffjax.train.settings import OptimConfig


def _optim(**fields) -> OptimConfig:
    base = dict(
        optimizer="adamw",
        learning_rate=1e-3,
        schedule="cosine",
        warmup_steps=0,
        b1=0.9,
        b2=0.999,
        weight_decay=0.0,
        grad_clip=1.0,
        ema_decay=0.99,
    )
    return OptimConfig(**{**base, **fields})


def test_warmup_then_cosine_matches_formula():
    config = _optim(learning_rate=1e-3, schedule="cosine", warmup_steps=10)
    lr = optim.learning_rate_schedule(config, total_steps=110)
    np.testing.assert_allclose(lr(0), 0.0)
    np.testing.assert_allclose(lr(5), 0.5e-3, rtol=1e-6)
    np.testing.assert_allclose(lr(10), 1e-3, rtol=1e-6)
    # Half-way through the decay: cos(pi / 2) -> half the peak.
    np.testing.assert_allclose(lr(60), 0.5e-3, rtol=1e-5)
    np.testing.assert_allclose(lr(110), 0.0, atol=1e-12)


def test_constant_schedule_without_warmup():
    config = _optim(learning_rate=3e-4, schedule="constant", warmup_steps=0)
    lr = optim.learning_rate_schedule(config, total_steps=100)
    np.testing.assert_allclose([lr(0), lr(99)], [3e-4, 3e-4], rtol=1e-6)


def test_clipping_bounds_the_update():
    config = _optim(
        optimizer="adam", learning_rate=1.0, schedule="constant", b1=0.0, b2=0.0, grad_clip=1.0
    )
    opt = optim.make_optimizer(config, optim.learning_rate_schedule(config, total_steps=10))
    params = {"w": jnp.zeros(4)}
    grads = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}
    clipped, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    np.testing.assert_allclose(optax.global_norm(clipped), 1.0, rtol=1e-6)
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    # Adam with b1 = b2 = 0 steps by -sign(g) where g != 0.
    np.testing.assert_allclose(updates["w"], [-1.0, -1.0, 0.0, 0.0], atol=1e-3)


def test_weight_decay_mask_exempts_the_masked_off_leaves():
    """With zero gradients AdamW's only update is the decay -lr * wd * value, where the mask
    says True; a masked-off leaf stays exactly where it is."""
    lr, wd = 0.1, 0.5
    config = _optim(learning_rate=lr, schedule="constant", weight_decay=wd, grad_clip=0.0)
    schedule = optim.learning_rate_schedule(config, total_steps=10)
    opt = optim.make_optimizer(config, schedule, lambda p: {"kernel": True, "scale": False})
    params = {"kernel": jnp.array([1.0, -2.0, 4.0]), "scale": jnp.array([3.0, -5.0])}
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new["scale"], params["scale"])
    np.testing.assert_allclose(new["kernel"], (1.0 - lr * wd) * params["kernel"], rtol=1e-6)

    unmasked = optim.make_optimizer(config, schedule)
    updates, _ = jax.jit(unmasked.update)(grads, unmasked.init(params), params)
    np.testing.assert_allclose(updates["scale"], -lr * wd * params["scale"], rtol=1e-6)
