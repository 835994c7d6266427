"""Sliced W1 against closed forms: zero for equal samples, |c| for 1-D shifts, and E|<u, c>| for
a shift c in 2-D (u uniform on the circle: 2 |c| / pi)."""

import jax
import numpy as np

from diffjax.evaluation.sliced import sliced_w1


def test_sliced_w1_closed_forms():
    x = np.asarray(jax.random.normal(jax.random.key(0), (1000, 2)))
    key = jax.random.key(1)
    assert sliced_w1(x, x, key) == 0.0
    line = x[:, :1]
    np.testing.assert_allclose(sliced_w1(line + 0.3, line, key), 0.3, rtol=1e-5)
    shift = np.array([0.6, 0.8])  # |c| = 1
    got = sliced_w1(x + shift, x, key, num_dirs=20000)
    np.testing.assert_allclose(got, 2 / np.pi, rtol=0.02)
