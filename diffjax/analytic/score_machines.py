"""The ideal, local (LS) and equivariant local (ELS) score machines: exact posterior means.

Seed 000, "Analytic Theory" / "Locally Consistent Patch Mosaic Models" (Kamb & Ganguli 2024,
arXiv 2412.20292). For a training set D and x_t = alpha x_0 + sigma eps each machine is the
x0 prediction E[x_0 | x_t] of a model restricted in what it may see; eps and the score follow
from it (`diffjax.predictions`), so `denoiser(process)` samples with every sampler.

  ideal:  x0_hat(x) = sum_{x0 in D} W(x0 | x) x0,
          W(x0 | x) = softmax_{x0 in D}( -|x - alpha x0|^2 / (2 sigma^2) )
          (the seed's W_t(x0 | x): the exact score of the empirical distribution);
  LS:     x0_hat(x)_p = sum_{x0 in D} W(x0_{Omega_p} | x_{Omega_p}) (x0)_p,
          the same softmax over training images, on the P x P window Omega_p around p only
          (locality);
  ELS:    x0_hat(x)_p = sum_{P0 in P_Omega(D)} W(P0 | x_{Omega_p}) P0(0),
          the softmax over every P x P patch of every training image at every position, P0(0)
          its centre pixel (locality and translation equivariance).

Windows reach outside the image through zero padding, as a convolution's do. The
boundary-aware ELS machine (seed "Detail 2": breaking equivariance through boundaries)
compares the patch at p only with the dataset patches cut at the same sides by the same amount
(corner, edge or interior), as a zero-padded CNN can tell them apart.

Every machine streams over the training set in chunks of `chunk_size` images with a running
log-sum-exp in one `lax.scan`, so memory is bounded by the chunk ([B, chunk] logits for the
ideal machine, [B, chunk, H, W] for LS, [B H W, chunk H W] for ELS, less when boundary-aware),
never [B, N, D]. For the ideal and ELS machines the squared distance is expanded as
|x|^2 - 2 alpha <x, x0> + alpha^2 |x0|^2 and |x|^2 dropped (a constant of each softmax), so the
cross term is one matmul.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.tree_util import Partial

from diffjax import _registry
from diffjax.denoisers import Denoiser
from diffjax.processes import Process, expand

# Start of the running maximum: finite, so a chunk whose logits are all masked (-inf) leaves
# the sums at zero instead of making exp(-inf - -inf) = nan.
_LOG_ZERO = float(np.finfo(np.float32).min)


def _stream(train: Array, chunk_size: int, rows: tuple[int, ...], value_shape, step):
    """sum_k softmax_k(logits) values_k over all training images, one chunk per scan step.

    Args:
      train: [N, H, W, C] training images.
      chunk_size: images per scan step; N is padded to a multiple with masked images.
      rows: shape of the query rows of the logits.
      value_shape: shape of one row's posterior mean.
      step: `step(images [chunk, H, W, C], valid [chunk]) -> (logits [*rows, K], mean_fn)` where
        `mean_fn(weights [*rows, K]) -> [*rows, *value_shape]` is sum_k weights_k values_k;
        logits of invalid images must be -inf.
    Returns the posterior mean [*rows, *value_shape].
    """
    n = train.shape[0]
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n
    images = jnp.pad(train, ((0, pad),) + ((0, 0),) * (train.ndim - 1))
    images = images.reshape((num_chunks, chunk_size) + train.shape[1:])
    valid = (jnp.arange(num_chunks * chunk_size) < n).reshape(num_chunks, chunk_size)

    def body(carry, chunk):
        m, s, acc = carry  # [*rows], [*rows], [*rows, *value_shape]
        logits, mean_fn = step(*chunk)
        m_new = jnp.maximum(m, logits.max(-1))
        scale = jnp.exp(m - m_new)
        w = jnp.exp(logits - m_new[..., None])
        bcast = (...,) + (None,) * len(value_shape)
        return (m_new, s * scale + w.sum(-1), acc * scale[bcast] + mean_fn(w)), None

    init = (
        jnp.full(rows, _LOG_ZERO, jnp.float32),
        jnp.zeros(rows, jnp.float32),
        jnp.zeros(rows + tuple(value_shape), jnp.float32),
    )
    (_, s, acc), _ = jax.lax.scan(body, init, (images, valid))
    return acc / s[(...,) + (None,) * len(value_shape)]


def _check(train, chunk_size: int, patch_size: int | None = None) -> Array:
    """The training set as float32 [N, H, W, C] after checking the machine's arguments."""
    train = jnp.asarray(train, jnp.float32)
    if train.ndim != 4:
        raise ValueError(f"training set must be [N, H, W, C] images, got shape {train.shape}")
    if train.shape[0] == 0:
        raise ValueError("the training set is empty: a score machine needs >= 1 image")
    if chunk_size < 1:
        raise ValueError(f"{chunk_size=} must be >= 1")
    if patch_size is not None:
        limit = 2 * max(train.shape[1:3]) - 1
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"{patch_size=} must be odd and >= 1 (a window centred on a pixel)")
        if patch_size > limit:
            raise ValueError(
                f"{patch_size=} is larger than images {train.shape[1:3]} allow: every window of "
                f"size {limit} already covers the whole image from every pixel"
            )
    return train


def _coefs(x: Array, t: Array, process: Process) -> tuple[Array, Array]:
    """alpha [B, 1, 1, 1] and 1 / (2 sigma^2) [B, 1, 1, 1] at t [B]."""
    return expand(process.alpha(t), x), expand(0.5 / jnp.square(process.sigma(t)), x)


def _x0_mean(machine, process: Process, x: Array, t: Array) -> Array:
    return machine.x0_mean(x, t, process)


class _Machine:
    """What the three machines share: their Denoiser."""

    def denoiser(self, process: Process) -> Denoiser:
        """This machine's x0 prediction under `process` as a Denoiser of kind x0."""
        return Denoiser(Partial(_x0_mean, self, process), "x0", process)


@flax.struct.dataclass
class Ideal(_Machine):
    """The exact denoiser of the empirical distribution of `train` (build with `ideal`).

    Attributes:
      train: [N, H, W, C] training images.
      chunk_size: training images per scan step.
    """

    train: Array
    chunk_size: int = flax.struct.field(pytree_node=False)

    def x0_mean(self, x: Array, t: Array, process: Process) -> Array:
        """E[x_0 | x_t = x] = sum_{x0 in D} W(x0 | x) x0; x: [B, H, W, C], t: [B]."""
        alpha, inv2s2 = _coefs(x, t, process)
        a, c = alpha[:, 0, 0, 0], inv2s2[:, 0, 0, 0]  # [B]
        flat = x.reshape(x.shape[0], -1)  # [B, D]

        def step(images, valid):
            x0 = images.reshape(images.shape[0], -1)  # [chunk, D]
            cross = flat @ x0.T  # [B, chunk]
            sq = jnp.sum(jnp.square(x0), -1)  # [chunk]
            logits = c[:, None] * (2.0 * a[:, None] * cross - jnp.square(a)[:, None] * sq[None])
            logits = jnp.where(valid[None], logits, -jnp.inf)
            return logits, lambda w: w @ x0

        mean = _stream(self.train, self.chunk_size, (x.shape[0],), (flat.shape[1],), step)
        return mean.reshape(x.shape)


def _window_sum(v: Array, patch_size: int) -> Array:
    """Sum of v [..., H, W] over the P x P window around each pixel, zero outside the image."""
    window = (1,) * (v.ndim - 2) + (patch_size, patch_size)
    return jax.lax.reduce_window(v, 0.0, jax.lax.add, window, (1,) * v.ndim, "SAME")


@flax.struct.dataclass
class Local(_Machine):
    """The local score (LS) machine: per pixel, the posterior over training images seen through
    the P x P window around it (build with `local`).

    Attributes:
      train: [N, H, W, C] training images.
      patch_size: P, odd.
      chunk_size: training images per scan step.
    """

    train: Array
    patch_size: int = flax.struct.field(pytree_node=False)
    chunk_size: int = flax.struct.field(pytree_node=False)

    def x0_mean(self, x: Array, t: Array, process: Process) -> Array:
        """x0_hat_p = sum_{x0 in D} W(x0_{Omega_p} | x_{Omega_p}) (x0)_p; x: [B, H, W, C]."""
        alpha, inv2s2 = _coefs(x, t, process)
        b, h, w, ch = x.shape

        def step(images, valid):
            diff = x[:, None] - alpha[:, None] * images[None]  # [B, chunk, H, W, C]
            dist = _window_sum(jnp.sum(jnp.square(diff), -1), self.patch_size)  # [B, chunk, H, W]
            logits = -inv2s2[:, None, :, :, 0] * dist
            logits = jnp.where(valid[None, :, None, None], logits, -jnp.inf)
            logits = jnp.moveaxis(logits, 1, -1)  # [B, H, W, chunk]
            return logits, lambda wts: jnp.einsum("bhwn,nhwc->bhwc", wts, images)

        return _stream(self.train, self.chunk_size, (b, h, w), (ch,), step)


def patches(x: Array, patch_size: int) -> Array:
    """The zero-padded P x P patch around every pixel: x [B, H, W, C] -> [B, H, W, C P P]."""
    return jax.lax.conv_general_dilated_patches(
        x,
        (patch_size, patch_size),
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )


def padding_pattern(height: int, width: int, patch_size: int) -> np.ndarray:
    """[H, W] ids of each pixel's zero-padding pattern: how many rows of its P x P window fall
    off the top and the bottom, and columns off the left and the right (seed "Detail 2").
    Equal ids: windows cut identically (the same corner, edge, or the interior)."""
    r = patch_size // 2

    def code(n):  # [n] off-image counts (before, after) as one id in [0, (r + 1)^2)
        i = np.arange(n)
        return np.maximum(r - i, 0) * (r + 1) + np.maximum(i + r - (n - 1), 0)

    return code(height)[:, None] * (r + 1) ** 2 + code(width)[None, :]


@flax.struct.dataclass
class EquivariantLocal(_Machine):
    """The equivariant local score (ELS) machine: per pixel, the posterior over all P x P
    patches of the training set at every position (build with `equivariant_local`).

    Attributes:
      train: [N, H, W, C] training images.
      patch_size: P, odd.
      boundary_aware: compare a pixel's patch only with dataset patches of its padding pattern.
      chunk_size: training images per scan step (chunk H W patches).
    """

    train: Array
    patch_size: int = flax.struct.field(pytree_node=False)
    boundary_aware: bool = flax.struct.field(pytree_node=False)
    chunk_size: int = flax.struct.field(pytree_node=False)

    def x0_mean(self, x: Array, t: Array, process: Process) -> Array:
        """x0_hat_p = sum_{P0 in P_Omega(D)} W(P0 | x_{Omega_p}) P0(0); x: [B, H, W, C]."""
        alpha, inv2s2 = _coefs(x, t, process)
        b, h, w, ch = x.shape
        query = patches(x, self.patch_size).reshape(b, h * w, -1)  # [B, H W, C P P]
        pattern = padding_pattern(h, w, self.patch_size).reshape(-1)  # [H W]
        # Boundary-aware: each padding pattern is its own softmax over the dataset patches at
        # the positions of that pattern (on 8 x 8 with P = 5, 400 instead of 4096 pairs of
        # positions); plain: one softmax over the patches at every position.
        groups = [np.flatnonzero(pattern == k) for k in np.unique(pattern)]
        groups = groups if self.boundary_aware else [np.arange(h * w)]
        out = jnp.zeros((b, h * w, ch), jnp.float32)
        # Patterns with as many positions are one vmapped scan: a few scans to compile, not one
        # per pattern (64 when P = 15 cuts every window of an 8 x 8 image differently).
        for size in sorted({len(g) for g in groups}):
            where = np.stack([g for g in groups if len(g) == size])  # [G, n_g]
            mean = jax.vmap(lambda wh: self._group_mean(query[:, wh], wh, alpha, inv2s2))(
                jnp.asarray(where)
            )  # [G, B, n_g, C]
            out = out.at[:, where.reshape(-1)].set(jnp.moveaxis(mean, 0, 1).reshape(b, -1, ch))
        return out.reshape(x.shape)

    def _group_mean(self, query: Array, where: Array, alpha: Array, inv2s2: Array) -> Array:
        """The posterior mean of the centre pixel at the positions `where` (flat indices, [n_g])
        over the dataset patches at those positions; query: [B, n_g, C P P] patches of x."""
        b, n_g, _ = query.shape
        rows = b * n_g
        query = query.reshape(rows, -1)  # [B n_g, C P P]
        a = jnp.repeat(alpha.reshape(b), n_g)[:, None]  # [B n_g, 1]
        c = jnp.repeat(inv2s2.reshape(b), n_g)[:, None]
        ch = self.train.shape[-1]

        def step(images, valid):
            n = images.shape[0]
            p0 = patches(images, self.patch_size).reshape(n, -1, query.shape[1])[:, where]
            p0 = p0.reshape(n * n_g, -1)  # [K, C P P]
            centre = images.reshape(n, -1, ch)[:, where].reshape(n * n_g, ch)  # [K, C]
            cross = query @ p0.T  # [B n_g, K]
            sq = jnp.sum(jnp.square(p0), -1)  # [K]
            logits = c * (2.0 * a * cross - jnp.square(a) * sq[None])
            logits = jnp.where(jnp.repeat(valid, n_g)[None], logits, -jnp.inf)
            return logits, lambda wts: wts @ centre

        return _stream(self.train, self.chunk_size, (rows,), (ch,), step).reshape(b, n_g, ch)


@flax.struct.dataclass
class ScheduledEquivariantLocal(_Machine):
    """An ELS machine whose patch size follows t: `patch_sizes[i]` on [t_edges[i-1], t_edges[i])
    (seed "Detail 1": a network's receptive field changes with t). Build with `scheduled`.

    One `lax.switch` per call picks the branch from t[0]: every example of a call must share
    its time, as in every sampler's step.

    Attributes:
      train: [N, H, W, C] training images.
      patch_sizes: P of each time interval, odd.
      t_edges: increasing boundaries between the intervals, len(patch_sizes) - 1 of them.
      boundary_aware: as `EquivariantLocal`.
      chunk_size: training images per scan step.
    """

    train: Array
    patch_sizes: tuple[int, ...] = flax.struct.field(pytree_node=False)
    t_edges: tuple[float, ...] = flax.struct.field(pytree_node=False)
    boundary_aware: bool = flax.struct.field(pytree_node=False)
    chunk_size: int = flax.struct.field(pytree_node=False)

    def x0_mean(self, x: Array, t: Array, process: Process) -> Array:
        """The x0 prediction of the ELS machine with P = patch size at t[0]; x: [B, H, W, C]."""
        branches = [
            EquivariantLocal(self.train, p, self.boundary_aware, self.chunk_size).x0_mean
            for p in self.patch_sizes
        ]
        index = jnp.searchsorted(jnp.asarray(self.t_edges, jnp.float32), t[0], side="right")
        return jax.lax.switch(index, branches, x, t, process)


def ideal(train: Array, chunk_size: int = 256) -> Ideal:
    """The ideal machine of `train` [N, H, W, C].

    Raises:
      ValueError: for a training set that is not [N, H, W, C] with N >= 1, or chunk_size < 1.
    """
    return Ideal(_check(train, chunk_size), chunk_size)


def local(train: Array, patch_size: int, chunk_size: int = 64) -> Local:
    """The LS machine of `train` [N, H, W, C] with P x P windows.

    Raises:
      ValueError: as `ideal`, and for an even patch_size or one above 2 max(H, W) - 1.
    """
    return Local(_check(train, chunk_size, patch_size), patch_size, chunk_size)


def equivariant_local(
    train: Array, patch_size: int, boundary_aware: bool = False, chunk_size: int = 32
) -> EquivariantLocal:
    """The ELS machine of `train` [N, H, W, C] with P x P patches.

    Raises:
      ValueError: as `local`.
    """
    train = _check(train, chunk_size, patch_size)
    return EquivariantLocal(train, patch_size, bool(boundary_aware), chunk_size)


def scheduled(
    train: Array,
    patch_sizes: tuple[int, ...],
    t_edges: tuple[float, ...],
    boundary_aware: bool = False,
    chunk_size: int = 32,
) -> ScheduledEquivariantLocal:
    """The ELS machine of `train` with P = patch_sizes[i] for t in [t_edges[i-1], t_edges[i]).

    Raises:
      ValueError: as `local` for each patch size, and for t_edges that are not increasing or
        not one fewer than the patch sizes.
    """
    if not patch_sizes:
        raise ValueError("patch_sizes is empty: give at least one patch size")
    for p in patch_sizes:
        train = _check(train, chunk_size, p)
    if len(t_edges) != len(patch_sizes) - 1 or list(t_edges) != sorted(set(t_edges)):
        raise ValueError(
            f"{t_edges=} must be {len(patch_sizes) - 1} increasing times between the intervals "
            f"of {patch_sizes=}"
        )
    return ScheduledEquivariantLocal(
        train, tuple(patch_sizes), tuple(map(float, t_edges)), bool(boundary_aware), chunk_size
    )


def nearest_distance(x: Array, train: Array) -> Array:
    """RMS distance of each image x [B, H, W, C] to its nearest training image [N, H, W, C]:
    [B]; ~0 means a memorised training image."""
    a, b = x.reshape(x.shape[0], -1), train.reshape(train.shape[0], -1)
    sq = jnp.sum(a * a, -1)[:, None] - 2.0 * a @ b.T + jnp.sum(b * b, -1)[None]  # [B, N]
    return jnp.sqrt(jnp.maximum(sq.min(-1), 0.0) / a.shape[1])


MACHINES = {"ideal": ideal, "ls": local, "els": equivariant_local, "els_scheduled": scheduled}


def get(name: str, train: Array, **kwargs) -> _Machine:
    """The machine `name` ("ideal", "ls", "els", "els_scheduled") of `train` built with `kwargs`.

    Raises:
      ValueError: for an unknown name (listing the valid ones) or bad arguments.
    """
    return _registry.lookup("score machine", MACHINES, name)(train, **kwargs)
