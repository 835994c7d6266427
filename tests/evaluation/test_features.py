"""Feature classifier: accuracy on held-out digits, jitted features, the on-disk cache."""

import os

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from diffjax.evaluation import features
from diffjax.evaluation.features import ClassifierConfig, ConvClassifierConfig

SMALL = ClassifierConfig(hidden=32, features=16, steps=20, batch_size=32)


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits with diffjax's split and scaling: first 1500 train, last 297 test."""
    d = load_digits()
    x = (2.0 * d.images / 16.0 - 1.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1]
    y = d.target.astype(np.int32)
    return x[:1500], y[:1500], x[1500:], y[1500:]


def test_default_classifier_accuracy(digits):
    # On a random held-out subset of the digits. On diffjax's fixed split (the last 297 digits,
    # other writers) it is lower; test_sample_quality checks that one.
    x, y = np.concatenate(digits[0::2]), np.concatenate(digits[1::2])
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1500], order[1500:]
    classifier = features.train_classifier(
        x[train], y[train], 10, jax.random.key(0), ClassifierConfig()
    )
    accuracy = float(jax.jit(lambda c, x, y: c.accuracy(x, y))(classifier, x[test], y[test]))
    assert accuracy > 0.95
    phi = jax.jit(lambda c, x: c.features(x))(classifier, x[test])
    assert phi.shape == (297, ClassifierConfig().features)
    np.testing.assert_allclose(phi, classifier.features(x[test]), rtol=1e-6, atol=1e-6)


def test_cache_reload_gives_identical_features(digits, tmp_path, monkeypatch):
    train_x, train_y, test_x, _ = digits
    key = jax.random.key(1)
    trained = features.load_or_train_classifier(str(tmp_path), train_x, train_y, 10, key, SMALL)
    (path,) = [str(p) for p in tmp_path.iterdir()]
    assert path == features.cache_path(str(tmp_path), train_x, train_y, 10, key, SMALL)

    def no_training(*args):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(features, "train_classifier", no_training)
    loaded = features.load_or_train_classifier(str(tmp_path), train_x, train_y, 10, key, SMALL)
    np.testing.assert_array_equal(loaded.features(test_x), trained.features(test_x))


def test_cache_is_keyed_by_data_labels_key_and_config(digits, tmp_path):
    train_x, train_y, _, _ = digits
    key, d = jax.random.key(0), str(tmp_path)
    base = features.cache_path(d, train_x, train_y, 10, key, SMALL)
    variants = [
        features.cache_path(d, train_x[:1000], train_y[:1000], 10, key, SMALL),
        features.cache_path(d, -train_x, train_y, 10, key, SMALL),
        features.cache_path(d, train_x, (train_y + 1) % 10, 10, key, SMALL),
        features.cache_path(d, train_x, train_y, 10, jax.random.key(1), SMALL),
        features.cache_path(d, train_x, train_y, 10, key, ClassifierConfig(steps=21)),
    ]
    assert len({base, *variants}) == 6
    assert base == features.cache_path(d, train_x.copy(), train_y.copy(), 10, key, SMALL)


@pytest.mark.parametrize("content", [b"", b"not an npz file"])
def test_corrupt_cache_is_retrained(digits, tmp_path, content):
    train_x, train_y, test_x, _ = digits
    key = jax.random.key(2)
    path = features.cache_path(str(tmp_path), train_x, train_y, 10, key, SMALL)
    with open(path, "wb") as f:
        f.write(content)
    classifier = features.load_or_train_classifier(str(tmp_path), train_x, train_y, 10, key, SMALL)
    reference = features.train_classifier(train_x, train_y, 10, key, SMALL)
    np.testing.assert_array_equal(classifier.features(test_x), reference.features(test_x))
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]  # rewritten, no temp files
    reloaded = features.load_or_train_classifier(str(tmp_path), train_x, train_y, 10, key, SMALL)
    np.testing.assert_array_equal(reloaded.features(test_x), reference.features(test_x))


def test_rejects_bad_arguments(digits):
    train_x, train_y, _, _ = digits
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="labels"):
        features.train_classifier(train_x, train_y[:10], 10, key, SMALL)
    with pytest.raises(ValueError, match="lie in"):
        features.train_classifier(train_x, train_y, 5, key, SMALL)
    with pytest.raises(ValueError, match="steps"):
        ClassifierConfig(steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        ClassifierConfig(learning_rate=0.0)


# The convolutional ruler for colour images (shapes32, CIFAR-10).

# The default conv ruler classifies 79.2% of shapes32's test split (90% of its train split) with
# the key of outputs.quality_ruler; the MLP on raw pixels got ~18%, chance is 10%.
ACCURACY_SHAPES32 = 0.75
TINY_CONV = ConvClassifierConfig(
    channels=(8, 16), strides=(1, 2), features=12, groups=4, steps=3, batch_size=8
)


@pytest.fixture(scope="module")
def colour_images():
    """40 random 16x16 RGB images in [-1, 1] with labels 0..3 (a cache / shape fixture)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(40, 16, 16, 3)).astype(np.float32)
    return x, np.arange(40, dtype=np.int32) % 4


@pytest.mark.parametrize(
    "shape, arch",
    [
        ((32, 32, 3), "conv"),  # shapes32, CIFAR-10
        ((16, 16, 3), "conv"),
        ((64, 48, 3), "conv"),
        ((8, 8, 3), "mlp"),  # too small
        ((15, 32, 3), "mlp"),
        ((8, 8, 1), "mlp"),  # digits: every recorded number used the MLP
        ((28, 28, 1), "mlp"),  # grey images
        ((2,), "mlp"),  # 2-D toys
    ],
)
def test_architecture_selection(shape, arch):
    assert features.architecture(shape) == arch
    config = features.default_config(shape)
    expected = ConvClassifierConfig() if arch == "conv" else ClassifierConfig()
    assert config == expected and type(config) is type(expected)
    net = features.make_network(config, 10)
    assert isinstance(net, features.FeatureConvNet if arch == "conv" else features.FeatureMLP)


def test_conv_features_shape_jit_and_batches(colour_images):
    x, y = colour_images
    classifier = features.train_classifier(x, y, 4, jax.random.key(0), TINY_CONV)
    assert isinstance(classifier.net, features.FeatureConvNet)
    logits, phi = jax.jit(lambda c, x: c.apply(x))(classifier, x)
    assert logits.shape == (40, 4) and phi.shape == (40, TINY_CONV.features)
    assert np.all(np.asarray(phi) >= 0)  # relu features
    # Batched evaluation (how SampleQuality featurizes whole splits) equals one big batch:
    # GroupNorm normalises each example on its own, nothing couples the examples of a batch.
    np.testing.assert_allclose(classifier.features_batched(x, 7), phi, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(classifier.predict_batched(x, 7), np.argmax(logits, -1))
    np.testing.assert_allclose(classifier.features(x[:1]), phi[:1], rtol=1e-5, atol=1e-6)
    # Not degenerate: the features vary across examples.
    assert float(np.std(np.asarray(phi), axis=0).max()) > 0


def test_conv_cache_round_trip_and_architecture_in_key(colour_images, tmp_path, monkeypatch):
    x, y = colour_images
    key, d = jax.random.key(3), str(tmp_path)
    trained = features.load_or_train_classifier(d, x, y, 4, key, TINY_CONV)
    (path,) = [str(p) for p in tmp_path.iterdir()]
    assert path == features.cache_path(d, x, y, 4, key, TINY_CONV)
    assert os.path.basename(path).startswith("conv_classifier_40x16x16x3_")
    # An MLP of the same data, labels and key has another cache file: never loaded as a conv net.
    mlp = ClassifierConfig(hidden=8, features=12, steps=3, batch_size=8)
    assert features.cache_path(d, x, y, 4, key, mlp) != path
    assert os.path.basename(features.cache_path(d, x, y, 4, key, mlp)).startswith("classifier_")

    def no_training(*args):
        raise AssertionError("the cached classifier should have been loaded")

    with monkeypatch.context() as m:
        m.setattr(features, "train_classifier", no_training)
        loaded = features.load_or_train_classifier(d, x, y, 4, key, TINY_CONV)
    assert isinstance(loaded.net, features.FeatureConvNet)
    np.testing.assert_array_equal(loaded.features(x), trained.features(x))
    # An MLP's parameters found under the conv net's name do not fit it: retrained, not loaded.
    features._save(path, features.train_classifier(x, y, 4, key, mlp).params)
    again = features.load_or_train_classifier(d, x, y, 4, key, TINY_CONV)
    np.testing.assert_array_equal(again.features(x), trained.features(x))


def test_conv_config_rejects_bad_values():
    with pytest.raises(ValueError, match="channels"):
        ConvClassifierConfig(channels=(), strides=())
    with pytest.raises(ValueError, match="groups"):
        ConvClassifierConfig(channels=(12,), strides=(1,), groups=8)
    with pytest.raises(ValueError, match="steps"):
        ConvClassifierConfig(steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        ConvClassifierConfig(learning_rate=-1.0)
    with pytest.raises(TypeError, match="ConvClassifierConfig"):
        features.make_network("conv", 10)


@pytest.mark.slow
def test_conv_ruler_classifies_shapes32():
    """The default convolutional ruler on shapes32's test split (10 classes, chance 10%): the
    MLP on raw pixels reached ~18%."""
    from diffjax.data import shapes

    ds = shapes.load()
    train, test = ds.as_array("train"), ds.as_array("test")
    classifier = features.train_classifier(
        train["x"], train["label"], 10, jax.random.key(0), ConvClassifierConfig()
    )
    predicted = classifier.predict_batched(test["x"])
    assert np.mean(predicted == test["label"]) > ACCURACY_SHAPES32
