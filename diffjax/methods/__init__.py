"""Methods by name: `diffjax.methods.get(name)(**options) -> Recipe`.

Each method of the seeds is one file in this package exposing a builder that validates its
keyword options and returns a `Recipe`.
"""

from collections.abc import Callable

from diffjax import _registry
from diffjax.methods.base import Recipe

_METHODS: dict[str, Callable[..., Recipe]] = {}


def get(name: str) -> Callable[..., Recipe]:
    """The builder of the method registered as `name`; unknown names list the valid ones."""
    return _registry.lookup("method", _METHODS, name)


def names() -> list[str]:
    return sorted(_METHODS)
