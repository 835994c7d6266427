"""The discrete VLB and iDDPM's hybrid loss against closed forms of Gaussian data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import losses, processes

from .gaussian_data import (
    DATA,
    MU,
    VAR,
    ZERO,
    eps_mse_at_optimum,
    exact_apply,
    exact_x0_denoiser,
)


def _vp_alpha2(t):
    """alpha^2 of vp (beta 0.1..20) in NumPy: exp(-int_0^t beta)."""
    return np.exp(-(0.1 * t + 9.95 * t**2))


def expected_vlb_closed_form(num_steps):
    """E_x0 of the discrete VLB (variance beta, Gaussian decoder) of the exact model, in nats.

    Per dimension, with r = SNR_t / SNR_s and V_t = c sigma_t^2 / (alpha_t^2 c + sigma_t^2) the
    posterior variance of x_0: KL_i = 1/2 [log(beta / beta~) + beta~ / beta + coef_x^2 V_t / beta
    - 1], coef_x = alpha_s (1 - r), beta~ = sigma_s^2 (1 - r), beta = sigma_t^2 (1 - r); the
    decoder 1/2 log(2 pi beta_1) + V_1 / (2 beta_1); the prior KL of N(alpha_1 x, sigma_1^2).
    """
    c, mu = np.asarray(VAR, np.float64), np.asarray(MU, np.float64)
    i = np.arange(2, num_steps + 1)[:, None]
    at2, as2 = _vp_alpha2(i / num_steps), _vp_alpha2((i - 1) / num_steps)
    st2, ss2 = 1 - at2, 1 - as2
    r = (at2 / st2) / (as2 / ss2)
    bt, b = ss2 * (1 - r), st2 * (1 - r)
    v_t = c * st2 / (at2 * c + st2)
    kl = 0.5 * (np.log(b / bt) + bt / b + as2 * (1 - r) ** 2 * v_t / b - 1)
    s1 = 1 - _vp_alpha2(1 / num_steps)
    v_1 = c * s1 / (_vp_alpha2(1 / num_steps) * c + s1)
    decoder = 0.5 * np.log(2 * np.pi * s1) + v_1 / (2 * s1)
    a1 = _vp_alpha2(1.0)
    prior = 0.5 * (a1 * (c + mu**2) + (1 - a1) - 1 - np.log(1 - a1))
    return kl.sum() + decoder.sum() + prior.sum()


@pytest.mark.parametrize("num_steps", [10, 1000])
def test_discrete_vlb_of_exact_model_matches_closed_form(num_steps):
    proc = processes.get("vp")
    x0 = DATA.sample(jax.random.key(0), 4000)
    vlb = jax.jit(
        lambda x, k: losses.ddpm_vlb(
            exact_x0_denoiser(proc), x, k, num_steps=num_steps, variance="beta", decoder="gaussian"
        )
    )(x0, jax.random.key(1))
    se = float(vlb.std()) / math.sqrt(x0.shape[0])
    assert abs(float(vlb.mean()) - expected_vlb_closed_form(num_steps)) < 5 * se


def test_discrete_vlb_approaches_exact_nll_as_steps_grow():
    """Closed-form E[VLB] - H(data) falls like 1 / T to below 0.01 nats at T = 1000."""
    entropy = float(np.sum(0.5 * np.log(2 * np.pi * np.e * np.asarray(VAR, np.float64))))
    gaps = [expected_vlb_closed_form(n) - entropy for n in (10, 100, 1000)]
    assert gaps[0] > gaps[1] > gaps[2] > 0.0
    assert gaps[2] < 0.01
    assert 5 < gaps[1] / gaps[2] < 20  # first order in 1 / T


def test_discretized_decoder_probabilities_sum_to_one():
    levels = jnp.linspace(-1.0, 1.0, 17)
    mean, logvar = jnp.full_like(levels, 0.13), jnp.full_like(levels, np.log(0.3**2))
    logp = losses.discretized_gaussian_log_likelihood(levels, mean, logvar, 17)
    np.testing.assert_allclose(jnp.sum(jnp.exp(logp)), 1.0, rtol=1e-5)
    # An interior bin is the normal mass between its edges (SciPy).
    from scipy import stats

    k = 9
    expected = stats.norm.cdf(levels[k] + 1 / 16, 0.13, 0.3) - stats.norm.cdf(
        levels[k] - 1 / 16, 0.13, 0.3
    )
    np.testing.assert_allclose(np.exp(logp[k]), expected, rtol=1e-4)


def iddpm_apply(process, v_value):
    """Exact eps (offset b) and a constant variance output v."""
    eps_apply = exact_apply(process, "eps")

    def apply_fn(params, x, t, cond=None, key=None):
        eps = eps_apply(params, x, t)
        return jnp.concatenate([eps, jnp.full_like(eps, v_value)], axis=-1)

    return apply_fn


def test_iddpm_vlb_estimate_matches_full_vlb():
    """v = 1 is the beta variance: E[T L_i + L_T] equals the full discrete VLB (bits/dim)."""
    proc = processes.get("ddpm_cosine", num_steps=20)
    loss_fn = losses.IDDPMLoss(proc, num_bins=17)(iddpm_apply(proc, 1.0))
    grid = jnp.linspace(-1.0, 1.0, 17)
    x = grid[jnp.clip(jnp.round((DATA.sample(jax.random.key(0), 4000) + 1) * 8), 0, 16).astype(int)]

    @jax.jit
    def metrics(key):
        return loss_fn(ZERO, {"x": x}, key)[1]

    m = jax.vmap(metrics)(jax.random.split(jax.random.key(1), 16))
    full = jax.jit(
        lambda k: losses.ddpm_vlb(exact_x0_denoiser(proc), x, k, variance="beta", num_bins=17)
    )(jax.random.key(2))
    full_bpd = losses.bits_per_dim(full, 2)
    se = math.sqrt(float(m["vlb_bpd"].var(ddof=1)) / 16 + float(full_bpd.var()) / x.shape[0])
    assert abs(float(m["vlb_bpd"].mean()) - float(full_bpd.mean())) < 5 * se
    exact_mse = eps_mse_at_optimum(proc, jnp.arange(1, 21) / 20).mean()
    se_mse = float(m["mse"].std(ddof=1)) / 4
    assert abs(float(m["mse"].mean()) - exact_mse) < 5 * se_mse


def test_iddpm_vlb_does_not_train_the_mean():
    proc = processes.get("ddpm_cosine", num_steps=20)
    batch = {"x": DATA.sample(jax.random.key(0), 256)}
    params = {"model": {"b": jnp.array([0.2, -0.1])}}
    apply_fn = iddpm_apply(proc, 0.3)

    @jax.jit
    def grads(params):
        return [
            jax.grad(lambda p, w=w: losses.IDDPMLoss(proc, vlb_weight=w)(apply_fn)(
                p, batch, jax.random.key(1))[0])(params)["model"]["b"]
            for w in (0.0, 1e-3, 1.0)
        ]  # fmt: skip

    grads = grads(params)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6)
    np.testing.assert_allclose(grads[2], grads[0], rtol=1e-6)


def test_learned_variance_at_v_one_is_the_beta_vlb():
    """frac = (v + 1) / 2 = 1 selects beta exactly: every KL term (i >= 2) of the learned VLB
    equals the beta one. At i = 1 the fixed "beta" decoder uses beta~_2 (DDPM / iDDPM's
    convention) while the learned one interpolates from beta_1, as iDDPM."""
    proc = processes.get("ddpm_linear", num_steps=20)
    x = jnp.linspace(-1.0, 1.0, 17)[jax.random.randint(jax.random.key(0), (64, 2), 0, 17)]
    den = exact_x0_denoiser(proc)

    @jax.jit
    def terms(i, key):
        i_b = jnp.full((64,), i, jnp.float32)
        z, _ = proc.marginal_sample(key, x, i_b / 20)
        x0_hat = den.x0(z, i_b / 20)
        learned = losses.vlb_term(proc, 20, i_b, x, z, x0_hat, jnp.ones_like(z), "learned",
                                  num_bins=17)  # fmt: skip
        fixed = [losses.vlb_term(proc, 20, i_b, x, z, x0_hat, None, v, num_bins=17)
                 for v in ("beta", "beta_tilde")]  # fmt: skip
        return learned, *fixed

    for i in range(2, 21):
        learned, beta, _ = terms(i, jax.random.key(i))
        np.testing.assert_allclose(learned, beta, rtol=1e-5)
    learned, beta, beta_tilde = terms(1, jax.random.key(1))
    np.testing.assert_array_equal(beta, beta_tilde)
    assert not np.allclose(learned, beta)
    with pytest.raises(ValueError, match="learned"):
        losses.ddpm_vlb(den, x, jax.random.key(1), variance="learned")
