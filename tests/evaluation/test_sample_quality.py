"""SampleQuality: the report on digits (floor < degraded images < ceiling, cache reuse) and the
identity-feature case on Gaussian vectors against the closed-form Frechet distance."""

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from diffjax.evaluation.sample_quality import SampleQuality

KEYS = {
    "frechet",
    "frechet_floor_train_vs_test",
    "frechet_ceiling_noise",
    "classifier_test_accuracy",
    "num_samples",
}


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits with diffjax's split and scaling: first 1500 train, last 297 test."""
    d = load_digits()
    x = (2.0 * d.images / 16.0 - 1.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1]
    return x[:1500], d.target[:1500], x[1500:], d.target[1500:]


@pytest.fixture(scope="module")
def quality_and_cache(digits, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("eval_features"))
    train_x, train_y, test_x, test_y = digits
    return SampleQuality.fit(
        cache, train_x, train_y, test_x, jax.random.key(0), test_y=test_y
    ), cache


def test_report_orders_floor_degraded_and_ceiling(digits, quality_and_cache):
    quality, _ = quality_and_cache
    train_x, _, test_x, test_y = digits
    rng = np.random.default_rng(0)
    real = train_x[rng.permutation(1500)[:500]]  # [500, 8, 8, 1]
    noisy = np.clip(real + 0.5 * rng.normal(size=real.shape), -1, 1).astype(np.float32)
    report = quality.report(noisy)
    assert set(report) == KEYS and report["num_samples"] == 500
    accuracy = np.mean(np.argmax(quality.classifier.apply(test_x)[0], -1) == test_y)
    assert report["classifier_test_accuracy"] == pytest.approx(accuracy)
    # The writers of the fixed test split differ from the training split's: there the MLP gets
    # ~93% (3-nearest-neighbours 96%, RBF SVM 95%); 90% still means features of digit identity.
    assert accuracy > 0.9
    assert 0 < report["frechet_floor_train_vs_test"] < report["frechet"]
    assert report["frechet"] < report["frechet_ceiling_noise"]
    # Real training images are as far from the test set as the floor's own training subset:
    # both are 500 draws of the training split, so they agree up to sampling error, well below
    # the gap to the degraded images.
    gap = report["frechet"] - report["frechet_floor_train_vs_test"]
    assert abs(quality.frechet(real) - report["frechet_floor_train_vs_test"]) < 0.25 * gap


def test_image_samples_are_clipped(digits, quality_and_cache):
    quality, _ = quality_and_cache
    x = digits[2] * 1000.0  # a diverged sampler's values
    assert quality.frechet(x) == quality.frechet(np.clip(x, -1, 1))


def test_cached_classifier_gives_the_same_report(digits, quality_and_cache):
    quality, cache = quality_and_cache
    train_x, train_y, test_x, test_y = digits
    again = SampleQuality.fit(cache, train_x, train_y, test_x, jax.random.key(0), test_y=test_y)
    samples = test_x[::-1]
    assert again.report(samples) == quality.report(samples)


def test_vectors_use_identity_features_closed_form():
    # x ~ N(m1, diag(l1)) as data, samples ~ N(m2, diag(l2)):
    # d^2 = |m1 - m2|^2 + sum (sqrt(l1) - sqrt(l2))^2 = 1.25 + (1 - 1/sqrt2)^2 + 0.25.
    rng = np.random.default_rng(0)
    n = 20_000
    m1, l1 = np.array([0.0, 0.0]), np.array([1.0, 0.25])
    m2, l2 = np.array([1.0, 0.5]), np.array([0.5, 1.0])
    train = m1 + np.sqrt(l1) * rng.normal(size=(n, 2))
    test = m1 + np.sqrt(l1) * rng.normal(size=(n, 2))
    samples = m2 + np.sqrt(l2) * rng.normal(size=(n, 2))
    quality = SampleQuality.fit(None, train, None, test, jax.random.key(0))
    exact = 1.25 + (1 - np.sqrt(0.5)) ** 2 + 0.25
    # The estimate's error is dominated by the mean term, whose standard deviation is
    # 2 sqrt(dm^T (S1 + S2) dm / n) = 2 sqrt(1.8125 / 20000) = 0.019; allow 5 of them.
    report = quality.report(samples)
    assert abs(report["frechet"] - exact) < 0.1
    assert abs(report["frechet_floor_train_vs_test"]) < 0.01  # same law: O(tr(S) / n)
    # The ceiling is N(0, I) (unclipped for vectors): |m1|^2 + sum (sqrt(l1) - 1)^2 = 0.25; its
    # standard deviation is dominated by 2 (sqrt(0.25) - 1) sd(sqrt(l_hat)) = 0.0025.
    assert abs(report["frechet_ceiling_noise"] - 0.25) < 0.02
    assert report["classifier_test_accuracy"] is None and report["num_samples"] == n


def test_rejects_bad_inputs(digits, quality_and_cache):
    quality, _ = quality_and_cache
    train_x, train_y, test_x, _ = digits
    with pytest.raises(ValueError, match="shape"):
        quality.frechet(np.zeros((10, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="labels"):
        SampleQuality.fit(None, train_x, None, test_x, jax.random.key(0))
    with pytest.raises(ValueError, match="alike"):
        SampleQuality.fit(None, train_x, train_y, test_x[..., 0], jax.random.key(0))
