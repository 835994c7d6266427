"""DPM-Solver: exponential integrators of the probability-flow ODE in log-SNR time.

With l(t) = log(alpha_t / sigma_t) (half of `Process.log_snr`) and h = l_s - l_t > 0, the
probability-flow ODE solved exactly in its linear part reads (seed 004, "DPM-Solver"; Lu et al.
2022, eq. 3.4)

  x_s = (alpha_s / alpha_t) x_t - alpha_s int_{l_t}^{l_s} e^{-l} eps_hat(x_l, l) dl,

and with a data prediction (DPM-Solver++, Lu et al. 2022b, eq. 9)

  x_s = (sigma_s / sigma_t) x_t + sigma_s int_{l_t}^{l_s} e^{l} x0_hat(x_l, l) dl.

Taylor-expanding the prediction in l gives:
- `dpm_solver` order 1 (= DDIM), 2 and 3, single-step with intermediate points at l_t + r h
  (r = 1/2 for order 2; r1 = 1/3, r2 = 2/3 for order 3): k network evaluations per step;
- `dpm_solver_pp` multistep 2M and 3M, reusing the data predictions of the previous grid points:
  one network evaluation per step (plus one for 3M's second-order start).
The default grid is uniform in l from t = 1 to t_min = 1e-3; t_N must be > 0 (l(0) is infinite).
"""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from diffjax.denoisers import Denoiser
from diffjax.processes import Process
from diffjax.samplers import timesteps as grids
from diffjax.samplers.base import State, StepSampler


def _half_log_snr(process: Process, t: Array) -> Array:
    return 0.5 * process.log_snr(t)


def _at_half_log_snr(process: Process, l: Array) -> Array:
    """The t with log(alpha_t / sigma_t) = l."""
    return process.t_of_log_snr(2.0 * l)


class _LogSNRGrid(StepSampler):
    """Default grid uniform in log-SNR from t = 1 to the subclass's `t_min` field."""

    default_num_steps: ClassVar[int] = 20

    def grid(self, process: Process, num_steps: int) -> Array:
        return grids.log_snr_uniform(process, num_steps, t_min=self.t_min)


def _check_t_min(t_min: float) -> None:
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"{t_min=} must be in (0, 1): log-SNR is infinite at t = 0")


@dataclasses.dataclass(frozen=True)
class DPMSolver(_LogSNRGrid):
    """Single-step DPM-Solver of order 1, 2 or 3 with noise predictions (Lu et al., Alg. 1-2).

    With phi_1 = e^h - 1 and eps_t = eps_hat(x_t, t):
      order 1: x_s = (alpha_s/alpha_t) x_t - sigma_s phi_1 eps_t
      order 2: u = x at l_t + h/2 by order 1;
               x_s = (alpha_s/alpha_t) x_t - sigma_s phi_1 eps_t - sigma_s phi_1 (eps_u - eps_t)
      order 3: u1 at l_t + h/3 by order 1; D1 = eps_u1 - eps_t;
               u2 at l_t + 2h/3: (alpha_u2/alpha_t) x_t - sigma_u2 (e^{2h/3} - 1) eps_t
                                  - sigma_u2 2 ((e^{2h/3} - 1)/(2h/3) - 1) D1;
               D2 = eps_u2 - eps_t;
               x_s = (alpha_s/alpha_t) x_t - sigma_s phi_1 eps_t - (3/2) sigma_s (phi_1/h - 1) D2.

    Attributes:
      order: 1, 2 or 3 (network evaluations per step).
      t_min: end of the default grid.
    """

    order: int = 2
    t_min: float = 1e-3

    def __post_init__(self):
        if self.order not in (1, 2, 3):
            raise ValueError(f"dpm_solver order must be 1, 2 or 3, got {self.order}")
        _check_t_min(self.t_min)

    def nfe(self, num_steps: int) -> int:
        return self.order * num_steps

    def step(
        self,
        denoiser: Denoiser,
        x: Array,
        state: State,
        t: Array,
        s: Array,
        key: Array,
        last: Array,
    ) -> tuple[Array, State]:
        del key, last
        process = denoiser.process
        l_t = _half_log_snr(process, t)
        h = _half_log_snr(process, s) - l_t
        alpha_t = process.alpha(t)

        def first_order(u, r):
            """x at l_t + r h (time u) by the order-1 update, and e^{rh} - 1."""
            phi = jnp.expm1(r * h)
            return process.alpha(u) / alpha_t * x - process.sigma(u) * phi * eps_t, phi

        eps_t = denoiser.x0_eps(x, t)[1]
        x_s, phi = first_order(s, 1.0)
        if self.order == 2:
            u = _at_half_log_snr(process, l_t + 0.5 * h)
            eps_u = denoiser.x0_eps(first_order(u, 0.5)[0], u)[1]
            x_s = x_s - process.sigma(s) * phi * (eps_u - eps_t)
        elif self.order == 3:
            r1, r2 = 1.0 / 3.0, 2.0 / 3.0
            u1, u2 = (_at_half_log_snr(process, l_t + r * h) for r in (r1, r2))
            d1 = denoiser.x0_eps(first_order(u1, r1)[0], u1)[1] - eps_t
            x_u2, phi2 = first_order(u2, r2)
            x_u2 = x_u2 - process.sigma(u2) * (r2 / r1) * (phi2 / (r2 * h) - 1.0) * d1
            d2 = denoiser.x0_eps(x_u2, u2)[1] - eps_t
            x_s = x_s - process.sigma(s) / r2 * (phi / h - 1.0) * d2
        return x_s, state


@dataclasses.dataclass(frozen=True)
class DPMSolverPP(_LogSNRGrid):
    """Multistep DPM-Solver++ 2M / 3M with data predictions m_i = x0_hat(x_{t_i}, t_i).

    With m(l) = m_0 + m' (l - l_t) + m''/2 (l - l_t)^2 + O(h^3) the integral above is
      x_s = (sigma_s/sigma_t) x_t - alpha_s phi_1 m_0 + alpha_s phi_2 h m' - alpha_s phi_3 h^2 m''
    with phi_1 = e^{-h} - 1, phi_2 = phi_1/h + 1, phi_3 = phi_2/h - 1/2 (so -h^2 phi_3 =
    int_0^h e^{u-h} u^2/2 du). The past predictions give, with h_0 = l_t - l_prev,
    h_1 = l_prev - l_prev2, r_0 = h_0/h, r_1 = h_1/h:
      D1_0 = (m_0 - m_1)/r_0,  D1_1 = (m_1 - m_2)/r_1,
      2M: x_s = (sigma_s/sigma_t) x_t - alpha_s phi_1 (m_0 + D1_0/2) (Lu et al. 2022b,
          Algorithm 2), local error O(h^3);
      3M: h m' ~ D1 = D1_0 + r_0/(r_0 + r_1) (D1_0 - D1_1),
          h^2 m'' ~ D2 = 2 (D1_0 - D1_1)/(r_0 + r_1),
          x_s = (sigma_s/sigma_t) x_t - alpha_s phi_1 m_0 + alpha_s phi_2 D1 - alpha_s phi_3 D2.
    Note the 2 in D2: since D1_0 - D1_1 = (r_0 + r_1) h^2 m''/2 + O(h^3), this is the
    second-derivative estimate the Taylor expansion needs; the widely copied reference code
    omits it, which leaves an O(h^3) local error and only global order 2 (measured in
    tests/samplers/test_dpm_solver.py: exactness on quadratic m(l) and the observed order).
    2M starts with one order-1 step (local error O(h^2), global order 2 kept). 3M starts with one
    single-step DPM-Solver++(2S) step (Lu et al. 2022b, Algorithm 1, r = 1/2: the data prediction
    at the log-SNR midpoint u, x_u = (sigma_u/sigma_t) x_t - alpha_u (e^{-h/2} - 1) m_0, used over
    the whole step) and one 2M step, whose local errors O(h^3) keep global order 3; an order-1
    start would cap it at 2. NFE = N for 2M, N + 1 for 3M.

    Attributes:
      order: 2 (2M) or 3 (3M).
      t_min: end of the default grid.
    """

    order: int = 2
    t_min: float = 1e-3

    def __post_init__(self):
        if self.order not in (2, 3):
            raise ValueError(f"dpm_solver_pp order must be 2 (2M) or 3 (3M), got {self.order}")
        _check_t_min(self.t_min)

    def nfe(self, num_steps: int) -> int:
        return num_steps + (self.order == 3)

    def init_state(self, x: Array, ts: Array) -> State:
        """(m_1, m_2, l_prev, l_prev2, number of steps taken)."""
        del ts
        zero = jnp.zeros((), jnp.float32)
        return jnp.zeros_like(x), jnp.zeros_like(x), zero, zero, jnp.int32(0)

    def step(
        self,
        denoiser: Denoiser,
        x: Array,
        state: State,
        t: Array,
        s: Array,
        key: Array,
        last: Array,
    ) -> tuple[Array, State]:
        del key, last
        process = denoiser.process
        m1, m2, l_prev, l_prev2, count = state
        l_t = _half_log_snr(process, t)
        h = _half_log_snr(process, s) - l_t
        m0 = denoiser.x0_eps(x, t)[0]
        alpha_s = process.alpha(s)
        phi1 = jnp.expm1(-h)
        base = process.sigma(s) / process.sigma(t) * x - alpha_s * phi1 * m0
        # Unused orders may divide by zero on the first steps; `where` discards them.
        r0 = (l_t - l_prev) / h
        d1_0 = (m0 - m1) / r0
        x_s = jnp.where(count >= 1, base - 0.5 * alpha_s * phi1 * d1_0, base)
        if self.order == 3:
            r1 = (l_prev - l_prev2) / h
            d1_1 = (m1 - m2) / r1
            d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
            d2 = 2.0 * (d1_0 - d1_1) / (r0 + r1)
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            x_s = jnp.where(count >= 2, base + alpha_s * (phi2 * d1 - phi3 * d2), x_s)

            def midpoint():
                """DPM-Solver++(2S): the data prediction at l_t + h/2 over the whole step."""
                u = _at_half_log_snr(process, l_t + 0.5 * h)
                x_u = (
                    process.sigma(u) / process.sigma(t) * x
                    - process.alpha(u) * jnp.expm1(-0.5 * h) * m0
                )
                m_u = denoiser.x0_eps(x_u, u)[0]
                return process.sigma(s) / process.sigma(t) * x - alpha_s * phi1 * m_u

            x_s = jax.lax.cond(count == 0, midpoint, lambda: x_s)
        return x_s, (m0, m1, l_t, l_prev, count + 1)
