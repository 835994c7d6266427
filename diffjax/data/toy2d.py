"""2-D toy distributions as an offline tfds builder "toy2d", with exact densities where they exist.

Four distributions of float32 points x in R^2 at unit scale (within about [-1, 1]^2); every
random draw below is independent:

- `moons`: two interleaved half circles (the scikit-learn "moons"), label m in {0, 1},
  theta ~ U[0, pi], c_0 = (cos theta, sin theta), c_1 = (1 - cos theta, 1/2 - sin theta),
  x = (c_m - (1/2, 1/4)) / (3/2) + N(0, 0.05^2 I). No closed-form density.
- `eight_gaussians`: label k ~ U{0..7}, x ~ N(r (cos 2 pi k / 8, sin 2 pi k / 8), s^2 I) with
  r = 0.75, s = 0.1, so p(x) = 1/8 sum_k N(x; mu_k, s^2 I) exactly (`eight_gaussians_mixture`
  gives it as a `GaussianMixture`, with exact scores at every t of any process).
- `checkerboard`: uniform on the 8 cells (i, j) with i + j even of the 4x4 grid of side-1/2
  cells covering [-1, 1]^2 (cell i = floor(2 (x_1 + 1)), j = floor(2 (x_2 + 1))); label = the
  cell's rank among them in row-major order, p(x) = 1/2 on them and 0 elsewhere.
- `swiss_roll`: s ~ U[0, 1], t = 3 pi / 2 (1 + 2 s), x = t (cos t, sin t) / (9 pi / 2) +
  N(0, 0.03^2 I) (the scikit-learn 2-D swiss roll rescaled to radius <= 1), unlabeled. No
  closed-form density.

These are the usual 2-D test beds of the flow-matching and rectified-flow literature (seed 000,
"Flow Matching"; seed 004, "Flow Matching"). Each (distribution, num_train, num_test) is a
tfds builder config, generated with a fixed seed per (distribution, split).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from jax import Array

from diffjax.analytic.gaussian import GaussianMixture
from diffjax.data import pipeline

DISTRIBUTIONS = ("moons", "eight_gaussians", "checkerboard", "swiss_roll")
NUM_CLASSES = {"moons": 2, "eight_gaussians": 8, "checkerboard": 8, "swiss_roll": None}
NUM_TRAIN, NUM_TEST = 20_000, 5_000  # default split sizes

MOONS_NOISE = 0.05
EIGHT_RADIUS, EIGHT_STD = 0.75, 0.1
_ANGLES = 2.0 * np.pi * np.arange(8) / 8.0
EIGHT_MEANS = EIGHT_RADIUS * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], -1)  # [8, 2]
SWISS_NOISE = 0.03
CHECKER_CELLS = np.array([(i, j) for j in range(4) for i in range(4) if (i + j) % 2 == 0])  # [8, 2]


def _moons(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    label = rng.integers(0, 2, n)
    theta = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(theta), np.sin(theta)], -1)
    lower = np.stack([1.0 - np.cos(theta), 0.5 - np.sin(theta)], -1)
    c = np.where(label[:, None] == 0, upper, lower)  # [n, 2]
    return (c - np.array([0.5, 0.25])) / 1.5 + MOONS_NOISE * rng.standard_normal((n, 2)), label


def _eight_gaussians(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    label = rng.integers(0, 8, n)
    return EIGHT_MEANS[label] + EIGHT_STD * rng.standard_normal((n, 2)), label


def _checkerboard(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    label = rng.integers(0, 8, n)
    corner = CHECKER_CELLS[label] / 2.0 - 1.0  # [n, 2] lower-left corner of the cell
    return corner + rng.uniform(0.0, 0.5, (n, 2)), label


def _swiss_roll(rng: np.random.Generator, n: int) -> tuple[np.ndarray, None]:
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
    x = t[:, None] * np.stack([np.cos(t), np.sin(t)], -1) / (4.5 * np.pi)
    return x + SWISS_NOISE * rng.standard_normal((n, 2)), None


_SAMPLERS = {
    "moons": _moons,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "swiss_roll": _swiss_roll,
}


def _check(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown toy2d {distribution=}; valid: {', '.join(DISTRIBUTIONS)}")


def sample(
    distribution: str, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """n fresh draws: points float32 [n, 2] and labels int64 [n] (None for swiss_roll)."""
    _check(distribution)
    points, labels = _SAMPLERS[distribution](rng, n)
    return points.astype(np.float32), labels


def eight_gaussians_mixture() -> GaussianMixture:
    """The exact eight_gaussians distribution: weights 1/8, means r (cos, sin)(2 pi k / 8),
    covariances s^2 I."""
    covs = jnp.broadcast_to(EIGHT_STD**2 * jnp.eye(2), (8, 2, 2))
    return GaussianMixture(jnp.full((8,), 1.0 / 8.0), jnp.asarray(EIGHT_MEANS, jnp.float32), covs)


def log_prob(distribution: str, x: Array) -> Array:
    """Exact log-density of the data, [N]; x: [N, 2]. Jittable.

    eight_gaussians: log (1/8 sum_k N(x; mu_k, s^2 I)); checkerboard: log(1/2) on the 8
    occupied cells, -inf elsewhere.

    Raises:
      ValueError: for moons and swiss_roll (no closed form), or an unknown distribution.
    """
    _check(distribution)
    x = jnp.asarray(x, jnp.float32)
    if distribution == "eight_gaussians":
        means = jnp.asarray(EIGHT_MEANS, jnp.float32)
        d2 = jnp.sum(jnp.square(x[:, None, :] - means[None]), -1)  # [N, 8]
        logn = -0.5 * d2 / EIGHT_STD**2 - jnp.log(2.0 * jnp.pi * EIGHT_STD**2)
        return jax.nn.logsumexp(logn, axis=-1) - jnp.log(8.0)
    if distribution == "checkerboard":
        cell = jnp.floor(2.0 * (x + 1.0))  # [N, 2]
        inside = jnp.all((cell >= 0) & (cell <= 3), -1) & (jnp.sum(cell, -1) % 2 == 0)
        return jnp.where(inside, jnp.log(0.5), -jnp.inf)
    raise ValueError(
        f"{distribution} has no closed-form density; exact: eight_gaussians, checkerboard"
    )


@dataclasses.dataclass(eq=False)
class Toy2dConfig(tfds.core.BuilderConfig):
    """A distribution and split sizes (see the module docstring)."""

    distribution: str = "moons"
    num_train: int = NUM_TRAIN
    num_test: int = NUM_TEST


class Toy2d(tfds.core.GeneratorBasedBuilder):
    """tfds builder "toy2d": point float32 (2,), label (moons, eight_gaussians, checkerboard).

    Configs "moons", "eight_gaussians", "checkerboard", "swiss_roll" have the default sizes;
    `load` builds custom-size configs named "<distribution>_<num_train>_<num_test>".
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "moons, eight_gaussians, checkerboard, swiss_roll."}
    BUILDER_CONFIGS = [Toy2dConfig(name=d, distribution=d) for d in DISTRIBUTIONS]

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"point": tfds.features.Tensor(shape=(2,), dtype=np.float32)}
        num_classes = NUM_CLASSES[self.builder_config.distribution]
        if num_classes is not None:
            features["label"] = tfds.features.ClassLabel(num_classes=num_classes)
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__, features=tfds.features.FeaturesDict(features)
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated, nothing to download
        config = self.builder_config
        return {
            "train": self._generate_examples(0, config.num_train),
            "test": self._generate_examples(1, config.num_test),
        }

    def _generate_examples(self, split_id: int, n: int):
        distribution = self.builder_config.distribution
        rng = np.random.default_rng([DISTRIBUTIONS.index(distribution), split_id])
        points, labels = sample(distribution, rng, n)
        for i in range(n):
            example = {"point": points[i]}
            if labels is not None:
                example["label"] = int(labels[i])
            yield i, example


def load(
    distribution: str = "moons",
    *,
    num_train: int = NUM_TRAIN,
    num_test: int = NUM_TEST,
    data_dir: str | None = None,
) -> pipeline.Dataset:
    """A toy2d Dataset, prepared on first use in `data_dir` (default as tfds: $TFDS_DATA_DIR or
    ~/tensorflow_datasets); shape (2,), continuous (num_bins None), served from memory.

    Raises:
      ValueError: an unknown distribution or a non-positive split size.
    """
    _check(distribution)
    if num_train <= 0 or num_test <= 0:
        raise ValueError(f"split sizes must be positive, got {num_train=}, {num_test=}")
    config: str | Toy2dConfig = distribution
    if (num_train, num_test) != (NUM_TRAIN, NUM_TEST):
        config = Toy2dConfig(
            name=f"{distribution}_{num_train}_{num_test}",
            distribution=distribution,
            num_train=num_train,
            num_test=num_test,
        )
    builder = Toy2d(data_dir=data_dir, config=config, file_format="array_record")
    label_key = None if NUM_CLASSES[distribution] is None else "label"
    return pipeline.from_builder(
        pipeline.prepare(builder), x_key="point", label_key=label_key, in_memory=True
    )
