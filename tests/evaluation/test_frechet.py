"""Frechet distance against a direct float64 NumPy/SciPy computation and closed forms."""

import jax
import numpy as np
import pytest
import scipy.linalg

from diffjax.evaluation.frechet import GaussianStats, frechet_distance, gaussian_stats

# float32 eigendecompositions of D x D matrices: relative rounding ~ D * eps32 ~ 1e-5 of the
# scale tr(S1) + tr(S2) of the terms that cancel; 1e-4 of that scale leaves a margin of 10.
RTOL_OF_TRACE = 1e-4


def _scipy_frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    """The textbook formula with scipy.linalg.sqrtm of S1 S2, all in float64."""
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _features(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix + rng.normal(size=d)).astype(np.float32)


_stats = jax.jit(gaussian_stats)
_fd = jax.jit(frechet_distance)


def test_stats_match_numpy():
    f = _features(0, 300, 12)
    stats = _stats(f)
    np.testing.assert_allclose(stats.mean, f.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats.cov, np.cov(f.astype(np.float64), rowvar=False), atol=1e-5)


@pytest.mark.parametrize("d", [1, 8, 64])
def test_matches_scipy_sqrtm(d):
    f1, f2 = _features(1, 500, d), _features(2, 400, d)
    expected = _scipy_frechet(f1.astype(np.float64), f2.astype(np.float64))
    scale = np.sum(np.var(f1, axis=0, ddof=1)) + np.sum(np.var(f2, axis=0, ddof=1))
    got = float(_fd(_stats(f1), _stats(f2)))
    assert expected > 0.1 * scale  # the two sets differ: the test is not vacuous
    assert abs(got - expected) <= RTOL_OF_TRACE * scale


def test_zero_for_identical_stats_and_symmetric():
    a, b = _stats(_features(3, 500, 32)), _stats(_features(4, 500, 32))
    scale = float(np.trace(a.cov) + np.trace(b.cov))
    assert abs(float(_fd(a, a))) <= RTOL_OF_TRACE * scale
    assert abs(float(_fd(a, b)) - float(_fd(b, a))) <= RTOL_OF_TRACE * scale


def test_diagonal_rank_deficient_closed_form():
    # Commuting covariances: d^2 = |m1 - m2|^2 + sum_i (sqrt(l1_i) - sqrt(l2_i))^2, also when
    # some variances are zero (singular covariances, e.g. dead ReLU features).
    l1 = np.array([4.0, 0.0, 1.0, 0.0, 2.5], np.float32)
    l2 = np.array([1.0, 0.0, 0.0, 9.0, 2.5], np.float32)
    m1 = np.array([0.0, 1.0, 2.0, 0.0, -1.0], np.float32)
    m2 = np.array([1.0, 1.0, 0.0, 0.5, -1.0], np.float32)
    a, b = GaussianStats(m1, np.diag(l1)), GaussianStats(m2, np.diag(l2))
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    np.testing.assert_allclose(float(_fd(a, b)), expected, rtol=1e-5)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((5,), np.float32))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(_stats(_features(0, 10, 3)), _stats(_features(0, 10, 4)))
