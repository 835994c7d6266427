"""MeanFlow: the jvp target vs finite differences; the exact average velocity of a Gaussian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.losses import flow
from diffjax.methods import meanflow as mf

MEAN = jnp.array([0.5, -1.0])
COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])
RF = processes.RectifiedFlow()


def _exact_average_velocity(gm):
    """u(z, r, t) = (z_t - z_r) / (t - r) with z_r the exact PF-ODE map of Gaussian data."""

    def u(z, r, t):
        return (z - gm.ode_solution(z, t, r, RF)) / (t - r)[:, None]

    return u


def _smooth_field(z, r, t):
    """An arbitrary smooth u(z, r, t) with nonzero d_z u, d_t u and d_r u."""
    w = jnp.array([[0.3, -0.7], [1.1, 0.2]])
    return jnp.tanh(z @ w) * (1.0 + t[:, None] ** 2) + jnp.sin(3.0 * t - r)[:, None] * z


def test_jvp_target_equals_finite_differences():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 3)
        z = jax.random.normal(k[0], (16, 2), jnp.float64)
        v = jax.random.normal(k[1], (16, 2), jnp.float64)
        t = jax.random.uniform(k[2], (16,), jnp.float64, 0.3, 0.9)
        r = 0.5 * t
        u, u_tgt = jax.jit(flow.meanflow_target, static_argnums=0)(_smooth_field, z, r, t, v)
        h = 1e-5
        # d/dt u(z + tau v, r, t + tau) at tau = 0, central differences (error O(h^2)).
        dudt = (_smooth_field(z + h * v, r, t + h) - _smooth_field(z - h * v, r, t - h)) / (2 * h)
        np.testing.assert_allclose(u, _smooth_field(z, r, t), rtol=1e-12)
        np.testing.assert_allclose(u_tgt, v - (t - r)[:, None] * dudt, rtol=1e-8, atol=1e-8)


def test_exact_average_velocity_satisfies_the_meanflow_identity():
    """With v the exact marginal velocity, u_exact = v - (t - r) d/dt u_exact (zero loss)."""
    gm = GaussianMixture.gaussian(MEAN, COV)
    u_fn = _exact_average_velocity(gm)
    k = jax.random.split(jax.random.key(1), 3)
    n = 256
    t = jax.random.uniform(k[0], (n,), minval=0.1, maxval=1.0)
    r = t * jax.random.uniform(k[1], (n,), maxval=0.9)  # r <= 0.9 t, away from the r = t limit
    z = gm.sample(k[2], n) * (1 - t)[:, None] + jax.random.normal(k[2], (n, 2)) * t[:, None]
    v = gm.denoiser(RF).velocity(z, t)
    u, u_tgt = jax.jit(flow.meanflow_target, static_argnums=0)(u_fn, z, r, t, v)
    # float32 round-off of the closed form, amplified by 1 / (t - r) <= 10.
    np.testing.assert_allclose(u_tgt, u, atol=5e-4)
    # A velocity that is not the marginal one breaks the identity.
    _, bad = flow.meanflow_target(u_fn, z, r, t, 1.1 * v)
    assert float(jnp.max(jnp.abs(bad - u))) > 0.05


def test_recipe_loss_is_zero_for_the_exact_model_of_point_data():
    """For data at one point mu, the conditional velocity is the marginal one and the average
    velocity is u(z, r, t) = (z - mu) / t: the loss vanishes for every (r, t), including r = t."""
    mu = jnp.array([0.7, -0.2])

    def apply_fn(params, z, times, cond=None, key=None):
        assert times.shape == (z.shape[0], 2)
        return (z - mu[None]) / times[:, :1]

    recipe = mf.meanflow(RF, time_distribution="uniform")
    loss_fn = recipe.make_loss(apply_fn)
    x = jnp.broadcast_to(mu, (128, 2))
    value, metrics = jax.jit(loss_fn)({"model": {}}, {"x": x}, jax.random.key(3))
    assert float(metrics["squared_error"]) < 1e-9
    assert float(value) < 1e-6


@pytest.mark.parametrize("time_scale", [1.0, 0.01])
def test_recipe_loss_with_network_times_r_t_is_zero_for_the_exact_model_of_point_data(time_scale):
    """Fed s (r, t), the exact u(z, r, t) = (z - mu) / t reads s t from column 1; the jvp's
    tangent (0, 1) reaches it through the feed. A model reading column 0 (now r) is not exact."""
    mu = jnp.array([0.7, -0.2])
    x = jnp.broadcast_to(mu, (128, 2))

    def squared_error(column):
        def apply_fn(params, z, times, cond=None, key=None):
            return (z - mu[None]) / (times[:, column : column + 1] / time_scale)

        recipe = mf.meanflow(
            RF, time_distribution="uniform", network_times="r_t", time_scale=time_scale
        )
        loss_fn = recipe.make_loss(apply_fn)
        return float(
            jax.jit(loss_fn)({"model": {}}, {"x": x}, jax.random.key(3))[1]["squared_error"]
        )

    assert squared_error(1) < 1e-9
    assert squared_error(0) > 1.0


def test_recipe_loss_is_the_adaptively_weighted_error():
    """A field off by a constant c: D = c - (t - r) d/dt c = c, so loss = 2c^2 / (2c^2 + eps)."""
    c = 0.3
    mu = jnp.array([0.7, -0.2])

    def apply_fn(params, z, times, cond=None, key=None):
        return (z - mu[None]) / times[:, :1] + c

    for power, expected in [(0.0, 2 * c**2), (1.0, 2 * c**2 / (2 * c**2 + 1e-3))]:
        loss_fn = mf.meanflow(RF, adaptive_power=power).make_loss(apply_fn)
        x = jnp.broadcast_to(mu, (64, 2))
        value, _ = jax.jit(loss_fn)({"model": {}}, {"x": x}, jax.random.key(4))
        np.testing.assert_allclose(float(value), expected, rtol=1e-4)


def test_time_pairs():
    objective = mf.meanflow(RF).objective  # the paper's logit-normal, equal_fraction 0.75
    r, t = jax.jit(objective.sample_times, static_argnums=1)(jax.random.key(5), 40000)
    assert bool(jnp.all(r <= t))
    frac = float(jnp.mean(r == t))
    assert abs(frac - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 40000)


def test_builder_validates():
    with pytest.raises(ValueError, match="velocity"):
        mf.meanflow(RF, prediction="eps")
    with pytest.raises(ValueError, match="null"):
        mf.meanflow(RF, guidance_scale=2.0)
    with pytest.raises(ValueError, match="fractions"):
        mf.meanflow(RF, equal_fraction=1.5)
    with pytest.raises(ValueError, match="network_times"):
        mf.meanflow(RF, network_times="r")


def test_guided_target_runs_and_keeps_the_exact_model_exact():
    """With the CFG target and a label-blind exact model, v_null = v: the loss stays zero."""
    mu = jnp.array([0.7, -0.2])

    def apply_fn(params, z, times, cond=None, key=None):
        assert cond is not None and cond.shape == (z.shape[0],)
        return (z - mu[None]) / times[:, :1]

    loss_fn = mf.meanflow(RF, guidance_scale=2.0, null_cond=10).make_loss(apply_fn)
    # Labels 0..9 and the null class 10 (examples whose label the trainer dropped).
    batch = {"x": jnp.broadcast_to(mu, (32, 2)), "label": jnp.arange(32) % 11}
    value, _ = jax.jit(loss_fn)({"model": {}}, batch, jax.random.key(6))
    assert float(value) < 1e-6


def test_guided_target_needs_the_model_null_class_and_label_dropout():
    guided = mf.meanflow(RF, guidance_scale=2.0, null_cond=10).objective
    guided.check_conditioning(10, 0.1)
    with pytest.raises(ValueError, match="loss.null_cond=10 to equal model.num_classes=8"):
        guided.check_conditioning(8, 0.1)
    with pytest.raises(ValueError, match="model.p_uncond"):
        guided.check_conditioning(10, 0.0)
    mf.meanflow(RF).objective.check_conditioning(0, 0.0)  # no guidance: anything goes


def test_guided_target_uses_the_unconditional_velocity_only_where_labels_are_kept():
    """Dropped examples (label = null_cond) regress on the plain target, kept ones on the
    guided mix: an all-dropped batch has the unguided loss, an all-kept one does not."""

    def apply_fn(params, z, times, cond=None, key=None):
        return jnp.broadcast_to(cond[:, None].astype(z.dtype), z.shape)  # velocity = label

    def loss(guidance, label):
        objective = mf.meanflow(RF, guidance_scale=guidance, null_cond=4, adaptive_power=0.0)
        batch = {"x": jnp.zeros((16, 2)), "label": jnp.full((16,), label)}
        return float(objective.make_loss(apply_fn)({"model": {}}, batch, jax.random.key(7))[0])

    assert loss(3.0, 4) == pytest.approx(loss(1.0, 4), rel=1e-6)
    assert loss(3.0, 1) != pytest.approx(loss(1.0, 1), rel=1e-3)
