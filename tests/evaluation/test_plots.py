"""Plots: valid PNGs of the right size and mode, exact grid pixels, the EMA formula."""

import numpy as np
import pytest
from PIL import Image

from diffjax.evaluation import plots


def _images(n: int, h: int, w: int, c: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1.0, 1.0, size=(n, h, w, c)).astype(np.float32)


def test_to_uint8_endpoints_and_clipping():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 3.0], np.float32)
    np.testing.assert_array_equal(plots.to_uint8(x), [0, 0, 128, 255, 255])


def test_image_grid_layout_and_pixels():
    images = _images(5, 4, 3, 1)
    grid = plots.image_grid(images, num_cols=3, pad=1)
    # 2 rows of (4 + 1) + 1 pixels, 3 columns of (3 + 1) + 1 pixels.
    assert grid.shape == (11, 13, 1) and grid.dtype == np.uint8
    expected = np.round((images + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(grid[1:5, 1:4], expected[0])  # row 0, col 0
    np.testing.assert_array_equal(grid[6:10, 5:8], expected[4])  # row 1, col 1
    assert np.all(grid[6:10, 9:12] == 128)  # the empty sixth cell
    assert np.all(grid[0] == 128) and np.all(grid[:, 4] == 128)  # padding lines


@pytest.mark.parametrize(("c", "mode"), [(1, "L"), (3, "RGB")])
def test_save_image_grid_png(tmp_path, c, mode):
    path = str(tmp_path / "grid.png")
    images = _images(64, 8, 8, c)
    plots.save_image_grid(path, images)  # 8 x 8 cells of 8 + 1 pixels, enlarged 4x
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == mode
        assert im.size == (4 * (8 * 9 + 1), 4 * (8 * 9 + 1))
        pixels = np.asarray(im)
    first = pixels[4:36, 4:36].reshape(32, 32, c)  # the first cell, 4x nearest neighbour
    np.testing.assert_array_equal(
        first, np.kron(plots.to_uint8(images[0]), np.ones((4, 4, 1), np.uint8))
    )


def test_image_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="C in"):
        plots.image_grid(np.zeros((2, 4, 4, 2)))
    with pytest.raises(ValueError, match="num_cols"):
        plots.image_grid(np.zeros((2, 4, 4, 1)), num_cols=0)


def test_save_scatter_png(tmp_path):
    path = str(tmp_path / "scatter.png")
    rng = np.random.default_rng(0)
    plots.save_scatter(path, rng.normal(size=(300, 2)), reference=rng.normal(size=(500, 2)))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (500, 500)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plots.save_scatter(path, np.zeros((10, 3)))


def test_ema_smooth_matches_weighted_average():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=50), 0.8
    # s_t = sum_{i<=t} w^(t-i) x_i / sum_{i<=t} w^(t-i), the debiased EMA written out.
    expected = [
        np.sum(w ** (t - np.arange(t + 1)) * x[: t + 1]) / np.sum(w ** np.arange(t + 1))
        for t in range(50)
    ]
    np.testing.assert_allclose(plots.ema_smooth(x, w), expected, rtol=1e-12)
    np.testing.assert_allclose(plots.ema_smooth(np.full(7, 3.0), 0.99), np.full(7, 3.0))
    np.testing.assert_array_equal(plots.ema_smooth(x, 0.0), x)
    with pytest.raises(ValueError, match="weight"):
        plots.ema_smooth(x, 1.0)


@pytest.mark.parametrize("offset", [0.0, -1.0])  # all positive (log axis) and with negatives
def test_save_loss_curve_png(tmp_path, offset):
    path = str(tmp_path / "loss.png")
    steps = np.arange(0, 1000, 10)
    losses = 1.0 / (1.0 + steps / 100.0) + offset
    losses[3] = np.nan  # non-finite values are skipped
    plots.save_loss_curve(path, steps, losses)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (600, 400)
    with pytest.raises(ValueError, match="alike"):
        plots.save_loss_curve(path, steps, losses[:-1])
    with pytest.raises(ValueError, match="finite"):
        plots.save_loss_curve(path, steps[:2], np.array([np.nan, np.inf]))
