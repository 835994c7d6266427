"""Label dropout (classifier-free guidance training) and the wrapper every objective trains
behind: the rate, the null index, key determinism, and an unconditional loss left untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax.losses.conditioning import LabelDropout, with_label_dropout


def test_label_dropout_validates():
    with pytest.raises(ValueError, match="num_classes=0 must be >= 1"):
        LabelDropout(0, 0.1)
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=f"p_uncond={p} must lie in"):
            LabelDropout(10, p)


def test_dropout_rate_and_null_index():
    n, p = 40000, 0.1
    dropout = LabelDropout(10, p)
    labels = jnp.arange(n, dtype=jnp.int32) % 10
    out = np.asarray(jax.jit(dropout.apply)(jax.random.key(0), labels))
    dropped = out != np.asarray(labels)
    assert out.dtype == np.int32 and out.shape == (n,)
    assert dropout.null_class == 10 and np.all(out[dropped] == 10)  # only ever the null class
    # Binomial(n, p): within 4 standard deviations.
    assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_dropout_is_a_function_of_the_key():
    dropout = LabelDropout(8, 0.5)
    labels = jnp.arange(64, dtype=jnp.int32) % 8
    a, b = (dropout.apply(jax.random.key(1), labels) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, dropout.apply(jax.random.key(2), labels))
    np.testing.assert_array_equal(LabelDropout(8, 0.0).apply(jax.random.key(1), labels), labels)


def _recording_loss(seen):
    def loss(params, batch, key):
        seen.append((batch.get("label"), key))
        return jnp.sum(batch["x"]), {}

    return loss


def test_the_objective_sees_the_dropped_labels_and_the_other_key():
    seen = []
    dropout = LabelDropout(10, 0.5)
    loss = with_label_dropout(_recording_loss(seen), dropout)
    labels = jnp.arange(32, dtype=jnp.int32) % 10
    key = jax.random.key(3)
    loss({}, {"x": jnp.ones((32, 2)), "label": labels}, key)
    seen_labels, seen_key = seen[0]
    objective_key, drop_key = jax.random.split(key)
    np.testing.assert_array_equal(seen_labels, dropout.apply(drop_key, labels))
    assert bool(jnp.any(seen_labels == 10))
    np.testing.assert_array_equal(jax.random.key_data(seen_key), jax.random.key_data(objective_key))


def test_an_unconditional_loss_is_unchanged():
    seen = []
    inner = _recording_loss(seen)
    assert with_label_dropout(inner, None) is inner
