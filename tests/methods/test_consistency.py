"""Consistency models: the boundary condition, the exact consistency function of Gaussian data,
schedules and metrics against their formulas, and the trainer hooks (teacher, EMA target).
Multistep sampling is tested with the sampler, tests/samplers/test_few_step.py."""

import importlib
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import denoisers, methods, processes
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.losses import consistency as cl
from diffjax.methods import consistency as cm
from diffjax.samplers import timesteps

MEAN = jnp.array([0.5, -1.0])
COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])
VP = processes.VP()
# The boundary at t = 1e-3 of VP, as a noise level s = sigma / alpha; sigma_max = 80 < s(1).
SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = float(VP.noise_level(1e-3)), 80.0, 0.5


def _exact_network(gm, process, precond):
    """F with c_skip x~ + c_out F(c_in x~, c_noise) = the exact consistency map in the scaled
    variable, x_t -> x_{t_min} / alpha(t_min) (PF-ODE solution); params {"teacher": ...} instead
    return the exact x0 prediction of the teacher (called on (x, t))."""

    def apply_fn(params, x, t, cond=None, key=None):
        if "teacher" in params:
            return gm.x0_mean(x, t, process)
        # F sees (c_in x~, c_noise = log(s) / 4): recover s, x~, t and x = alpha(t) x~.
        level = jnp.exp(4.0 * t)
        x_s = x * jnp.sqrt(jnp.square(level) + precond.sigma_data**2)[:, None]
        t = process.t_of_noise_level(level)
        x = process.alpha(t)[:, None] * x_s
        c_skip, c_out, _, _ = precond.coefficients(process, t)
        t_min = jnp.float32(precond.t_min)
        target = gm.ode_solution(x, t, t_min, process) / process.alpha(t_min)
        # At t_min, c_out = 0 and f = x~ whatever F is.
        safe = jnp.where(c_out > 0, c_out, 1.0)[:, None]
        return jnp.where(c_out[:, None] > 0, (target - c_skip[:, None] * x_s) / safe, 0.0)

    return apply_fn


def _output_and_scaled(f, x, t):
    return f.output(x, t), x / f.process.alpha(t)[:, None, None, None]


def test_boundary_condition_is_exact():
    """f(x, t_min) = x~ = x / alpha(t_min) exactly, whatever the network."""
    apply_fn = lambda p, x, t, cond=None, key=None: 3.0 * x + 7.0  # noqa: E731
    for process in (VP, processes.RectifiedFlow()):
        recipe = cm.consistency(
            process, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=SIGMA_DATA
        )
        t_min = recipe.sampler_options["t_min"]
        f = denoisers.from_network(apply_fn, {}, recipe.prediction, process)
        x = jax.random.normal(jax.random.key(0), (5, 4, 4, 3))
        t = jnp.full((5,), t_min)
        out, x_s = jax.jit(_output_and_scaled)(f, x, t)
        np.testing.assert_array_equal(out, x_s)
        c_skip, c_out, _, _ = recipe.prediction.coefficients(process, t)
        np.testing.assert_array_equal(c_skip, 1.0)
        np.testing.assert_array_equal(c_out, 0.0)


def _cd_loss(n_scales, solver):
    gm = GaussianMixture.gaussian(MEAN, COV)
    recipe = cm.consistency(
        VP,
        mode="cd",
        teacher_prediction="x0",
        teacher_solver=solver,
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        sigma_data=SIGMA_DATA,
        metric="l2",
        weighting="uniform",
        time_distribution="uniform",
        schedule="constant",
        s1=n_scales,
    )
    loss_fn = recipe.make_loss(_exact_network(gm, VP, recipe.prediction))
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
            sigma_min=SIGMA_MIN,
            sigma_max=SIGMA_MAX,
            sigma_data=SIGMA_DATA,
            metric="l2",
            weighting="uniform",
            time_distribution="uniform",
            schedule="constant",
            s1=n,
        )
        loss_fn = recipe.make_loss(_exact_network(gm, VP, recipe.prediction))
        x0 = gm.sample(jax.random.key(1), 8192)
        values.append(float(jax.jit(loss_fn)({"model": {}}, {"x": x0}, jax.random.key(2))[0]))
    # Squared O(h) residual: a factor ~4 per halving.
    assert abs(math.log2(values[0] / values[1]) - 2.0) < 0.5, values


def test_schedules_match_their_formulas():
    k_total = 1000
    n_ct = cl.num_scales_schedule("ct", k_total, 2, 150)
    for k in (0, 1, 250, 999, 1000):
        expected = math.ceil(math.sqrt(k / k_total * (151**2 - 4) + 4) - 1) + 1
        assert float(n_ct(k)) == expected
        np.testing.assert_allclose(
            cl.target_decay(n_ct(k), 2, 0.9), math.exp(2 * math.log(0.9) / expected), rtol=1e-6
        )
    n_ict = cl.num_scales_schedule("ict", k_total, 10, 1280)
    k_prime = math.floor(k_total / (math.log2(128) + 1))  # 125
    for k in (0, 124, 125, 500, 999):
        assert float(n_ict(k)) == min(10 * 2 ** (k // k_prime), 1280) + 1
    assert float(cl.target_decay(jnp.float32(11.0), 10, 0.0)) == 0.0
    grid = cl.noise_levels(jnp.float32(5.0), 0.002, 0.8, 7.0, jnp.arange(5.0))
    a, b = 0.002 ** (1 / 7), 0.8 ** (1 / 7)
    np.testing.assert_allclose(grid, [(a + i / 4 * (b - a)) ** 7 for i in range(5)], rtol=1e-5)


def test_distances():
    a = jax.random.normal(jax.random.key(0), (3, 4, 4, 2))
    b = jnp.zeros_like(a)
    flat = np.asarray(a).reshape(3, -1)
    c = 0.00054 * math.sqrt(32)
    np.testing.assert_allclose(cl.distance("l2", a, b), np.mean(flat**2, -1), rtol=1e-6)
    np.testing.assert_allclose(cl.distance("l1", a, b), np.mean(np.abs(flat), -1), rtol=1e-6)
    np.testing.assert_allclose(
        cl.distance("pseudo_huber", a, b), np.sqrt(np.sum(flat**2, -1) + c**2) - c, rtol=1e-5
    )


def test_lognormal_index_sampling_follows_the_erf_masses():
    n_scales = 11
    # The grid holds 21 levels (20 pairs), valid below N = 11.
    levels = cl.noise_levels(jnp.float32(n_scales), SIGMA_MIN, SIGMA_MAX, 7.0, jnp.arange(21.0))
    draws = jax.jit(
        lambda k: cl.sample_indices(k, 40000, jnp.float32(n_scales), levels, "lognormal", -1.1, 2.0)
    )(jax.random.key(0))
    s = np.asarray(levels[:n_scales], np.float64)
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
    with pytest.raises(ValueError, match="sigma_min"):
        cm.consistency(VP, sigma_min=0.0)
    loss_fn = cm.consistency(VP, sigma_max=SIGMA_MAX).make_loss(
        lambda p, x, t, cond=None, key=None: x
    )
    with pytest.raises(KeyError, match="step"):
        loss_fn({"model": {}}, {"x": jnp.zeros((2, 2))}, jax.random.key(0))
    value, metrics = jax.jit(loss_fn)(
        {"model": {}}, {"x": jnp.ones((4, 2)), "step": 0}, jax.random.key(0)
    )
    assert float(metrics["num_scales"]) == 11.0 and np.isfinite(float(value))


def test_trainer_hooks_teacher_and_ema_target():
    """CD reads a teacher; with mu0 > 0 the target starts at the model and after step k becomes
    mu(k) target + (1 - mu(k)) model with mu(k) = exp(s0 log mu0 / N(k))."""
    assert cm.consistency(VP, mode="cd", schedule="constant", s1=18).teacher_prediction == "eps"
    ct = cm.consistency(VP, mode="ct", schedule="ct", total_steps=100, s0=2, s1=150, mu0=0.9)
    assert ct.teacher_prediction is None
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


CONSISTENCY_CONFIGS = (
    "consistency_toy2d",
    "consistency_distillation_toy2d",
    "consistency_cifar10",
)


@pytest.mark.parametrize("name", CONSISTENCY_CONFIGS)
def test_configs_put_the_boundary_at_the_papers_sigma_min(name):
    """Every consistency config has its boundary at Song et al.'s / iCT's sigma_min = 0.002."""
    config = importlib.import_module(f"configs.{name}").get_config()
    assert config.method == "consistency"
    process = processes.get(config.process.name, **config.process.kwargs.to_dict())
    recipe = methods.get(config.method)(process=process, **config.loss.to_dict())
    t_min = recipe.sampler_options["t_min"]
    np.testing.assert_allclose(float(process.noise_level(jnp.float32(t_min))), 0.002, atol=1e-4)
    assert recipe.prediction.sigma_min == 0.002


def test_every_consistency_config_is_checked():
    found = set()
    for path in sorted(pathlib.Path(__file__).parents[2].joinpath("configs").glob("*.py")):
        module = importlib.import_module(f"configs.{path.stem}")
        if hasattr(module, "get_config") and module.get_config().get("method") == "consistency":
            found.add(path.stem)
    assert found == set(CONSISTENCY_CONFIGS)


@pytest.mark.parametrize("process", [VP, processes.get("edm")], ids=["vp", "edm"])
def test_training_grid_is_the_samplers_karras_grid(process):
    """The training grid s_1 < ... < s_N and the sampler's Karras grid (N - 1 steps from t_max
    to t_min) place the same noise levels for the same N, sigma_min, sigma_max, rho."""
    sigma_min, sigma_max, rho = 0.002, 80.0, 7.0
    t_min, t_max = cl.boundary(process, sigma_min, sigma_max)
    for n in (2, 11, 18):
        train = cl.noise_levels(jnp.float32(n), sigma_min, sigma_max, rho, jnp.arange(float(n)))
        ts = timesteps.karras(process, n - 1, t_max, t_min, rho)
        sample = process.noise_level(ts)[::-1]
        np.testing.assert_allclose(sample, train, rtol=1e-4)


def test_the_teacher_and_target_see_the_students_labels():
    """Consistency distillation calls the teacher (and the target) with the batch's labels."""
    calls = []

    def apply_fn(params, x, t, cond=None, key=None):
        calls.append((float(params["id"]), cond))
        return jnp.zeros_like(x)

    recipe = cm.consistency(VP, mode="cd", schedule="constant", s1=18)
    labels = jnp.array([0, 3, 10, 7])  # 10: a dropped label (the null class)
    params = {
        "model": {"id": jnp.array(0.0)},
        "teacher": {"id": jnp.array(1.0)},
        "target": {"id": jnp.array(2.0)},
    }
    recipe.make_loss(apply_fn)(params, {"x": jnp.ones((4, 2)), "label": labels}, jax.random.key(0))
    assert {who for who, _ in calls} == {0.0, 1.0, 2.0}
    for _, cond in calls:
        np.testing.assert_array_equal(cond, labels)
