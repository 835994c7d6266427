"""Flow matching: the CFM loss of the exact marginal velocity equals its closed-form minimum."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from diffjax import processes
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.losses import flow
from diffjax.methods import flow_matching as fm


def cfm_loss_per_example(velocity_fn, process, x0, x1, t):
    """[B] squared error of velocity_fn against the conditional velocity of the path."""
    x_t, target = flow.interpolate(process, x0, x1, t)
    return jnp.mean(jnp.square(velocity_fn(x_t, t) - target), axis=-1)


MEAN = np.array([0.5, -1.0], np.float32)
COV = np.array([[1.0, 0.6], [0.6, 0.5]], np.float32)
SIGMA_MIN = 0.1
BETA_MIN, BETA_MAX = 0.1, 20.0


def _ot_coefs(t):
    return 1 - t, -1.0, SIGMA_MIN + (1 - SIGMA_MIN) * t, 1 - SIGMA_MIN


def _vp_coefs(t):
    dlog = -0.5 * t * (BETA_MAX - BETA_MIN) - 0.5 * BETA_MIN
    a = np.exp(-0.25 * t**2 * (BETA_MAX - BETA_MIN) - 0.5 * t * BETA_MIN)
    s = np.sqrt(1 - a**2)
    return a, a * dlog, s, -a * a * dlog / s


def _min_loss_at(t, coefs):
    """tr Cov(u | x_t) / D for u = a' x0 + s' x1, x_t = a x0 + s x1, x0 ~ N(mu, C), x1 ~ N(0, I)."""
    a, da, s, ds = coefs(t)
    eye = np.eye(2)
    s_uu = da**2 * COV + ds**2 * eye
    s_ux = da * a * COV + ds * s * eye
    s_xx = a**2 * COV + s**2 * eye
    return np.trace(s_uu - s_ux @ np.linalg.solve(s_xx, s_ux.T)) / 2


# The VP conditional velocity has sigma'(t) ~ t^(-1/2) at t = 0, so its CFM loss integrates
# log-divergently there: VP training starts at t_min > 0.
CASES = {
    "ot": (processes.OTPath(sigma_min=SIGMA_MIN), _ot_coefs, 0.0),
    "vp": (processes.VP(beta_min=BETA_MIN, beta_max=BETA_MAX), _vp_coefs, 1e-3),
}


@pytest.mark.parametrize("path", ["ot", "vp"])
@pytest.mark.parametrize("dist", ["uniform", "logit_normal"])
def test_cfm_loss_of_exact_velocity_is_the_closed_form_minimum(path, dist):
    process, coefs, t_min = CASES[path]

    def density(t):  # of t = t_min + (1 - t_min) u, u ~ U[0, 1] or logit-normal(0.3, 0.8)
        u = (t - t_min) / (1 - t_min)
        if dist == "uniform":
            return 1 / (1 - t_min)
        return scipy.stats.norm.pdf(np.log(u / (1 - u)), 0.3, 0.8) / (u * (1 - u) * (1 - t_min))

    expected, _ = scipy.integrate.quad(
        lambda t: density(t) * _min_loss_at(t, coefs), t_min, 1, limit=200, epsabs=1e-7
    )

    gm = GaussianMixture.gaussian(MEAN, COV)
    velocity = gm.denoiser(process).velocity
    kwargs = {"mean": 0.3, "std": 0.8} if dist == "logit_normal" else {}
    recipe = fm.flow_matching(
        process, time_distribution=dist, time_distribution_kwargs=kwargs, t_min=t_min
    )
    loss_fn = recipe.make_loss(lambda params, x, t, cond=None, key=None: velocity(x, t))

    n = 40000
    x0 = gm.sample(jax.random.key(1), n)
    value, metrics = jax.jit(loss_fn)({"model": {}}, {"x": x0}, jax.random.key(2))

    # Standard error of the Monte Carlo mean, from the per-example losses of an independent draw.
    k_t, k_n = jax.random.split(jax.random.key(3))
    per = jax.jit(cfm_loss_per_example, static_argnums=(0,))(
        velocity, process, x0, jax.random.normal(k_n, x0.shape), recipe.objective.sample_t(k_t, n)
    )
    stderr = float(jnp.std(per)) / np.sqrt(n)
    assert abs(float(value) - expected) < 4 * stderr, (float(value), expected, stderr)
    assert float(metrics["loss"]) == float(value)


def test_shifted_field_pays_the_squared_shift():
    """E||v* + c - u||^2 = E||v* - u||^2 + c^2 per feature, since E[u | x_t] = v*."""
    process = processes.OTPath(sigma_min=SIGMA_MIN)
    gm = GaussianMixture.gaussian(MEAN, COV)
    velocity = gm.denoiser(process).velocity
    n, c = 40000, 0.3
    k0, k1, kt = jax.random.split(jax.random.key(0), 3)
    x0, x1 = gm.sample(k0, n), jax.random.normal(k1, (n, 2))
    t = jax.random.uniform(kt, (n,))
    per = jax.jit(cfm_loss_per_example, static_argnums=(0,))
    base = per(velocity, process, x0, x1, t)
    shifted = per(lambda x, s: velocity(x, s) + c, process, x0, x1, t)
    # The difference is c^2 + 2 c mean(v* - u), whose second term has zero mean.
    diff = shifted - base
    stderr = float(jnp.std(diff)) / np.sqrt(n)
    assert abs(float(jnp.mean(diff)) - c**2) < 4 * stderr


def test_ot_path_is_the_seed_path_reversed():
    """OT path: x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) x1."""
    process = processes.OTPath(sigma_min=SIGMA_MIN)
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(process.alpha(t), 1 - t, atol=1e-7)
    np.testing.assert_allclose(process.sigma(t), SIGMA_MIN + (1 - SIGMA_MIN) * t, atol=1e-7)
    with pytest.raises(ValueError, match="sigma_min"):
        processes.OTPath(sigma_min=1.0)


def test_time_sampler_moments():
    n = 50000
    rf = processes.RectifiedFlow()
    logit_normal = fm.flow_matching(
        rf, time_distribution="logit_normal", time_distribution_kwargs={"mean": 0.3, "std": 0.8}
    ).objective
    t = jax.jit(logit_normal.sample_t, static_argnums=1)(jax.random.key(0), n)
    logit = np.log(np.asarray(t) / (1 - np.asarray(t)))
    assert abs(logit.mean() - 0.3) < 4 * 0.8 / np.sqrt(n)
    assert abs(logit.std() - 0.8) < 4 * 0.8 / np.sqrt(2 * n)
    u = fm.flow_matching(rf, t_min=0.2).objective.sample_t(jax.random.key(1), n)
    assert float(u.min()) >= 0.2 and abs(float(u.mean()) - 0.6) < 4 * 0.8 / np.sqrt(12 * n)


@pytest.mark.parametrize("coupling", ["exact", "sinkhorn"])
def test_ot_coupling_shortens_pairs(coupling):
    """OT pairing can only lower the total squared distance of the minibatch pairs."""
    k0, k1, kc = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(k0, (64, 4, 4, 1)) + 2.0
    x1 = jax.random.normal(k1, (64, 4, 4, 1))
    paired = jax.jit(flow.couple, static_argnums=(0, 4))(coupling, kc, x0, x1, 0.01)
    cost = lambda y: float(jnp.sum(jnp.square(x0 - y)))  # noqa: E731
    assert cost(paired) < cost(x1)
    if coupling == "exact":
        np.testing.assert_allclose(np.sort(paired.ravel()), np.sort(x1.ravel()))


def test_reflow_batch_noise_is_used_as_given():
    """With batch["noise"], an exactly straight field for those pairs has zero loss."""
    process = processes.RectifiedFlow()
    x0 = jax.random.normal(jax.random.key(0), (8, 2))
    x1 = jax.random.normal(jax.random.key(1), (8, 2))
    # For the pair (x0, x1) on the line x_t = (1 - t) x0 + t x1, the velocity is x1 - x0.
    recipe = fm.flow_matching(process)
    loss_fn = recipe.make_loss(lambda params, x, t, cond=None, key=None: x1 - x0)
    value, _ = jax.jit(loss_fn)({"model": {}}, {"x": x0, "noise": x1}, jax.random.key(2))
    assert float(value) == 0.0


def test_builder_validates():
    with pytest.raises(ValueError, match="velocity"):
        fm.flow_matching(processes.RectifiedFlow(), prediction="eps")
    with pytest.raises(ValueError, match="coupling"):
        fm.flow_matching(processes.RectifiedFlow(), coupling="greedy")
    with pytest.raises(ValueError, match="distribution"):
        fm.flow_matching(processes.RectifiedFlow(), time_distribution="beta")
    with pytest.raises(ValueError, match="OT coupling"):
        fm.ot_cfm(processes.RectifiedFlow(), coupling="independent")
    assert fm.ot_cfm(processes.RectifiedFlow()).name == "ot_cfm"


def test_learned_gaussian_to_gaussian_flow_converges_to_the_exact_linear_map():
    """Flow matching on Gaussian data: the learned ODE map noise -> data approaches the exact
    PF-ODE map, which is affine, z -> A z + b (GaussianMixture.ode_solution): the error shrinks
    with training and the affine fit of the learned map is the exact (A, b)."""
    import optax

    from diffjax import models
    from diffjax.methods import rectified_flow
    from diffjax.train.experiment import apply_fn_of
    from diffjax.train.state import create_train_state, make_train_step

    rf = processes.RectifiedFlow()
    gm = GaussianMixture.gaussian(jnp.array([1.0, -0.5]), jnp.array([[0.5, 0.3], [0.3, 0.4]]))
    module = models.get("mlp", features=64, num_blocks=2, out_channels=2)
    apply_fn = apply_fn_of(module)
    recipe = fm.flow_matching(rf)
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, 1500))
    step = jax.jit(make_train_step(recipe.make_loss(apply_fn), optimizer, 0.99))
    init = {
        "model": nn.meta.unbox(module.init(jax.random.key(0), jnp.zeros((1, 2)), jnp.zeros((1,))))[
            "params"
        ]
    }
    state = create_train_state(jax.random.key(1), lambda _: init, optimizer)
    z = jax.random.normal(jax.random.key(2), (4000, 2))
    exact = gm.ode_solution(z, 1.0, 0.0, rf)
    design = np.c_[np.asarray(z), np.ones(len(z))]
    exact_map = np.linalg.lstsq(design, np.asarray(exact), rcond=None)[0]  # [[A^T], [b]]
    np.testing.assert_allclose(design @ exact_map, exact, atol=1e-4)  # exact map is affine

    @jax.jit
    def learned_map(params):
        velocity = recipe.denoiser(apply_fn, params).velocity
        return rectified_flow.simulate(velocity, z, 40, "rk4")[0]

    errors = {}
    for k in range(1, 1501):
        state, _ = step(state, {"x": gm.sample(jax.random.fold_in(jax.random.key(3), k), 512)})
        if k in (250, 1500):
            out = learned_map(state.ema_params)
            errors[k] = float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(out - exact), -1))))
    fit = np.linalg.lstsq(design, np.asarray(out), rcond=None)[0]
    assert errors[1500] < errors[250] / 3, errors
    # RK4 with 40 steps is exact to ~1e-6 here; what is left is the learned field's error.
    assert errors[1500] < 0.03, errors
    np.testing.assert_allclose(fit, exact_map, atol=0.02)
