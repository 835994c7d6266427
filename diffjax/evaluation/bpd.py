"""Bits per dimension of discrete data from the probability-flow ODE density.

Discrete data has K = `num_bins` values v in {0, ..., K - 1} per dimension (256 for uint8
images, 17 for digits). `diffjax.data.pipeline` scales it in two ways:

  plain:        x = 2 v / (K - 1) - 1                  (the batches evaluated here),
  dequantized:  x = 2 (v + u) / K - 1,  u ~ U[0, 1)^D  (drawn here, `num_dequantizations` times).

With y = v + u = K (x + 1) / 2, p_y(y) = p_x(x) (2 / K)^D, and Jensen's inequality over u gives
the uniform-dequantization bound (Theis et al. 2016; Song et al. 2021, score_sde's bpd; seed 004,
"Diffusion ODEs", continuous change of variable for -log p_x)

  -log P(v) <= E_u[-log p_x(2 (v + u) / K - 1)] + D log(K / 2),
  bits/dim   = (E_u[-log p_x] + D log(K / 2)) / (D log 2),

e.g. + log2(128) = 7 bits for K = 256 on [-1, 1] (score_sde's "+ 8" for data on [0, 1] is the
same number: its Jacobian is 256^D instead of 128^D). E_u is estimated by averaging over
several dequantizations per example, as score_sde does.

Measuring the density at the undequantized grid points instead is not a bound on anything: a
model can put arbitrarily high density on the grid, so that number can be far below the true
bits/dim, even negative. `evaluate_bpd(..., dequantize=False)` computes it only with a warning.
"""

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffjax import likelihood
from diffjax import progress as progress_lib
from diffjax.data import pipeline
from diffjax.denoisers import Denoiser
from diffjax.losses import vocabulary

# A plainly scaled value lies within this distance of the grid 2 v / (K - 1) - 1 (float32 scaling
# is exact to ~1e-7; the grid spacing is 2 / (K - 1) >= 3e-5 for K <= 65536).
_GRID_TOL = 1e-5


def _check_bins(num_bins: int | None) -> None:
    if num_bins is not None and num_bins < 2:
        raise ValueError(f"{num_bins=} must be >= 2, or None for continuous data")


def bits_per_dim(nll: Array, dim: int, num_bins: int | None) -> Array:
    """(nll + D log(K / 2)) / (D log 2): bits/dim of discrete data from nats of x in [-1, 1].

    Args:
      nll: -log p_x of (dequantized) x in nats per example, any shape.
      dim: D, the number of values per example.
      num_bins: K values per dimension, or None for continuous data (no offset).
    """
    _check_bins(num_bins)
    offset = 0.0 if num_bins is None else dim * math.log(num_bins / 2)
    return vocabulary.bits_per_dim(nll + offset, dim)


def quantize(x: Array, num_bins: int) -> Array:
    """The integer values v (int32) of plainly scaled x = 2 v / (K - 1) - 1."""
    return jnp.round((x + 1.0) * (num_bins - 1) / 2.0).astype(jnp.int32)


def dequantize(key: Array, v: Array, num_bins: int) -> Array:
    """x = 2 (v + u) / K - 1 with u ~ U[0, 1) of v's shape; v: integer values [B, ...]."""
    return pipeline.dequantize(v, jax.random.uniform(key, v.shape, jnp.float32), num_bins)


def grid_deviation(x: Array, num_bins: int) -> Array:
    """max |x - (2 v / (K - 1) - 1)| over x: ~0 iff x is plainly scaled discrete data."""
    grid = 2.0 * quantize(x, num_bins).astype(jnp.float32) / (num_bins - 1) - 1.0
    return jnp.max(jnp.abs(x - grid))


def batch_bpd(
    key: Array,
    denoiser: Denoiser,
    x: Array,
    num_bins: int | None,
    *,
    num_dequantizations: int = 5,
    dequantize_data: bool = True,
    **nll_kwargs,
) -> dict[str, Array]:
    """Bits/dim of each example of one batch, averaged over its dequantizations.

    Args:
      key: PRNG key for the dequantization noise and the Hutchinson probes.
      denoiser: the model, as a Denoiser with a probability-flow ODE.
      x: [B, ...] plainly scaled discrete data (or continuous data when num_bins is None).
      num_bins: K, or None for continuous data (evaluated as is, one ODE solve).
      num_dequantizations: S, uniform dequantizations per example (S ODE solves, in sequence).
      dequantize_data: False evaluates the density at the grid points (not a bound; see module).
      **nll_kwargs: passed to `diffjax.likelihood.nll` (trace, solver, rtol, atol, ...).

    Returns:
      {"bpd": [B], "nfe": [] mean drift evaluations per ODE solve, "success": [] all solves
      reached t = 1, "grid_deviation": [] (0 for continuous data; see `grid_deviation`)}.
    """
    _check_bins(num_bins)
    if num_dequantizations < 1:
        raise ValueError(f"{num_dequantizations=} must be >= 1")
    dim = math.prod(x.shape[1:])
    discrete = num_bins is not None and dequantize_data
    repeats = num_dequantizations if discrete else 1

    def one(k):
        k_u, k_probe = jax.random.split(k)
        x_eval = dequantize(k_u, quantize(x, num_bins), num_bins) if discrete else x
        out = likelihood.nll(k_probe, denoiser, x_eval, **nll_kwargs)
        return out["nll"], out["nfe"], out["success"]

    nll, nfe, success = jax.lax.map(one, jax.random.split(key, repeats))  # [S, B], [S], [S]
    deviation = jnp.float32(0.0) if num_bins is None else grid_deviation(x, num_bins)
    return {
        "bpd": bits_per_dim(jnp.mean(nll, axis=0), dim, num_bins),
        "nfe": jnp.mean(nfe.astype(jnp.float32)),
        "success": jnp.all(success),
        "grid_deviation": deviation,
    }


def evaluate_bpd(
    key: Array,
    denoiser: Denoiser | Callable[[Any], Denoiser],
    batches: Iterable[Mapping[str, Array]],
    num_bins: int | None,
    *,
    params: Any = None,
    num_dequantizations: int = 5,
    dequantize_data: bool = True,
    progress: bool = True,
    **nll_kwargs,
) -> dict[str, float]:
    """Bits/dim of a dataset: mean and standard error over examples, NFE and wall time.

    The driver of the `eval_bpd` mode: it jits `batch_bpd` once (batches of one shape) and
    loops over `batches` on the host with a progress bar. Batches may be sharded arrays; only
    per-batch scalars come back to the host.

    Args:
      key: PRNG key; batch i uses fold_in(key, i).
      denoiser: the model as a Denoiser; or, with `params`, a function params -> Denoiser
        (e.g. `functools.partial(recipe.denoiser, apply_fn)`), so that the weights are
        arguments of the jitted computation (kept as placed, e.g. sharded) rather than
        constants compiled into it: use this for real models.
      batches: iterable of {"x": [B, ...]} plainly scaled as by `diffjax.data` (a loader with
        dequantize=False, or `Dataset.as_array`); this function draws the dequantization.
      num_bins: K of the dataset (`Dataset.num_bins`), None for continuous data.
      params: the weights passed to `denoiser` (None: `denoiser` is a Denoiser).
      num_dequantizations: uniform dequantizations averaged per example (score_sde: 5).
      dequantize_data: False measures the density at the grid points, with a warning.
      progress: show a tqdm bar with the running bpd.
      **nll_kwargs: passed to `diffjax.likelihood.nll`.

    Returns:
      {"bpd_mean", "bpd_stderr" (std over examples / sqrt(n)), "nfe" (mean per ODE solve),
      "seconds" (wall, compilation included), "num_examples", "dequantized"}.

    Raises:
      ValueError: if a batch of discrete data is not on the plain grid 2 v / (K - 1) - 1 (e.g.
        already dequantized), or `batches` is empty.
    """
    _check_bins(num_bins)
    discrete = num_bins is not None
    if discrete and not dequantize_data:
        warnings.warn(
            "evaluate_bpd(dequantize_data=False): measuring the density of UNDEQUANTIZED discrete "
            "data at its grid points. This is not a bound on -log P(v): it can be far below the "
            "true bits/dim, even negative, and is not comparable with published numbers.",
            stacklevel=2,
        )

    make_denoiser = (lambda _: denoiser) if params is None else denoiser

    def run(p, k, x):
        out = batch_bpd(
            k,
            make_denoiser(p),
            x,
            num_bins,
            num_dequantizations=num_dequantizations,
            dequantize_data=dequantize_data,
            **nll_kwargs,
        )
        bpd = out.pop("bpd")
        return {**out, "sum": jnp.sum(bpd), "sum_sq": jnp.sum(jnp.square(bpd))}

    run = jax.jit(run)
    start = time.perf_counter()
    n, total, total_sq, nfe, failed = 0, 0.0, 0.0, [], 0
    bar = progress_lib.bar(batches, desc="bpd", disable=not progress)
    for i, batch in enumerate(bar):
        x = batch["x"]
        out = jax.device_get(run(params, jax.random.fold_in(key, i), x))
        if discrete and out["grid_deviation"] > _GRID_TOL:
            raise ValueError(
                f"batch {i} is not plainly scaled discrete data with {num_bins=} (off the grid "
                f"2 v / (K - 1) - 1 by {out['grid_deviation']:.2g}); pass undequantized batches, "
                "evaluate_bpd draws the dequantization itself"
            )
        n += x.shape[0]
        total += float(out["sum"])
        total_sq += float(out["sum_sq"])
        nfe.append(float(out["nfe"]))
        failed += int(not out["success"])
        bar.set_postfix(bpd=f"{total / n:.4f}", nfe=f"{nfe[-1]:.0f}")
    if n == 0:
        raise ValueError("evaluate_bpd got no batches")
    if failed:
        warnings.warn(f"{failed} batches hit the ODE solver's max_steps before t = 1", stacklevel=2)
    mean = total / n
    var = max(total_sq / n - mean**2, 0.0) * n / max(n - 1, 1)
    return {
        "bpd_mean": mean,
        "bpd_stderr": math.sqrt(var / n),
        "nfe": float(np.mean(nfe)),
        "seconds": time.perf_counter() - start,
        "num_examples": n,
        "dequantized": bool(discrete and dequantize_data),
    }
