"""Losses at the exact optimal model (Gaussian data) against closed-form minima and gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import denoisers, losses, predictions, processes
from diffjax.analytic.gaussian import GaussianMixture

MU = jnp.array([0.3, -0.5])
VAR = jnp.array([0.2, 0.05])  # diagonal covariance
DATA = GaussianMixture.gaussian(MU, jnp.diag(VAR))


def exact_apply(process, kind):
    """apply_fn of the Bayes-optimal model of kind `kind`, plus a learnable offset params["b"].

    For diagonal Gaussian data E[x_0 | x_t] = mu + alpha c (x_t - alpha mu) / (alpha^2 c + sigma^2).
    """

    def x0_mean(x, t):
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        return MU[None] + a * VAR[None] * (x - a * MU[None]) / (a**2 * VAR[None] + s**2)

    denoiser = denoisers.Denoiser(x0_mean, "x0", process)

    def apply_fn(params, x, t, cond=None, key=None):
        return denoiser.predict(x, t, kind) + params["b"][None]

    return apply_fn


def eps_mse_at_optimum(process, t):
    """E ||eps - eps*||^2 / D at t [N]: mean_d alpha^2 c / (alpha^2 c + sigma^2)."""
    a2, s2 = np.square(process.alpha(t))[:, None], np.square(process.sigma(t))[:, None]
    return np.mean(a2 * VAR[None] / (a2 * VAR[None] + s2), axis=-1)


def mc_mean(loss_fn, params, n_keys=16, batch=2048):
    """The loss averaged over n_keys independent batches, and its standard error."""

    @jax.jit
    def one(key):
        kx, kl = jax.random.split(key)
        return loss_fn(params, {"x": DATA.sample(kx, batch)}, kl)[0]

    vals = jax.vmap(one)(jax.random.split(jax.random.key(0), n_keys))
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n_keys))


ZERO = {"model": {"b": jnp.zeros(2)}}


@pytest.mark.parametrize(
    "kind, target", [("eps", "eps"), ("x0", "eps"), ("v", "eps"), ("eps", "x0"), ("v", "v")]
)
def test_ddpm_loss_at_optimum_is_closed_form(kind, target):
    proc = processes.get("ddpm_linear", num_steps=100)
    loss_fn = losses.DenoisingLoss(proc, prediction=kind, target=target)(
        lambda p, *a, **k: exact_apply(proc, kind)(p, *a)
    )
    value, se = mc_mean(loss_fn, ZERO)
    t = np.arange(1, 101) / 100
    exact = eps_mse_at_optimum(proc, jnp.asarray(t, jnp.float32)).mean()
    assert abs(value - exact) < 5 * se, (value, exact, se)


@pytest.mark.parametrize(
    "weighting, kw",
    [
        ("snr", {}),
        ("min_snr", {"gamma": 5.0}),
        ("truncated_snr", {}),
        ("likelihood", {}),
        ("edm", {}),
    ],
)
def test_weighted_continuous_loss_at_optimum(weighting, kw):
    """Continuous vp with each weighting: E_t[w(t) mse*(t)] by quadrature on a fine t grid."""
    proc = processes.get("vp")
    t_min = 1e-3
    loss_fn = losses.DenoisingLoss(proc, weighting=weighting, weighting_kwargs=kw, t_min=t_min)(
        exact_apply(proc, "eps")
    )
    value, se = mc_mean(loss_fn, ZERO, n_keys=32)
    # t ~ U[0, 1) clipped to t_min: mass t_min at t_min, density 1 on (t_min, 1).
    t = jnp.linspace(t_min, 1.0, 20001)
    w = losses.WEIGHTINGS[weighting](**kw)(proc, t)
    integrand = np.asarray(w * eps_mse_at_optimum(proc, t))
    exact = np.trapezoid(integrand, dx=float(t[1] - t[0])) + t_min * integrand[0]
    assert abs(value - exact) < 5 * se, (value, exact, se)


def test_weightings_match_formulas():
    proc = processes.get("vp")
    t = jnp.linspace(0.05, 0.95, 19)
    snr = np.exp(np.asarray(proc.log_snr(t)))
    beta = 0.1 + np.asarray(t) * 19.9
    sigma2 = 1 - np.exp(-(0.1 * t + 0.5 * 19.9 * t**2))
    checks = {
        ("uniform", ()): np.ones_like(snr),
        ("snr", ()): snr,
        ("min_snr", (("gamma", 2.0),)): np.minimum(snr, 2.0) / snr,
        ("truncated_snr", ()): np.maximum(snr, 1.0) / snr,
        ("likelihood", ()): beta / sigma2,
        ("edm", (("sigma_data", 0.5),)): (1 / snr + 0.25) / 0.25,
    }
    for (name, kw), expected in checks.items():
        got = jax.jit(lambda p, t, n=name, kw=kw: losses.WEIGHTINGS[n](**dict(kw))(p, t))(proc, t)
        np.testing.assert_allclose(got, expected, rtol=2e-4, err_msg=name)


def test_target_space_does_not_change_the_objective():
    """Same draws, a non-optimal model: the loss regressed in any target space is identical."""
    proc = processes.get("ddpm_cosine", num_steps=50)
    params = {"model": {"b": jnp.array([0.3, -0.2])}}
    batch = {"x": DATA.sample(jax.random.key(3), 256)}
    apply_fn = exact_apply(proc, "v")

    @jax.jit
    def all_targets(params, batch, key):
        return jnp.stack(
            [
                losses.DenoisingLoss(proc, prediction="v", target=target)(apply_fn)(
                    params, batch, key
                )[0]
                for target in predictions.KINDS
            ]
        )

    values = all_targets(params, batch, jax.random.key(4))
    np.testing.assert_allclose(values, values[0], rtol=2e-4)


@pytest.mark.parametrize("kind", ["eps", "x0", "score"])
def test_gradient_wrt_model_output_vanishes_at_optimum(kind):
    """d loss / d b at b = 0 for output + b: zero in expectation (5 standard errors)."""
    proc = processes.get("ddpm_linear", num_steps=100)
    loss_fn = losses.DenoisingLoss(proc, prediction=kind)(exact_apply(proc, kind))

    @jax.jit
    def grad(key):
        kx, kl = jax.random.split(key)
        batch = {"x": DATA.sample(kx, 2048)}
        return jax.grad(lambda p: loss_fn(p, batch, kl)[0])(ZERO)["model"]["b"]

    g = jax.vmap(grad)(jax.random.split(jax.random.key(5), 16))
    se = g.std(0, ddof=1) / 4.0
    assert np.all(np.abs(g.mean(0)) < 5 * se), (g.mean(0), se)
    # A wrong model has a clearly non-zero gradient, in the direction of its error.
    shifted = {"model": {"b": jnp.full(2, 0.5)}}
    batch = {"x": DATA.sample(jax.random.key(6), 2048)}
    g_bad = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(7))[0])(shifted)["model"]["b"]
    assert np.all(np.asarray(g_bad) > 10 * np.asarray(se))


def test_discrete_time_sampling_is_uniform_on_the_grid():
    proc = processes.get("ddpm_linear", num_steps=10)
    t = losses.snap_time(jax.random.uniform(jax.random.key(0), (100000,)), proc, 1e-5, None)
    i = np.round(np.asarray(t) * 10).astype(int)
    np.testing.assert_allclose(np.asarray(t) * 10, i, atol=1e-5)
    counts = np.bincount(i, minlength=11)
    assert counts[0] == 0
    expected = 100000 / 10
    assert np.all(np.abs(counts[1:] - expected) < 5 * math.sqrt(expected))


def test_time_samplers():
    proc = processes.get("edm")
    key = jax.random.key(0)
    n = 20000
    anti = losses.time_distribution(
        "antithetic",
    ).sample(key, 8, proc)
    np.testing.assert_allclose(np.sort(np.diff(np.sort(np.asarray(anti)))), 1 / 8, atol=1e-6)
    t = losses.time_distribution("logit_normal", mean=0.5, std=0.8).sample(key, n, proc)
    logit = np.log(t) - np.log1p(-t)
    assert abs(logit.mean() - 0.5) < 5 * 0.8 / math.sqrt(n)
    assert abs(logit.std() - 0.8) < 5 * 0.8 / math.sqrt(2 * n)
    t = jax.jit(
        lambda k: losses.time_distribution("lognormal", mean=-1.2, std=1.2).sample(k, n, proc)
    )(key)
    log_sigma = np.log(np.asarray(proc.sigma(t)))
    assert abs(log_sigma.mean() + 1.2) < 5 * 1.2 / math.sqrt(n)
    assert abs(log_sigma.std() - 1.2) < 5 * 1.2 / math.sqrt(2 * n)


def test_ncsn_levels_grid():
    proc = processes.get("ve")
    t = losses.snap_time(jnp.linspace(0, 1, 101), proc, 1e-5, 5)
    assert set(np.round(np.asarray(t) * 4, 6)) == {0.0, 1.0, 2.0, 3.0, 4.0}


@pytest.mark.parametrize(
    "kw",
    [
        {"weighting": "nope"},
        {"time_distribution": "nope"},
        {"weighting": "min_snr", "weighting_kwargs": {"gamma": -1.0}},
        {"weighting": "min_snr", "weighting_kwargs": {"gama": 1.0}},
        {"prediction": "noise"},
        {"target": "noise"},
        {"t_min": 1.0},
        {"num_levels": 1},
    ],
)
def test_invalid_options_raise(kw):
    with pytest.raises(ValueError):
        losses.DenoisingLoss(processes.get("vp"), **kw)(None)


# ---------------------------------------------------------------- discrete VLB, iDDPM, VDM


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


def exact_x0_denoiser(process):
    return denoisers.Denoiser(
        lambda x, t: exact_apply(process, "x0")({"b": jnp.zeros(2)}, x, t), "x0", process
    )


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


def vdm_process(seed, hidden):
    proc = processes.get("vdm_learned", hidden=hidden)
    return proc, {"schedule": proc.init(jax.random.key(seed))}


def test_vdm_diffusion_loss_depends_only_on_the_ends():
    """Two gamma shapes with the same ends: L_inf = 1/2 sum_d log((1 + c SNR_max) / (1 + c
    SNR_min)) for the exact model (seed 001, "EQUIVALENCE OF DIFFUSION MODELS")."""
    snr_max, snr_min = math.exp(13.3), math.exp(-5.0)
    c = np.asarray(VAR, np.float64)
    exact = 0.5 * np.sum(np.log((1 + c * snr_max) / (1 + c * snr_min)))
    shapes = [vdm_process(0, 8), vdm_process(1, 64)]
    # Make the second schedule very different in shape: a steep sigmoid layer.
    params1 = shapes[1][1]
    params1["schedule"]["_PositiveDense_1"]["kernel"] = (
        30.0 * params1["schedule"]["_PositiveDense_1"]["kernel"]
    )
    values = []
    for proc, params in shapes:
        bound = proc.bind(params["schedule"])
        model = lambda z, t, p=bound: exact_apply(p, "eps")({"b": jnp.zeros(2)}, z, t)  # noqa: E731

        @jax.jit
        def diffusion(key, model=model, bound=bound):
            kx, kt, kn = jax.random.split(key, 3)
            x0 = DATA.sample(kx, 4096)
            t = losses.time_distribution(
                "antithetic",
            ).sample(kt, 4096, bound)
            return losses.vdm_terms(model, bound, x0, t, kn, 17)[0].mean()

        vals = jax.vmap(diffusion)(jax.random.split(jax.random.key(2), 16))
        assert abs(float(vals.mean()) - exact) < 5 * float(vals.std(ddof=1)) / 4, (
            vals.mean(),
            exact,
        )
        values.append(float(vals.mean()))
    # The two shapes really differ: gamma at t = 0.5.
    g = [p.bind(q["schedule"]).gamma(jnp.array([0.5])) for p, q in shapes]
    assert abs(float(g[0][0] - g[1][0])) > 1.0


def test_vdm_prior_and_reconstruction_limits():
    proc, params = vdm_process(0, 8)
    bound = proc.bind(params["schedule"])
    x0 = DATA.sample(jax.random.key(0), 2048)
    prior = losses.prior_kl(bound, x0)
    a2 = float(jax.nn.sigmoid(-5.0))  # alpha_1^2 = sigmoid(-gamma_max)
    c, mu = np.asarray(VAR, np.float64), np.asarray(MU, np.float64)
    expected = np.sum(0.5 * (a2 * (c + mu**2) + (1 - a2) - 1 - np.log(1 - a2)))
    assert abs(float(prior.mean()) - expected) < 5 * float(prior.std()) / math.sqrt(2048)
    # Reconstruction: SNR_0 -> inf gives -log p -> 0; SNR_0 -> 0 gives log(num_bins) per dim.
    x = jnp.linspace(-1.0, 1.0, 17)[jnp.array([[0, 5], [16, 8]])]
    ones = jnp.ones(2)
    sharp = losses.vdm_reconstruction_nll(x, x, ones, 30.0 * ones, 17)
    flat = losses.vdm_reconstruction_nll(x, x, ones, -30.0 * ones, 17)
    np.testing.assert_allclose(sharp, 0.0, atol=1e-6)
    np.testing.assert_allclose(flat, 2 * np.log(17), rtol=1e-6)


def test_vdm_variance_reduction_gradients():
    """Model and gamma ends get the VLB gradient; the shape of gamma gets d mean(l^2)."""
    proc, params = vdm_process(0, 8)
    params = {"model": {"b": jnp.array([0.1, -0.2])}, **params}

    def apply_fn(p, z, t, cond=None, key=None):
        return 0.5 * z + p["b"][None]

    batch = {"x": DATA.sample(jax.random.key(0), 64)}
    key = jax.random.key(1)
    reduced = losses.VDMLoss(proc, num_bins=256, variance_reduction=True)(apply_fn)
    plain = losses.VDMLoss(proc, num_bins=256, variance_reduction=False)(apply_fn)
    g_red = jax.jit(jax.grad(lambda p: reduced(p, batch, key)[0]))(params)
    g_plain = jax.jit(jax.grad(lambda p: plain(p, batch, key)[0]))(params)
    assert float(reduced(params, batch, key)[0]) == pytest.approx(
        float(plain(params, batch, key)[0])
    )

    def second_moment(p):
        _, m = plain(p, batch, key)
        del m
        t_key, noise_key, _ = jax.random.split(key, 3)
        t = losses.time_distribution(
            "antithetic",
        ).sample(t_key, 64, proc)
        bound = proc.bind(p["schedule"])
        model = lambda z, s: apply_fn(p["model"], z, s)  # noqa: E731
        parts = losses.vdm_terms(model, bound, batch["x"], t, noise_key, 256)
        total = sum(losses.bits_per_dim(n, batch["x"][0].size) for n in parts)
        return jnp.mean(jnp.square(total))

    g_var = jax.jit(jax.grad(second_moment))(params)
    np.testing.assert_allclose(g_red["model"]["b"], g_plain["model"]["b"], rtol=1e-5)
    for end in ("gamma_0", "log_gamma_span"):
        np.testing.assert_allclose(g_red["schedule"][end], g_plain["schedule"][end], rtol=1e-5)
    shape = "_PositiveDense_1"
    np.testing.assert_allclose(
        g_red["schedule"][shape]["kernel"], g_var["schedule"][shape]["kernel"], rtol=1e-4, atol=1e-7
    )
    assert not np.allclose(g_red["schedule"][shape]["kernel"], g_plain["schedule"][shape]["kernel"])


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
