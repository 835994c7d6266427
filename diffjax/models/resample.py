"""2x up / down sampling of NHWC feature maps with a separable FIR filter (no parameters).

The math is StyleGAN2's `upfirdn2d` (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", appendix B and the `upfirdn2d` op of its code release), used by the FIR
resampling of NCSN++ (Song et al. 2021, "Score-Based Generative Modeling through SDEs",
appendix H.2: "anti-aliasing based on Finite Impulse Response (FIR) ... [1, 3, 3, 1]").
Per spatial axis, with 1-D taps a_0 .. a_{K-1} normalised to k = a / sum(a) and a 2-D filter
k k^T:

  upfirdn(x; k, u, d, p0, p1):
    1. upsample by zero insertion:  z[u m] = x[m], z = 0 elsewhere      (length u H)
    2. zero-pad p0 before and p1 after
    3. convolve with the filter:    y[n] = sum_j k[j] z_pad[n + K - 1 - j]
    4. keep every d-th sample:      out[i] = y[d i]

  downsample by 2:  u = 1, d = 2, p0 = ceil((K - 2) / 2), p1 = floor((K - 2) / 2), so
                    out[i] = sum_j k[j] x[2 i + K - 1 - j - p0]   (H -> H / 2);
  upsample by 2:    u = 2, d = 1, gain 2 per axis (4 in 2-D, because half of the zero-inserted
                    samples are zero), p0 = ceil((K - 2) / 2) + 1, p1 = floor((K - 2) / 2), so
                    out[n] = 2 sum_j k[j] z[n + K - 1 - j - p0]   (H -> 2 H).

Both keep a constant image constant away from the border (pixels outside are zero). The box
taps (1, 1) give 2 x 2 average pooling and nearest-neighbour upsampling exactly; (1, 3, 3, 1)
gives out[2m] = (x[m-1] + 3 x[m]) / 4, out[2m+1] = (3 x[m] + x[m+1]) / 4 when upsampling.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def fir_taps(taps: Sequence[float]) -> np.ndarray:
    """The 1-D taps normalised to sum 1: [K] float32.

    Raises:
      ValueError: if there are fewer than 2 taps or they sum to 0.
    """
    a = np.asarray(taps, np.float64)
    if a.ndim != 1 or a.size < 2 or a.sum() == 0:
        raise ValueError(f"FIR taps must be >= 2 numbers with a nonzero sum, got {taps=}")
    return (a / a.sum()).astype(np.float32)


def _upfirdn_1d(
    x: Array, k: np.ndarray, up: int, down: int, pad: tuple[int, int], axis: int
) -> Array:
    """Steps 1-4 of the module docstring along `axis`, as a sum of K strided slices.

    (XLA fuses the slices; a depthwise dilated convolution is ~50x slower on CPU.)
    """
    if up > 1:
        zeros = [jnp.zeros_like(x)] * (up - 1)
        x = jnp.stack([x, *zeros], axis=axis + 1)  # [..., L, up, ...]
        x = x.reshape(*x.shape[:axis], x.shape[axis] * up, *x.shape[axis + 2 :])
    widths = [(0, 0)] * x.ndim
    widths[axis] = pad
    x = jnp.pad(x, widths)
    taps = len(k)
    n = (x.shape[axis] - taps) // down + 1  # outputs
    return sum(
        float(k[taps - 1 - j])
        * jax.lax.slice_in_dim(x, j, j + down * (n - 1) + 1, stride=down, axis=axis)
        for j in range(taps)
    )


def upfirdn2d(
    x: Array,
    taps: Sequence[float],
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> Array:
    """Upsample, pad, filter with (gain k k^T), downsample (module docstring), per channel.

    The 2-D filter is separable, so the 1-D op runs along H and then along W.

    Args:
      x: [B, H, W, C].
      taps: 1-D FIR taps a (normalised to k = a / sum(a); the 2-D filter is k k^T).
      up: zero-insertion factor u >= 1.
      down: decimation factor d >= 1.
      pad: (p0, p1) >= 0 zeros before and after, on both spatial axes.
      gain: multiplies the 2-D filter.

    Returns:
      [B, (u H + p0 + p1 - K + 1) / d, (same for W), C] (rounded up) in x's dtype.
    """
    if up < 1 or down < 1 or min(pad) < 0:
        raise ValueError(f"need up, down >= 1 and pad >= 0, got {up=}, {down=}, {pad=}")
    k = fir_taps(taps)
    h = _upfirdn_1d(x, k, up, down, pad, axis=1)
    return (gain * _upfirdn_1d(h, k, up, down, pad, axis=2)).astype(x.dtype)


def downsample_2d(x: Array, taps: Sequence[float] = (1, 3, 3, 1)) -> Array:
    """FIR-filtered 2x downsampling: [B, H, W, C] -> [B, H / 2, W / 2, C] (H, W even)."""
    p = len(taps) - 2
    return upfirdn2d(x, taps, down=2, pad=((p + 1) // 2, p // 2))


def upsample_2d(x: Array, taps: Sequence[float] = (1, 3, 3, 1)) -> Array:
    """FIR-interpolated 2x upsampling with gain 4: [B, H, W, C] -> [B, 2 H, 2 W, C].

    Box taps (a, a) are nearest-neighbour upsampling, 4 (k0 k0 x + 0) = x exactly, done as a
    broadcast (6-10x faster on CPU than the zero insertion and filter).
    """
    if len(taps) == 2 and taps[0] == taps[1]:
        b, h, w, c = x.shape
        return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(
            b, 2 * h, 2 * w, c
        )
    p = len(taps) - 2
    return upfirdn2d(x, taps, up=2, pad=((p + 1) // 2 + 1, p // 2), gain=4.0)
