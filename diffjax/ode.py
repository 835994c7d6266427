"""Explicit Runge-Kutta integration of dy/dt = drift(y, t) on pytrees, on device.

Two entry points, both pure and jittable (neither calls `jax.jit`):

- `solve_fixed(drift, y0, ts, method)`: one `lax.scan` over a given time grid `ts` (increasing
  or decreasing), with the Euler (order 1), Heun (explicit trapezoid, order 2) or classical
  Runge-Kutta (order 4) step. The drift is traced twice (first stage, then the scan over the
  other stages), whatever the grid length, so compile time does not grow with the steps.
- `solve_adaptive(drift, y0, t0, t1, rtol=, atol=)`: Dormand-Prince 5(4) (Dormand & Prince 1980;
  Hairer, Norsett & Wanner, "Solving ODEs I", II.4-II.5) with first-same-as-last reuse of the
  last stage, local extrapolation (the 5th-order solution is propagated), the embedded
  4th-order solution as error estimate, and the standard step-size controller

    err = RMS over all entries of e_i / (atol + rtol max(|y_i|, |y_new_i|)),
    accept iff err <= 1,  h <- h clip(0.9 err^(-1/5), 0.2, 10)  (no growth right after a reject),

  inside one `lax.while_loop`. The first step, unless given, follows Hairer's heuristic (one
  extra drift evaluation). It is the same algorithm as scipy's RK45.

Every step of either solver is one explicit Runge-Kutta step from a Butcher tableau: with stages
k_i = drift(y + h sum_{j<i} a_ij k_j, t + c_i h), the step is y + h sum_i b_i k_i.

The probability-flow ODE that these integrate for sampling and likelihoods is in seed 000,
"Fokker-Planck equation and ODE models", and seed 004, "Diffusion ODEs".
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

PyTree = Any
Drift = Callable[[PyTree, Array], PyTree]


@dataclasses.dataclass(frozen=True)
class Tableau:
    """An explicit Butcher tableau (Python floats, static under jit).

    Attributes:
      c: stage times, [S], c[0] = 0.
      a: a[i] holds the coefficients a_ij for j < i (a[0] is empty).
      b: weights of the propagated solution, [S].
      b_err: b - b_hat, weights of the embedded error estimate, [S] (None if not embedded).
      order: order of the propagated solution.
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None

    @property
    def num_stages(self) -> int:
        return len(self.c)


EULER = Tableau(c=(0.0,), a=((),), b=(1.0,), order=1)
HEUN = Tableau(c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)
RK4 = Tableau(
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)
_DOPRI_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DOPRI_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = Tableau(
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DOPRI_B[:6],  # first same as last: the 7th stage is the drift at the new point
    ),
    b=_DOPRI_B,
    b_err=tuple(b - bh for b, bh in zip(_DOPRI_B, _DOPRI_B_HAT, strict=True)),
    order=5,
)

FIXED_METHODS = {"euler": EULER, "heun": HEUN, "rk4": RK4}

# Step-size controller constants (Hairer, Norsett & Wanner II.4, as in scipy's RK45).
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0


def nfe_per_step(method: str) -> int:
    """Drift evaluations per step of a fixed-step `method`."""
    return _fixed_tableau(method).num_stages


def _fixed_tableau(method: str) -> Tableau:
    if method not in FIXED_METHODS:
        raise ValueError(
            f"unknown ODE method {method!r}; valid methods: {', '.join(FIXED_METHODS)}"
        )
    return FIXED_METHODS[method]


def _increment(h: Array, coefs: Array, ks: PyTree) -> PyTree:
    """h sum_j coefs[j] ks[j] leafwise; coefs: [S], ks: stacked stages with leaves [S, ...]."""
    return jax.tree.map(lambda k: h * jnp.tensordot(coefs, k, axes=1).astype(k.dtype), ks)


def _add(y: PyTree, dy: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: a + b.astype(a.dtype), y, dy)


def _rk_stages(drift: Drift, tab: Tableau, y: PyTree, t: Array, h: Array, k1: PyTree) -> PyTree:
    """The stages k_1..k_S of one RK step from (t, y) of size h, stacked: leaves [S, ...].

    k1 = drift(y, t) is given. The later stages run in one `lax.scan` over the rows of the
    tableau (zero-padded to [S, S]), so the drift is traced once per step rather than once per
    stage, which divides compile time by about S (diffrax's `scan_stages`).
    """
    s = tab.num_stages
    ks = jax.tree.map(lambda k: jnp.zeros((s, *k.shape), k.dtype).at[0].set(k), k1)
    if s == 1:
        return ks
    a = jnp.array([row + (0.0,) * (s - len(row)) for row in tab.a], jnp.float32)  # [S, S]
    c = jnp.array(tab.c, jnp.float32)

    def stage(ks, i):
        k_i = drift(_add(y, _increment(h, a[i], ks)), t + c[i] * h)
        return jax.tree.map(lambda stack, k: stack.at[i].set(k), ks, k_i), None

    ks, _ = jax.lax.scan(stage, ks, jnp.arange(1, s))
    return ks


def solve_fixed(
    drift: Drift,
    y0: PyTree,
    ts: Array,
    method: str = "euler",
    return_trajectory: bool = False,
) -> PyTree | tuple[PyTree, PyTree]:
    """Integrates dy/dt = drift(y, t) over the grid ts[0] -> ts[-1] with a fixed-step RK method.

    Each interval [ts[n], ts[n+1]] is one step of size h_n = ts[n+1] - ts[n] (negative for a
    decreasing grid, e.g. noise -> data). Global error O(max |h_n|^order), order 1 / 2 / 4.
    NFE = (len(ts) - 1) * nfe_per_step(method).

    Args:
      drift: (y, t) -> dy/dt with the pytree structure of y; t is a float32 scalar.
      y0: initial state at ts[0], any pytree of float arrays.
      ts: [N + 1] monotone time grid, N >= 1.
      method: "euler", "heun" or "rk4".
      return_trajectory: if True, also return the states at every ts (leading axis N + 1).

    Returns:
      y at ts[-1]; with return_trajectory, (y at ts[-1], trajectory with leaves [N + 1, ...]).

    Raises:
      ValueError: for an unknown method or a grid with fewer than two points.
    """
    tab = _fixed_tableau(method)
    ts = jnp.asarray(ts, jnp.float32)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D grid of at least two times, got shape {ts.shape}")

    def step(y, t_pair):
        t, t_next = t_pair
        h = t_next - t
        ks = _rk_stages(drift, tab, y, t, h, drift(y, t))
        y_next = _add(y, _increment(h, jnp.array(tab.b, jnp.float32), ks))
        return y_next, (y_next if return_trajectory else None)

    y1, ys = jax.lax.scan(step, y0, (ts[:-1], ts[1:]))
    if not return_trajectory:
        return y1
    trajectory = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)
    return y1, trajectory


def _rms_norm(tree: PyTree) -> Array:
    """sqrt(mean of squares) over every entry of every leaf."""
    leaves = jax.tree.leaves(tree)
    total = sum(jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in leaves)
    return jnp.sqrt(total / sum(leaf.size for leaf in leaves))


def _scaled(tree: PyTree, y: PyTree, y_new: PyTree, rtol: float, atol: float) -> PyTree:
    """tree / (atol + rtol max(|y|, |y_new|)) leafwise."""
    return jax.tree.map(
        lambda e, a, b: e / (atol + rtol * jnp.maximum(jnp.abs(a), jnp.abs(b))), tree, y, y_new
    )


def _initial_step(drift, y0, f0, t0, t1, rtol, atol) -> Array:
    """Hairer, Norsett & Wanner II.4 starting step size |h0| (one drift evaluation)."""
    d0 = _rms_norm(_scaled(y0, y0, y0, rtol, atol))
    d1 = _rms_norm(_scaled(f0, y0, y0, rtol, atol))
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    h0 = jnp.minimum(h0, jnp.abs(t1 - t0))
    direction = jnp.sign(t1 - t0)
    y1 = _add(y0, jax.tree.map(lambda f: direction * h0 * f, f0))
    f1 = drift(y1, t0 + direction * h0)
    d2 = _rms_norm(_scaled(jax.tree.map(jnp.subtract, f1, f0), y0, y0, rtol, atol)) / h0
    dmax = jnp.maximum(d1, d2)
    h1 = jnp.where(dmax <= 1e-15, jnp.maximum(1e-6, 1e-3 * h0), (0.01 / dmax) ** (1 / 5))
    return jnp.minimum(100.0 * h0, h1)


def solve_adaptive(
    drift: Drift,
    y0: PyTree,
    t0: float | Array,
    t1: float | Array,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 10_000,
    first_step: float | None = None,
) -> tuple[PyTree, dict[str, Array]]:
    """Integrates dy/dt = drift(y, t) from t0 to t1 (either direction) with Dormand-Prince 5(4).

    One step size is shared by the whole state: for a batch, the error norm is taken over the
    batch (as scipy's solver on the flattened batch); `jax.vmap` this function for per-example
    step sizes.

    Args:
      drift: (y, t) -> dy/dt with the pytree structure of y; t is a float32 scalar.
      y0: initial state at t0, any pytree of float arrays.
      t0, t1: start and end times (scalars, may be traced).
      rtol, atol: relative and absolute local error tolerances (Python floats).
      max_steps: bound on attempted (accepted + rejected) steps.
      first_step: initial |h|; default Hairer's heuristic.

    Returns:
      (y at t1, stats) with int32 stats "nfe" (drift evaluations), "num_steps" (accepted),
      "num_rejected", and bool "success" (t1 was reached within max_steps).

    Raises:
      ValueError: for negative tolerances (or both zero), max_steps < 1 or first_step <= 0.
    """
    if rtol < 0 or atol < 0 or rtol + atol == 0:
        raise ValueError(f"tolerances must be >= 0 and not both zero, got {rtol=}, {atol=}")
    if max_steps < 1:
        raise ValueError(f"{max_steps=} must be >= 1")
    if first_step is not None and not first_step > 0:
        raise ValueError(f"{first_step=} must be > 0")
    tab = DOPRI5
    t0, t1 = jnp.asarray(t0, jnp.float32), jnp.asarray(t1, jnp.float32)
    direction = jnp.sign(t1 - t0)
    f0 = drift(y0, t0)
    if first_step is None:
        h_abs, nfe0 = _initial_step(drift, y0, f0, t0, t1, rtol, atol), 2
    else:
        h_abs, nfe0 = jnp.float32(first_step), 1
    h_abs = jnp.minimum(h_abs, jnp.abs(t1 - t0))
    zero = jnp.int32(0)
    # state: (t, y, drift at (t, y), |h|, nfe, accepted, rejected, last attempt rejected)
    init = (t0, y0, f0, h_abs, jnp.int32(nfe0), zero, zero, jnp.bool_(False))

    def unfinished(state):
        t, _, _, _, _, n_steps, n_rejected, _ = state
        return (direction * (t1 - t) > 0) & (n_steps + n_rejected < max_steps)

    def attempt(state):
        t, y, k1, h_abs, nfe, n_steps, n_rejected, last_rejected = state
        last = h_abs >= jnp.abs(t1 - t)
        h = jnp.where(last, t1 - t, direction * h_abs)
        ks = _rk_stages(drift, tab, y, t, h, k1)
        y_new = _add(y, _increment(h, jnp.array(tab.b, jnp.float32), ks))
        err = _rms_norm(
            _scaled(_increment(h, jnp.array(tab.b_err, jnp.float32), ks), y, y_new, rtol, atol)
        )
        err = jnp.where(jnp.isfinite(err), err, jnp.inf)
        accept = err <= 1.0
        factor = jnp.clip(_SAFETY * err ** (-1 / 5), _MIN_FACTOR, _MAX_FACTOR)
        factor = jnp.where(accept & last_rejected, jnp.minimum(factor, 1.0), factor)
        t_new = jnp.where(last, t1, t + h)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(accept, a, b), new, old)  # noqa: E731
        return (
            jnp.where(accept, t_new, t),
            keep(y_new, y),
            keep(jax.tree.map(lambda k: k[-1], ks), k1),  # first same as last
            jnp.abs(h) * factor,
            nfe + (tab.num_stages - 1),
            n_steps + accept,
            n_rejected + (~accept),
            ~accept,
        )

    t, y, _, _, nfe, n_steps, n_rejected, _ = jax.lax.while_loop(unfinished, attempt, init)
    stats = {
        "nfe": nfe,
        "num_steps": n_steps,
        "num_rejected": n_rejected,
        "success": ~(direction * (t1 - t) > 0),
    }
    return y, stats
