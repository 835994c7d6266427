"""Tests for diffjax/evaluation/bpd.py: dequantization bookkeeping against hand computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import processes
from diffjax.analytic.gaussian import GaussianMixture
from diffjax.evaluation import bpd

LN2 = math.log(2.0)


def test_offsets_match_score_sde():
    """nll = 0 nats gives log2(K / 2) bits/dim: 7 for uint8 images in [-1, 1]."""
    assert float(bpd.bits_per_dim(jnp.zeros(()), 3072, 256)) == pytest.approx(7.0)
    assert float(bpd.bits_per_dim(jnp.zeros(()), 64, 17)) == pytest.approx(math.log2(8.5))
    assert float(bpd.bits_per_dim(jnp.float32(64 * LN2), 64, None)) == pytest.approx(1.0)


def test_known_discrete_distribution():
    """The ideal dequantized model p_x = P(v) (K / 2)^D on each cell gives exactly -log2 P / D.

    Hand computation: D = 2 independent dims with K = 4 values of probabilities
    (1/2, 1/4, 1/8, 1/8): entropy 1.75 bits per dimension.
    """
    k, probs = 4, np.array([0.5, 0.25, 0.125, 0.125])
    v = np.stack(np.meshgrid(np.arange(k), np.arange(k), indexing="ij"), -1).reshape(-1, 2)
    p_v = probs[v].prod(-1)  # [16], the exact joint probabilities
    x_plain = jnp.asarray(2.0 * v / (k - 1) - 1.0, jnp.float32)
    np.testing.assert_array_equal(bpd.quantize(x_plain, k), v)
    x = bpd.dequantize(jax.random.key(0), bpd.quantize(x_plain, k), k)
    # Every dequantized point lies in the cell of its value: v = floor(K (x + 1) / 2).
    cells = np.floor(k * (np.asarray(x) + 1.0) / 2.0).astype(int)
    np.testing.assert_array_equal(cells, v)
    nll = -np.log(probs[cells].prod(-1) * (k / 2) ** 2)  # -log p_x(x) of the ideal model
    per_example = np.asarray(bpd.bits_per_dim(jnp.asarray(nll), 2, k))
    np.testing.assert_allclose(per_example, -np.log2(p_v) / 2, rtol=1e-6)
    assert float(np.sum(p_v * per_example)) == pytest.approx(1.75, rel=1e-6)


def test_grid_deviation():
    x = jnp.asarray(2.0 * np.arange(17) / 16 - 1.0, jnp.float32)[:, None]
    assert float(bpd.grid_deviation(x, 17)) < 1e-6
    assert float(bpd.grid_deviation(x + 0.01, 17)) == pytest.approx(0.01, rel=1e-3)


# A Gaussian model N(MEAN, COV) in D = 3 under the linear interpolant (exact prior, so the ODE
# NLL is the exact Gaussian NLL to < 1e-3 nats/dim: tests/test_likelihood.py), evaluated on
# discrete data with K = 32 bins.
D, K = 3, 32
MEAN = np.array([0.1, -0.2, 0.0])
COV = np.array([[0.09, 0.02, 0.0], [0.02, 0.05, 0.01], [0.0, 0.01, 0.12]])
MODEL = GaussianMixture.gaussian(MEAN, COV)
NLL_KW = dict(trace="exact", solver="rk4", num_steps=100)


def _data(n):
    """Plainly scaled discrete data v = round of a Gaussian draw, [n, D] (two batches)."""
    z = np.random.default_rng(1).multivariate_normal(MEAN, COV, size=n)
    v = np.clip(np.round((z + 1.0) * (K - 1) / 2.0), 0, K - 1)
    return v, (2.0 * v / (K - 1) - 1.0).astype(np.float32)


def _gauss_nll_terms(x):
    """-log N(x; MEAN, COV) [n] and the gradient of the quadratic, Lambda (x - MEAN) [n, D]."""
    prec = np.linalg.inv(COV)
    r = x - MEAN
    quad = np.einsum("ni,ij,nj->n", r, prec, r)
    return 0.5 * (quad + np.linalg.slogdet(2 * np.pi * COV)[1]), r @ prec


def test_evaluate_bpd_dequantized_matches_closed_form():
    """E_u[-log N(2 (v + u) / K - 1)] has a closed form: with c = 2 (v + 1/2) / K - 1 and
    Var(x_i) = (2 / K)^2 / 12, it is -log N(c) + tr(Lambda) (2 / K)^2 / 24."""
    n, s = 64, 4
    v, x = _data(n)
    den = MODEL.denoiser(processes.get("rectified_flow"))
    batches = [{"x": jnp.asarray(x[:32])}, {"x": jnp.asarray(x[32:])}]
    out = bpd.evaluate_bpd(
        jax.random.key(0), den, batches, K, num_dequantizations=s, progress=False, **NLL_KW
    )
    var_u = (2.0 / K) ** 2 / 12.0
    nll_c, grad = _gauss_nll_terms(2.0 * (v + 0.5) / K - 1.0)
    expected_nll = nll_c + 0.5 * np.trace(np.linalg.inv(COV)) * var_u  # [n]
    expected = np.mean((expected_nll + D * math.log(K / 2)) / (D * LN2))
    # Error budget (nats per example): the ODE (< 1e-3 per dim) plus 3 standard errors of the
    # Monte Carlo average over n * s dequantizations (std of -log p over u ~ |grad| sqrt(var_u)).
    mc_se = math.sqrt(np.mean(np.sum(grad**2, -1) * var_u) / (n * s))
    assert abs(out["bpd_mean"] - expected) < (1e-3 * D + 3 * mc_se) / (D * LN2)
    sample_se = np.std((expected_nll + D * math.log(K / 2)) / (D * LN2), ddof=1) / math.sqrt(n)
    # The per-example Monte Carlo noise (~0.03 bits) is small against the spread over examples
    # (~0.5 bits): the standard error is the exact one to within ~1e-3 relative.
    assert out["bpd_stderr"] == pytest.approx(sample_se, rel=0.02)
    assert out["num_examples"] == n and out["dequantized"]
    assert out["nfe"] == 4 * 100 and out["seconds"] > 0


def test_evaluate_bpd_undequantized_warns_and_continuous():
    n = 32
    _, x = _data(n)
    den = MODEL.denoiser(processes.get("rectified_flow"))
    nll_x, _ = _gauss_nll_terms(x.astype(np.float64))
    kw = dict(progress=False, **NLL_KW)
    with pytest.warns(UserWarning, match="UNDEQUANTIZED"):
        raw = bpd.evaluate_bpd(
            jax.random.key(0), den, [{"x": jnp.asarray(x)}], K, dequantize_data=False, **kw
        )
    tol = 1e-3 / LN2  # the ODE error, per dimension
    assert raw["bpd_mean"] == pytest.approx(
        np.mean(nll_x + D * math.log(K / 2)) / (D * LN2), abs=tol
    )
    assert not raw["dequantized"]
    # Continuous data: the same density, no offset; the model given as params -> Denoiser.
    make = lambda model: model.denoiser(processes.get("rectified_flow"))  # noqa: E731
    cont = bpd.evaluate_bpd(
        jax.random.key(0), make, [{"x": jnp.asarray(x)}], None, params=MODEL, **kw
    )
    assert cont["bpd_mean"] == pytest.approx(np.mean(nll_x) / (D * LN2), abs=tol)


def test_evaluate_bpd_rejects_dequantized_batches():
    _, x = _data(8)
    den = MODEL.denoiser(processes.get("rectified_flow"))
    with pytest.raises(ValueError, match="not plainly scaled"):
        bpd.evaluate_bpd(
            jax.random.key(0),
            den,
            [{"x": jnp.asarray(x + 0.3 / K)}],
            K,
            progress=False,
            num_dequantizations=1,
            **NLL_KW,
        )
    with pytest.raises(ValueError, match="num_bins"):
        bpd.bits_per_dim(jnp.zeros(()), 3, 1)
