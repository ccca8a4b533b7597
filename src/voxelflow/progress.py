"""Progress of long steps, as the library reports it and the command line shows it.

The library's long functions take ``progress``: a callable ``progress(done, total)``, called as
the step advances (last with ``done == total``). Functions made of several steps (ingest: the
scan, then each volume's write) take a *reporter* instead: ``reporter(label, unit)`` returns the
``(done, total)`` callable of one step.

:func:`terminal_reporter` is the command line's: on a terminal one bar per step, redrawn in
place; otherwise (a log file, a pipe, CI) plain lines, at most one every few seconds per step,
so that logs are not flooded with carriage-return redraws.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Progress", "Reporter", "StepBar", "dask_progress", "terminal_reporter"]

#: ``progress(done, total)``
Progress = Callable[[int, int], None]
#: ``reporter(label, unit) -> progress``
Reporter = Callable[[str, str], Progress]

BAR_WIDTH = 30
#: A terminal bar is redrawn at most this often (seconds); the last state always shows.
REDRAW_S = 0.1
#: Without a terminal, one line per step at most this often, plus the final one.
LINE_S = 5.0


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class StepBar:
    """The ``(done, total)`` display of one step: count, rate and time left (or taken).

    A step with a second measure (a retrieval counts instances and bytes) sets ``note``, shown
    after the count.
    """

    def __init__(self, label: str, unit: str, stream: TextIO, tty: bool) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream
        self.tty = tty
        self.start = time.monotonic()
        self._last = -1e9
        self._finished = False
        self._width = 0
        self.note = ""

    def __call__(self, done: int, total: int) -> None:
        if self._finished:
            return
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not finished and now - self._last < (REDRAW_S if self.tty else LINE_S):
            return
        self._last = now
        self._finished = finished
        text = self._text(done, total, now - self.start, finished)
        try:
            if self.tty:
                pad = " " * max(0, self._width - len(text))
                self._width = len(text)
                self.stream.write(f"\r{text}{pad}" + ("\n" if finished else ""))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            self._finished = True  # the stream went away: progress is never worth an error

    def _text(self, done: int, total: int, elapsed: float, finished: bool) -> str:
        count = f"{done}/{total} {self.unit}" + (f" ({self.note})" if self.note else "")
        per_s = done / elapsed if elapsed > 0 else 0.0
        rate = f", {per_s:.0f} {self.unit}/s" if per_s >= 100 else (f", {per_s:.3g} {self.unit}/s" if done > 0 else "")
        if finished:
            when = f" in {_duration(elapsed)}"
        elif done > 0 and total > 0:
            when = f", {_duration(elapsed * (total - done) / done)} left"
        else:
            when = ""
        if not self.tty:
            return f"{self.label}: {count}{rate}{when}"
        filled = BAR_WIDTH * min(done, total) // total if total > 0 else 0
        return f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {count}{rate}{when}"


def terminal_reporter(stream: Any = None, *, quiet: bool = False) -> Reporter | None:
    """The command line's reporter on `stream` (default standard error), or None with `quiet`."""
    if quiet:
        return None
    out = sys.stderr if stream is None else stream
    try:
        tty = bool(out.isatty())
    except (AttributeError, ValueError):
        tty = False

    def reporter(label: str, unit: str) -> Progress:
        return StepBar(label, unit, out, tty)

    return reporter


@contextmanager
def dask_progress(progress: Progress | None, total: int) -> Iterator[None]:
    """Report the dask computations run inside the block as `total` units of `progress`, in
    proportion to the tasks finished (dask's local schedulers; a distributed client shows its
    own dashboard instead)."""
    if progress is None:
        yield
        return
    from dask.callbacks import Callback

    class _Tasks(Callback):  # type: ignore[misc]
        def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
            self.tasks = max(1, len(dsk))

        def _posttask(self, key: Any, result: Any, dsk: Any, state: dict[str, Any], worker_id: Any) -> None:
            done = total * len(state["finished"]) // self.tasks
            if done < total:
                progress(done, total)

    progress(0, total)
    with _Tasks():
        yield
    progress(total, total)
