"""Time grids against their NumPy formulas."""

import jax
import numpy as np
import pytest

from diffjax.samplers import timesteps

from .closed_forms import VP


def _vp_log_snr(t):
    """NumPy VP log-SNR: log alpha^2 = -t^2 (b1 - b0)/2 - t b0, sigma^2 = 1 - alpha^2."""
    log_a2 = -0.5 * t**2 * (20.0 - 0.1) - 0.1 * t
    return log_a2 - np.log(-np.expm1(log_a2))


def test_uniform_and_quadratic():
    np.testing.assert_allclose(timesteps.uniform(4), [1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(
        timesteps.quadratic(4, t_min=0.2), 0.2 + 0.8 * (np.arange(4, -1, -1) / 4) ** 2, rtol=1e-6
    )


def test_log_snr_uniform_has_equal_log_snr_steps():
    ts = np.asarray(jax.jit(lambda: timesteps.log_snr_uniform(VP, 8, t_min=1e-3))())
    assert ts[0] == 1.0 and ts[-1] == np.float32(1e-3)
    lam = _vp_log_snr(ts.astype(np.float64))
    np.testing.assert_allclose(np.diff(lam), (lam[-1] - lam[0]) / 8, rtol=1e-3)


def test_karras_is_rho_spaced_in_noise_level():
    rho = 7.0
    ts = np.asarray(jax.jit(lambda: timesteps.karras(VP, 6, t_min=1e-2, rho=rho))())
    level = np.exp(-0.5 * _vp_log_snr(ts.astype(np.float64)))  # sigma / alpha
    s_max, s_min = level[0], level[-1]
    u = np.arange(7) / 6
    want = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    np.testing.assert_allclose(level, want, rtol=1e-3)


def test_snap_rounds_to_discrete_steps():
    np.testing.assert_allclose(timesteps.snap(timesteps.uniform(3), 10), [1.0, 0.7, 0.3, 0.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda: timesteps.uniform(0),
        lambda: timesteps.uniform(3, t_max=0.5, t_min=0.5),
        lambda: timesteps.log_snr_uniform(VP, 3, t_min=0.0),
        lambda: timesteps.karras(VP, 3, rho=0.0),
    ],
)
def test_invalid_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
