"""The user errors and the exception chains they are recognised in."""

import errno

import pytest

from diffjax import errors
from diffjax.train import loop


def test_user_errors_are_the_builtins_callers_catch():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.DataError, RuntimeError)
    assert issubclass(errors.WorkdirError, RuntimeError)
    assert issubclass(loop.NonFiniteLossError, errors.UserError)
    assert issubclass(loop.NonFiniteLossError, FloatingPointError)


def _raise_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise ValueError("RESOURCE_EXHAUSTED: Error writing") from inner
    except ValueError:
        raise RuntimeError("Event loop is closed")  # noqa: B904  (implicit context)


def test_causes_walk_explicit_and_implicit_chains_once():
    with pytest.raises(RuntimeError) as e:
        _raise_chain()
    chain = list(errors.causes(e.value))
    assert [type(c) for c in chain] == [RuntimeError, ValueError, OSError]
    looped = ValueError("a")
    looped.__context__ = KeyError("b")
    looped.__context__.__context__ = looped
    assert [type(c) for c in errors.causes(looped)] == [ValueError, KeyError]


def test_a_full_disk_is_recognised_inside_orbax_and_tensorstore_errors():
    with pytest.raises(RuntimeError) as e:
        _raise_chain()
    assert loop._disk_full(e.value)
    # tensorstore reports it only in the text of a ValueError
    assert loop._disk_full(
        ValueError("Failed to write 1493293 bytes to file 11: No space left on device")
    )
    assert not loop._disk_full(ValueError("RESOURCE_EXHAUSTED: out of memory"))
