"""Tests for diffjax/ode.py against closed-form ODE solutions and scipy's RK45."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from diffjax import ode

# dy/dt on the pytree {"a": [3], "b": [2, 2]}: a' = cos(t) a, b' = b A^T.
# Exact: a(t) = a(s) exp(sin t - sin s), b(t) = b(s) expm(A (t - s))^T.
A = np.array([[-0.5, 2.0], [-2.0, -0.3]], np.float32)
Y0 = {
    "a": np.array([1.0, -2.0, 0.5], np.float32),
    "b": np.array([[1.0, 0.0], [0.3, -1.0]], np.float32),
}
T = 2.0


def drift(y, t):
    return {"a": jnp.cos(t) * y["a"], "b": y["b"] @ A.T}


def exact(t, s=0.0, y=Y0):
    a = y["a"] * np.exp(np.sin(t) - np.sin(s))
    return {"a": a, "b": y["b"] @ scipy.linalg.expm(A * (t - s)).T}


def max_err(y, ref):
    return max(float(np.abs(np.asarray(y[k]) - ref[k]).max()) for k in ref)


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize(
    "method, order, steps",
    # Grids coarse enough that float32 round-off (~1e-6) stays far below the truncation error.
    [("euler", 1, (128, 256, 512)), ("heun", 2, (16, 32, 64)), ("rk4", 4, (4, 8, 16))],
)
def test_fixed_convergence_order(method, order, steps, backward):
    """Error ~ C h^order on an increasing grid 0 -> T and on a decreasing grid T -> 0."""
    t_start, t_end = (T, 0.0) if backward else (0.0, T)
    y_start = {k: v.astype(np.float32) for k, v in exact(t_start).items()}
    solve = jax.jit(lambda y0, ts: ode.solve_fixed(drift, y0, ts, method))
    errs = [
        max_err(solve(y_start, jnp.linspace(t_start, t_end, n + 1)), exact(t_end)) for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    # The leading error term dominates on these grids: the observed order is within 0.1.
    assert abs(slope - order) < 0.1, (errs, slope)


def test_fixed_trajectory():
    n = 16
    ts = jnp.linspace(T, 0.0, n + 1)
    solve = jax.jit(lambda y, ts: ode.solve_fixed(drift, y, ts, "rk4", return_trajectory=True))
    y1, traj = solve(Y0, ts)
    chex.assert_shape(traj["b"], (n + 1, 2, 2))
    np.testing.assert_array_equal(traj["a"][0], Y0["a"])
    np.testing.assert_array_equal(traj["a"][-1], y1["a"])
    # The state at ts[i] is the solve over the grid prefix ts[:i + 1].
    y_mid, _ = solve(Y0, ts[: n // 2 + 1])
    for k in Y0:
        np.testing.assert_allclose(traj[k][n // 2], y_mid[k], rtol=1e-6, atol=1e-6)


def test_compile_independent_of_steps():
    """The drift is traced a fixed number of times whatever the number of steps."""
    traces = []

    def counting(y, t):
        traces.append(None)
        return drift(y, t)

    for n in (10, 1000):
        traces.clear()
        jax.jit(lambda y, ts: ode.solve_fixed(counting, y, ts, "rk4"))(
            Y0, jnp.linspace(0, 1, n + 1)
        )
        assert len(traces) == 2  # first stage, and the scan over the other stages of one step
    for tol in (1e-2, 1e-6):
        traces.clear()
        jax.jit(lambda y: ode.solve_adaptive(counting, y, 0.0, T, rtol=tol, atol=tol))(Y0)  # noqa: B023
        assert len(traces) == 3  # f(y0), first-step probe, the scan over the stages


def test_fixed_no_retrace_for_new_grid_values():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def solve(y, ts):
        return ode.solve_fixed(drift, y, ts, "heun")

    solve(Y0, jnp.linspace(0.0, 1.0, 11))
    solve(Y0, jnp.linspace(1.0, 0.0, 11))


@pytest.mark.parametrize("tol", [1e-3, 1e-4, 1e-5])
def test_adaptive_meets_tolerance_and_matches_scipy(tol):
    y, stats = jax.jit(lambda y: ode.solve_adaptive(drift, y, 0.0, T, rtol=tol, atol=tol))(Y0)
    assert bool(stats["success"])
    n, rej = int(stats["num_steps"]), int(stats["num_rejected"])
    # FSAL: f(y0) + Hairer's first-step probe + 6 new stages per attempted step.
    assert int(stats["nfe"]) == 2 + 6 * (n + rej)
    # Each accepted step commits a local error <= atol + rtol |y|; over [0, T] they add up,
    # amplified at most by exp(L T) with L = max(1, ||A||) the Lipschitz constant.
    lipschitz = max(1.0, np.linalg.norm(A, 2))
    y_max = max(float(np.abs(v).max()) for t in np.linspace(0, T, 21) for v in exact(t).values())
    assert max_err(y, exact(T)) < n * tol * (1.0 + y_max) * np.exp(lipschitz * T)
    # Same algorithm and controller as scipy's RK45 (float64): the same drift evaluations up to
    # round-off deciding one attempt differently.
    flat0 = np.concatenate([Y0["a"], Y0["b"].ravel()]).astype(np.float64)

    def f(t, z):
        return np.concatenate([np.cos(t) * z[:3], (z[3:].reshape(2, 2) @ A.T).ravel()])

    ref = scipy.integrate.solve_ivp(f, (0.0, T), flat0, method="RK45", rtol=tol, atol=tol)
    assert abs(int(stats["nfe"]) - ref.nfev) <= 6


def test_adaptive_backward_in_time():
    y_T = {k: v.astype(np.float32) for k, v in exact(T).items()}
    y, stats = jax.jit(lambda y: ode.solve_adaptive(drift, y, T, 0.0, rtol=1e-5, atol=1e-5))(y_T)
    assert bool(stats["success"])
    assert max_err(y, Y0) < 1e-4


def test_adaptive_max_steps_reports_failure():
    _, stats = jax.jit(
        lambda y: ode.solve_adaptive(drift, y, 0.0, T, rtol=1e-6, atol=1e-6, max_steps=3)
    )(Y0)
    assert not bool(stats["success"])
    assert int(stats["num_steps"]) + int(stats["num_rejected"]) == 3


def test_adaptive_stiff_start_rejects_then_recovers():
    """A first step far too large is rejected and shrunk; the answer still meets the tolerance."""
    y, stats = jax.jit(
        lambda y: ode.solve_adaptive(drift, y, 0.0, T, rtol=1e-5, atol=1e-5, first_step=1.0)
    )(Y0)
    assert int(stats["num_rejected"]) >= 1
    assert int(stats["nfe"]) == 1 + 6 * (int(stats["num_steps"]) + int(stats["num_rejected"]))
    assert max_err(y, exact(T)) < 1e-4


def test_adaptive_vmap_per_example_and_traced_times():
    """Under vmap each example gets its own step sizes and end time; one trace of the drift."""
    t1 = jnp.array([0.5, 1.0, 2.0])
    ys = {k: jnp.stack([v] * 3) for k, v in Y0.items()}
    solve = jax.jit(
        jax.vmap(lambda y, t: ode.solve_adaptive(drift, y, 0.0, t, rtol=1e-5, atol=1e-5))
    )
    out, stats = solve(ys, t1)
    for i, t in enumerate(np.asarray(t1)):
        assert max_err({k: v[i] for k, v in out.items()}, exact(float(t))) < 1e-4
    assert np.all(np.diff(np.asarray(stats["nfe"])) > 0)  # longer intervals need more steps


def test_adaptive_zero_length_interval():
    y, stats = jax.jit(lambda y: ode.solve_adaptive(drift, y, 0.5, 0.5))(Y0)
    assert max_err(y, Y0) == 0.0
    assert int(stats["num_steps"]) == 0 and bool(stats["success"])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="valid methods: euler, heun, rk4"):
        ode.solve_fixed(drift, Y0, jnp.linspace(0.0, 1.0, 3), "midpoint")
    with pytest.raises(ValueError, match="at least two"):
        ode.solve_fixed(drift, Y0, jnp.zeros((1,)), "euler")
    with pytest.raises(ValueError, match="tolerances"):
        ode.solve_adaptive(drift, Y0, 0.0, 1.0, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        ode.solve_adaptive(drift, Y0, 0.0, 1.0, max_steps=0)
    with pytest.raises(ValueError, match="first_step"):
        ode.solve_adaptive(drift, Y0, 0.0, 1.0, first_step=-0.1)
    assert ode.nfe_per_step("rk4") == 4
