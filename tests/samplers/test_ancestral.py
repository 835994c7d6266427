"""DDPM and DDIM against closed forms: DDPM's Algorithm 2, Gaussian / mixture data, exact ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes, samplers
from diffjax.denoisers import Denoiser
from diffjax.preconditioning import LearnedVariance

from .closed_forms import (
    COV,
    GAUSSIAN,
    MEAN,
    MIXTURE,
    VP,
    assert_gaussian_moments,
    assert_weights,
    gaussian_denoiser,
    observed_order,
)

N_SAMPLES = 4000


def _run(sampler, denoiser, x_init, num_steps, key=0):
    fn = jax.jit(lambda k, x: sampler(k, denoiser, x, num_steps=num_steps))
    return np.asarray(fn(jax.random.PRNGKey(key), x_init))


def _noise(n, seed=1):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, 2))


def test_ddpm_step_is_algorithm_2():
    """On DDPM's own T-step table, one step from i / T to (i - 1) / T is Algorithm 2:
    x_{i-1} = (x_i - beta_i / sqrt(1 - abar_i) eps) / sqrt(1 - beta_i) + sqrt(var) z with
    var = beta_i or beta_tilde_i = beta_i (1 - abar_{i-1}) / (1 - abar_i)."""
    ddpm = processes.get("ddpm_linear", num_steps=1000)
    i = 400
    betas, abar = ddpm.betas, ddpm.alphas_cumprod  # float64 tables, index i - 1 for step i
    eps_fn = lambda x, t: jnp.sin(3.0 * x) + t[:, None]  # noqa: E731  any smooth eps-model
    den = Denoiser(eps_fn, "eps", ddpm)
    x, key = _noise(8), jax.random.PRNGKey(5)
    grid = jnp.array([i / 1000, (i - 1) / 1000, 0.0])
    beta, abar_t, abar_s = betas[i - 1], abar[i - 1], abar[i - 2]
    eps = np.asarray(eps_fn(x, jnp.full((8,), i / 1000)))
    z = np.asarray(jax.random.normal(jax.random.fold_in(key, 0), x.shape))  # step 0's noise
    mean = (np.asarray(x) - beta / np.sqrt(1 - abar_t) * eps) / np.sqrt(1 - beta)
    for variance in ("beta_tilde", "beta"):
        sampler = samplers.get("ddpm", variance=variance)
        run = lambda k, x, v=sampler: v(k, den, x, timesteps=grid, return_trajectory=True)  # noqa: E731
        _, traj = jax.jit(run)(key, x)
        var = beta * (1 - abar_s) / (1 - abar_t) if variance == "beta_tilde" else beta
        np.testing.assert_allclose(traj[1], mean + np.sqrt(var) * z, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_reproduces_gaussian(variance):
    sampler = samplers.get("ddpm", variance=variance)
    x = _run(sampler, gaussian_denoiser(VP), _noise(N_SAMPLES), 1000)
    assert_gaussian_moments(x, MEAN, COV)


def test_ddpm_reproduces_mixture_weights():
    x = _run(samplers.get("ddpm"), MIXTURE.denoiser(VP), _noise(N_SAMPLES), 500)
    assert_weights(x, 0.7)


def test_ddim_stochastic_reproduces_gaussian():
    x = _run(samplers.get("ddim", eta=0.5), gaussian_denoiser(VP), _noise(N_SAMPLES), 1000)
    assert_gaussian_moments(x, MEAN, COV)


def test_discrete_process_defaults_to_its_steps():
    """For a T-step DDPM table the default grid is i / T and any grid is snapped to it; other
    samplers keep their own grids and step counts."""
    ddpm = processes.get("ddpm_linear", num_steps=100)
    sampler = samplers.get("ddpm")
    np.testing.assert_allclose(sampler.timesteps(ddpm), np.arange(100, -1, -1) / 100, atol=1e-7)
    sub = np.asarray(sampler.timesteps(ddpm, 7)) * 100
    np.testing.assert_allclose(sub, np.round(sub), atol=1e-4)
    with pytest.raises(ValueError, match="exceeds"):
        sampler.timesteps(ddpm, 101)
    assert samplers.get("ddim").timesteps(VP).shape == (51,)
    assert samplers.get("heun").timesteps(ddpm).shape == (101,)


def test_ddim_eta_one_is_ddpm_step_by_step():
    den = MIXTURE.denoiser(VP)
    x, key = _noise(64), jax.random.PRNGKey(3)
    run = lambda s: jax.jit(lambda k, x: s(k, den, x, num_steps=50, return_trajectory=True))  # noqa: E731
    _, a = run(samplers.get("ddim", eta=1.0))(key, x)
    _, b = run(samplers.get("ddpm"))(key, x)
    assert a.shape == (51, 64, 2)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_ddim_deterministic_converges_at_order_one():
    """eta = 0 is a first-order solver of the probability-flow ODE from t = 1 to t = 0."""
    x1 = _noise(256)
    exact = np.asarray(GAUSSIAN.ode_solution(x1, 1.0, 0.0, VP))
    steps = [10, 20, 40, 80]
    sampler, den = samplers.get("ddim"), gaussian_denoiser(VP)
    errors = [np.max(np.abs(_run(sampler, den, x1, n) - exact)) for n in steps]
    assert abs(observed_order(steps, errors) - 1.0) < 0.3
    assert errors[-1] < 0.1


def test_last_step_returns_x0_prediction():
    den = gaussian_denoiser(VP)
    x1 = _noise(16)
    ts = jnp.array([1.0, 0.3, 0.0])
    for name, options in [("ddpm", {}), ("ddpm", {"variance": "beta"}), ("ddim", {"eta": 1.0})]:
        sampler = samplers.get(name, **options)
        run = lambda k, x, s=sampler: s(k, den, x, timesteps=ts, return_trajectory=True)  # noqa: E731
        out, traj = jax.jit(run)(jax.random.PRNGKey(0), x1)
        np.testing.assert_allclose(out, GAUSSIAN.x0_mean(traj[1], 0.3, VP), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name,options",
    [("ddpm", {"variance": "beta_hat"}), ("ddim", {"eta": 1.5}), ("ddim", {"eta": -0.1})],
)
def test_invalid_options_raise(name, options):
    with pytest.raises(ValueError):
        samplers.get(name, **options)


def test_grid_arguments_are_validated():
    sampler, den = samplers.get("ddim"), gaussian_denoiser(VP)
    with pytest.raises(ValueError, match="not both"):
        sampler(jax.random.PRNGKey(0), den, _noise(2), num_steps=3, timesteps=jnp.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="N \\+ 1"):
        sampler(jax.random.PRNGKey(0), den, _noise(2), timesteps=jnp.array([1.0]))
    assert sampler.nfe(37) == 37


@pytest.mark.parametrize(("v", "fixed"), [(1.0, "beta"), (-1.0, "beta_tilde"), (0.3, None)])
def test_learned_variance_interpolates_beta_and_beta_tilde(v, fixed):
    """iDDPM: v = 1 is the forward variance beta, v = -1 the posterior beta_tilde, and in between
    the log variance is the interpolation f log beta + (1 - f) log beta_tilde, f = (v + 1) / 2."""
    exact = MIXTURE.denoiser(VP)
    net = lambda x, t: jnp.concatenate([exact.x0(x, t), jnp.full_like(x, v)], -1)  # noqa: E731
    learned = Denoiser(net, LearnedVariance("x0"), VP)
    x, key = _noise(64), jax.random.PRNGKey(3)
    run = lambda s, d: jax.jit(lambda k, x: s(k, d, x, num_steps=20, return_trajectory=True))  # noqa: E731
    _, got = run(samplers.get("ddpm", variance="learned"), learned)(key, x)
    if fixed is not None:
        _, want = run(samplers.get("ddpm", variance=fixed), exact)(key, x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        # One step from t = 1 to s = 19/20 from the same x and noise: the noise scale is the
        # geometric interpolation of the two fixed ones.
        _, beta = run(samplers.get("ddpm", variance="beta"), exact)(key, x)
        _, tilde = run(samplers.get("ddpm", variance="beta_tilde"), exact)(key, x)
        f = (v + 1.0) / 2.0
        t, s = 1.0, 19.0 / 20.0
        sig_t, sig_s = float(VP.sigma(t)), float(VP.sigma(s))
        c_beta, c_tilde = sig_t, sig_s  # both times sqrt(r), which cancels in the ratio
        c_learned = c_beta**f * c_tilde ** (1 - f)
        # x_s = m + c z: the same mean m and noise z, so (x_s - x_tilde) = (c - c_tilde) z.
        z = (np.asarray(beta[1]) - np.asarray(tilde[1])) / (c_beta - c_tilde)
        np.testing.assert_allclose(
            np.asarray(got[1]) - np.asarray(tilde[1]),
            (c_learned - c_tilde) * z,
            rtol=1e-3,
            atol=1e-5,
        )


def test_learned_variance_needs_a_learned_variance_model():
    with pytest.raises(ValueError, match="no learned variance"):
        samplers.get("ddpm", variance="learned")(
            jax.random.PRNGKey(0), MIXTURE.denoiser(VP), _noise(4), num_steps=3
        )


def test_ddim_runs_up_an_increasing_grid_as_inversion():
    """eta = 0 on an increasing grid is DDIM inversion: finite, and for the exact Gaussian it
    approaches the exact PF-ODE map with the number of steps."""
    from diffjax.analytic.gaussian import GaussianMixture

    data = GaussianMixture.gaussian(jnp.array([0.5, -0.3]), jnp.array([[0.4, 0.1], [0.1, 0.2]]))
    proc = processes.get("vp")
    x0 = data.sample(jax.random.key(0), 16)
    exact = data.ode_solution(x0, 1e-3, 1.0, proc)
    ddim = samplers.get("ddim")
    errors = []
    for n in (20, 80):
        grid = proc.t_of_log_snr(jnp.linspace(proc.log_snr(1e-3), proc.log_snr(1.0), n + 1))
        up = jax.jit(lambda g: ddim(jax.random.key(1), data.denoiser(proc), x0, timesteps=g))(grid)
        assert np.all(np.isfinite(up))
        errors.append(float(np.max(np.abs(up - exact))))
    assert errors[1] < 0.5 * errors[0], errors
