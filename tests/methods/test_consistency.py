"""Consistency models: the boundary condition, the exact consistency function of Gaussian data,
schedules and metrics against their formulas, and the trainer hooks (teacher, EMA target).
Multistep sampling is tested with the sampler, tests/samplers/test_few_step.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.methods import consistency as cm

MEAN = jnp.array([0.5, -1.0])
COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])
VP = processes.VP()
T_MIN, T_MAX, SIGMA_DATA = 1e-3, 1.0, 0.5


def _exact_network(gm, process):
    """F with c_skip x + c_out F = the exact consistency map x_t -> x_{t_min} (PF-ODE solution);
    params {"teacher": ...} instead return the exact x0 prediction of the teacher."""

    def apply_fn(params, x, t, cond=None, key=None):
        if "teacher" in params:
            return gm.x0_mean(x, t, process)
        c_skip, c_out = cm.boundary_coefs(process, t, T_MIN, SIGMA_DATA)
        target = gm.ode_solution(x, t, T_MIN, process)
        # At t_min, c_out = 0 and f = x whatever F is.
        safe = jnp.where(c_out > 0, c_out, 1.0)[:, None]
        return jnp.where(c_out[:, None] > 0, (target - c_skip[:, None] * x) / safe, 0.0)

    return apply_fn


def test_boundary_condition_is_exact():
    apply_fn = lambda p, x, t, cond=None, key=None: 3.0 * x + 7.0  # noqa: E731
    for process in (VP, processes.RectifiedFlow()):
        f = cm.consistency_fn(apply_fn, {}, process, T_MIN, SIGMA_DATA)
        x = jax.random.normal(jax.random.key(0), (5, 4, 4, 3))
        out = jax.jit(f)(x, jnp.full((5,), T_MIN))
        np.testing.assert_array_equal(out, x)


def _cd_loss(n_scales, solver):
    gm = GaussianMixture.gaussian(MEAN, COV)
    recipe = cm.consistency(
        VP,
        mode="cd",
        teacher_prediction="x0",
        teacher_solver=solver,
        t_min=T_MIN,
        t_max=T_MAX,
        sigma_data=SIGMA_DATA,
        metric="l2",
        weighting="uniform",
        noise_sampling="uniform",
        schedule="constant",
        s1=n_scales,
    )
    loss_fn = recipe.make_loss(_exact_network(gm, VP))
    params = {"model": {"student": jnp.zeros(())}, "teacher": {"teacher": jnp.zeros(())}}
    x0 = gm.sample(jax.random.key(1), 8192)
    value, metrics = jax.jit(loss_fn)(params, {"x": x0}, jax.random.key(2))
    assert float(metrics["num_scales"]) == n_scales
    return float(value)


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2)])
def test_exact_consistency_function_has_vanishing_cd_loss(solver, order):
    """For the exact map, the CD residual is the teacher step's local error O(h^(p+1)), so the l2
    loss is O(h^(2p+2)): halving every step divides it by 2^(2p+2) (16 for Euler, 64 for Heun)."""
    coarse, fine = _cd_loss(40, solver), _cd_loss(80, solver)
    assert fine < coarse
    # 8192 samples: the Monte Carlo ratio is within ~10% of its limit, far below a factor 2^0.5.
    assert abs(math.log2(coarse / fine) - (2 * order + 2)) < 0.5, coarse / fine


def test_ct_loss_vanishes_with_the_step():
    """CT with the exact map: the residual is f(x0 + s_{n+1} z) - f(x0 + s_n z), O(h)."""
    gm = GaussianMixture.gaussian(MEAN, COV)
    values = []
    for n in (40, 80):
        recipe = cm.consistency(
            VP,
            mode="ct",
            t_min=T_MIN,
            t_max=T_MAX,
            sigma_data=SIGMA_DATA,
            metric="l2",
            weighting="uniform",
            noise_sampling="uniform",
            schedule="constant",
            s1=n,
        )
        loss_fn = recipe.make_loss(_exact_network(gm, VP))
        x0 = gm.sample(jax.random.key(1), 8192)
        values.append(float(jax.jit(loss_fn)({"model": {}}, {"x": x0}, jax.random.key(2))[0]))
    # Squared O(h) residual: a factor ~4 per halving.
    assert abs(math.log2(values[0] / values[1]) - 2.0) < 0.5, values


def test_schedules_match_their_formulas():
    k_total = 1000
    n_ct = cm.num_scales_schedule("ct", k_total, 2, 150)
    for k in (0, 1, 250, 999, 1000):
        expected = math.ceil(math.sqrt(k / k_total * (151**2 - 4) + 4) - 1) + 1
        assert float(n_ct(k)) == expected
        np.testing.assert_allclose(
            cm.target_decay(n_ct(k), 2, 0.9), math.exp(2 * math.log(0.9) / expected), rtol=1e-6
        )
    n_ict = cm.num_scales_schedule("ict", k_total, 10, 1280)
    k_prime = math.floor(k_total / (math.log2(128) + 1))  # 125
    for k in (0, 124, 125, 500, 999):
        assert float(n_ict(k)) == min(10 * 2 ** (k // k_prime), 1280) + 1
    assert float(cm.target_decay(jnp.float32(11.0), 10, 0.0)) == 0.0
    grid = cm.time_grid(jnp.float32(5.0), 0.002, 0.8, 7.0, jnp.arange(5.0))
    a, b = 0.002 ** (1 / 7), 0.8 ** (1 / 7)
    np.testing.assert_allclose(grid, [(a + i / 4 * (b - a)) ** 7 for i in range(5)], rtol=1e-5)


def test_distances():
    a = jax.random.normal(jax.random.key(0), (3, 4, 4, 2))
    b = jnp.zeros_like(a)
    flat = np.asarray(a).reshape(3, -1)
    c = 0.00054 * math.sqrt(32)
    np.testing.assert_allclose(cm.distance("l2", a, b), np.mean(flat**2, -1), rtol=1e-6)
    np.testing.assert_allclose(cm.distance("l1", a, b), np.mean(np.abs(flat), -1), rtol=1e-6)
    np.testing.assert_allclose(
        cm.distance("pseudo_huber", a, b), np.sqrt(np.sum(flat**2, -1) + c**2) - c, rtol=1e-5
    )


def test_lognormal_index_sampling_follows_the_erf_masses():
    n_scales = 11
    grid = lambda i: cm.time_grid(jnp.float32(n_scales), T_MIN, T_MAX, 7.0, i)  # noqa: E731
    draws = jax.jit(
        lambda k: cm.sample_indices(
            k, 40000, jnp.float32(n_scales), grid, VP, "lognormal", -1.1, 2.0, 21
        )
    )(jax.random.key(0))
    s = np.asarray(cm.noise_level(VP, grid(jnp.arange(float(n_scales)))), np.float64)
    cdf = np.array([math.erf((math.log(v) + 1.1) / (math.sqrt(2) * 2.0)) for v in s])
    p = np.diff(cdf) / np.sum(np.diff(cdf))
    freq = np.bincount(np.asarray(draws, np.int64), minlength=20) / 40000
    assert np.all(freq[10:] == 0)
    np.testing.assert_allclose(freq[:10], p, atol=4 * np.sqrt(0.25 / 40000))


def test_builder_validates_and_needs_the_step():
    with pytest.raises(ValueError, match="x0"):
        cm.consistency(VP, prediction="eps")
    with pytest.raises(ValueError, match="metric"):
        cm.consistency(VP, metric="lpips")
    with pytest.raises(ValueError, match="t_min"):
        cm.consistency(VP, t_min=0.0)
    loss_fn = cm.consistency(VP, t_max=T_MAX).make_loss(lambda p, x, t, c=None, k=None: x)
    with pytest.raises(KeyError, match="step"):
        loss_fn({"model": {}}, {"x": jnp.zeros((2, 2))}, jax.random.key(0))
    value, metrics = jax.jit(loss_fn)(
        {"model": {}}, {"x": jnp.ones((4, 2)), "step": 0}, jax.random.key(0)
    )
    assert float(metrics["num_scales"]) == 11.0 and np.isfinite(float(value))


def test_trainer_hooks_teacher_and_ema_target():
    """CD reads a teacher; with mu0 > 0 the target starts at the model and after step k becomes
    mu(k) target + (1 - mu(k)) model with mu(k) = exp(s0 log mu0 / N(k))."""
    assert cm.consistency(VP, mode="cd", schedule="constant", s1=18).teacher
    ct = cm.consistency(VP, mode="ct", schedule="ct", total_steps=100, s0=2, s1=150, mu0=0.9)
    assert not ct.teacher
    assert cm.consistency(VP, mu0=0.0).update_frozen is None
    model = {"w": jnp.array([1.0, 2.0])}
    frozen = ct.init_frozen({"model": model})
    np.testing.assert_array_equal(frozen["target"]["w"], model["w"])
    new = {"model": {"w": jnp.array([3.0, 0.0])}}
    for k in (0, 50):
        n_k = math.ceil(math.sqrt(k / 100 * (151**2 - 4) + 4) - 1) + 1
        mu = math.exp(2 * math.log(0.9) / n_k)
        out = jax.jit(ct.update_frozen)(frozen, new, jnp.int32(k))
        np.testing.assert_allclose(
            out["target"]["w"], mu * model["w"] + (1 - mu) * new["model"]["w"], rtol=1e-6
        )
