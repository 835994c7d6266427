"""Rectified flow: straightness and transport cost against closed forms of Gaussian data."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from diffjax import processes
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.methods import rectified_flow as rf

RF = processes.RectifiedFlow()
MEAN = np.array([0.5, -1.0])
COV = np.array([[1.0, 0.6], [0.6, 0.5]])


def test_exactly_straight_field_has_zero_straightness():
    """Point data mu: Z_t = (1 - t) mu + t Z_1 solves the exact flow; every path is a line."""
    mu = jnp.array([0.7, -0.2])
    gm = GaussianMixture.gaussian(mu, jnp.zeros((2, 2)))
    z1 = jax.random.normal(jax.random.key(0), (256, 2))
    simulate = jax.jit(rf.simulate, static_argnums=(0, 2, 3))
    z0, s, c = simulate(gm.denoiser(RF).velocity, z1, 16, "euler")
    np.testing.assert_allclose(z0, jnp.broadcast_to(mu, z0.shape), atol=1e-5)
    np.testing.assert_allclose(s, 0.0, atol=1e-5 * float(jnp.max(c)))
    np.testing.assert_allclose(c, jnp.sum(jnp.square(z1 - mu[None]), -1), rtol=1e-5)


def test_straightness_and_cost_of_the_exact_gaussian_flow():
    """Z_t - (1 - t) mu = U diag(s_k(t)) U^T Z_1, s_k = sqrt((1 - t)^2 lam_k + t^2): then
    C = |mu|^2 + sum_k (1 - sqrt lam_k)^2 and S = sum_k int_0^1 (1 - sqrt lam_k - s_k')^2 dt."""
    lam = np.linalg.eigvalsh(COV)
    cost = MEAN @ MEAN + np.sum((1 - np.sqrt(lam)) ** 2)

    def gap2(t, l):  # (1 - sqrt(l) - s'(t))^2 for eigenvalue l
        return (1 - np.sqrt(l) - (t - (1 - t) * l) / np.sqrt((1 - t) ** 2 * l + t**2)) ** 2

    straight = sum(scipy.integrate.quad(gap2, 0, 1, args=(l,))[0] for l in lam)

    gm = GaussianMixture.gaussian(MEAN, COV)
    n = 20000
    z1 = jax.random.normal(jax.random.key(1), (n, 2))
    # RK4 up to t_min = 1e-3 (the velocity of x0-denoisers divides by sigma(t) = t).
    z0, s, c = jax.jit(rf.simulate, static_argnums=(0, 2, 3, 4))(
        gm.denoiser(RF).velocity, z1, 200, "rk4", 1e-3
    )
    np.testing.assert_allclose(z0, gm.ode_solution(z1, 1.0, 1e-3, RF), atol=1e-4)
    # Monte Carlo over Z_1 with 4 standard errors; t_min = 1e-3 perturbs both by O(1e-3).
    for value, exact in ((s, straight), (c, cost)):
        stderr = float(jnp.std(value)) / np.sqrt(n)
        assert abs(float(jnp.mean(value)) - exact) < 4 * stderr + 2e-3 * exact, (
            value.mean(),
            exact,
        )
    assert straight > 0.01  # the flow of a correlated Gaussian is curved


def test_rectified_flow_recipe():
    recipe = rf.rectified_flow(RF, time_distribution="logit_normal")
    assert recipe.name == "rectified_flow" and recipe.prediction == "velocity"
    with pytest.raises(ValueError, match="alpha = 1 - t"):
        rf.rectified_flow(processes.VP())


@pytest.mark.slow
def test_reflow_straightens_a_learned_flow():
    """Two modes: the 1-rectified flow bends where the noise splits; reflow on its own pairs
    (k = 2, then 3) lowers the measured straightness S each round and keeps the cost."""
    import optax

    from diffjax import models
    from diffjax.train.experiment import apply_fn_of
    from diffjax.train.state import create_train_state, make_train_step

    gm = GaussianMixture(
        jnp.array([0.5, 0.5]),
        jnp.array([[-1.0, 0.0], [1.0, 0.0]]),
        0.01 * jnp.eye(2)[None] * jnp.ones((2, 1, 1)),
    )
    module = models.get("mlp", features=64, num_blocks=2, out_channels=2)
    apply_fn = apply_fn_of(module)
    recipe = rf.rectified_flow(RF)
    optimizer = optax.adam(2e-3)
    step = jax.jit(make_train_step(recipe.make_loss(apply_fn), optimizer, 0.99))
    params = {
        "model": nn.meta.unbox(module.init(jax.random.key(0), jnp.zeros((1, 2)), jnp.zeros((1,))))[
            "params"
        ]
    }
    simulate = jax.jit(rf.simulate, static_argnums=(0, 2, 3))
    eval_noise = jax.random.normal(jax.random.key(1), (2000, 2))

    def batches(k, pairs):
        for i in range(1500):
            idx = jax.random.randint(jax.random.fold_in(k, i), (256,), 0, 10000)
            yield (
                {"x": pairs[0][idx], "noise": pairs[1][idx]}
                if pairs
                else {"x": gm.sample(jax.random.fold_in(k, i), 256)}
            )

    straightness, costs, pairs = [], [], None
    for round_ in range(3):
        state = create_train_state(jax.random.key(round_), lambda _, p=params: p, optimizer)
        for batch in batches(jax.random.key(10 + round_), pairs):
            state, _ = step(state, batch)
        params = state.ema_params
        velocity = recipe.denoiser(apply_fn, params).velocity
        _, s, c = simulate(velocity, eval_noise, 50, "rk4")
        straightness.append(float(jnp.mean(s)))
        costs.append(float(jnp.mean(c)))
        noise = jax.random.normal(jax.random.key(100 + round_), (10000, 2))
        pairs = (simulate(velocity, noise, 50, "rk4")[0], noise)
    assert straightness[1] < 0.5 * straightness[0], straightness
    assert straightness[2] < straightness[1], straightness
    assert costs[1] < costs[0] * 1.05, costs
