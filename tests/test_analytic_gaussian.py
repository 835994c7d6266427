"""The exact Gaussian mixture against SciPy densities, autodiff scores and the PF-ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diffjax import processes
from diffjax.analytic.gaussian import GaussianMixture

MIX = GaussianMixture(
    weights=jnp.array([0.25, 0.75]),
    means=jnp.array([[1.0, -0.5], [-0.8, 0.4]]),
    covs=jnp.array([[[0.2, 0.05], [0.05, 0.1]], [[0.1, 0.0], [0.0, 0.3]]]),
)
VP = processes.get("vp")
T = jnp.array([0.0, 0.1, 0.4, 0.9])


def scipy_log_prob(x, t, process):
    """log sum_k w_k N(x; alpha mu_k, alpha^2 C_k + sigma^2 I) with SciPy, one t per row."""
    out = []
    for xi, ti in zip(np.asarray(x), np.asarray(t), strict=True):
        a, s = float(process.alpha(ti)), float(process.sigma(ti))
        dens = sum(
            float(w)
            * stats.multivariate_normal(
                a * np.asarray(m), a**2 * np.asarray(c) + s**2 * np.eye(2)
            ).pdf(xi)
            for w, m, c in zip(MIX.weights, MIX.means, MIX.covs, strict=True)
        )
        out.append(np.log(dens))
    return np.array(out)


def test_log_prob_matches_scipy():
    x = jax.random.normal(jax.random.key(0), (4, 2))
    got = jax.jit(lambda x, t: MIX.log_prob(x, t, VP))(x, T)
    np.testing.assert_allclose(got, scipy_log_prob(x, T, VP), rtol=1e-4, atol=1e-4)


def test_score_is_the_gradient_of_log_prob():
    x = jax.random.normal(jax.random.key(1), (4, 2))
    auto = jax.vmap(jax.grad(lambda xi, ti: MIX.log_prob(xi[None], ti[None], VP)[0]))(x, T)
    np.testing.assert_allclose(
        jax.jit(lambda x: MIX.score(x, T, VP))(x), auto, rtol=1e-4, atol=1e-4
    )


def test_tweedie_x0_mean():
    """E[x_0 | x_t] = (x_t + sigma^2 score) / alpha (Tweedie) for t > 0."""
    x = jax.random.normal(jax.random.key(2), (3, 2))
    t = T[1:]
    a, s = VP.alpha(t)[:, None], VP.sigma(t)[:, None]
    tweedie = (x + s**2 * MIX.score(x, t, VP)) / a
    np.testing.assert_allclose(MIX.x0_mean(x, t, VP), tweedie, rtol=1e-4, atol=1e-5)


def assert_cov_close(x, cov):
    """Sample covariance within 5 standard errors (of the centred products) of `cov`."""
    d = x - x.mean(0)
    prods = d[:, :, None] * d[:, None, :]
    se = prods.std(0) / np.sqrt(x.shape[0])
    assert np.all(np.abs(prods.mean(0) - cov) < 5 * se), (prods.mean(0), cov)


def test_samples_have_the_mixture_moments():
    n = 40000
    x = MIX.sample(jax.random.key(3), n)
    mean = np.einsum("k,kd->d", MIX.weights, MIX.means)
    second = np.einsum(
        "k,kij->ij", MIX.weights, MIX.covs + np.einsum("ki,kj->kij", MIX.means, MIX.means)
    )
    cov = second - np.outer(mean, mean)
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(np.asarray(x.mean(0)) - mean) < 5 * se)
    np.testing.assert_allclose(
        np.cov(np.asarray(x).T), cov, atol=5 * float(cov.max()) * np.sqrt(2 / n) * 3
    )


def test_ode_solution_follows_the_probability_flow():
    """d/ds x_s equals the PF-ODE drift f x - g^2 score / 2 at x_s, and s = t is the identity."""
    g = GaussianMixture.gaussian(jnp.array([0.3, -0.2]), jnp.array([[0.3, 0.1], [0.1, 0.2]]))
    x = jax.random.normal(jax.random.key(4), (3, 2))
    t, s = 0.8, jnp.float32(0.35)
    np.testing.assert_allclose(g.ode_solution(x, t, t, VP), x, rtol=1e-5, atol=1e-6)
    xs, dxs = jax.jvp(lambda s: g.ode_solution(x, t, s, VP), (s,), (jnp.ones(()),))
    drift = VP.f(s) * xs - 0.5 * VP.g2(s) * g.score(xs, s, VP)
    np.testing.assert_allclose(dxs, drift, rtol=1e-3, atol=1e-4)


def test_ode_solution_transports_the_marginals():
    """x_1 ~ p_1 mapped to t = 0 has the data's mean and covariance."""
    g = GaussianMixture.gaussian(jnp.array([0.3, -0.2]), jnp.array([[0.3, 0.1], [0.1, 0.2]]))
    n = 40000
    x1 = g.sample(jax.random.key(5), n) * VP.alpha(1.0) + VP.sigma(1.0) * jax.random.normal(
        jax.random.key(6), (n, 2)
    )
    x0 = np.asarray(g.ode_solution(x1, 1.0, 0.0, VP))
    assert np.all(np.abs(x0.mean(0) - np.array([0.3, -0.2])) < 5 * np.sqrt(0.3 / n))
    np.testing.assert_allclose(
        np.cov(x0.T), [[0.3, 0.1], [0.1, 0.2]], atol=5 * 0.3 * np.sqrt(2 / n)
    )


def test_ode_solution_needs_one_component():
    with pytest.raises(ValueError, match="single Gaussian"):
        MIX.ode_solution(jnp.zeros((1, 2)), 1.0, 0.0, VP)
