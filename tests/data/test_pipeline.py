"""Loaders over a prepared builder (digits): scaling, order, resume, sharding, dequantization."""

import dataclasses
import os
import subprocess
import sys

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
import scipy.stats

from diffjax.data import digits, pipeline

K = digits.NUM_BINS


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return digits.load(data_dir=str(tmp_path_factory.mktemp("tfds")))


def take(loader, n, state=None):
    """n batches of a fresh iterator of `loader`, optionally restored to `state` first."""
    it = iter(loader)
    if state is not None:
        it.set_state(state)
    return [next(it) for _ in range(n)]


def levels(x: np.ndarray) -> np.ndarray:
    """Gray levels v from plainly scaled x = 2 v / (K - 1) - 1, asserting they are integers."""
    v = (x + 1.0) * (K - 1) / 2.0
    np.testing.assert_allclose(v, np.round(v), atol=1e-5)
    return np.round(v).astype(np.int64)


def canonical(x: np.ndarray) -> np.ndarray:
    """Examples [N, ...] as rows [N, D] sorted lexicographically: equal iff equal multisets."""
    rows = x.reshape(len(x), -1)
    return rows[np.lexsort(rows.T[::-1])]


def test_scale_and_dequantize_formulas():
    v = np.array([0, 8, 16])
    np.testing.assert_allclose(pipeline.scale(v, 17), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(
        pipeline.dequantize(v, np.array([0.0, 0.5, 0.999]), 17),
        [-1.0, 2 * 8.5 / 17 - 1, 2 * 16.999 / 17 - 1],
        rtol=1e-6,
    )
    pts = np.array([[0.25, -0.5]], np.float64)
    out = pipeline.scale(pts, None)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pts.astype(np.float32))


def test_batches_shapes_dtypes_ranges(ds):
    (batch,) = take(ds.loader("train", 32, seed=0, shard_index=0, shard_count=1), 1)
    assert set(batch) == {"x", "label"}
    assert batch["x"].shape == (32, 8, 8, 1) and batch["x"].dtype == np.float32
    assert batch["label"].shape == (32,) and batch["label"].dtype == np.int32
    assert batch["x"].min() >= -1.0 and batch["x"].max() <= 1.0
    assert set(np.unique(levels(batch["x"]))) <= set(range(K))
    assert 0 <= batch["label"].min() and batch["label"].max() <= 9


def test_default_shard_is_this_process(ds):
    (batch,) = take(ds.loader("train", 16, seed=0), 1)  # jax.process_count() == 1 here
    assert batch["x"].shape == (16, 8, 8, 1)


def test_same_seed_same_stream_other_seed_other_stream(ds):
    a = take(ds.loader("train", 64, seed=3, shard_count=1, shard_index=0), 4)
    b = take(ds.loader("train", 64, seed=3, shard_count=1, shard_index=0), 4)
    c = take(ds.loader("train", 64, seed=4, shard_count=1, shard_index=0), 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["x"], y["x"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(a[0]["x"], c[0]["x"])


def test_one_epoch_visits_every_example_once(ds):
    """num_epochs=1, batch 100: 15 batches that together are a permutation of the split."""
    loader = ds.loader("train", 100, seed=0, num_epochs=1, shard_count=1, shard_index=0)
    batches = list(loader)
    assert len(batches) == 15
    x = np.concatenate([b["x"] for b in batches])
    ref = ds.as_array("train")
    np.testing.assert_array_equal(canonical(x), canonical(ref["x"]))
    assert not np.array_equal(x, ref["x"])  # shuffled


def test_no_shuffle_is_file_order_and_drops_the_remainder(ds):
    batches = list(
        ds.loader("test", 100, seed=0, shuffle=False, num_epochs=1, shard_count=1, shard_index=0)
    )
    assert len(batches) == 2  # 297 examples: the last 97 do not make a batch
    ref = ds.as_array("test", max_examples=200)
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), ref["x"])
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), ref["label"])


def test_epochs_repeat_forever_with_new_orders(ds):
    """Batches of 99 over the 297 test examples: the stream goes on with a fresh shuffle."""
    loader = ds.loader("test", 99, seed=0, shard_count=1, shard_index=0)
    b = take(loader, 6)  # 2 epochs
    e1 = np.concatenate([x["x"] for x in b[:3]])
    e2 = np.concatenate([x["x"] for x in b[3:]])
    assert not np.array_equal(e1, e2)
    np.testing.assert_array_equal(canonical(e1), canonical(e2))


@pytest.mark.parametrize("dequantize", [False, True])
def test_resume_from_iterator_state_continues_exactly(ds, dequantize):
    """Take n batches, save the state, take m more; a fresh loader restored gives the same m."""
    n, m = 20, 5  # 20 * 96 > 1500: the saved position is in the second epoch
    kw = dict(seed=7, shard_count=1, shard_index=0, dequantize=dequantize)
    it = iter(ds.loader("train", 96, **kw))
    for _ in range(n):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(m)]
    resumed = take(ds.loader("train", 96, **kw), m, state=state)
    for a, b in zip(expected, resumed, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_shards_are_blocks_of_the_global_batch(ds):
    """Host h takes the h-th block of each global batch: per-host batches of step j,
    concatenated in host order (as make_array_from_process_local_data lays them out), are
    exactly the single-host global batch of step j, and every host's position is the same."""
    n, steps = 4, 3
    b = 128 // n
    single = take(ds.loader("train", 128, seed=5, shard_count=1, shard_index=0), steps)
    iterators = [
        iter(ds.loader("train", 128, seed=5, shard_count=n, shard_index=h)) for h in range(n)
    ]
    shards = [[next(it) for _ in range(steps)] for it in iterators]
    for j in range(steps):
        for h in range(n):
            assert shards[h][j]["x"].shape == (b, 8, 8, 1)
            np.testing.assert_array_equal(shards[h][j]["x"], single[j]["x"][h * b : (h + 1) * b])
            np.testing.assert_array_equal(
                shards[h][j]["label"], single[j]["label"][h * b : (h + 1) * b]
            )
    assert all(it.get_state() == iterators[0].get_state() for it in iterators)


def test_shards_partition_an_epoch(ds):
    n = 3
    seen = [
        np.concatenate(
            [
                b["x"]
                for b in ds.loader("train", 30, seed=1, num_epochs=1, shard_count=n, shard_index=h)
            ]
        )
        for h in range(n)
    ]
    assert [len(s) for s in seen] == [500] * n
    x = np.concatenate(seen)
    ref = ds.as_array("train")["x"]
    np.testing.assert_array_equal(canonical(x), canonical(ref))


def test_dequantization_is_uniform_within_the_bin(ds):
    """x = 2 (v + u) / K - 1 with u ~ U[0, 1): same records as the plain stream, u uniform."""
    kw = dict(seed=11, shard_count=1, shard_index=0)
    plain = take(ds.loader("train", 100, **kw), 5)
    deq = take(ds.loader("train", 100, dequantize=True, **kw), 5)
    v = np.concatenate([levels(b["x"]) for b in plain]).ravel()
    x = np.concatenate([b["x"] for b in deq]).ravel().astype(np.float64)
    assert x.min() >= -1.0 and x.max() < 1.0
    y = (x + 1.0) * K / 2.0  # = v + u
    u = y - v
    assert u.min() > -1e-5 and u.max() < 1 + 1e-5  # the plain level v; float32 rounding of x
    n = u.size  # 32000 values
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert scipy.stats.kstest(u, "uniform").pvalue > 1e-4
    np.testing.assert_array_equal(
        np.concatenate([b["label"] for b in plain]), np.concatenate([b["label"] for b in deq])
    )


def test_as_array_max_examples(ds):
    a = ds.as_array("test", max_examples=10)
    assert a["x"].shape == (10, 8, 8, 1) and a["label"].shape == (10,)
    assert ds.as_array("test", max_examples=10_000)["x"].shape[0] == 297
    with pytest.raises(ValueError, match="max_examples"):
        ds.as_array("test", max_examples=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(batch_size=30, shard_count=4, shard_index=0), "multiple of shard_count"),
        (dict(batch_size=0), "multiple of shard_count"),
        (dict(shard_count=2, shard_index=2), "shard_index"),
        (dict(seed=-1), "seed"),
        (dict(num_epochs=0), "num_epochs"),
        (dict(num_threads=-1), "num_threads"),
    ],
)
def test_loader_rejects_bad_arguments(ds, kwargs, match):
    args = dict(batch_size=32, seed=0, shard_count=1, shard_index=0) | kwargs
    with pytest.raises(ValueError, match=match):
        ds.loader("train", args.pop("batch_size"), **args)


def test_from_builder_rejects_unknown_features(ds):
    with pytest.raises(ValueError, match="no feature 'img'.*image, label"):
        pipeline.from_builder(ds.builder, x_key="img")
    with pytest.raises(ValueError, match="label_key=None"):
        pipeline.from_builder(ds.builder, label_key="class")
    with pytest.raises(ValueError, match="num_bins"):
        pipeline.from_builder(ds.builder, num_bins=1)


def test_unlabeled_view_yields_minus_one(ds):
    unlabeled = pipeline.from_builder(ds.builder, label_key=None, num_bins=K)
    assert unlabeled.num_classes is None
    (batch,) = take(unlabeled.loader("train", 8, seed=0, shard_count=1, shard_index=0), 1)
    np.testing.assert_array_equal(batch["label"], np.full(8, pipeline.UNLABELED, np.int32))


def test_threaded_reading_gives_the_same_stream(ds):
    kw = dict(seed=2, shard_count=1, shard_index=0)
    a = take(ds.loader("train", 64, **kw), 3)
    b = take(ds.loader("train", 64, num_threads=2, **kw), 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["x"], y["x"])


def test_processes_preparing_at_once_take_turns(tmp_path):
    """Two processes preparing digits into one fresh data_dir both succeed (lock in prepare)."""
    code = (
        "import sys; from diffjax.data import digits; "
        "print(digits.load(data_dir=sys.argv[1]).num_examples('train'))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ | {"JAX_PLATFORMS": "cpu"},
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        assert out.split()[-1] == "1500"


def test_iterator_state_round_trips_through_orbax(ds, tmp_path):
    """The trainer's way: grain's orbax handler saves the iterator beside the train state."""
    kw = dict(seed=9, shard_count=1, shard_index=0)
    it = iter(ds.loader("train", 64, **kw))
    for _ in range(30):  # past the first epoch (1500 / 64 < 24)
        next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(30, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
        expected = [next(it) for _ in range(3)]
        fresh = iter(ds.loader("train", 64, **kw))
        manager.restore(30, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    for a in expected:
        np.testing.assert_array_equal(next(fresh)["x"], a["x"])


@pytest.mark.parametrize("dequantize", [False, True])
def test_in_memory_serves_the_same_stream_as_the_files(ds, dequantize):
    assert ds.in_memory
    files = dataclasses.replace(ds, in_memory=False)
    kw = dict(seed=4, shard_count=2, shard_index=1, dequantize=dequantize)
    expected = take(files.loader("train", 64, **kw), 30)
    for a, b in zip(take(ds.loader("train", 64, **kw), 30), expected, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_array_equal(ds.as_array("test")["x"], files.as_array("test")["x"])


def test_hosts_draw_independent_dequantization_noise(ds):
    """Same seed, two hosts: batch j of each gets its own u (not the same noise pattern)."""
    u = []
    for h in range(2):
        kw = dict(seed=3, shard_count=2, shard_index=h)
        plain = take(ds.loader("train", 64, **kw), 1)[0]
        deq = take(ds.loader("train", 64, dequantize=True, **kw), 1)[0]
        u.append((deq["x"].astype(np.float64) + 1) * K / 2 - levels(plain["x"]))
    assert np.corrcoef(u[0].ravel(), u[1].ravel())[0, 1] < 0.1  # 2048 pairs: |r| ~ 0.02


def test_center_crop_resize_takes_block_means_of_the_central_square():
    """A 6x4 image: the central 4x4 (rows 1..4) of 2x2 constant blocks -> 2x2 of block values."""
    blocks = np.array([[10, 20], [30, 40]], np.uint8)
    image = np.full((6, 4, 2), 255, np.uint8)
    image[1:5, :, 0] = np.kron(blocks, np.ones((2, 2), np.uint8))
    image[1:5, :, 1] = 7
    out = pipeline.center_crop_resize(image, 2)
    assert out.shape == (2, 2, 2) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], blocks)
    np.testing.assert_array_equal(out[..., 1], 7)
    # a 3x3 box mean: (0 + ... + 8) / 9 = 4
    np.testing.assert_array_equal(
        pipeline.center_crop_resize(np.arange(9, dtype=np.uint8).reshape(3, 3, 1), 1), [[[4]]]
    )


def test_image_size_needs_uint8_images(ds):
    with pytest.raises(ValueError, match="image_size"):
        pipeline.from_builder(ds.builder, num_bins=K, image_size=0)
    resized = pipeline.from_builder(ds.builder, num_bins=K, image_size=4)
    assert resized.shape == (4, 4, 1)
    batch = take(resized.loader("train", 8, seed=0, shard_count=1, shard_index=0), 1)[0]
    assert batch["x"].shape == (8, 4, 4, 1)
