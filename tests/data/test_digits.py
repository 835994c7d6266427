"""digits builder: prepared offline into a tmp data_dir, exact sklearn content, fixed split."""

import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from diffjax.data import digits


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return digits.load(data_dir=str(tmp_path_factory.mktemp("tfds")))


def test_metadata_and_split_sizes(ds):
    assert ds.shape == (8, 8, 1)
    assert ds.num_classes == 10
    assert ds.num_bins == digits.NUM_BINS == 17
    assert ds.num_examples("train") == 1500
    assert ds.num_examples("test") == 297
    assert ds.builder.info.file_format.value == "array_record"


def _rows(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[N, 65] integer rows (pixels, label) sorted lexicographically: a canonical multiset."""
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize(("split", "start", "stop"), [("train", 0, 1500), ("test", 1500, 1797)])
def test_content_is_sklearn_digits_exactly(ds, split, start, stop):
    """Records are sklearn's images [start, stop) with exact gray levels v = 8 (x + 1)."""
    ref = load_digits()
    arrays = ds.as_array(split)
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (stop - start, 8, 8, 1)
    v = 8.0 * (arrays["x"] + 1.0)  # x = 2 v / 16 - 1
    np.testing.assert_array_equal(v, np.round(v))
    np.testing.assert_array_equal(
        _rows(v.astype(np.int64), arrays["label"].astype(np.int64)),
        _rows(ref.images[start:stop].astype(np.int64), ref.target[start:stop]),
    )


def test_second_load_reuses_prepared_files(ds):
    files = sorted(os.fspath(p) for p in ds.builder.data_path.iterdir())
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    again = digits.load(data_dir=str(ds.builder.data_dir_root))
    assert sorted(os.fspath(p) for p in again.builder.data_path.iterdir()) == files
    assert [os.stat(f).st_mtime_ns for f in files] == mtimes
