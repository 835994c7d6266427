"""Editing against exact answers: RePaint on Gaussians, DDIM inversion vs the exact PF-ODE map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import editing, processes, samplers
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.denoisers import Denoiser
from diffjax.processes import expand

VP = processes.get("vp")
MEAN = jnp.array([0.5, -0.3])
COV = jnp.array([[1.0, 0.8], [0.8, 1.0]])  # correlation 0.8: x = [known, unknown]
GAUSSIAN = GaussianMixture.gaussian(MEAN, COV)
DENOISER = GAUSSIAN.denoiser(VP)


def _standard_normal_x0(x, t):
    alpha, sigma = expand(VP.alpha(t), x), expand(VP.sigma(t), x)
    return alpha * x / (alpha**2 + sigma**2)


IMAGE_DENOISER = Denoiser(_standard_normal_x0, "x0", VP)  # exact for N(0, I) data, any shape


def test_repaint_keeps_known_pixels_exactly():
    x_known = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    mask = np.zeros((1, 4, 4, 1), np.float32)
    mask[:, :2] = 1.0  # top half known
    fn = jax.jit(lambda k, x: editing.repaint(k, IMAGE_DENOISER, x, mask, 8, 2, 3))
    out = np.asarray(fn(jax.random.key(1), x_known))
    np.testing.assert_array_equal(out[:, :2], np.asarray(x_known)[:, :2])
    assert np.all(np.isfinite(out)) and not np.allclose(out[:, 2:], np.asarray(x_known)[:, 2:])


def test_repaint_takes_a_traced_mask():
    x_known = jax.random.normal(jax.random.key(0), (3, 2))
    mask = np.array([1.0, 0.0], np.float32)
    traced = jax.jit(lambda k, x, m: editing.repaint(k, DENOISER, x, m, 6, 2, 2))
    const = jax.jit(lambda k, x: editing.repaint(k, DENOISER, x, mask, 6, 2, 2))
    key = jax.random.key(1)
    np.testing.assert_allclose(traced(key, x_known, mask), const(key, x_known), atol=1e-6)


def test_repaint_all_known_returns_x_known():
    x_known = jax.random.normal(jax.random.key(0), (3, 2))
    fn = jax.jit(lambda k, x: editing.repaint(k, DENOISER, x, np.ones(2, np.float32), 5, 1, 2))
    np.testing.assert_array_equal(fn(jax.random.key(1), x_known), x_known)


@pytest.mark.parametrize("process_name", ["vp", "ddpm_linear"])
def test_repaint_all_unknown_is_the_ddpm_sampler(process_name):
    """mask = 0 and resamplings = 1: the `ddpm` sampler, same keys, same grid (snapped on a
    discrete process)."""
    denoiser = GAUSSIAN.denoiser(processes.get(process_name))
    key, x = jax.random.key(3), jnp.zeros((64, 2))
    out = jax.jit(lambda k: editing.repaint(k, denoiser, x, np.zeros((1, 2), np.float32), 20))(key)
    k_init, k_loop = jax.random.split(key)
    x1 = denoiser.process.prior_sample(k_init, x.shape)
    ref = jax.jit(lambda k, x1: samplers.get("ddpm")(k, denoiser, x1, 20))(k_loop, x1)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def _unknown_given_known(resamplings: int, n: int = 4000, known: float = 2.0):
    """RePaint draws of the unknown coordinate given x[0] = known, with the exact conditional."""
    x_known = jnp.broadcast_to(jnp.array([known, 0.0]), (n, 2))
    mask = np.array([1.0, 0.0], np.float32)
    fn = jax.jit(lambda k: editing.repaint(k, DENOISER, x_known, mask, 50, 1, resamplings))
    u = np.asarray(fn(jax.random.key(0)))[:, 1]
    c = np.asarray(COV)
    mean = float(MEAN[1] + c[0, 1] / c[0, 0] * (known - MEAN[0]))
    return u, mean, c[1, 1] - c[0, 1] ** 2 / c[0, 0]


def test_repaint_resampling_moves_the_conditional_towards_the_exact_one():
    """Replacement alone (r = 1) misses the conditional mean by many standard errors; resampling
    (r = 10, j = 1) closes most of the gap. Not exact at 50 steps: see the module's notes."""
    errors = []
    for r in (1, 10):
        u, mean, var = _unknown_given_known(r)
        errors.append(abs(u.mean() - mean))
    se = np.sqrt(var / u.shape[0])
    assert errors[0] > 20 * se
    assert errors[1] < 0.3 * errors[0]


def test_repaint_independent_unknown_keeps_its_marginal():
    """With independent coordinates the unknown one must follow its own marginal for any mask."""
    mixture = GaussianMixture.gaussian(jnp.array([1.0, 0.3]), jnp.diag(jnp.array([1.0, 0.5])))
    denoiser, n = mixture.denoiser(VP), 4000
    x_known = jnp.broadcast_to(jnp.array([3.0, 0.0]), (n, 2))
    mask = np.array([1.0, 0.0], np.float32)
    u = np.asarray(
        jax.jit(lambda k: editing.repaint(k, denoiser, x_known, mask, 200))(jax.random.key(2))
    )
    u = u[:, 1]
    assert abs(u.mean() - 0.3) < 5 * np.sqrt(0.5 / n)
    assert abs(u.var() - 0.5) < 5 * 0.5 * np.sqrt(2 / n) + 0.02  # MC + DDPM's 200-step bias


def test_repaint_schedule_is_one_scan_of_any_length():
    shapes = []
    for n in (5, 40):
        jaxpr = jax.make_jaxpr(
            lambda k, n=n: editing.repaint(k, DENOISER, jnp.zeros((2, 2)), np.zeros(2), n, 2, 3)
        )(jax.random.key(0))
        shapes.append(len(jaxpr.jaxpr.eqns))
        assert sum(e.primitive.name == "scan" for e in jaxpr.jaxpr.eqns) == 1
    assert shapes[0] == shapes[1]


def test_repaint_schedule_matches_repaint_jumps():
    np.testing.assert_array_equal(
        editing.repaint_schedule(10, 3, 2),
        [10, 9, 8, 7, 8, 9, 10, 9, 8, 7, 6, 5, 4, 5, 6, 7, 6, 5, 4, 3, 2, 1, 2, 3, 4, 3, 2, 1, 0],
    )
    np.testing.assert_array_equal(editing.repaint_schedule(4), [4, 3, 2, 1, 0])


@pytest.mark.parametrize(
    "mask, match",
    [(np.ones((3,)), "mask of shape"), (np.full((2,), 0.5), "mask must hold only 0")],
)
def test_repaint_rejects_bad_masks(mask, match):
    with pytest.raises(ValueError, match=match):
        editing.repaint(jax.random.key(0), DENOISER, jnp.zeros((4, 2)), mask, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=5, jump_length=6), "jump_length"),
        (dict(num_steps=5, resamplings=0), "resamplings"),
    ],
)
def test_repaint_rejects_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        editing.repaint(jax.random.key(0), DENOISER, jnp.zeros((4, 2)), np.ones(2), **kwargs)


def test_sdedit_returns_the_guide_as_t0_goes_to_zero():
    guide = GAUSSIAN.sample(jax.random.key(0), 16)
    ddpm = samplers.get("ddpm")
    errors = []
    for t0 in (1e-2, 1e-4, 1e-6):
        fn = jax.jit(lambda k, x, t0=t0: editing.sdedit(k, DENOISER, ddpm, x, t0, 4))
        errors.append(float(jnp.max(jnp.abs(fn(jax.random.key(1), guide) - guide))))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 3e-3, errors


def test_sdedit_from_t0_one_samples_the_data():
    """t0 = 1 forgets the guide: the moments of N(MEAN, COV) (VP's alpha(1) = 7e-3)."""
    n, guide = 4000, jnp.full((4000, 2), 5.0)
    fn = jax.jit(lambda k: editing.sdedit(k, DENOISER, samplers.get("ddpm"), guide, 1.0, 200))
    x = np.asarray(fn(jax.random.key(0)))
    np.testing.assert_array_less(np.abs(x.mean(0) - np.asarray(MEAN)), 5 * np.sqrt(1.0 / n) + 0.04)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(t0=0.0), "t0"), (dict(t0=1.5), "t0"), (dict(t0=0.5, num_steps=0), "num_steps")],
)
def test_sdedit_rejects_bad_arguments(kwargs, match):
    kwargs = dict(num_steps=4) | kwargs
    with pytest.raises(ValueError, match=match):
        editing.sdedit(
            jax.random.key(0), DENOISER, samplers.get("ddpm"), jnp.zeros((2, 2)), **kwargs
        )


def test_ddim_inversion_matches_the_exact_ode_map():
    """Encoding t_min -> 1 against `GaussianMixture.ode_solution`: first order in the step."""
    x0 = GAUSSIAN.sample(jax.random.key(0), 64)
    exact = GAUSSIAN.ode_solution(x0, 1e-3, 1.0, VP)
    errors = []
    for n in (50, 200, 800):
        z = jax.jit(lambda x, n=n: editing.ddim_invert(DENOISER, x, n))(x0)
        errors.append(float(jnp.max(jnp.abs(z - exact))))
    order = -np.polyfit(np.log([50, 200, 800]), np.log(errors), 1)[0]
    assert errors[-1] < 1e-2 and 0.9 < order < 1.1, (errors, order)  # 0.0087, 0.99


def test_ddim_inversion_then_decoding_recovers_x0():
    x0 = GAUSSIAN.sample(jax.random.key(0), 64)
    errors = []
    for n in (20, 80, 320):
        fn = jax.jit(
            lambda x, n=n: editing.ddim_decode(DENOISER, editing.ddim_invert(DENOISER, x, n), n)
        )
        errors.append(float(jnp.max(jnp.abs(fn(x0) - x0))))
    # 0.68, 0.18, 0.047: first order, each direction's error shrinking 4x per 4x steps
    assert errors[0] > 3 * errors[1] and errors[1] > 3 * errors[2] and errors[2] < 0.06, errors


def test_ddim_decode_is_the_ddim_sampler_on_the_reversed_grid():
    x1 = jax.random.normal(jax.random.key(0), (8, 2))
    ts = editing.inversion_grid(VP, 20, 1e-3, 1.0)[::-1]
    ref = samplers.get("ddim")(jax.random.key(1), DENOISER, x1, timesteps=ts)
    np.testing.assert_allclose(
        jax.jit(lambda x: editing.ddim_decode(DENOISER, x, 20))(x1), ref, atol=1e-5
    )


def test_slerp_endpoints_and_norm():
    z0, z1 = jax.random.normal(jax.random.key(0), (2, 5, 3, 3, 2))
    z1 = (
        z1
        * jnp.linalg.norm(z0.reshape(5, -1), axis=1)[:, None, None, None]
        / jnp.linalg.norm(z1.reshape(5, -1), axis=1)[:, None, None, None]
    )
    fn = jax.jit(editing.slerp)
    np.testing.assert_allclose(fn(z0, z1, 0.0), z0, atol=1e-5)
    np.testing.assert_allclose(fn(z0, z1, 1.0), z1, atol=1e-5)
    for a in (0.25, 0.5, 0.9):
        np.testing.assert_allclose(
            jnp.linalg.norm(fn(z0, z1, a).reshape(5, -1), axis=1),
            jnp.linalg.norm(z0.reshape(5, -1), axis=1),
            rtol=1e-5,
        )
    np.testing.assert_allclose(fn(z0, z0, 0.3), z0, atol=1e-5)  # parallel: no 0 / 0


def test_interpolate_ends_at_the_inputs():
    x_a, x_b = jnp.array([[1.0, 0.5]]), jnp.array([[-0.5, -1.0]])
    path = jax.jit(lambda a, b: editing.interpolate(DENOISER, a, b, 5, 800))(x_a, x_b)
    assert path.shape == (5, 1, 2)
    np.testing.assert_allclose(path[0], x_a, atol=1e-2)
    np.testing.assert_allclose(path[-1], x_b, atol=1e-2)


@pytest.mark.parametrize("num_steps, num_points", [(0, 3), (4, 1)])
def test_inversion_rejects_bad_sizes(num_steps, num_points):
    with pytest.raises(ValueError, match="num_steps" if num_steps < 1 else "num_points"):
        editing.interpolate(DENOISER, jnp.zeros((1, 2)), jnp.ones((1, 2)), num_points, num_steps)
