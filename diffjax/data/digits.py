"""scikit-learn's 8x8 handwritten digits as an offline tfds builder (array_record).

The 1797 images of `sklearn.datasets.load_digits` (UCI optical recognition of handwritten
digits, shipped inside scikit-learn; 8x8 blocks of counts 0..16) are stored with their exact
integer gray levels as an 8x8x1 uint8 tensor feature "image" (raw bytes: writing needs no
TensorFlow and reading skips PNG decoding), so `num_bins = 17` and the plain scaling
x = 2 v / 16 - 1 maps them onto [-1, 1] (see `pipeline` for the dequantized convention).
Fixed split: the first 1500 images (in scikit-learn's order) are "train", the last 297 "test".
"""

import numpy as np
import tensorflow_datasets as tfds

from diffjax.data import pipeline

NUM_BINS = 17  # gray levels 0..16
NUM_TRAIN = 1500  # images [0, 1500) train, [1500, 1797) test


class Digits(tfds.core.GeneratorBasedBuilder):
    """tfds builder "digits": image uint8 (8, 8, 1) in 0..16, label 0..9."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "sklearn load_digits, first 1500 train / last 297 test."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # shipped with scikit-learn, nothing to download
        return {
            "train": self._generate_examples(0, NUM_TRAIN),
            "test": self._generate_examples(NUM_TRAIN, None),
        }

    def _generate_examples(self, start: int, stop: int | None):
        from sklearn.datasets import load_digits  # imported here: only preparation needs it

        digits = load_digits()
        images = digits.images.astype(np.uint8)[..., None]  # [1797, 8, 8, 1], integers 0..16
        for i in range(len(images))[start:stop]:
            yield i, {"image": images[i], "label": int(digits.target[i])}


def load(data_dir: str | None = None) -> pipeline.Dataset:
    """The digits Dataset, prepared on first use in `data_dir` (default as tfds: $TFDS_DATA_DIR
    or ~/tensorflow_datasets); shape (8, 8, 1), 10 classes, 17 bins, served from memory."""
    builder = pipeline.prepare(Digits(data_dir=data_dir, file_format="array_record"))
    return pipeline.from_builder(builder, num_bins=NUM_BINS, in_memory=True)  # 100 kB
