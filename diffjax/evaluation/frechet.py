"""Frechet distance between Gaussians fitted to features (the statistic behind FID).

The seeds rank generators by FID (seed 002, "Table 1: Results on CIFAR10 unconditioned image
generation"; seed 004, "Table 1: Likelihood (BPD), quality of generated samples (FID)"): the
Frechet (2-Wasserstein) distance between Gaussians fitted to network features of real and
generated images (Heusel et al. 2017, "GANs trained by a two time-scale update rule", eq. 6;
the closed form is Dowson & Landau 1982):

  d^2(N(m1, S1), N(m2, S2)) = |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).

S1 S2 is similar to S1^{1/2} S2 S1^{1/2} = M M^T with M = S1^{1/2} S2^{1/2}, so its eigenvalues
are the squared singular values of M and tr((S1 S2)^{1/2}) = sum_i sv_i(M), the nuclear norm of
M. This form needs only symmetric eigendecompositions and one SVD (no non-symmetric matrix
square root), is exactly symmetric in its two arguments (sv(M) = sv(M^T)), and handles
rank-deficient covariances (fewer samples than features, dead ReLU features).
"""

import flax.struct
import jax.numpy as jnp
from jax import Array


@flax.struct.dataclass
class GaussianStats:
    """Mean and covariance of a set of feature vectors.

    Attributes:
      mean: [D].
      cov: [D, D], symmetric positive semi-definite.
    """

    mean: Array
    cov: Array


def gaussian_stats(features: Array) -> GaussianStats:
    """Sample mean and unbiased sample covariance (divisor N - 1) of `features`.

    Args:
      features: [N, D], N >= 2.

    Returns:
      GaussianStats with mean [D] and cov [D, D].

    Raises:
      ValueError: if `features` is not [N, D] with N >= 2.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got shape {features.shape}")
    features = jnp.asarray(features, jnp.float32)
    mean = jnp.mean(features, axis=0)  # [D]
    centred = features - mean[None]  # [N, D]
    cov = centred.T @ centred / (features.shape[0] - 1)  # [D, D]
    return GaussianStats(mean=mean, cov=cov)


def _psd_sqrt(cov: Array) -> Array:
    """Symmetric square root U diag(sqrt(max(lam, 0))) U^T of a PSD matrix [D, D]."""
    lam, u = jnp.linalg.eigh(cov)
    return (u * jnp.sqrt(jnp.maximum(lam, 0.0))[None]) @ u.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> Array:
    """Squared Frechet distance between N(a.mean, a.cov) and N(b.mean, b.cov); a scalar.

    d^2 = |m_a - m_b|^2 + tr(S_a) + tr(S_b) - 2 ||S_a^{1/2} S_b^{1/2}||_*  (module docstring).
    It is >= 0 up to rounding, 0 for identical statistics and symmetric in (a, b).

    Args:
      a: statistics with mean [D], cov [D, D].
      b: statistics of the same dimension D.

    Raises:
      ValueError: if the dimensions differ.
    """
    if a.mean.shape != b.mean.shape or a.cov.shape != b.cov.shape:
        raise ValueError(f"dimensions differ: {a.mean.shape} vs {b.mean.shape}")
    cross = _psd_sqrt(a.cov) @ _psd_sqrt(b.cov)  # [D, D]
    trace_sqrt = jnp.sum(jnp.linalg.svd(cross, compute_uv=False))
    diff = a.mean - b.mean
    return jnp.sum(diff**2) + jnp.trace(a.cov) + jnp.trace(b.cov) - 2.0 * trace_sqrt
