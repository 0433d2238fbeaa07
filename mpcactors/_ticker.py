"""Progress lines when nobody watches a terminal: a thread that prints a line every few seconds.

Off a terminal (a log file, CI, ``nohup``) live progress bars print nothing until the end, so a
long PSI job or the demo looks hung. :class:`Ticker` calls ``line()`` every ``every_s`` seconds
on a thread of its own (so it ticks even while the event loop is busy) and prints the result to
stderr, and logs it as a structlog ``progress`` event for JSON consumers.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, Self, TextIO

from ._log import get_logger

__all__ = ["Ticker", "is_terminal"]


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Ticker:
    """Print ``line()`` every ``every_s`` seconds while the context is open (not on a TTY)."""

    def __init__(self, line: Callable[[], str], *, every_s: float = 5.0, stream: TextIO | None = None, **log: Any) -> None:
        self._line = line
        self._every = every_s
        self._stream = stream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = get_logger(**log)

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="mpcactors-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            text = self._line()
            stream = self._stream if self._stream is not None else sys.stderr
            print(text, file=stream, flush=True)
            self._log.info("progress", line=text)
