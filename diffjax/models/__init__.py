"""Networks by name: `diffjax.models.get(name, **kw) -> flax.linen.Module`.

Every model is called as `model(x, t, cond=None, train=False)` with x: [B, H, W, C] (or [B, D]
for vectors), t: [B] in [0, 1] (or the method's noise conditioning) or [B, K] for K times per
example (MeanFlow's (t, t - r): each column gets its own time-embedding MLP and the embeddings
are summed, see diffjax.models.layers.TimeEmbedding), cond: optional [B] labels; it returns
[B, ..., out_channels] (out_channels defaults to the input's channels).
"""

from collections.abc import Callable

import flax.linen as nn

from diffjax import _registry
from diffjax.models import autoencoder, dit, presets

_MODELS: dict[str, Callable[..., nn.Module]] = {
    **presets.PRESETS,
    **dit.PRESETS,
    **autoencoder.PRESETS,
}


def get(name: str, **kwargs) -> nn.Module:
    """The model registered as `name`, built with `kwargs`."""
    return _registry.lookup("model", _MODELS, name)(**kwargs)


def names() -> list[str]:
    return sorted(_MODELS)
