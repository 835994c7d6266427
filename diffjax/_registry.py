"""Lookup in the static name -> constructor tables that every registry of diffjax uses."""

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(kind: str, table: Mapping[str, T], name: str) -> T:
    """Returns `table[name]`, or raises a ValueError naming every valid choice.

    Args:
      kind: what the table holds ("method", "sampler", ...), for the error message.
      table: the static mapping of names.
      name: the name a config or a user typed.

    Raises:
      ValueError: if `name` is not in `table`.
    """
    try:
        return table[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(table))
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {valid}") from None
