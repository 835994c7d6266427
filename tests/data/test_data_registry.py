"""diffjax.data.get: offline names, tfds names through mock_data (no downloads), clear errors."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from diffjax import data
from diffjax.data import pipeline


def test_offline_names(tmp_path):
    assert set(data.OFFLINE) == {"digits", "shapes32", "toy2d"}
    digits = data.get("digits", data_dir=str(tmp_path))
    assert isinstance(digits, data.Dataset) and digits.shape == (8, 8, 1)
    toy = data.get(
        "toy2d", distribution="swiss_roll", num_train=100, num_test=20, data_dir=str(tmp_path)
    )
    assert toy.shape == (2,) and toy.num_classes is None


@pytest.mark.parametrize(("name", "shape"), [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_datasets_through_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=40):
        ds = data.get(name)
        assert ds.shape == shape and ds.num_bins == 256 and ds.num_classes == 10
        assert ds.num_examples("train") == 40
        loader = ds.loader("train", 16, seed=0, shard_count=2, shard_index=1)
        it = iter(loader)
        batch = next(it)
        assert batch["x"].shape == (8, *shape) and batch["x"].dtype == np.float32
        assert batch["x"].min() >= -1.0 and batch["x"].max() <= 1.0
        v = (batch["x"] + 1.0) * 255.0 / 2.0  # x = 2 v / 255 - 1 on the uint8 grid
        np.testing.assert_allclose(v, np.round(v), atol=1e-4)
        assert batch["label"].dtype == np.int32 and batch["label"].shape == (8,)
        assert 0 <= batch["label"].min() and batch["label"].max() < 10
        state, expected = it.get_state(), next(it)
        resumed = iter(ds.loader("train", 16, seed=0, shard_count=2, shard_index=1))
        resumed.set_state(state)
        np.testing.assert_array_equal(next(resumed)["x"], expected["x"])
        deq = next(
            iter(ds.loader("train", 16, seed=0, shard_count=1, shard_index=0, dequantize=True))
        )
        assert deq["x"].min() >= -1.0 and deq["x"].max() < 1.0


def test_unlabeled_tfds_dataset_needs_label_key_none():
    with tfds.testing.mock_data(num_examples=8):
        with pytest.raises(ValueError, match="no feature 'label'.*label_key=None"):
            data.get("celeb_a")
        ds = data.get("celeb_a", label_key=None)
        assert ds.num_classes is None and ds.shape == (218, 178, 3)
        batch = next(iter(ds.loader("train", 4, seed=0, shard_count=1, shard_index=0)))
        np.testing.assert_array_equal(batch["label"], pipeline.UNLABELED)
        small = data.get("celeb_a", label_key=None, image_size=32)
        assert small.shape == (32, 32, 3) and small.num_bins == 256
        batch = next(iter(small.loader("train", 4, seed=0, shard_count=1, shard_index=0)))
        assert batch["x"].shape == (4, 32, 32, 3)
        v = (batch["x"] + 1.0) * 255.0 / 2.0
        np.testing.assert_allclose(v, np.round(v), atol=1e-4)


def test_unknown_name_is_a_clear_error():
    valid = "valid datasets: digits, shapes32, toy2d"
    with pytest.raises(ValueError, match=f"unknown dataset 'mnsit'; {valid}"):
        data.get("mnsit")
