"""Input pipelines: a prepared tfds builder read by `tfds.data_source` + grain, scaled to [-1, 1].

Every dataset, offline (digits, toy2d) or from the tfds catalogue (mnist, cifar10, ...), is an
`array_record` tfds builder; `Dataset` wraps it and yields batches
`{"x": float32 [b, *shape] in [-1, 1], "label": int32 [b]}` through a grain dataset pipeline
(shuffled indices -> batches of indices -> one batched read -> scaling) whose iterator state
(`it.get_state()` / `it.set_state(state)`) is checkpointed with the train state, so a resumed
run continues the data stream exactly. No TensorFlow is needed to read (preparing most catalogue
datasets needs it: `from_tfds`). (Batching indices before reading keeps grain's per-example
bookkeeping out of the loop: with the split in memory a batch is one numpy gather, about 2.5x
the throughput of a per-record `grain.DataLoader` measured on 2 CPU cores.)

Scaling of discrete data with K = `num_bins` values per dimension, v in {0, ..., K - 1}:
  plain:        x = 2 v / (K - 1) - 1               (v = 0 -> -1 and v = K - 1 -> +1),
  dequantized:  x = 2 (v + u) / K - 1, u ~ U[0, 1)^D (x in [-1, 1); E[x | v] = 2 (v + 1/2) / K - 1).
Dequantized x has density p_x on [-1, 1]^D and y = v + u = K (x + 1) / 2 has p_y = p_x (2 / K)^D,
so the discrete likelihood obeys -log P(v) <= E_u[-log p_x(x)] + D log(K / 2) (the uniform
dequantization bound of Theis, van den Oord & Bethge 2016, "A note on the evaluation of
generative models"; p_x from the probability-flow ODE of seed 004, "Diffusion ODEs"), i.e.
  bits/dim = (E_u[-log p_x(x)] + D log(K / 2)) / (D log 2).
Continuous data (num_bins None, e.g. toy2d) is stored already scaled and passed through as is.

Sharding over hosts: with `shard_index` h of `shard_count` n (default `jax.process_index()` /
`jax.process_count()`), host h takes the h-th contiguous block of b = B / n records of each
global batch of B, so the per-host batches of step j, concatenated in process order (as
`jax.make_array_from_process_local_data` lays them out over the mesh), are exactly the global
batch of step j of a single process, row for row, and the iterator's position (batches read) is
the same on every host.
"""

import dataclasses
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np
import requests
import tensorflow_datasets as tfds
from PIL import Image

from diffjax.errors import DataError, causes

# TensorFlow, which tfds needs to prepare most catalogue datasets (not to read them): the
# "prepare" extra of setup.py, pinned there to the same requirement.
TENSORFLOW_REQUIREMENT = "tensorflow-cpu==2.21.0"
INSTALL_PREPARE = 'pip install -e ".[prepare]"'
UNLABELED = -1  # the "label" of every example of a dataset without labels (num_classes None)


def scale(v: np.ndarray, num_bins: int | None) -> np.ndarray:
    """x = 2 v / (num_bins - 1) - 1 in [-1, 1] (float32); continuous data (None) unchanged."""
    if num_bins is None:
        return np.asarray(v, np.float32)
    return np.asarray(v, np.float32) * np.float32(2.0 / (num_bins - 1)) - np.float32(1.0)


def dequantize(v: np.ndarray, u: np.ndarray, num_bins: int) -> np.ndarray:
    """x = 2 (v + u) / num_bins - 1 in [-1, 1) (float32); v, u: same shape, u in [0, 1).

    NumPy or JAX arrays (the evaluation draws u on device)."""
    y = v.astype(np.float32) + u.astype(np.float32)
    return y * np.float32(2.0 / num_bins) - np.float32(1.0)


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of a uint8 image [H, W, C], resized to [size, size, C] by area
    averaging (PIL's BOX filter: block means for integer factors, to within one gray level,
    since PIL computes in 8-bit fixed point), rounded to uint8."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = image[top : top + s, left : left + s]
    channels = [
        np.asarray(Image.fromarray(crop[..., c]).resize((size, size), Image.Resampling.BOX))
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, -1)


@dataclasses.dataclass(frozen=True)
class _Stack:
    """Records -> raw batch {"v": stored values [k, *shape], "label": int32 [k]}; images
    center-cropped and resized first when `image_size` is set."""

    x_key: str
    label_key: str | None
    image_size: int | None

    def __call__(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        xs = [r[self.x_key] for r in records]
        if self.image_size is not None:
            xs = [center_crop_resize(x, self.image_size) for x in xs]
        if self.label_key is None:
            labels = np.full(len(records), UNLABELED, np.int32)
        else:
            labels = np.asarray([r[self.label_key] for r in records], np.int32)
        return {"v": np.stack(xs), "label": labels}


@dataclasses.dataclass(frozen=True)
class _Read:
    """Indices [k] -> raw batch read from the data source."""

    source: Sequence[Mapping[str, Any]]
    stack: _Stack

    def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return self.stack([self.source[i] for i in indices.tolist()])


@dataclasses.dataclass(frozen=True)
class _Gather:
    """Indices [k] -> raw batch gathered from a whole split held in memory."""

    arrays: Mapping[str, np.ndarray]

    def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {k: a[indices] for k, a in self.arrays.items()}


@dataclasses.dataclass(frozen=True)
class _Scale(grain.transforms.Map):
    """Raw batch -> {"x": float32 [k, *shape] = scale(v), "label"}."""

    num_bins: int | None

    def map(self, element: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": scale(element["v"], self.num_bins), "label": element["label"]}


@dataclasses.dataclass(frozen=True)
class _Dequantize(grain.transforms.RandomMap):
    """Raw batch -> {"x": float32 [k, *shape] = dequantize(v, u), "label"}, u ~ U[0, 1).

    grain seeds `rng` from the loader's seed and the batch's position in the stream, so a
    resumed iterator draws the same u.
    """

    num_bins: int

    def random_map(self, element: Mapping[str, np.ndarray], rng: np.random.Generator):
        u = rng.random(element["v"].shape, dtype=np.float32)
        return {"x": dequantize(element["v"], u, self.num_bins), "label": element["label"]}


def index_batches(
    num_examples: int,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> grain.MapDataset:
    """This host's batches of record indices [batch_size // shard_count] (see `Dataset.loader`).

    Raises:
      ValueError: bad batch size, shard, seed or epochs.
    """
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= {shard_index=} < {shard_count=}")
    if batch_size <= 0 or batch_size % shard_count:
        raise ValueError(f"{batch_size=} must be a positive multiple of {shard_count=}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"{seed=} must be a non-negative 32-bit integer")
    if num_epochs is not None and num_epochs <= 0:
        raise ValueError(f"{num_epochs=} must be positive or None (forever)")
    indices = grain.MapDataset.range(num_examples)
    if shuffle:
        indices = indices.shuffle(seed=seed)
    block = batch_size // shard_count
    return (
        indices.repeat(num_epochs)
        .batch(batch_size, drop_remainder=True)
        .map(lambda batch: batch[shard_index * block : (shard_index + 1) * block])
    )


def array_loader(
    arrays: Mapping[str, np.ndarray], batch_size: int, *, seed: int, **kwargs
) -> grain.IterDataset:
    """A checkpointable grain pipeline over in-memory arrays of equal length (e.g. reflow's
    {"x": Z_0, "noise": Z_1} pairs), yielding this host's part of each global batch as dicts.

    Args:
      arrays: name -> [N, ...] arrays.
      batch_size: the global batch.
      seed: the shuffling order.
      **kwargs: `shuffle`, `num_epochs`, `shard_index`, `shard_count` of `index_batches`.

    Raises:
      ValueError: for arrays of different lengths or a bad batch / shard / seed.
    """
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arrays must have one length, got {lengths}")
    num_examples = next(iter(lengths.values()))
    batches = index_batches(num_examples, batch_size, seed=seed, **kwargs)
    return batches.map(_Gather(dict(arrays))).to_iter_dataset()


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A prepared array_record tfds builder and how to turn its records into model inputs.

    Build with `from_builder` (or `diffjax.data.get`), which validates the fields.

    Attributes:
      builder: the prepared tfds builder (its files are array_record).
      x_key: feature holding the data (an image or a point).
      label_key: feature holding the integer class, or None for unlabeled data.
      shape: per-example shape of "x", e.g. (8, 8, 1) or (2,).
      num_classes: number of classes, or None for unlabeled data.
      num_bins: values per dimension of discrete data (17 for digits, 256 for uint8 images),
        None for continuous data.
      in_memory: each loader reads its split once into memory and gathers batches from there
        (the same batches as reading the files; for small datasets).
      image_size: images are center-cropped to a square and resized to this size
        (`center_crop_resize`), or None to keep them as stored.
    """

    builder: tfds.core.DatasetBuilder
    x_key: str
    label_key: str | None
    shape: tuple[int, ...]
    num_classes: int | None
    num_bins: int | None
    in_memory: bool = False
    image_size: int | None = None

    @property
    def name(self) -> str:
        return self.builder.info.full_name

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.builder.info.splits)

    def source(self, split: str) -> Sequence[Mapping[str, Any]]:
        """The random-access records of `split` (a `tfds.data_source`)."""
        return self.builder.as_data_source(split)

    def num_examples(self, split: str) -> int:
        return len(self.source(split))

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        num_epochs: int | None = None,
        shard_index: int | None = None,
        shard_count: int | None = None,
        dequantize: bool = False,
        num_threads: int = 0,
    ) -> grain.IterDataset:
        """A grain pipeline over `split` yielding this host's part of each global batch.

        Global stream: the record indices of `split`, reshuffled every epoch (grain's
        `MapDataset.shuffle`), epoch after epoch. Host h takes its positions h, h + n, ...
        (n = shard_count) and batches them; records are read and scaled a batch at a time.

        Args:
          split: e.g. "train" or "test".
          batch_size: the global batch; each of the `shard_count` hosts gets
            `batch_size // shard_count` examples per step.
          seed: shuffling order and dequantization noise (a 32-bit non-negative int).
          shuffle: reshuffle every epoch (else the file order, epoch after epoch).
          num_epochs: passes over the split; None repeats forever.
          shard_index: this host's shard, default `jax.process_index()`.
          shard_count: number of hosts, default `jax.process_count()`.
          dequantize: add u ~ U[0, 1) before scaling (module docstring); discrete data only.
          num_threads: background threads preparing the next batches (grain ReadOptions; each
            keeps two batches ready); 0 prepares each batch when it is asked for.

        Returns:
          An iterable whose iterators yield {"x": float32 [b, *shape], "label": int32 [b]},
          b = batch_size // shard_count, incomplete final batches dropped, and have
          `get_state()` / `set_state(state)` (grain's `DatasetIterator`; checkpoint it with
          `grain.checkpoint.CheckpointSave`) to resume the stream exactly.

        Raises:
          ValueError: bad batch size, shard, seed, epochs or threads, or dequantize on
            continuous data.
        """
        if num_threads < 0:
            raise ValueError(f"{num_threads=} must be >= 0")
        if dequantize and self.num_bins is None:
            raise ValueError(f"dequantize=True needs discrete data; {self.name} is continuous")
        shard_index = jax.process_index() if shard_index is None else shard_index
        source = self.source(split)
        stack = _Stack(self.x_key, self.label_key, self.image_size)
        if self.in_memory:
            read = _Gather(stack([source[i] for i in range(len(source))]))
        else:
            read = _Read(source, stack)
        batches = index_batches(
            len(source),
            batch_size,
            seed=seed,
            shuffle=shuffle,
            num_epochs=num_epochs,
            shard_index=shard_index,
            shard_count=shard_count,
        ).map(read)
        if dequantize:
            # Noise seed per (seed, host): hosts dequantize their batch j independently.
            noise_seed = int(np.random.SeedSequence([seed, shard_index]).generate_state(1)[0])
            batches = batches.random_map(_Dequantize(self.num_bins), seed=noise_seed)
        else:
            batches = batches.map(_Scale(self.num_bins))
        return batches.to_iter_dataset(
            grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads)
        )

    def as_array(self, split: str, max_examples: int | None = None) -> dict[str, np.ndarray]:
        """The first `max_examples` records of `split` (file order), plainly scaled.

        Returns:
          {"x": float32 [n, *shape] in [-1, 1], "label": int32 [n]}, n = min(max_examples, size).
        """
        source = self.source(split)
        n = len(source) if max_examples is None else min(max_examples, len(source))
        if n <= 0:
            raise ValueError(f"{max_examples=} must be positive")
        raw = _Stack(self.x_key, self.label_key, self.image_size)([source[i] for i in range(n)])
        return _Scale(self.num_bins).map(raw)


def prepare(
    builder: tfds.core.DatasetBuilder, *, manual_dir: str | None = None
) -> tfds.core.DatasetBuilder:
    """Writes the builder's array_record files unless present; returns the builder.

    Catalogue datasets download their archives into `<data_dir>/downloads` first, unless an
    archive with the registered file name and checksum is already in `manual_dir` (default
    `<data_dir>/downloads/manual`): copy e.g. `cifar-10-binary.tar.gz` there to prepare
    without network. Processes of one machine preparing the same dataset at once (e.g. two JAX
    processes on one host) take turns through a lock file in the temp dir; the later ones find
    it prepared.

    Args:
      builder: a tfds builder with array_record as its file format.
      manual_dir: directory holding manually copied downloads (None: tfds' default).

    Raises:
      DataError: preparation needs TensorFlow and it is not installed (the message names the
        `prepare` extra), or the download failed (the message says where to copy the archive).
    """
    if builder.is_prepared():
        return builder
    key = hashlib.sha256(os.fspath(builder.data_path).encode()).hexdigest()[:16]
    with open(os.path.join(tempfile.gettempdir(), f"diffjax_tfds_{key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if builder.is_prepared():  # by another process while we waited
            builder.info.read_from_directory(builder.data_dir)
            return builder
        try:
            builder.download_and_prepare(
                file_format=tfds.core.FileFormat.ARRAY_RECORD,
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
            )
        except Exception as e:
            if error := _preparation_error(builder, manual_dir, e):
                raise error from e
            raise
    return builder


def _preparation_error(
    builder: tfds.core.DatasetBuilder, manual_dir: str | None, error: Exception
) -> DataError | None:
    """The DataError explaining a failed `download_and_prepare`, or None for other failures."""
    downloads = builder.data_dir_root / "downloads"
    for cause in causes(error):
        if isinstance(cause, ImportError) and (cause.name or "").split(".")[0] == "tensorflow":
            return DataError(
                f"preparing tfds dataset {builder.name!r} needs TensorFlow (tfds uses it to "
                "extract the archives, read their files and encode images), which diffjax "
                f'installs only with its "prepare" extra: {INSTALL_PREPARE} (or pip install '
                f"{TENSORFLOW_REQUIREMENT}), then run again; downloads already made are kept "
                f"in {downloads} and reused"
            )
        if isinstance(cause, requests.exceptions.RequestException):
            files = sorted({i.filename for i in (type(builder).url_infos or {}).values()} - {""})
            return DataError(
                f"could not download tfds dataset {builder.name!r} ({type(cause).__name__}); "
                f"without network, copy its downloads ({', '.join(files) or 'see its tfds page'}) "
                f"into {manual_dir or downloads / 'manual'} (or a directory given as "
                "data.kwargs.manual_dir) and run again"
            )
    return None


def from_builder(
    builder: tfds.core.DatasetBuilder,
    *,
    x_key: str = "image",
    label_key: str | None = "label",
    num_bins: int | None = None,
    in_memory: bool = False,
    image_size: int | None = None,
) -> Dataset:
    """Wraps a prepared builder, reading shape, classes and bins from its features.

    Args:
      builder: a prepared tfds builder (see `prepare`).
      x_key: the data feature, a fixed-shape Image or Tensor.
      label_key: the ClassLabel feature, or None for unlabeled data.
      num_bins: values per dimension; default 256 for uint8 features, None (continuous) for
        float features.
      in_memory: serve the records from memory (`Dataset.in_memory`).
      image_size: center-crop and resize uint8 images [H, W, C] to [image_size, image_size, C].

    Raises:
      ValueError: a key that is not a feature (the message lists them), a data feature without
        a fixed shape, a label that is not a ClassLabel, num_bins < 2, or image_size on data
        that is not a uint8 image or not positive.
    """
    features = builder.info.features
    for key in (x_key, label_key):
        if key is not None and key not in features:
            raise ValueError(
                f"{builder.name} has no feature {key!r}; features: {', '.join(features)}"
                + (" (label_key=None for unlabeled data)" if key == label_key else "")
            )
    x_feature = features[x_key]
    shape = tuple(x_feature.shape)
    if not shape or any(d is None for d in shape):
        raise ValueError(f"{builder.name}/{x_key} needs a fixed shape, got {shape}")
    is_image = np.dtype(x_feature.np_dtype) == np.uint8 and len(shape) == 3
    if image_size is not None:
        if not is_image or image_size <= 0:
            raise ValueError(f"{image_size=} needs a positive size and uint8 images [H, W, C]")
        shape = (image_size, image_size, shape[-1])
    if num_bins is None and np.dtype(x_feature.np_dtype) == np.uint8:
        num_bins = 256
    if num_bins is not None and num_bins < 2:
        raise ValueError(f"{num_bins=} must be >= 2")
    num_classes = None
    if label_key is not None:
        if not isinstance(features[label_key], tfds.features.ClassLabel):
            raise ValueError(f"{builder.name}/{label_key} is not a ClassLabel")
        num_classes = features[label_key].num_classes
    return Dataset(builder, x_key, label_key, shape, num_classes, num_bins, in_memory, image_size)


def from_tfds(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    x_key: str = "image",
    label_key: str | None = "label",
    num_bins: int | None = None,
    in_memory: bool = False,
    image_size: int | None = None,
) -> Dataset:
    """A dataset of the tfds catalogue by name ("mnist", "cifar10", "celeb_a", ...).

    The first call prepares it as array_record in `data_dir` (default: $TFDS_DATA_DIR or
    ~/tensorflow_datasets): tfds downloads its archives (or takes them from `manual_dir`) and
    converts them. Preparing cifar10, mnist, fashion_mnist, celeb_a and most other catalogue
    datasets needs TensorFlow (tfds extracts archives and reads their files with
    `tf.io.gfile`, and encodes numpy images with `tf.image.encode_png`; measured for cifar10
    with tfds 4.9.10), installed by diffjax's "prepare" extra (`pip install -e ".[prepare]"`);
    reading a prepared dataset never needs it.

    Args:
      name: a tfds dataset name, optionally with config and version ("celeb_a:2.1.0").
      data_dir: where tfds keeps prepared datasets.
      manual_dir: a directory of manually copied downloads, e.g. cifar-10-binary.tar.gz
        (default `<data_dir>/downloads/manual`; see `prepare`).
      x_key, label_key, num_bins, in_memory, image_size: as in `from_builder`; e.g. celeb_a
        (no "label" ClassLabel, 218 x 178 images) as `label_key=None, image_size=64`.

    Raises:
      ValueError: `name` is not a tfds dataset, or the keys do not match its features.
      DataError: it cannot be prepared (TensorFlow missing, download failed; see `prepare`).
    """
    try:
        builder = tfds.builder(
            name, data_dir=data_dir, file_format=tfds.core.FileFormat.ARRAY_RECORD
        )
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"unknown dataset {name!r}; valid datasets: digits, shapes32, toy2d, or a tfds "
            "dataset name (tfds.list_builders())"
        ) from None
    return from_builder(
        prepare(builder, manual_dir=manual_dir),
        x_key=x_key,
        label_key=label_key,
        num_bins=num_bins,
        in_memory=in_memory,
        image_size=image_size,
    )
