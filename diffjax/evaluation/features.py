"""The feature space of the offline Frechet distance: a small classifier of the real data.

FID measures distances in the penultimate layer of an ImageNet classifier (Heusel et al. 2017,
"GANs trained by a two time-scale update rule", section 4; seed 002, "Table 1: Results on
CIFAR10 unconditioned image generation"). Offline, with no pretrained network to download, we
train the same kind of instrument on the dataset itself: an MLP classifier
  x [B, H, W, C] -> flatten -> relu(Dense(hidden)) -> relu(Dense(features)) =: phi(x) -> logits,
trained with Adam on softmax cross-entropy over the real training split; phi(x) [B, features]
is the feature map. On scikit-learn's 8x8 digits it trains in a few seconds of CPU time and
classifies > 99% of a random held-out subset correctly, and ~93% of diffjax's fixed test split
(the last 297 digits, from other writers: a 3-nearest-neighbour classifier reaches 96% there,
an RBF SVM 95%). No augmentation or input noise is used on purpose: a classifier made
invariant to noise would give features that cannot see noise in generated samples.

For colour images of at least 16x16 (shapes32, CIFAR-10) an MLP on raw pixels is a poor ruler:
it cannot be invariant to where a shape is, how it is turned or what colour it has, and reaches
only ~18% on shapes32's test split. There `default_config` picks a small convolutional network
instead (`ConvClassifierConfig`, `FeatureConvNet`):
  x -> [Conv3x3 -> GroupNorm -> SiLU] x 5 (strides 2, 1, 2, 1, 2) -> global mean pool
    -> relu(Dense(features)) =: phi(x) -> logits,
the layout of FID's Inception network in miniature (convolutions, then a pooled penultimate
layer; Heusel et al. 2017, section 4) trained the same way (fixed key, Adam, cross-entropy, no
augmentation). GroupNorm keeps each example's features independent of the batch. With the
key of `outputs.quality_ruler` it classifies 79% of shapes32's test split (90% of its train
split) after 4000 steps of 64, about 4.5 CPU-minutes here. Digits (8x8,
one channel) and vectors keep the MLP, so every number recorded with it stays valid.

The trained parameters are cached in a directory as an .npz file (written to a temporary file,
then renamed, so a crash never leaves a partial cache) whose name is a digest of the training
data, the labels, the configuration (whose class names the architecture) and the key: a
different dataset, setting or architecture trains anew, and a convolutional network's cache has
its own prefix (`conv_classifier_`), so an MLP cache is never loaded as one.
"""

import dataclasses
import hashlib
import os
import tempfile
import zipfile

import flax.linen as nn
import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax import Array

_CACHE_VERSION = b"diffjax-feature-classifier-v1"


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Size and training of the feature classifier.

    Attributes:
      hidden: width of the first hidden layer.
      features: width of the penultimate layer, the feature dimension.
      steps: Adam steps, each on `batch_size` examples drawn uniformly with replacement.
      batch_size: examples per step.
      learning_rate: Adam step size.
    """

    hidden: int = 256
    features: int = 128
    steps: int = 500
    batch_size: int = 128
    learning_rate: float = 1e-3

    def __post_init__(self):
        for name in ("hidden", "features", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be > 0")


@dataclasses.dataclass(frozen=True)
class ConvClassifierConfig:
    """Size and training of the convolutional feature classifier (module docstring).

    Attributes:
      channels: output channels of each layer (a 3x3 convolution, GroupNorm, SiLU).
      strides: each layer's stride (1 or 2); the first one halves 32x32 at once, which keeps
        the costly full-resolution activations out of the network (a 3x3 stride-2 convolution
        still reads every pixel).
      features: width of the penultimate layer, the feature dimension.
      groups: GroupNorm groups (at most a stage's channels, which it must divide).
      steps: Adam steps, each on `batch_size` examples drawn uniformly with replacement.
      batch_size: examples per step.
      learning_rate: peak Adam step size, cosine-decayed to 0 over `steps`.
    """

    channels: tuple[int, ...] = (32, 32, 64, 64, 128)
    strides: tuple[int, ...] = (2, 1, 2, 1, 2)
    features: int = 128
    groups: int = 8
    steps: int = 4000
    batch_size: int = 64
    learning_rate: float = 3e-3

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "strides", tuple(int(c) for c in self.strides))
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels={self.channels} must be a non-empty tuple of ints >= 1")
        if len(self.strides) != len(self.channels) or not set(self.strides) <= {1, 2}:
            raise ValueError(f"strides={self.strides} must be 1 or 2, one per channels entry")
        for name in ("features", "groups", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for c in self.channels:
            if c % min(self.groups, c):
                raise ValueError(f"groups={self.groups} must divide every stage's channels {c}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be > 0")


AnyClassifierConfig = ClassifierConfig | ConvClassifierConfig

CONV_MIN_SIZE = 16  # colour images at least this tall and wide get the convolutional ruler


def architecture(data_shape: tuple[int, ...]) -> str:
    """ "conv" for colour images [H, W, 3] with H, W >= CONV_MIN_SIZE, else "mlp" (digits,
    grey images, vectors)."""
    image = len(data_shape) == 3 and data_shape[-1] == 3
    return "conv" if image and min(data_shape[:2]) >= CONV_MIN_SIZE else "mlp"


def default_config(data_shape: tuple[int, ...]) -> AnyClassifierConfig:
    """The feature classifier's default configuration for examples of shape `data_shape`."""
    return ConvClassifierConfig() if architecture(data_shape) == "conv" else ClassifierConfig()


class FeatureMLP(nn.Module):
    """x [B, ...] -> (logits [B, num_classes], penultimate features [B, features])."""

    hidden: int
    features: int
    num_classes: int

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        h = x.reshape(x.shape[0], -1)
        h = nn.relu(nn.Dense(self.hidden)(h))
        phi = nn.relu(nn.Dense(self.features)(h))
        return nn.Dense(self.num_classes)(phi), phi


class FeatureConvNet(nn.Module):
    """x [B, H, W, C] -> (logits [B, num_classes], pooled penultimate features [B, features])."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    features: int
    groups: int
    num_classes: int

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        h = x
        for c, stride in zip(self.channels, self.strides, strict=True):
            h = nn.Conv(c, (3, 3), strides=stride)(h)
            h = nn.silu(nn.GroupNorm(num_groups=min(self.groups, c))(h))
        phi = nn.relu(nn.Dense(self.features)(jnp.mean(h, axis=(1, 2))))
        return nn.Dense(self.num_classes)(phi), phi


def make_network(config: AnyClassifierConfig, num_classes: int) -> nn.Module:
    """The (untrained) network `config` describes, with `num_classes` logits."""
    if isinstance(config, ConvClassifierConfig):
        return FeatureConvNet(
            config.channels, config.strides, config.features, config.groups, num_classes
        )
    if isinstance(config, ClassifierConfig):
        return FeatureMLP(config.hidden, config.features, num_classes)
    raise TypeError(f"config must be a ClassifierConfig or ConvClassifierConfig, got {config!r}")


@flax.struct.dataclass
class Classifier:
    """A trained feature network (FeatureMLP or FeatureConvNet): the network (static), params."""

    net: nn.Module = flax.struct.field(pytree_node=False)
    params: dict

    def apply(self, x: Array) -> tuple[Array, Array]:
        """(logits [N, num_classes], features [N, features]) of x [N, ...]."""
        return self.net.apply(self.params, jnp.asarray(x, jnp.float32))

    def features(self, x: Array) -> Array:
        """phi(x), [N, features]; x: [N, ...] shaped like the training data."""
        return self.apply(x)[1]

    def accuracy(self, x: Array, y: Array) -> Array:
        """Fraction of x [N, ...] whose argmax logit equals the label y [N]; a scalar."""
        return jnp.mean(jnp.argmax(self.apply(x)[0], axis=-1) == y)

    def features_batched(self, x: Array, batch_size: int = 1000) -> Array:
        """`features(x)` computed `batch_size` examples at a time by one jitted function (not
        traceable itself): a convolutional network's activations of a whole split would not
        fit in memory."""
        return self._batched(x, batch_size)[1]

    def predict_batched(self, x: Array, batch_size: int = 1000) -> np.ndarray:
        """Argmax classes [N] of x [N, ...], `batch_size` examples at a time (host-side)."""
        return np.argmax(np.asarray(self._batched(x, batch_size)[0]), axis=-1)

    def _batched(self, x: Array, batch_size: int) -> tuple[Array, Array]:
        apply = jax.jit(type(self).apply)
        parts = [apply(self, x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return tuple(jnp.concatenate(p) for p in zip(*parts, strict=True))


def _check_labelled(x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
    if x.ndim < 2 or y.shape != x.shape[:1]:
        raise ValueError(f"need x [N, ...] and labels [N], got {x.shape} and {y.shape}")
    if num_classes < 2:
        raise ValueError(f"{num_classes=} must be >= 2")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")


def train_classifier(
    x: Array, y: Array, num_classes: int, key: Array, config: AnyClassifierConfig
) -> Classifier:
    """Trains the network of `config` on (x, y) with Adam, the whole loop one `lax.scan`.

    Args:
      x: [N, ...] float inputs (images NHWC in [-1, 1]).
      y: [N] integer labels in [0, num_classes).
      num_classes: number of classes.
      key: PRNG key for the initialisation and the batches.
      config: architecture (its class), sizes and optimisation settings.

    Returns:
      The trained Classifier.

    Raises:
      ValueError: if the shapes or labels are invalid.
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    _check_labelled(x, y, num_classes)
    net = make_network(config, num_classes)
    init_key, batch_key = jax.random.split(key)
    params = net.init(init_key, jnp.zeros((1, *x.shape[1:]), jnp.float32))
    if isinstance(config, ConvClassifierConfig):
        optimizer = optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps))
    else:
        optimizer = optax.adam(config.learning_rate)

    def loss_fn(params, bx, by):
        logits, _ = net.apply(params, bx)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, by))

    def step(carry, i, data_x, data_y):
        params, opt_state = carry
        idx = jax.random.randint(jax.random.fold_in(batch_key, i), (config.batch_size,), 0, len(x))
        loss, grads = jax.value_and_grad(loss_fn)(params, data_x[idx], data_y[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    carry, data_x, data_y = (params, optimizer.init(params)), jnp.asarray(x), jnp.asarray(y)
    if isinstance(config, ConvClassifierConfig):
        # One jitted step per Python iteration: XLA:CPU runs convolutions inside a `lax.scan`
        # (a while loop) about 20x slower than the same step jitted on its own.
        jitted = jax.jit(step, donate_argnums=0)
        for i in range(config.steps):
            carry, _ = jitted(carry, jnp.int32(i), data_x, data_y)
    else:
        carry, _ = jax.lax.scan(
            lambda carry, i: step(carry, i, data_x, data_y), carry, jnp.arange(config.steps)
        )
    params = carry[0]
    return Classifier(net=net, params=params)


def cache_path(
    cache_dir: str,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    key: Array,
    config: AnyClassifierConfig,
) -> str:
    """`<cache_dir>/<prefix>classifier_<shape>_<digest>.npz`, the digest of data, labels, key
    and config (its repr names its class, so the architecture); prefix "conv_" for the
    convolutional network, none for the MLP (whose caches keep their names)."""
    x, y = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.int32)
    digest = hashlib.sha256(_CACHE_VERSION)
    digest.update(repr((x.shape, num_classes, config)).encode())
    for part in (x, y, np.asarray(jax.random.key_data(key))):
        digest.update(np.ascontiguousarray(part))
    shape = "x".join(str(d) for d in x.shape)
    prefix = "conv_" if isinstance(config, ConvClassifierConfig) else ""
    return os.path.join(cache_dir, f"{prefix}classifier_{shape}_{digest.hexdigest()[:16]}.npz")


def _save(path: str, params: dict) -> None:
    """Writes the flattened params to `path` atomically (temporary file, fsync, rename)."""
    flat = flax.traverse_util.flatten_dict(jax.device_get(params), sep="/")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")  # unique, same disk
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **flat)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load(path: str, like: dict) -> dict | None:
    """Params saved at `path` if they have the structure and shapes of `like`, else None."""
    try:
        with np.load(path) as z:
            flat = {k: jnp.asarray(z[k]) for k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        logging.warning("unreadable classifier cache %s (%s); retraining", path, e)
        return None
    params = flax.traverse_util.unflatten_dict(flat, sep="/")
    same = jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda a: a.shape, like)
    if not same:
        logging.warning("classifier cache %s does not match the network; retraining", path)
        return None
    return params


def load_or_train_classifier(
    cache_dir: str | None,
    x: Array,
    y: Array,
    num_classes: int,
    key: Array,
    config: AnyClassifierConfig,
) -> Classifier:
    """The classifier of `train_classifier(x, y, num_classes, key, config)`, cached.

    Args:
      cache_dir: directory of the cache (created if missing); None trains without caching.
      x, y, num_classes, key, config: as for `train_classifier`.

    Returns:
      The cached Classifier if `cache_dir` holds one for exactly these arguments, else a newly
      trained one (then saved there).
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    _check_labelled(x, y, num_classes)
    if cache_dir is None:
        return train_classifier(x, y, num_classes, key, config)
    path = cache_path(cache_dir, x, y, num_classes, key, config)
    net = make_network(config, num_classes)
    if os.path.exists(path):
        like = jax.eval_shape(net.init, key, jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32))
        params = _load(path, like)
        if params is not None:
            return Classifier(net=net, params=params)
    classifier = train_classifier(x, y, num_classes, key, config)
    os.makedirs(cache_dir, exist_ok=True)
    _save(path, classifier.params)
    logging.info("trained the feature classifier, cached at %s", path)
    return classifier
