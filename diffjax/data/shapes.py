"""shapes32: procedurally drawn 32x32 colour shapes as an offline tfds builder (array_record).

An offline stand-in for CIFAR-10 (same shape, 32x32x3 uint8, 256 bins, 10 classes, read
through the same grain path), with structure at every scale, which the 8x8 digits cannot hold:
a coloured background with a linear gradient (the coarsest scale), one shape whose class is the
label (a silhouette at the scale of the image), filled with a solid colour, stripes or a checker
(periods of 3 to 8 pixels: edges at the finest scale), sometimes partly hidden by an occluding
bar. Classes, as implicit regions of the shape's own coordinates p = R(-theta) (x - c) / r
(centre c, radius r, rotation theta):

  0 circle   |p| <= 1               5 ring      0.55 <= |p| <= 1
  1 square   max|p_i| <= 0.8        6 star      |p| <= 0.55 + 0.45 cos(5 phi)  (5 rounded arms)
  2 triangle n_k . p <= 0.5, 3 n_k  7 hexagon   n_k . p <= 0.87, 6 n_k
  3 diamond  |p_1| + |p_2| <= 1     8 ellipse   p_1^2 + (p_2 / 0.45)^2 <= 1
  4 cross    two bars of half-width 0.3       9 crescent  |p| <= 1 and |p - (0.5, 0)| > 0.75

(n_k unit normals at angles pi/2 + 2 pi k / 3, resp. 2 pi k / 6.) Every image is drawn at 64x64
and averaged over 2x2 blocks (anti-aliased edges), then rounded to uint8. Everything is numpy,
vectorised over chunks of images, from one seed per (split, chunk): preparing the default
20000 train / 2000 test takes a few seconds. Shape, colours, size, position, rotation, texture
and occluder are drawn independently; the shape and fill colours are at least
`MIN_CONTRAST` apart (RGB in [0, 1]) from the background's mean so the shape stays visible.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from diffjax.data import pipeline

CLASSES = (
    "circle", "square", "triangle", "diamond", "cross",
    "ring", "star", "hexagon", "ellipse", "crescent",
)  # fmt: skip
SIZE = 32  # image side
_SUPER = 2  # drawn at SIZE * _SUPER, then block-averaged
NUM_TRAIN, NUM_TEST = 20_000, 2_000  # default split sizes
MIN_CONTRAST = 0.35  # minimum RGB distance of the shape's colours to the background
_CHUNK = 200  # images drawn at once (float32 [_CHUNK, 64, 64, 3] arrays stay in cache)


def _half_planes(p1: np.ndarray, p2: np.ndarray, sides: int, offset: float, apothem: float):
    """Inside the regular polygon with `sides` unit normals at angles offset + 2 pi k / sides."""
    inside = np.ones(p1.shape, bool)
    for k in range(sides):
        angle = offset + 2.0 * np.pi * k / sides
        inside &= np.cos(angle) * p1 + np.sin(angle) * p2 <= apothem
    return inside


def _star(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    return np.hypot(p1, p2) <= 0.55 + 0.45 * np.cos(5.0 * np.arctan2(p2, p1))


def _cross(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    a1, a2 = np.abs(p1), np.abs(p2)
    return ((a1 <= 0.3) & (a2 <= 1.0)) | ((a2 <= 0.3) & (a1 <= 1.0))


# The region of each class in shape coordinates (p1, p2) [k, H, W] -> bool [k, H, W].
_REGIONS = (
    lambda p1, p2: np.hypot(p1, p2) <= 1.0,
    lambda p1, p2: np.maximum(np.abs(p1), np.abs(p2)) <= 0.8,
    lambda p1, p2: _half_planes(p1, p2, 3, np.pi / 2, 0.5),
    lambda p1, p2: np.abs(p1) + np.abs(p2) <= 1.0,
    _cross,
    lambda p1, p2: (np.hypot(p1, p2) >= 0.55) & (np.hypot(p1, p2) <= 1.0),
    _star,
    lambda p1, p2: _half_planes(p1, p2, 6, 0.0, 0.87),
    lambda p1, p2: np.square(p1) + np.square(p2 / 0.45) <= 1.0,
    lambda p1, p2: (np.hypot(p1, p2) <= 1.0) & (np.hypot(p1 - 0.5, p2) > 0.75),
)


def _inside(p1: np.ndarray, p2: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Whether each point of (p1, p2) [n, H, W] lies in the region of its image's class [n]."""
    inside = np.zeros(p1.shape, bool)
    for c, region in enumerate(_REGIONS):
        chosen = label == c
        inside[chosen] = region(p1[chosen], p2[chosen])
    return inside


def _uniform(rng: np.random.Generator, lo: float, hi: float, shape) -> np.ndarray:
    """U[lo, hi) draws in float32 (the images are drawn in float32 for speed)."""
    return np.float32(lo) + np.float32(hi - lo) * rng.random(shape, dtype=np.float32)


def _contrasting(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """Colours [n, 3] in [0, 1] at least MIN_CONTRAST from `background` [n, 3]: a uniform draw,
    replaced by the background's complement where it is too close."""
    colour = _uniform(rng, 0.0, 1.0, background.shape)
    close = np.linalg.norm(colour - background, axis=-1) < MIN_CONTRAST
    return np.where(close[:, None], 1.0 - background, colour)


def _rotate(x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) [n, H, W] rotated by -theta [n] (into a frame turned by theta)."""
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    return c * x + s * y, -s * x + c * y


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n images uint8 [n, 32, 32, 3] and their classes int64 [n] (see the module docstring)."""
    images, labels = [], []
    for start in range(0, n, _CHUNK):
        image, label = _draw_chunk(rng, min(_CHUNK, n - start))
        images.append(image)
        labels.append(label)
    return np.concatenate(images), np.concatenate(labels)


def _draw_chunk(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    side = SIZE * _SUPER
    grid = (np.arange(side, dtype=np.float32) + 0.5) / _SUPER  # pixel units, [side]
    gx = np.broadcast_to(grid[None, None, :], (n, side, side))  # [n, H, W]
    gy = np.broadcast_to(grid[None, :, None], (n, side, side))

    # Background: a linear gradient between two colours along a random direction.
    colour_a, colour_b = _uniform(rng, 0.0, 1.0, (2, n, 3))
    direction = _uniform(rng, 0.0, 2.0 * np.pi, n)
    ramp, _ = _rotate(gx - SIZE / 2, gy - SIZE / 2, direction)
    w = (np.clip(ramp / SIZE + 0.5, 0.0, 1.0))[..., None]  # [n, H, W, 1]
    image = colour_a[:, None, None] * (1.0 - w) + colour_b[:, None, None] * w
    background = 0.5 * (colour_a + colour_b)

    # The shape: class, centre, radius, rotation, and a fill texture of two colours.
    label = rng.integers(0, len(CLASSES), n)
    radius = _uniform(rng, 7.0, 13.0, n)
    centre = _uniform(rng, -1.0, 1.0, (n, 2)) * (SIZE / 2 - radius[:, None] * 0.8) + SIZE / 2
    theta = _uniform(rng, 0.0, 2.0 * np.pi, n)
    p1, p2 = _rotate(gx - centre[:, 0, None, None], gy - centre[:, 1, None, None], theta)
    p1, p2 = p1 / radius[:, None, None], p2 / radius[:, None, None]
    inside = _inside(p1, p2, label)
    fill_a, fill_b = _contrasting(rng, background), _contrasting(rng, background)
    texture = rng.integers(0, 3, n)  # 0 solid, 1 stripes, 2 checker
    period = _uniform(rng, 3.0, 8.0, n)[:, None, None]
    u, v = _rotate(gx, gy, _uniform(rng, 0.0, np.pi, n))
    wave_u = np.sin(np.float32(2.0 * np.pi) * u / period)
    stripes = wave_u > 0.0
    checker = wave_u * np.sin(np.float32(2.0 * np.pi) * v / period) > 0.0
    second = np.where(texture[:, None, None] == 1, stripes, (texture[:, None, None] == 2) & checker)
    fill = np.where(second[..., None], fill_b[:, None, None], fill_a[:, None, None])
    image = np.where(inside[..., None], fill, image)

    # Occluder: half of the images get a bar of random colour across part of the shape.
    occluded = _uniform(rng, 0.0, 1.0, n) < 0.5
    bar_centre = centre + _uniform(rng, -1.0, 1.0, (n, 2)) * radius[:, None]
    b1, b2 = _rotate(
        gx - bar_centre[:, 0, None, None], gy - bar_centre[:, 1, None, None], theta + direction
    )
    half_length = _uniform(rng, 3.0, 10.0, n)[:, None, None]
    half_width = _uniform(rng, 1.0, 2.5, n)[:, None, None]
    bar = occluded[:, None, None] & (np.abs(b1) <= half_length) & (np.abs(b2) <= half_width)
    image = np.where(bar[..., None], _uniform(rng, 0.0, 1.0, (n, 3))[:, None, None], image)

    blocks = image.reshape(n, SIZE, _SUPER, SIZE, _SUPER, 3).mean(axis=(2, 4))  # anti-aliasing
    return np.round(255.0 * blocks).astype(np.uint8), label


@dataclasses.dataclass(eq=False)
class Shapes32Config(tfds.core.BuilderConfig):
    """Split sizes (the default config "default" has NUM_TRAIN / NUM_TEST)."""

    num_train: int = NUM_TRAIN
    num_test: int = NUM_TEST


class Shapes32(tfds.core.GeneratorBasedBuilder):
    """tfds builder "shapes32": image uint8 (32, 32, 3), label 0..9 (`CLASSES`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "10 shapes, gradient backgrounds, textures, occluding bars."}
    BUILDER_CONFIGS = [Shapes32Config(name="default")]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(SIZE, SIZE, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated, nothing to download
        config = self.builder_config
        return {
            "train": self._generate_examples(0, config.num_train),
            "test": self._generate_examples(1, config.num_test),
        }

    def _generate_examples(self, split_id: int, n: int):
        images, labels = draw(np.random.default_rng([SIZE, split_id]), n)
        for i in range(n):
            yield i, {"image": images[i], "label": int(labels[i])}


def load(
    *,
    num_train: int = NUM_TRAIN,
    num_test: int = NUM_TEST,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: int | None = None,
) -> pipeline.Dataset:
    """The shapes32 Dataset, prepared on first use in `data_dir` (default as tfds:
    $TFDS_DATA_DIR or ~/tensorflow_datasets); shape (32, 32, 3), 10 classes, 256 bins, served
    from memory (61 MB for the default sizes).

    Args:
      num_train, num_test: split sizes (other sizes are their own builder config).
      data_dir: where tfds keeps prepared datasets.
      manual_dir: unused (nothing is downloaded); taken so that a CIFAR-10 config's
        `data.kwargs` run unchanged with `--config.data.name=shapes32`.
      image_size: serve the images area-downsampled to [image_size, image_size, 3] (PIL's box
        filter, `pipeline.center_crop_resize`), e.g. 8 or 16 for the stages of a cascade;
        None keeps 32.

    Raises:
      ValueError: a non-positive split size, or an image_size that is not positive or does
        not divide 32.
    """
    del manual_dir
    if image_size is not None and (image_size <= 0 or 32 % image_size):
        raise ValueError(f"image_size={image_size} must divide 32 (1, 2, 4, 8, 16 or 32)")
    if num_train <= 0 or num_test <= 0:
        raise ValueError(f"split sizes must be positive, got {num_train=}, {num_test=}")
    config: str | Shapes32Config = "default"
    if (num_train, num_test) != (NUM_TRAIN, NUM_TEST):
        config = Shapes32Config(
            name=f"{num_train}_{num_test}", num_train=num_train, num_test=num_test
        )
    builder = pipeline.prepare(
        Shapes32(data_dir=data_dir, config=config, file_format="array_record")
    )
    return pipeline.from_builder(builder, in_memory=True, image_size=image_size)
