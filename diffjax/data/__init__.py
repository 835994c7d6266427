"""Datasets by name: `diffjax.data.get(name, **kw) -> Dataset`.

Offline datasets (digits, toy2d) are tfds builders in this package, read through
`tfds.data_source` + grain like every real tfds dataset (no TensorFlow needed).
"""
