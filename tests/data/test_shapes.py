"""shapes32: class regions against closed-form areas, deterministic drawing, the tfds builder read
through grain like CIFAR-10, its Frechet ruler, and a CIFAR-10 config trained on it offline."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from diffjax import data
from diffjax.data import shapes
from diffjax.evaluation import features
from diffjax.evaluation.sample_quality import SampleQuality

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _lens(r1: float, r2: float, d: float) -> float:
    """Area of the intersection of two discs of radii r1, r2 with centres d apart."""
    a1 = r1**2 * math.acos((d**2 + r1**2 - r2**2) / (2 * d * r1))
    a2 = r2**2 * math.acos((d**2 + r2**2 - r1**2) / (2 * d * r2))
    return a1 + a2 - 0.5 * math.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2))


def _polygon(sides: int, apothem: float) -> float:
    return sides * apothem**2 * math.tan(math.pi / sides)


AREAS = {  # exact areas of the class regions in shape coordinates (module docstring)
    "circle": math.pi,
    "square": 1.6**2,
    "triangle": _polygon(3, 0.5),
    "diamond": 2.0,
    "cross": 2 * (0.6 * 2.0) - 0.6**2,
    "ring": math.pi * (1.0 - 0.55**2),
    "star": math.pi * (0.55**2 + 0.45**2 / 2),  # 1/2 int (0.55 + 0.45 cos 5 phi)^2 dphi
    "hexagon": _polygon(6, 0.87),
    "ellipse": math.pi * 0.45,
    "crescent": math.pi - _lens(1.0, 0.75, 0.5),
}


@pytest.mark.parametrize("name", shapes.CLASSES)
def test_class_region_areas_are_exact(name):
    """Midpoint-rule area of each region on a 2000^2 grid over [-1.1, 1.1]^2 (h = 1.1e-3)."""
    n, half = 2000, 1.1
    h = 2 * half / n
    axis = (np.arange(n, dtype=np.float32) + 0.5) * h - half
    p1, p2 = np.meshgrid(axis, axis, indexing="ij")
    region = shapes._REGIONS[shapes.CLASSES.index(name)]
    area = region(p1[None], p2[None]).sum() * h**2
    assert area == pytest.approx(AREAS[name], abs=2e-3)


def test_draw_is_deterministic_and_covers_the_classes():
    x, y = shapes.draw(np.random.default_rng(0), 600)
    x2, y2 = shapes.draw(np.random.default_rng(0), 600)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (600, 32, 32, 3) and x.dtype == np.uint8
    assert set(np.unique(y)) == set(range(10))
    # Structure at the finest scale: neighbouring pixels often differ by more than a gray level
    # step of 32 (edges, stripes), which a smooth image never does.
    jumps = np.abs(np.diff(x.astype(np.int16), axis=2)).max(axis=(1, 2, 3))
    assert np.mean(jumps > 32) > 0.9


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return shapes.load(num_train=400, num_test=200, data_dir=str(tmp_path_factory.mktemp("tfds")))


def test_builder_metadata_and_content(small):
    assert small.shape == (32, 32, 3) and small.num_classes == 10 and small.num_bins == 256
    assert small.num_examples("train") == 400 and small.num_examples("test") == 200
    assert small.builder.info.file_format.value == "array_record"
    assert small.builder.info.features["label"].names == list(shapes.CLASSES)
    train = small.as_array("train")
    v = (train["x"] + 1.0) * 127.5  # x = 2 v / 255 - 1
    np.testing.assert_allclose(v, np.round(v), atol=1e-4)
    # The records are the drawn images (as a multiset: tfds shuffles them when writing).
    images, labels = shapes.draw(np.random.default_rng([32, 0]), 400)
    stored = zip(train["label"].tolist(), np.round(v).astype(np.uint8), strict=True)
    drawn = zip(labels.tolist(), images, strict=True)
    assert sorted((y, x.tobytes()) for y, x in stored) == sorted((y, x.tobytes()) for y, x in drawn)


def test_registered_and_read_through_grain(small):
    ds = data.get(
        "shapes32", num_train=400, num_test=200, data_dir=str(small.builder.data_dir_root)
    )
    it = iter(ds.loader("train", 16, seed=0, shard_count=2, shard_index=1))
    batch = next(it)
    assert batch["x"].shape == (8, 32, 32, 3) and batch["x"].dtype == np.float32
    v = (batch["x"] + 1.0) * 255.0 / 2.0  # the uint8 grid, as for CIFAR-10
    np.testing.assert_allclose(v, np.round(v), atol=1e-4)
    state, expected = it.get_state(), next(it)
    resumed = iter(ds.loader("train", 16, seed=0, shard_count=2, shard_index=1))
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["x"], expected["x"])


def test_bad_sizes():
    with pytest.raises(ValueError, match="split sizes must be positive"):
        shapes.load(num_train=0)
    with pytest.raises(ValueError, match="image_size=12 must divide 32"):
        shapes.load(image_size=12)


def test_image_size_serves_area_downsampled_images(small):
    """image_size=8: each pixel is the mean of its 4x4 block of the stored uint8 image, to
    within one gray level (PIL's box filter computes in 8-bit fixed point and rounds; it is
    not the exactly rounded mean), then scaled like the 32x32 images."""
    ds = shapes.load(
        num_train=400, num_test=200, data_dir=str(small.builder.data_dir_root), image_size=8
    )
    assert ds.shape == (8, 8, 3) and ds.num_classes == 10 and ds.num_bins == 256
    full, low = small.as_array("test"), ds.as_array("test")
    np.testing.assert_array_equal(low["label"], full["label"])
    v = np.round((full["x"] + 1.0) * 127.5)  # the stored uint8 values
    means = v.reshape(200, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    np.testing.assert_allclose((low["x"] + 1.0) * 127.5, means, atol=1.0 + 1e-3)
    batch = next(iter(ds.loader("train", 16, seed=0)))
    assert batch["x"].shape == (16, 8, 8, 3)


def test_frechet_ruler_orders_floor_below_ceiling(small):
    """The ruler of `outputs.quality_ruler` (the convolutional one of 32x32 colour images; its
    default 4000 steps take minutes, 150 already tell real images from noise): real images sit
    far closer to the test split than noise."""
    train, test = small.as_array("train"), small.as_array("test")
    assert features.default_config(small.shape) == features.ConvClassifierConfig()
    quality = SampleQuality.fit(
        None, train["x"], train["label"], test["x"], jax.random.PRNGKey(0), test_y=test["label"],
        config=features.ConvClassifierConfig(steps=150),
    )  # fmt: skip
    assert isinstance(quality.classifier.net, features.FeatureConvNet)
    report = quality.report(train["x"][:200])
    assert report["frechet_floor_train_vs_test"] < 0.2 * report["frechet_ceiling_noise"]


@pytest.mark.slow
def test_a_cifar10_config_trains_on_shapes32_through_the_cli(tmp_path):
    """configs/ddpm_cifar10.py with one data override (and a tiny network) runs offline."""
    flags = {
        "data.name": "shapes32",
        "data.kwargs.data_dir": str(tmp_path / "tfds"),
        "model.name": "unet_tiny",
        "training.num_steps": 2,
        "training.batch_size": 8,
        "training.log_every": 1,
        "training.sample_every": 0,
        "optim.warmup_steps": 1,
        "eval.at_end": False,
        "sample.num_samples": 4,  # the final grid: 4 samples
        "sample.num_steps": 2,  # of 2 ancestral steps
    }
    cmd = [
        sys.executable, "-m", "diffjax.main", f"--config={ROOT}/configs/ddpm_cifar10.py",
        f"--workdir={tmp_path / 'run'}", *[f"--config.{k}={v}" for k, v in flags.items()],
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "history.jsonl") as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    assert len(losses) == 2 and all(np.isfinite(losses))
