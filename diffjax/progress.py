"""Progress of long work on stderr, readable wherever stderr goes.

On a terminal, a tqdm bar redrawn in place. Written to a file (CI, `nohup`, a cluster log) a
redrawn bar is thousands of carriage-return updates on one line, so there `bar` prints a plain
line per interval instead: every `every` steps when given (the training loop passes its
`log_every`), else every `seconds`, and once at the end. Only process 0 reports.

    for batch in progress.bar(batches, desc="bpd"):
        ...
    with progress.bar(total=n, desc="train", every=50) as p:
        p.update(1); p.set_postfix(loss=f"{loss:.4f}")
"""

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import jax
from tqdm import tqdm


class LineProgress:
    """The subset of tqdm's interface the library uses, printing one line per interval."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        initial: int = 0,
        every: int | None = None,
        seconds: float = 30.0,
        disable: bool = False,
        file=None,
    ):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.n = total, desc, initial
        self.every, self.seconds, self.disable = every, seconds, disable
        self.file = sys.stderr if file is None else file
        self.postfix: dict[str, Any] = {}
        self._start = self._last_time = time.perf_counter()
        self._start_n = self._last_n = initial
        self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, refresh: bool = True, **values) -> None:
        del refresh  # a line is printed at the next interval
        self.postfix.update(values)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.every is not None:
            due = self.n // self.every > (self.n - n) // self.every
        else:
            due = now - self._last_time >= self.seconds
        if due:
            self._print(now)

    def close(self) -> None:
        if not self._closed and self.n != self._last_n:
            self._print(time.perf_counter())
        self._closed = True

    def _print(self, now: float) -> None:
        self._last_time, self._last_n = now, self.n
        if self.disable:
            return
        of = f"/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
        eta = ""
        if self.total and rate > 0:
            eta = f", eta {_duration((self.total - self.n) / rate)}"
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        elapsed = _duration(now - self._start)
        print(
            f"{self.desc}: {self.n}{of} {rate:.3g} it/s, {elapsed} elapsed{eta}{extra}",
            file=self.file,
            flush=True,
        )


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    initial: int = 0,
    every: int | None = None,
    seconds: float = 30.0,
    disable: bool = False,
    note: str | None = None,
):
    """A tqdm bar if stderr is a terminal, else a `LineProgress`; disabled off process 0.

    Args:
      iterable: iterate through it, reporting one step per item (or use `update`).
      total: the number of steps (default: `len(iterable)` when it has one).
      desc: what is progressing.
      initial: steps already done (a resumed run).
      every: in a file, a line every this many steps (else every `seconds`).
      seconds: in a file, a line at most this often when `every` is None.
      disable: report nothing.
      note: a line printed once before the first report (what the run runs on).
    """
    disable = disable or jax.process_index() != 0
    if note and not disable:
        print(note, file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        return tqdm(
            iterable, total=total, desc=desc, initial=initial, disable=disable, dynamic_ncols=True
        )
    return LineProgress(
        iterable, total=total, desc=desc, initial=initial, every=every, seconds=seconds,
        disable=disable,
    )  # fmt: skip
