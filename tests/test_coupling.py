"""Tests for diffjax.coupling against brute force, SciPy and a NumPy Sinkhorn."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from diffjax import coupling


def _points(seed, n, d):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)


def test_cost_is_squared_distance():
    a, b = _points(0, 5, 3)
    expected = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    np.testing.assert_allclose(
        jax.jit(coupling.sq_euclidean_cost)(a, b), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_assignment_matches_brute_force(seed):
    a, b = _points(seed, 6, 2)
    cost = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    best = min(itertools.permutations(range(6)), key=lambda p: cost[np.arange(6), list(p)].sum())
    perm = jax.jit(coupling.exact_assignment)(jnp.asarray(cost))
    np.testing.assert_array_equal(perm, np.array(best))


def test_exact_assignment_matches_scipy_on_a_batch():
    a, b = _points(3, 64, 4)
    cost = jax.jit(coupling.sq_euclidean_cost)(a, b)
    rows, cols = scipy.optimize.linear_sum_assignment(np.asarray(cost, np.float64))
    perm = jax.jit(coupling.exact_assignment)(cost)
    np.testing.assert_array_equal(np.asarray(perm)[rows], cols)
    # Under vmap the callback runs once per problem.
    perms = jax.jit(jax.vmap(coupling.exact_assignment))(jnp.stack([cost, cost.T]))
    np.testing.assert_array_equal(perms[0], perm)
    np.testing.assert_array_equal(np.asarray(perms[1])[np.asarray(perm)], np.arange(64))


def test_exact_assignment_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        coupling.exact_assignment(jnp.zeros((3, 4)))


def _numpy_sinkhorn(cost, eps, iters=20000):
    """Plain (not log-domain) Sinkhorn-Knopp in float64."""
    n, m = cost.shape
    k = np.exp(-cost / eps)
    u, v = np.ones(n), np.ones(m)
    for _ in range(iters):
        u = (1.0 / n) / (k @ v)
        v = (1.0 / m) / (k.T @ u)
    return u[:, None] * k * v[None, :]


def test_sinkhorn_matches_numpy_reference_and_marginals():
    a, b = _points(4, 12, 2)
    cost = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1).astype(np.float64)
    plan = jax.jit(lambda c: coupling.sinkhorn(c, epsilon=0.2, tol=1e-7))(
        jnp.asarray(cost, jnp.float32)
    )
    ref = _numpy_sinkhorn(cost, 0.2 * cost.mean())
    np.testing.assert_allclose(plan, ref, atol=1e-6)
    np.testing.assert_allclose(np.sum(plan, axis=1), np.full(12, 1 / 12), atol=1e-6)
    np.testing.assert_allclose(np.sum(plan, axis=0), np.full(12, 1 / 12), atol=1e-6)


def test_sinkhorn_tends_to_the_exact_assignment():
    a, b = _points(5, 16, 2)
    cost = jax.jit(coupling.sq_euclidean_cost)(a, b)
    plan = jax.jit(lambda c: coupling.sinkhorn(c, epsilon=1e-3, max_iters=5000))(cost)
    perm = coupling.exact_assignment(cost)
    np.testing.assert_array_equal(jnp.argmax(plan, axis=1), perm)
    # Nearly all the mass sits on the optimal permutation.
    assert float(jnp.sum(plan[jnp.arange(16), perm])) > 0.99


def test_sample_partners_follows_the_plan():
    plan = jnp.array([[0.1, 0.3, 0.0], [0.2, 0.0, 0.4]])
    draws = jax.jit(jax.vmap(coupling.sample_partners, (0, None)))(
        jax.random.split(jax.random.key(0), 20000), plan
    )
    freq0 = np.bincount(np.asarray(draws[:, 0]), minlength=3) / 20000
    freq1 = np.bincount(np.asarray(draws[:, 1]), minlength=3) / 20000
    # Binomial standard error sqrt(p (1 - p) / n) <= 0.0035; allow 4 of them.
    np.testing.assert_allclose(freq0, [0.25, 0.75, 0.0], atol=0.014)
    np.testing.assert_allclose(freq1, [1 / 3, 0.0, 2 / 3], atol=0.014)
