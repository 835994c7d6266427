"""The noisy classifier's cross-entropy is a proper scoring rule: at the exact posterior
p(y | x_t) of a Gaussian mixture its gradient with respect to a logit offset vanishes in
expectation, and any other classifier scores worse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, processes
from diffjax.analytic.gaussian import GaussianMixture

VP = processes.get("vp")
MIX = GaussianMixture(
    weights=jnp.array([0.3, 0.7]),
    means=jnp.array([[1.0, 0.0], [-1.0, 0.5]]),
    covs=jnp.array([0.2 * jnp.eye(2), 0.3 * jnp.eye(2)]),
)


def exact_classifier(params, x, t, cond=None, key=None):
    """The exact log p(y | x_t) plus a learnable logit offset params["b"] [K]."""
    return MIX.class_log_posterior(x, t, VP) + params["b"][None]


def labelled(key, n):
    """n draws (x_0, y) of the mixture: y the component."""
    k_y, k_x = jax.random.split(key)
    y = jax.random.choice(k_y, 2, (n,), p=MIX.weights)
    x = jnp.stack([MIX.component(k).sample(jax.random.fold_in(k_x, k), n) for k in range(2)])
    return {"x": x[y, jnp.arange(n)], "label": y}


def test_exact_posterior_is_the_optimum():
    loss_fn = jax.jit(losses.NoisyClassifierLoss(VP)(exact_classifier))
    batch, key = labelled(jax.random.key(0), 20000), jax.random.key(1)
    zero = {"model": {"b": jnp.zeros(2)}}
    grad = jax.grad(lambda p: loss_fn(p, batch, key)[0])(zero)["model"]["b"]
    # d CE / d b_k = E[p_k - 1{y = k}]: zero at the exact posterior, up to Monte Carlo error.
    np.testing.assert_allclose(grad, 0.0, atol=4 * 0.5 / np.sqrt(20000))
    value, metrics = loss_fn(zero, batch, key)
    for b in ([0.5, -0.5], [-0.4, 0.4]):
        worse, _ = loss_fn({"model": {"b": jnp.array(b)}}, batch, key)
        assert float(worse) > float(value)
    assert 0.5 < float(metrics["accuracy"]) <= 1.0


def test_discrete_process_trains_on_its_grid_and_bad_options_raise():
    proc = processes.get("ddpm_linear", num_steps=10)
    seen = []

    def record(params, x, t, cond=None, key=None):
        seen.append(t)
        return jnp.zeros((x.shape[0], 2))

    losses.NoisyClassifierLoss(proc)(record)(
        {"model": {}}, labelled(jax.random.key(2), 64), jax.random.key(3)
    )
    np.testing.assert_allclose(
        np.asarray(seen[0]) * 10, np.round(np.asarray(seen[0]) * 10), atol=1e-5
    )
    with pytest.raises(ValueError, match="time distribution"):
        losses.NoisyClassifierLoss(VP, time_distribution="bogus")
    with pytest.raises(ValueError, match="t_min"):
        losses.NoisyClassifierLoss(VP, t_min=1.0)
