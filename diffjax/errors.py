"""Errors of a run's input that one line explains.

`python -m diffjax.main` prints the message of a `UserError` alone on stderr and exits non-zero
(the traceback only with `--verbosity=1` or higher); any other exception is a bug and keeps its
traceback. Each subclass also derives from the builtin a caller would catch without diffjax
(`ConfigError` is a ValueError), so library code and tests can keep catching those.
"""

from collections.abc import Iterator


class UserError(Exception):
    """A mistake or a state of the world that the user fixes: the message says which and how."""


class ConfigError(UserError, ValueError):
    """A config field (or a command-line flag) with a bad value; the message names the field."""


class DataError(UserError, RuntimeError):
    """A dataset that cannot be prepared or read (missing extra, missing download)."""


class WorkdirError(UserError, RuntimeError):
    """A workdir that cannot be used as asked: in use by another run, holding a run of another
    config, no readable checkpoint, or no space left to write in it."""


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """`error` and the exceptions it was raised from or while handling, outermost first: where
    a library's wrapper hides the error that explains a failure (a tensorstore ENOSPC inside an
    orbax ValueError, a missing TensorFlow inside a tfds error)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
