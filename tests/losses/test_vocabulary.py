"""The shared vocabulary: weightings against their formulas, time distributions' laws."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import losses, processes


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
