"""Feature classifier: accuracy on held-out digits, jitted features, the on-disk cache."""

import os

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from diffjax.evaluation import features
from diffjax.evaluation.features import ClassifierConfig

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
