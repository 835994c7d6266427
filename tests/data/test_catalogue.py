"""A tfds catalogue dataset (cifar10) prepared offline from a fake download in its real file
format, the errors of a preparation that cannot run, and a train step on it through the CLI.

The fake `cifar-10-binary.tar.gz` has CIFAR-10's layout (`cifar-10-batches-bin/` with
`data_batch_{1..5}.bin`, `test_batch.bin` of records of 1 label byte + 3072 pixel bytes in
channel-major order, and `batches.meta.txt`), a few random records per file. It is found where
a user copies the real archive (`manual_dir`); only its checksum is registered as cifar10's.

tfds prepares cifar10 with TensorFlow (`tf.io.gfile` to extract and read the archive,
`tf.image.encode_png` for the images), from the "prepare" extra that the tests do not install.
Without it, `tensorflow_stand_in` routes those three calls to Python's `open` and PIL, so the
rest (tfds' real download manager, extractor, cifar10 parser and array_record writer) runs.
"""

import dataclasses
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import types

import numpy as np
import pytest
import requests
from PIL import Image
from tensorflow_datasets.core.download import checksums, downloader, extractor
from tensorflow_datasets.core.features import image_feature
from tensorflow_datasets.image_classification import cifar

from diffjax import data
from diffjax.data import pipeline
from diffjax.errors import DataError
from diffjax.train import runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
PER_FILE = 4  # records in each of the 5 train files and the test file
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def write_cifar10_archive(path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A cifar-10-binary.tar.gz at `path`.

    Returns:
      file name -> (labels uint8 [n], images uint8 [n, 32, 32, 3]) written into it.
    """
    rng = np.random.default_rng(seed)
    written = {}
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, content: bytes):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))

        add("batches.meta.txt", ("\n".join(CLASSES) + "\n\n").encode())
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            labels = rng.integers(0, 10, PER_FILE, dtype=np.uint8)
            planes = rng.integers(0, 256, (PER_FILE, 3, 32, 32), dtype=np.uint8)  # [n, c, h, w]
            add(name, np.concatenate([labels[:, None], planes.reshape(PER_FILE, -1)], 1).tobytes())
            written[name] = (labels, planes.transpose(0, 2, 3, 1))
    return written


@pytest.fixture
def fake_download(tmp_path, monkeypatch):
    """(manual_dir holding the fake archive, what it holds); its checksum is cifar10's."""
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    written = write_cifar10_archive(manual_dir / ARCHIVE)
    info = dataclasses.replace(checksums.compute_url_info(manual_dir / ARCHIVE), filename=ARCHIVE)
    monkeypatch.setattr(cifar.Cifar10, "url_infos", {URL: info})
    return str(manual_dir), written


def use_tensorflow_stand_in(monkeypatch):
    """TensorFlow's three calls in tfds' cifar10 preparation, by Python and PIL."""
    tf = types.SimpleNamespace(
        io=types.SimpleNamespace(gfile=types.SimpleNamespace(GFile=open)),
        compat=types.SimpleNamespace(as_text=lambda s: s.decode() if isinstance(s, bytes) else s),
    )
    monkeypatch.setattr(extractor, "tf", tf)
    monkeypatch.setattr(cifar, "tf", tf)

    def encode_png(self, image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="png")
        return buffer.getvalue()

    monkeypatch.setattr(image_feature._ImageEncoder, "_encode_image", encode_png)


@pytest.fixture
def tensorflow_stand_in(monkeypatch):
    """The stand-in if TensorFlow is not installed (with it installed, the real one runs)."""
    if not HAS_TENSORFLOW:
        use_tensorflow_stand_in(monkeypatch)


def _prepare(data_dir: str, manual_dir: str) -> pipeline.Dataset:
    return data.get("cifar10", data_dir=data_dir, manual_dir=manual_dir)


def test_cifar10_prepares_offline_from_a_manually_copied_archive(
    tmp_path, fake_download, tensorflow_stand_in
):
    manual_dir, written = fake_download
    ds = _prepare(str(tmp_path / "data"), manual_dir)
    assert (ds.shape, ds.num_classes, ds.num_bins) == ((32, 32, 3), 10, 256)
    assert ds.num_examples("train") == 5 * PER_FILE and ds.num_examples("test") == PER_FILE
    assert ds.builder.info.features["label"].names == CLASSES
    labels, images = written["test_batch.bin"]
    for record in ds.source("test"):  # ids "test_00003": the record's position in the file
        i = int(record["id"].decode().removeprefix("test_"))
        assert record["label"] == labels[i]
        np.testing.assert_array_equal(record["image"], images[i])
    batch = next(iter(ds.loader("train", 8, seed=0)))
    assert batch["x"].shape == (8, 32, 32, 3) and -1 <= batch["x"].min() < batch["x"].max() <= 1


@pytest.mark.skipif(HAS_TENSORFLOW, reason="TensorFlow is installed")
def test_missing_tensorflow_names_the_extra_and_a_rerun_prepares(
    tmp_path, fake_download, monkeypatch
):
    manual_dir, _ = fake_download
    with pytest.raises(DataError) as error:
        _prepare(str(tmp_path / "data"), manual_dir)
    message = str(error.value)
    assert "'cifar10' needs TensorFlow" in message and "\n" not in message
    assert 'pip install -e ".[prepare]"' in message and pipeline.TENSORFLOW_REQUIREMENT in message
    assert isinstance(error.value.__cause__, Exception)

    # With TensorFlow (here its stand-in) the rerun prepares from the same data_dir.
    use_tensorflow_stand_in(monkeypatch)
    assert _prepare(str(tmp_path / "data"), manual_dir).num_examples("test") == PER_FILE


def test_failed_download_says_where_to_copy_the_archive(tmp_path, monkeypatch):
    def no_network(url, **kwargs):
        raise requests.exceptions.ConnectionError(f"Failed to resolve {url}")

    monkeypatch.setattr(downloader, "_open_url", no_network)
    with pytest.raises(DataError) as error:
        data.get("cifar10", data_dir=str(tmp_path / "data"))
    message = str(error.value)
    assert "could not download tfds dataset 'cifar10' (ConnectionError)" in message
    assert f"copy its downloads ({ARCHIVE}) into {tmp_path}/data/downloads/manual" in message
    assert "\n" not in message


def test_setup_pins_the_tensorflow_of_the_error_message():
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert f"\"{pipeline.TENSORFLOW_REQUIREMENT}; sys_platform == 'linux'\"" in setup


@pytest.mark.slow
def test_cli_trains_a_step_on_cifar10_prepared_offline(
    tmp_path, fake_download, tensorflow_stand_in
):
    manual_dir, _ = fake_download
    data_dir, workdir = str(tmp_path / "data"), tmp_path / "run"
    _prepare(data_dir, manual_dir)  # the run below finds it prepared
    cmd = [
        sys.executable,
        "-m",
        "diffjax.main",
        f"--config={ROOT}/configs/ddpm_cifar10.py",
        f"--workdir={workdir}",
        f"--config.data.kwargs.data_dir={data_dir}",
        "--config.model.name=unet_tiny",
        "--config.training.num_steps=1",
        "--config.training.batch_size=8",
        "--config.training.checkpoint_every=1",
        "--config.training.sample_every=0",
        "--config.sample.num_samples=4",
        "--config.sample.num_steps=2",
        "--config.eval.at_end=False",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = runs.load_config(str(workdir))
    assert config.data.name == "cifar10" and config.data.kwargs.data_dir == data_dir
    _, state = runs.restore_latest(config, str(workdir))
    assert int(state.step) == 1
