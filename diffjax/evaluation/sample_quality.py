"""Offline sample quality: the Frechet distance of generated samples to held-out real data,
placed between a floor (real train vs real test) and a ceiling (noise vs real test).

The figure is the FID recipe (Heusel et al. 2017, eq. 6; the metric of seed 002, "Table 1:
Results on CIFAR10 unconditioned image generation") with the Inception network replaced by a
small classifier trained on the real training split (`features`), so it runs offline:

  frechet(samples) = d^2(N(mu_s, S_s), N(mu_test, S_test)) in the classifier's feature space.

An absolute Frechet value means little on its own (it depends on the feature network and is
biased upwards by O(tr(S) / n) for n samples), so the report adds two references computed the
same way: the floor, the distance from n real training images (n = the number of samples, so
the finite-sample bias matches) to the test split, which a perfect generator would reach; and
the ceiling, the distance from n draws of the N(0, I) prior (what an untrained sampler returns)
to the test split. Image samples, and so the ceiling's noise images, are clipped to [-1, 1]
first, so the figure describes the images as they are drawn (a diverged sampler's huge values
would otherwise swamp it). For vector data (2-D toys) the features are the vectors themselves
(not clipped) and no classifier is trained.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffjax.evaluation.features import (
    AnyClassifierConfig,
    Classifier,
    FeatureConvNet,
    default_config,
    load_or_train_classifier,
)
from diffjax.evaluation.frechet import GaussianStats, frechet_distance, gaussian_stats


@dataclasses.dataclass(frozen=True)
class SampleQuality:
    """The evaluator, built by `SampleQuality.fit`.

    Attributes:
      classifier: the feature classifier; None for vector data (identity features).
      data_shape: shape of one example, e.g. (8, 8, 1) or (2,).
      train_features: [N_train, F] features of the training split, in a random order.
      test_stats: Gaussian statistics of the test-split features.
      classifier_test_accuracy: the classifier's accuracy on the test split (None without a
        classifier or without test labels).
      noise_key: PRNG key of the ceiling's noise.
    """

    classifier: Classifier | None
    data_shape: tuple[int, ...]
    train_features: Array
    test_stats: GaussianStats
    classifier_test_accuracy: float | None
    noise_key: Array

    @classmethod
    def fit(
        cls,
        cache_dir: str | None,
        train_x: Array,
        train_y: Array | None,
        test_x: Array,
        key: Array,
        *,
        test_y: Array | None = None,
        config: AnyClassifierConfig | None = None,
    ) -> "SampleQuality":
        """Trains (or loads from `cache_dir`) the feature classifier and the reference stats.

        Args:
          cache_dir: directory caching the classifier (see `features.load_or_train_classifier`);
            None trains without caching.
          train_x: [N, ...] real training data; images [N, H, W, C] in [-1, 1] or vectors [N, D].
          train_y: [N] integer labels of `train_x` (the classes are 0 .. max label); ignored
            (may be None) for vectors.
          test_x: [M, ...] real held-out data shaped like `train_x`, M >= 2.
          key: PRNG key of the classifier, the floor's train subset and the ceiling's noise.
            Runs compared with each other should use the same key (the same instrument).
          test_y: optional [M] labels of `test_x`, for `classifier_test_accuracy`.
          config: the classifier's architecture, size and training (default
            `features.default_config(data shape)`: a convolutional network for colour images of
            at least 16x16, the MLP otherwise).

        Raises:
          ValueError: on inconsistent shapes or missing labels for image data.
        """
        train_x, test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
        if train_x.ndim < 2 or train_x.shape[1:] != test_x.shape[1:]:
            raise ValueError(
                f"train {train_x.shape} and test {test_x.shape} must be [N, ...] alike"
            )
        if len(train_x) < 2 or len(test_x) < 2:
            raise ValueError(f"need >= 2 train and test examples: {train_x.shape}, {test_x.shape}")
        classifier_key, order_key, noise_key = jax.random.split(key, 3)
        classifier, accuracy = None, None
        if train_x.ndim > 2:
            if train_y is None:
                raise ValueError("image data needs train_y labels to train the feature classifier")
            train_y = np.asarray(train_y, np.int32)
            num_classes = int(train_y.max()) + 1
            classifier = load_or_train_classifier(
                cache_dir,
                train_x,
                train_y,
                num_classes,
                classifier_key,
                config or default_config(train_x.shape[1:]),
            )
        # The MLP featurizes a split at once (as every recorded digits number was computed);
        # a convolutional network's activations of a whole split need batches.
        featurize = jnp.asarray
        if isinstance(classifier, Classifier):
            conv = isinstance(classifier.net, FeatureConvNet)
            featurize = classifier.features_batched if conv else classifier.features
            if test_y is not None and conv:
                labels = np.asarray(test_y, np.int32)
                accuracy = float(np.mean(classifier.predict_batched(test_x) == labels))
            elif test_y is not None:
                accuracy = float(classifier.accuracy(test_x, jnp.asarray(test_y, jnp.int32)))
        order = jax.random.permutation(order_key, len(train_x))
        return cls(
            classifier=classifier,
            data_shape=tuple(train_x.shape[1:]),
            train_features=featurize(train_x)[order],
            test_stats=gaussian_stats(featurize(test_x)),
            classifier_test_accuracy=accuracy,
            noise_key=noise_key,
        )

    def features(self, x: Array) -> Array:
        """Features [N, F] of x [N, *data_shape]: the classifier's of x clipped to [-1, 1] for
        images, x itself for vectors.

        Raises:
          ValueError: if x is not shaped [N, *data_shape] with N >= 2.
        """
        x = jnp.asarray(x, jnp.float32)
        if x.shape[1:] != self.data_shape or x.shape[0] < 2:
            raise ValueError(f"need >= 2 examples of shape {self.data_shape}, got {x.shape}")
        if self.classifier is None:
            return x
        return self.classifier.features(jnp.clip(x, -1.0, 1.0))

    def frechet(self, samples: Array) -> float:
        """Frechet distance between the features of `samples` [N, *data_shape] and the test set."""
        return float(frechet_distance(gaussian_stats(self.features(samples)), self.test_stats))

    def report(self, samples: Array) -> dict:
        """The figures of metrics.json for `samples` [N, *data_shape] (module docstring).

        Returns:
          {"frechet": samples vs test, "frechet_floor_train_vs_test": min(N, N_train) train
          examples vs test, "frechet_ceiling_noise": N draws of N(0, I) vs test,
          "classifier_test_accuracy": float or None, "num_samples": N}.
        """
        num = int(np.shape(samples)[0])
        floor_train = self.train_features[: min(num, self.train_features.shape[0])]
        noise = jax.random.normal(self.noise_key, (num, *self.data_shape))  # clipped if images
        return {
            "frechet": self.frechet(samples),
            "frechet_floor_train_vs_test": float(
                frechet_distance(gaussian_stats(floor_train), self.test_stats)
            ),
            "frechet_ceiling_noise": self.frechet(noise),
            "classifier_test_accuracy": self.classifier_test_accuracy,
            "num_samples": num,
        }
