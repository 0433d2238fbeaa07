"""A node-wide bound on the memory that op steps in worker threads may use at once.

Theory of operation
-------------------
Threads bound how many big steps compute at once; they do not bound how much memory those steps
touch. Two jobs whose steps each build gigabytes of temporaries would, at once, need the sum.
:class:`MemoryBudget` is a byte-weighted semaphore: before a step computes in a worker thread
it holds its estimated working memory (``OpNode.cost`` elements x :data:`BYTES_PER_ELEMENT`,
capped at the whole budget so an over-sized step still runs, alone) and gives it back when the
thread returns. Waiters are served first come, first served, so a big step is not starved by a
stream of small ones.

The budget is held only while a step computes, never while an op waits for a peer's message:
parties may admit steps in different orders, and a step that waited for a peer while holding
memory could deadlock two jobs across parties. So the bound covers what steps compute at once,
not the generators' state between exchanges (that is bounded by the job windows of the link).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Final

import anyio

__all__ = ["BYTES_PER_ELEMENT", "MemoryBudget", "default_budget_bytes"]

# Working memory of a step per element of its inputs and output (OpNode.cost), an estimate:
# measured with tracemalloc on 10^6 elements, a product peaks at ~30 bytes per element at each
# party, a comparison at 60-90; rep3 holds two words per share.
BYTES_PER_ELEMENT: Final = 64


def default_budget_bytes() -> int:
    """Half of the machine's physical memory (1 GiB when the OS does not say)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 30
    return max(total // 2, 1 << 26)


class MemoryBudget:
    """Bytes that worker-thread steps may hold at once, first come, first served.

    Args:
        limit_bytes: the bound; a request larger than it is capped to it (runs alone).

    Raises:
        ValueError: ``limit_bytes`` is not positive.
    """

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"a memory budget must be positive, not {limit_bytes!r}")
        self.limit = limit_bytes
        self.held = 0
        self.peak = 0  # the most bytes held at once
        self.waits = 0  # requests that had to wait for others to finish
        self._queue: collections.deque[tuple[int, anyio.Event]] = collections.deque()

    def _grant_waiters(self) -> None:
        while self._queue:
            n, event = self._queue[0]
            if self.held + n > self.limit and self.held > 0:
                return
            self._queue.popleft()
            self._take(n)
            event.set()

    def _take(self, n: int) -> None:
        self.held += n
        self.peak = max(self.peak, self.held)

    def _give(self, n: int) -> None:
        self.held -= n
        self._grant_waiters()

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[int]:
        """Hold ``min(nbytes, limit)`` bytes for the body; yields the bytes held.

        Waits (cancellably) while the bytes do not fit beside what others hold, or while
        earlier requests wait.
        """
        n = max(0, min(int(nbytes), self.limit))
        if not self._queue and (self.held + n <= self.limit or self.held == 0):
            self._take(n)
        else:
            self.waits += 1
            event = anyio.Event()
            entry = (n, event)
            self._queue.append(entry)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():  # granted just as we were cancelled: give it back
                    self._give(n)
                else:
                    self._queue.remove(entry)
                    self._grant_waiters()  # a big request leaving may let smaller ones in
                raise
        try:
            yield n
        finally:
            self._give(n)
