"""Shared-memory lanes for the relay between a shard's worker process and its parent.

Theory of operation
-------------------
A shard process (:mod:`._shards`) and its parent exchange one message per round over a pipe:
the parent forwards the peer's payloads, the shard answers with its next ``Exchange``. Pickled
through the pipe, a 4 MiB array cost ~8 ms of CPU per round trip in each process (pickle, two
kernel copies in small pieces, unpickle): ~0.5 CPU s per party of a 2^20-id KKRT job, a tenth of
its CPU time. A *lane* is a shared-memory segment that one side writes and the other reads: the
writer copies each big array of a message into it and pickles only a reference (offset, dtype,
shape); the reader copies the arrays out as soon as the message arrives.

The relay strictly alternates (a side writes its next message only after it has read the
other side's), so a reader has always copied a message's arrays out before the writer touches
the lane again: one lane per direction, no locks. Small arrays, arrays of other kinds and arrays
that do not fit travel pickled as before, so lanes change speed, never results. The parent
creates and unlinks both segments, and only when ``/dev/shm`` has room for them (a container's
small ``/dev/shm`` would fault on the first touch of a page it cannot back); otherwise the
relay just pickles.
"""

from __future__ import annotations

import dataclasses
import os
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from ..ops._comm import Exchange

__all__ = ["LANE_BYTES", "MIN_ARRAY_BYTES", "Lane", "LaneNames", "ShardLanes"]

LANE_BYTES = 8 << 20  # per direction: a KKRT chunk's U (4 MiB) or the sender's values fit
MIN_ARRAY_BYTES = 64 << 10  # smaller arrays are cheaper to pickle than to look up
_ALIGN = 64
_SHM_DIR = "/dev/shm"


@dataclasses.dataclass(frozen=True, slots=True)
class LaneNames:
    """What a shard process needs to attach to its lanes (picklable)."""

    to_child: str
    to_parent: str
    min_bytes: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Ref:
    """An array of a message that waits in the lane: where, and as what."""

    offset: int
    dtype: str
    shape: tuple[int, ...]


class Lane:
    """One direction of the relay over one segment: the writer packs, the reader unpacks."""

    def __init__(self, shm: shared_memory.SharedMemory, min_bytes: int) -> None:
        self.shm = shm
        self._buf = np.ndarray((shm.size,), dtype=np.uint8, buffer=shm.buf)
        self._min = min_bytes

    def pack(self, msg: Any) -> Any:
        """``msg`` with its big numeric arrays copied into the lane and replaced by references."""
        used = [0]
        return self._pack(msg, used)

    def _pack(self, x: Any, used: list[int]) -> Any:
        if isinstance(x, np.ndarray):
            n = x.nbytes
            if n < self._min or used[0] + n > self._buf.size or x.dtype.kind not in "biuf":
                return x
            off = used[0]
            np.copyto(self._buf[off : off + n].view(x.dtype).reshape(x.shape), x)
            used[0] = off + -(-n // _ALIGN) * _ALIGN
            return _Ref(off, x.dtype.str, tuple(x.shape))
        if isinstance(x, Exchange):
            return Exchange(send={k: self._pack(v, used) for k, v in x.send.items()}, recv=x.recv)
        if isinstance(x, dict):
            return {k: self._pack(v, used) for k, v in x.items()}
        if isinstance(x, tuple):
            return tuple(self._pack(v, used) for v in x)
        return x

    def unpack(self, msg: Any) -> Any:
        """The inverse of :meth:`pack`: every reference becomes a new array (copied out)."""
        if isinstance(msg, _Ref):
            dtype = np.dtype(msg.dtype)
            n = int(np.prod(msg.shape, dtype=np.int64)) * dtype.itemsize
            return self._buf[msg.offset : msg.offset + n].view(dtype).reshape(msg.shape).copy()
        if isinstance(msg, Exchange):
            return Exchange(send={k: self.unpack(v) for k, v in msg.send.items()}, recv=msg.recv)
        if isinstance(msg, dict):
            return {k: self.unpack(v) for k, v in msg.items()}
        if isinstance(msg, tuple):
            return tuple(self.unpack(v) for v in msg)
        return msg

    def close(self) -> None:
        """Unmap the segment. A thread the relay abandoned on cancellation may still hold a view
        of it; then the mapping stays until that view is gone (mmap refuses to close under an
        exported buffer), rather than vanish under the thread."""
        self._buf = np.empty(0, dtype=np.uint8)  # (drop our own view first)
        try:
            self.shm.close()
        except BufferError:
            pass


class ShardLanes:
    """Both lanes of one shard: :meth:`create` in the parent, :meth:`attach` in the shard."""

    def __init__(self, to_child: Lane, to_parent: Lane, *, owner: bool) -> None:
        self.to_child = to_child
        self.to_parent = to_parent
        self._owner = owner

    @classmethod
    def create(cls, size: int = LANE_BYTES, min_bytes: int = MIN_ARRAY_BYTES) -> ShardLanes | None:
        """Two new segments of ``size`` bytes, or None when shared memory has no room for them."""
        try:
            st = os.statvfs(_SHM_DIR)
        except OSError:
            return None
        if st.f_bavail * st.f_frsize < 8 * size:  # keep room for the other shards and jobs
            return None
        made: list[shared_memory.SharedMemory] = []
        try:
            for _ in range(2):
                made.append(shared_memory.SharedMemory(create=True, size=size))
        except OSError:
            for shm in made:
                shm.close()
                shm.unlink()
            return None
        return cls(Lane(made[0], min_bytes), Lane(made[1], min_bytes), owner=True)

    @classmethod
    def attach(cls, names: LaneNames) -> ShardLanes:
        """The shard process's side of the parent's lanes."""
        return cls(Lane(shared_memory.SharedMemory(name=names.to_child), names.min_bytes),
                   Lane(shared_memory.SharedMemory(name=names.to_parent), names.min_bytes), owner=False)

    @property
    def names(self) -> LaneNames:
        return LaneNames(self.to_child.shm.name, self.to_parent.shm.name, self.to_child._min)

    def close(self) -> None:
        """Unmap both lanes (and, in the parent, remove the segments)."""
        for lane in (self.to_child, self.to_parent):
            lane.close()
            if self._owner:
                try:
                    lane.shm.unlink()
                except FileNotFoundError:
                    pass
