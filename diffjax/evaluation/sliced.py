"""The sliced Wasserstein-1 distance between two point clouds.

A Frechet distance of 2-D points compares only means and covariances; the sliced W1 compares
whole distributions: the mean over random unit directions of the exact 1-D W1 of the
projections, which for equal-size samples is the mean absolute difference of the sorted values.
"""

import jax
import numpy as np


def sliced_w1(a: np.ndarray, b: np.ndarray, key: jax.Array, num_dirs: int = 64) -> float:
    """Mean over `num_dirs` random unit directions of the exact 1-D W1 of the projections of
    a [N, D] and b [M, D] (the first min(N, M) points of each)."""
    n = min(len(a), len(b))
    dirs = np.array(jax.random.normal(key, (a.shape[1], num_dirs)))
    dirs = dirs / np.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = np.sort(a[:n] @ dirs, axis=0), np.sort(b[:n] @ dirs, axis=0)
    return float(np.mean(np.abs(pa - pb)))
