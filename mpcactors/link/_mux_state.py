"""Per-job and per-channel state of the multiplexer (``_mux.py``), and message buffers.

Plain mutable records owned by one :class:`~mpcactors.link._mux.Mux`; no logic beyond
allocation. Kept apart so the multiplexer's rules read on their own.
"""

from __future__ import annotations

import dataclasses
import mmap
import sys
from collections import deque
from typing import Any, Final, TypeVar

import numpy as np

from .._errors import MpcError

__all__ = ["InChannel", "JobCounters", "JobState", "OutChannel", "ReceiveMaps", "detached", "message_buffer"]

_HUGE_BYTES: Final = 4 << 20  # numpy asks for transparent huge pages from this size
RECEIVE_MAP_BYTES: Final = 128 << 20  # free receive maps a mux keeps for reuse, at most


@dataclasses.dataclass(slots=True)
class JobCounters:
    """Traffic of one job with one peer (mutable; snapshotted into statistics)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0


_E = TypeVar("_E", bound=BaseException)


def detached(error: _E) -> _E:
    """``error`` without the frames it was raised through (and those of its causes).

    A remembered error must not keep the received frame that caused it alive: its traceback
    holds the reader's locals, a chunk and the buffer of a whole frame.
    """
    e: BaseException | None = error
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__
    return error


class OutChannel:
    __slots__ = ("job", "name", "next_msg", "offset", "queue")

    def __init__(self, job: JobState, name: str) -> None:
        self.job = job
        self.name = name
        self.queue: deque[tuple[int, memoryview]] = deque()  # (msg number, payload)
        self.next_msg = 0
        self.offset = 0  # bytes of queue[0] already packed


class InChannel:
    __slots__ = ("got", "messages", "next_msg", "partial", "waiting")

    def __init__(self) -> None:
        self.messages: deque[memoryview] = deque()  # complete, writable, unread
        self.next_msg = 0
        self.partial: memoryview | None = None
        self.got = 0
        self.waiting = 0  # receivers blocked on this channel


class JobState:
    __slots__ = (
        "backlog",
        "closed",
        "counters",
        "drain_first",
        "error",
        "first_seen",
        "granted",
        "inb",
        "limit",
        "name",
        "opened",
        "out",
        "received",
        "sent",
        "starved",
        "taken",
    )  # fmt: skip

    def __init__(self, name: str, window: int) -> None:
        self.name = name
        self.opened = False
        self.first_seen = 0.0
        self.error: MpcError | None = None  # set once the job ended (None: live)
        self.drain_first = False  # deliver buffered messages before raising error
        self.closed = False  # closed locally; kept only until its queued sends are packed
        self.out: dict[str, OutChannel] = {}
        self.sent = 0  # cumulative bytes charged for what we packed (see the module doc)
        self.limit = -1  # cumulative credit from the peer; -1: the peer's initial window
        self.backlog = 0  # bytes queued, not yet packed
        self.inb: dict[str, InChannel] = {}
        self.received = 0  # cumulative bytes charged for what the peer sent
        self.taken = 0  # cumulative charged bytes released (read, dropped)
        self.granted = window  # cumulative limit granted to the peer
        self.starved: set[str] = set()  # channels with a blocked receiver and no message
        self.counters = JobCounters()


class ReceiveMaps:
    """Anonymous maps (small pages) for incoming messages of at least 4 MiB, reused.

    Numpy asks for transparent huge pages at that size, and a huge page's first touch may stall
    for compaction (measured: up to 23 ms to fill 256 KiB on a 2-core VM) in the middle of the
    reader's turn; a fresh map of small pages costs ~0.5 ms per 256 KiB of page faults, evenly,
    but over every byte of every message (two-party ``mul`` 10^6 without a dealer, 26 rounds of
    32 MB: 1.1 M page faults and 3.6-4.1 s of system CPU; reused, 0.7 M and 1.7-2.2 s). So a
    map whose message nobody reads any more is reused: the arrays a reader decodes
    are views that keep the map referenced, and a map that only this pool refers to (CPython's
    reference count) is free. A message takes a free map of at most 5/4 of its size; at most
    ``keep_bytes`` of maps are kept, and :meth:`release` drops the free ones (no job is live).
    """

    def __init__(self, keep_bytes: int = RECEIVE_MAP_BYTES) -> None:
        self.keep_bytes = keep_bytes
        self._maps: list[mmap.mmap] = []

    def _free(self, i: int) -> bool:
        return sys.getrefcount(self._maps[i]) == 2  # the list's reference and the argument's

    def take(self, total: int) -> memoryview:
        """A buffer of ``total`` bytes: a free map's first ``total`` bytes, or a new map."""
        best = -1
        sizes = [len(m) for m in self._maps]  # indices only below: a loop variable would count
        for i, size in enumerate(sizes):
            if total <= size <= total + total // 4 and (best < 0 or size < sizes[best]) and self._free(i):
                best = i
        if best >= 0:
            return memoryview(self._maps[best])[:total]
        fresh = mmap.mmap(-1, total)
        held = sum(len(m) for m in self._maps)
        for i in reversed(range(len(self._maps))):
            if held + total <= self.keep_bytes:
                break
            if self._free(i):
                held -= len(self._maps.pop(i))
        if held + total <= self.keep_bytes:
            self._maps.append(fresh)
        return memoryview(fresh)

    def release(self) -> None:
        """Drop the free maps (the ones in use leave the pool when their readers drop them)."""
        self._maps = [self._maps[i] for i in range(len(self._maps)) if not self._free(i)]

    def held_bytes(self) -> int:
        """Bytes of the maps in the pool, free or in use."""
        return sum(len(m) for m in self._maps)


def message_buffer(total: int, first: memoryview | bytes, maps: ReceiveMaps | None = None) -> memoryview:
    """A writable buffer for a message of ``total`` bytes whose first chunk is ``first``.

    Small messages start as a copy of a complete first chunk; bigger ones are allocated
    uninitialised (a zero-filled bytearray would touch every page twice) and filled by the
    caller; from 4 MiB they are anonymous maps, from ``maps`` when given (:class:`ReceiveMaps`).
    """
    if total < 1 << 16:
        return memoryview(bytearray(first if len(first) == total else total))
    if total < _HUGE_BYTES:
        raw: Any = np.empty(total, dtype=np.uint8)
        return memoryview(raw).cast("B")
    if maps is not None:
        return maps.take(total)
    return memoryview(mmap.mmap(-1, total))
