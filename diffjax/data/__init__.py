"""Datasets by name: `diffjax.data.get(name, **kw) -> Dataset`.

Offline datasets (digits, shapes32, toy2d) are tfds builders in this package, read through
`tfds.data_source` + grain like every real tfds dataset (no TensorFlow needed). Preparing a
catalogue dataset (cifar10, mnist, ...) on first use needs TensorFlow, from the "prepare"
extra (`pip install -e ".[prepare]"`), and its download or a manually copied archive
(`manual_dir`; see `pipeline.from_tfds`).

    ds = diffjax.data.get("digits")          # or "toy2d", distribution="moons"; or "cifar10"
    ds.shape, ds.num_classes, ds.num_bins    # (8, 8, 1), 10, 17
    it = iter(ds.loader("train", 128, seed=0))
    batch = next(it)                         # {"x": float32 [128, 8, 8, 1] in [-1, 1],
                                             #  "label": int32 [128]}
    state = it.get_state()                   # resume later with it.set_state(state)
    test = ds.as_array("test")               # numpy {"x", "label"} for evaluation
"""

from diffjax.data import digits, pipeline, shapes, toy2d
from diffjax.data.pipeline import Dataset

# name -> loader(**kw) -> Dataset; any other name is looked up in the tfds catalogue
OFFLINE = {"digits": digits.load, "shapes32": shapes.load, "toy2d": toy2d.load}


def get(name: str, **kwargs) -> Dataset:
    """The Dataset `name`: "digits", "shapes32", "toy2d" or a tfds name ("mnist", "cifar10", ...).

    Args:
      name: dataset name.
      **kwargs: keywords of the loader: `digits.load`, `shapes.load`, `toy2d.load` or
        `pipeline.from_tfds` (all take `data_dir`; `from_tfds` and `shapes.load` `manual_dir`).

    Raises:
      ValueError: `name` is neither offline nor in the tfds catalogue.
      DataError: a catalogue dataset cannot be prepared (TensorFlow missing, download failed).
    """
    if name in OFFLINE:
        return OFFLINE[name](**kwargs)
    return pipeline.from_tfds(name, **kwargs)


__all__ = ["OFFLINE", "Dataset", "get"]
