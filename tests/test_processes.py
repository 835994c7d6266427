"""Processes against published formulas, NumPy tables and simulated forward SDE moments."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes

T_GRID = jnp.linspace(0.02, 0.98, 49)

VP_LIKE = ["ddpm_linear", "ddpm_cosine", "vp", "cosine", "vdm_learned"]
ALL = [*VP_LIKE, "subvp", "ve", "edm", "rectified_flow"]


def make(name, **kw):
    proc = processes.get(name, **kw)
    if name == "vdm_learned":
        proc = processes.get(name, hidden=16, **kw)
        proc = proc.bind(proc.init(jax.random.key(0)))
    return proc


def test_ddpm_linear_tables_match_numpy():
    proc = processes.get("ddpm_linear", num_steps=1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(proc.betas, betas, rtol=1e-12)
    np.testing.assert_allclose(proc.alphas_cumprod, np.cumprod(1.0 - betas), rtol=1e-12)


def test_ddpm_cosine_tables_match_formula():
    proc = processes.get("ddpm_cosine", num_steps=1000, s=0.008)
    i = np.arange(1001)
    f = np.cos(0.5 * np.pi * (i / 1000 + 0.008) / 1.008) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], 0.999)
    np.testing.assert_allclose(proc.betas, betas, rtol=1e-12)
    assert proc.betas.max() == pytest.approx(0.999)  # the last step is clipped
    # Where no beta is clipped, bar alpha_i = f(i) / f(0).
    np.testing.assert_allclose(proc.alphas_cumprod[:990], f[1:991] / f[0], rtol=1e-9)


@pytest.mark.parametrize("name", ["ddpm_linear", "ddpm_cosine"])
@pytest.mark.parametrize("num_steps", [1, 10, 1000])
def test_discrete_grid_points_and_interpolation(name, num_steps):
    proc = processes.get(name, num_steps=num_steps)
    i = jnp.arange(1, num_steps + 1, dtype=jnp.float32)
    alpha2 = jax.jit(lambda p, t: jnp.square(p.alpha(t)))(proc, i / num_steps)
    np.testing.assert_allclose(alpha2, proc.alphas_cumprod, rtol=1e-5, atol=1e-7)
    assert float(proc.alpha(0.0)) == 1.0 and float(proc.sigma(0.0)) == 0.0
    # sigma^2 is linear on [0, 1/T].
    u = jnp.array([0.25, 0.5, 0.75])
    s2 = jnp.square(proc.sigma(u / num_steps))
    np.testing.assert_allclose(s2, u * (1.0 - proc.alphas_cumprod[0]), rtol=1e-5)
    if num_steps > 1:  # log-SNR is linear between grid points: the midpoint is the average.
        lam = np.log(proc.alphas_cumprod) - np.log1p(-proc.alphas_cumprod)
        mid = (i[:-1] + 0.5) / num_steps
        # float32 resolves t * T to ~T eps, which moves lambda by up to its steepest slope.
        atol = 4 * np.abs(np.diff(lam)).max() * num_steps * np.finfo(np.float32).eps
        np.testing.assert_allclose(
            proc.log_snr(mid), 0.5 * (lam[:-1] + lam[1:]), rtol=1e-5, atol=atol
        )


@pytest.mark.parametrize("name", VP_LIKE)
def test_variance_preserving(name):
    proc = make(name)
    a, s = jax.jit(lambda p, t: (p.alpha(t), p.sigma(t)))(proc, T_GRID)
    np.testing.assert_allclose(a**2 + s**2, 1.0, atol=2e-6)


@pytest.mark.parametrize("name", ALL)
def test_log_snr_decreasing_and_consistent(name):
    proc = make(name)
    t = jnp.linspace(0.001, 0.999, 999)
    lam = jax.jit(lambda p, t: p.log_snr(t))(proc, t)
    assert np.all(np.diff(np.asarray(lam)) < 0)
    direct = 2 * (jnp.log(proc.alpha(t)) - jnp.log(proc.sigma(t)))
    np.testing.assert_allclose(lam, direct, rtol=1e-4, atol=1e-4)


def _vp_int_beta(t, bmin=0.1, bmax=20.0):
    return bmin * t + 0.5 * (bmax - bmin) * t**2


def _beta(t, bmin=0.1, bmax=20.0):
    return bmin + t * (bmax - bmin)


def test_vp_sde_coefficients():
    proc = processes.get("vp")
    t = np.asarray(T_GRID)
    f, g2 = jax.jit(lambda p, t: (p.f(t), p.g2(t)))(proc, T_GRID)
    np.testing.assert_allclose(f, -0.5 * _beta(t), rtol=1e-5)
    np.testing.assert_allclose(g2, _beta(t), rtol=1e-4)
    np.testing.assert_allclose(proc.alpha(T_GRID), np.exp(-0.5 * _vp_int_beta(t)), rtol=1e-5)


def test_subvp_sde_coefficients():
    proc = processes.get("subvp")
    t = np.asarray(T_GRID)
    f, g2 = jax.jit(lambda p, t: (p.f(t), p.g2(t)))(proc, T_GRID)
    np.testing.assert_allclose(f, -0.5 * _beta(t), rtol=1e-5)
    np.testing.assert_allclose(g2, _beta(t) * (1 - np.exp(-2 * _vp_int_beta(t))), rtol=1e-4)
    np.testing.assert_allclose(proc.sigma(T_GRID), 1 - np.exp(-_vp_int_beta(t)), rtol=1e-5)


def test_ve_sde_coefficients():
    proc = processes.get("ve", sigma_min=0.01, sigma_max=50.0)
    t = np.asarray(T_GRID)
    f, g2 = jax.jit(lambda p, t: (p.f(t), p.g2(t)))(proc, T_GRID)
    sigma = 0.01 * (50.0 / 0.01) ** t
    np.testing.assert_allclose(f, 0.0, atol=1e-7)
    np.testing.assert_allclose(g2, 2 * sigma**2 * math.log(50.0 / 0.01), rtol=1e-4)
    np.testing.assert_allclose(proc.sigma(T_GRID), sigma, rtol=1e-5)


def test_edm_and_trig_formulas():
    t = np.asarray(T_GRID)
    edm = processes.get("edm", sigma_min=0.002, sigma_max=80.0)
    np.testing.assert_allclose(edm.sigma(T_GRID), 0.002 + t * (80 - 0.002), rtol=1e-6)
    np.testing.assert_allclose(edm.g2(T_GRID), 2 * edm.sigma(T_GRID) * (80 - 0.002), rtol=1e-5)
    cos = processes.get("cosine")
    np.testing.assert_allclose(cos.log_snr(T_GRID), -2 * np.log(np.tan(np.pi * t / 2)), atol=1e-5)


def test_vdm_learned_schedule():
    proc = make("vdm_learned")
    lam = proc.log_snr(jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(lam, [13.3, -5.0], rtol=1e-6)
    # gamma against a NumPy evaluation of the monotone network and its endpoint rescaling.
    p = jax.tree.map(np.asarray, proc.params)
    dense = [p[f"_PositiveDense_{k}"] for k in range(3)]

    def g(t):
        h = t[:, None] @ np.abs(dense[0]["kernel"]) + dense[0]["bias"]
        z = 1 / (1 + np.exp(-(h @ np.abs(dense[1]["kernel"]) + dense[1]["bias"])))
        return (h + z @ np.abs(dense[2]["kernel"]) + dense[2]["bias"])[:, 0]

    t = np.asarray(T_GRID, np.float64)
    ends = g(np.array([0.0, 1.0]))
    gamma_1 = p["gamma_0"] + np.exp(p["log_gamma_span"])  # gamma_0 < gamma_1 by construction
    gamma = p["gamma_0"] + (gamma_1 - p["gamma_0"]) * (g(t) - ends[0]) / (ends[1] - ends[0])
    np.testing.assert_allclose(proc.gamma(T_GRID), gamma, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jnp.square(proc.sigma(T_GRID)), 1 / (1 + np.exp(-gamma)), rtol=1e-5)
    with pytest.raises(ValueError, match="unbound"):
        processes.get("vdm_learned").alpha(0.5)


@pytest.mark.parametrize("name", ALL)
def test_moment_odes_match_alpha_sigma(name):
    """The moments of dx = f x dt + g dW, dm/dt = f m, dv/dt = 2 f v + g^2, integrated by RK4
    from the exact marginal at t0, land on alpha(t) mu and alpha^2 c + sigma^2 at t = 0.9."""
    proc = make(name)
    mu, c, t0, t1, n = 0.7, 0.3, 0.05, 0.9, 400

    def rhs(t, y):
        f, g2 = proc.f(t), proc.g2(t)
        return jnp.stack([f * y[0], 2 * f * y[1] + g2])

    def rk4(y, k):
        h = (t1 - t0) / n
        t = t0 + k * h
        k1 = rhs(t, y)
        k2 = rhs(t + h / 2, y + h / 2 * k1)
        k3 = rhs(t + h / 2, y + h / 2 * k2)
        k4 = rhs(t + h, y + h * k3)
        return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    a0, s0 = proc.alpha(t0), proc.sigma(t0)
    y0 = jnp.stack([a0 * mu, a0**2 * c + s0**2])
    y1, _ = jax.jit(lambda y: jax.lax.scan(rk4, y, jnp.arange(n)))(y0)
    a1, s1 = proc.alpha(t1), proc.sigma(t1)
    # Discrete tables are piecewise smooth (kinks at each i / T), so RK4 is only first order
    # there; the tolerance covers that.
    rtol = 2e-3 if name.startswith("ddpm") else 1e-4
    np.testing.assert_allclose(y1, [a1 * mu, a1**2 * c + s1**2], rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("name", ["ddpm_linear", "vp", "subvp", "ve", "rectified_flow"])
def test_simulated_sde_paths_match_marginal(name):
    """Euler-Maruyama paths: sample mean and variance within 5 standard errors of the exact
    moments of the Euler chain, which are within O(dt) of alpha mu, alpha^2 c + sigma^2."""
    proc = make(name)
    mu, c, t0, t1, n, paths = 0.7, 0.3, 0.05, 0.9, 500, 20000
    h = (t1 - t0) / n
    key = jax.random.key(1)

    def step(carry, k):
        x, m, v = carry
        t = t0 + k * h
        f, g2 = proc.f(t), proc.g2(t)
        dw = jnp.sqrt(h) * jax.random.normal(jax.random.fold_in(key, k), x.shape)
        return (
            x + f * x * h + jnp.sqrt(g2) * dw,
            (1 + f * h) * m,
            (1 + f * h) ** 2 * v + g2 * h,
        ), None

    @jax.jit
    def simulate():
        a0, s0 = proc.alpha(t0), proc.sigma(t0)
        x = a0 * (mu + math.sqrt(c) * jax.random.normal(jax.random.key(2), (paths,)))
        x = x + s0 * jax.random.normal(jax.random.key(3), (paths,))
        (x, m, v), _ = jax.lax.scan(step, (x, a0 * mu, a0**2 * c + s0**2), jnp.arange(n))
        return x, m, v

    x, m_em, v_em = simulate()
    a1, s1 = proc.alpha(t1), proc.sigma(t1)
    m_exact, v_exact = a1 * mu, a1**2 * c + s1**2
    se_m, se_v = math.sqrt(v_em / paths), v_em * math.sqrt(2 / paths)
    assert abs(x.mean() - m_em) < 5 * se_m
    assert abs(x.var() - v_em) < 5 * se_v
    # The Euler chain's own bias is first order in dt.
    assert abs(m_em - m_exact) < 20 * h * (abs(m_exact) + 1e-2)
    assert abs(v_em - v_exact) < 20 * h * v_exact


@pytest.mark.parametrize(
    "name, kw",
    [
        ("ddpm_linear", {"num_steps": 0}),
        ("ddpm_linear", {"beta_start": 0.02, "beta_end": 1e-4}),
        ("ddpm_cosine", {"s": -1.0}),
        ("vp", {"beta_min": 20.0, "beta_max": 0.1}),
        ("subvp", {"beta_min": 0.0}),
        ("ve", {"sigma_min": 50.0, "sigma_max": 0.01}),
        ("edm", {"sigma_min": 1.0, "sigma_max": 1.0}),
        ("vdm_learned", {"gamma_min": 5.0, "gamma_max": -13.3}),
    ],
)
def test_invalid_parameters_raise(name, kw):
    with pytest.raises(ValueError):
        processes.get(name, **kw)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="ddpm_linear"):
        processes.get("nope")


@pytest.mark.parametrize("name", ["vp", "edm", "ddpm_linear", "cosine"])
def test_t_of_log_snr_inverts(name):
    proc = make(name)
    t = jnp.array([0.01, 0.3, 0.77])
    np.testing.assert_allclose(
        jax.jit(lambda p, l: p.t_of_log_snr(l))(proc, proc.log_snr(t)), t, atol=1e-5
    )


@pytest.mark.parametrize("name", ["vp", "edm", "rectified_flow", "ve"])
def test_noise_level_is_sigma_over_alpha_and_inverts(name):
    """s(t) = sigma / alpha (EDM's sigma; for `edm` the affine sigma_min + t (sigma_max -
    sigma_min)), and t_of_noise_level inverts it."""
    proc = make(name)
    t = jnp.array([0.01, 0.3, 0.77])
    s = jax.jit(lambda p: p.noise_level(t))(proc)
    np.testing.assert_allclose(s, proc.sigma(t) / proc.alpha(t), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda p: p.t_of_noise_level(s))(proc), t, atol=1e-5)
    if name == "edm":
        np.testing.assert_allclose(s, 0.002 + t * (80.0 - 0.002), rtol=1e-5)
