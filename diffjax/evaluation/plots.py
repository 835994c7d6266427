"""PNG figures of a run: image grids of samples, 2-D point scatters, the loss curve.

Images are NHWC in [-1, 1] with 1 (gray) or 3 (RGB) channels and map to 8-bit values by
v = round(255 (x + 1) / 2) after clipping. Loss curves draw the raw loss faintly and, over it,
the bias-corrected exponential moving average that TensorBoard shows,
  s_t = sum_{i <= t} w^{t - i} (1 - w) x_i / (1 - w^{t + 1}),
on a log axis when every loss is positive. Figures use matplotlib's object API (`Figure`, no
pyplot state), so they can be written from any thread without a display.
"""

import math

import numpy as np
import scipy.signal
from matplotlib.figure import Figure
from PIL import Image

_PAD_VALUE = 128  # mid-gray lines between grid cells


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Maps values in [-1, 1] (clipped) to integers 0..255 of the same shape."""
    x = np.clip(np.asarray(images, np.float32), -1.0, 1.0)
    return np.round((x + 1.0) * 127.5).astype(np.uint8)


def image_grid(images: np.ndarray, num_cols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles images [N, H, W, C] in [-1, 1] row by row into one uint8 image.

    Args:
      images: [N, H, W, C] with C = 1 or 3.
      num_cols: images per row; default ceil(sqrt(N)).
      pad: pixels of mid-gray between and around the cells.

    Returns:
      [rows (H + pad) + pad, num_cols (W + pad) + pad, C] uint8, rows = ceil(N / num_cols);
      cells past the last image stay mid-gray.

    Raises:
      ValueError: on a wrong shape or non-positive num_cols, negative pad.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(f"images must be [N, H, W, C] with N >= 1, C in (1, 3): {images.shape}")
    n, h, w, c = images.shape
    num_cols = math.ceil(math.sqrt(n)) if num_cols is None else num_cols
    if num_cols < 1 or pad < 0:
        raise ValueError(f"{num_cols=} must be >= 1 and {pad=} >= 0")
    num_rows = math.ceil(n / num_cols)
    grid = np.full(
        (num_rows * (h + pad) + pad, num_cols * (w + pad) + pad, c), _PAD_VALUE, np.uint8
    )
    for i, image in enumerate(to_uint8(images)):
        top, left = pad + (i // num_cols) * (h + pad), pad + (i % num_cols) * (w + pad)
        grid[top : top + h, left : left + w] = image
    return grid


def save_image_grid(
    path: str, images: np.ndarray, num_cols: int | None = None, min_cell: int = 32
) -> None:
    """Writes `image_grid(images, num_cols)` as a PNG ("L" for C = 1, "RGB" for C = 3).

    Small images are enlarged by the integer factor ceil(min_cell / max(H, W)) (nearest
    neighbour), so 8x8 digits become 32x32 cells.
    """
    grid = image_grid(images, num_cols)
    scale = max(1, math.ceil(min_cell / max(np.shape(images)[1:3])))
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path, format="PNG")


def save_scatter(
    path: str, points: np.ndarray, reference: np.ndarray | None = None, title: str = ""
) -> None:
    """Writes a scatter PNG of 2-D points [N, 2], over optional reference points [M, 2] in gray.

    Raises:
      ValueError: if points (or reference) are not [N, 2].
    """
    points = np.asarray(points)
    for name, p in (("points", points), ("reference", reference)):
        if p is not None and (np.ndim(p) != 2 or np.shape(p)[1] != 2):
            raise ValueError(f"{name} must be [N, 2], got {np.shape(p)}")
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    if reference is not None:
        ax.scatter(*np.asarray(reference).T, s=2, c="0.7", label="data")
    ax.scatter(*points.T, s=2, c="C0", alpha=0.6, label="samples")
    if reference is not None:
        ax.legend(loc="upper right", markerscale=4)
    ax.set_aspect("equal")
    ax.set_title(title)
    fig.savefig(path, format="png")


def ema_smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average of values [N] (module docstring), [N].

    Raises:
      ValueError: unless 0 <= weight < 1.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"{weight=} must be in [0, 1)")
    values = np.asarray(values, np.float64)
    ema = scipy.signal.lfilter([1.0 - weight], [1.0, -weight], values)  # started at 0
    return ema / (1.0 - weight ** np.arange(1, len(values) + 1))


def save_loss_curve(
    path: str, steps: np.ndarray, losses: np.ndarray, smoothing: float = 0.9, title: str = ""
) -> None:
    """Writes the loss curve PNG: raw losses [N] against steps [N], and their `ema_smooth`.

    Non-finite losses are left out; the loss axis is logarithmic if every loss is positive;
    histories of fewer than 100 points also mark each point (a single point stays visible).

    Raises:
      ValueError: if steps and losses differ in shape or no loss is finite.
    """
    steps, losses = np.asarray(steps), np.asarray(losses, np.float64)
    if steps.ndim != 1 or steps.shape != losses.shape:
        raise ValueError(f"steps {steps.shape} and losses {losses.shape} must be [N] alike")
    finite = np.isfinite(losses)
    if not finite.any():
        raise ValueError("no finite loss to plot")
    steps, losses = steps[finite], losses[finite]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    marker = "o" if len(losses) < 100 else None  # short histories: show the points themselves
    ax.plot(steps, losses, c="C0", alpha=0.3, lw=1, marker=marker, ms=3, label="loss")
    ax.plot(steps, ema_smooth(losses, smoothing), c="C0", lw=2, label=f"EMA ({smoothing})")
    if np.all(losses > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")


def save_quality_vs_nfe(
    path: str,
    curves: dict[str, tuple[list[int], list[float]]],
    floor: float | None = None,
    ylabel: str = "Frechet distance",
    title: str = "",
) -> None:
    """Writes a PNG of sample quality against network evaluations: one line per name in
    `curves` (name -> (nfes, values)), log-log, with an optional floor (train vs test) line."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    for name, (nfes, values) in curves.items():
        ax.plot(nfes, values, "o-", label=name)
    if floor is not None:
        ax.axhline(floor, color="k", ls=":", label="floor: train vs test")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
