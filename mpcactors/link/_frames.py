"""Sans-IO frame codec: frames are values, the wire is ``u32 length | body``.

Theory of operation
-------------------
Every frame on a link is::

    u32 BE body length | u32 BE header length | msgpack header | tail

The msgpack header is ``[kind, field, ...]``; only DATA has a tail, the concatenated chunk bytes
of its entries (each entry's header records its length). Keeping bulk bytes out of msgpack lets
:func:`encode_frame` return a list of buffers (header bytes plus memoryviews of the payloads)
that the caller joins once, and lets :class:`FrameDecoder` hand out chunk data as zero-copy
memoryviews of the received body.

:class:`FrameDecoder` is h11-style: ``receive_data(bytes)`` buffers, ``next_frame()`` returns a
frame or :data:`NEED_DATA`. A body length over ``max_frame_bytes`` raises
:class:`~mpcactors.ProtocolError` as soon as the 4-byte prefix is seen, before any of the body is
buffered; a body is assembled in one preallocated buffer of exactly the announced size. Garbage,
truncated or inconsistent bodies raise ProtocolError too. The decoder is poisoned after an error.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections import deque
from typing import Any, Final

import msgpack

from .._errors import ProtocolError

__all__ = [
    "NEED_DATA",
    "Ack",
    "Chunk",
    "Close",
    "Credit",
    "Data",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "Hello",
    "JobAbort",
    "Ping",
    "Pong",
    "encode_frame",
]

_PREFIX = struct.Struct(">II")
DIRECT_BODY_BYTES: Final = 1 << 16  # frames at least this large are received in place
SCRATCH_BYTES: Final = 1 << 18
_COALESCE: Final = 1 << 15  # encode_frame joins runs of smaller pieces into one buffer
#: Bytes of framing before the msgpack header.
PREFIX_BYTES: Final = _PREFIX.size
#: Most chunks in one DATA frame (bounds the CPU time and memory one frame costs either side).
MAX_FRAME_CHUNKS: Final = 2048
#: Longest job or channel name on the wire.
MAX_NAME_CHARS: Final = 1024
_MAX_TEXT_CHARS: Final = 1 << 16  # longest other string field (a reason)


class FrameKind(enum.IntEnum):
    """Wire code of each frame kind."""

    HELLO = 1  # handshake: who I am, which cluster, what I already received from you
    DATA = 2  # a batch of message chunks of any jobs and channels, with a sequence number
    ACK = 3  # cumulative: every DATA frame up to seq arrived
    CREDIT = 4  # cumulative flow-control limit of one job's bytes
    PING = 5  # liveness and RTT probe
    PONG = 6  # echo of a PING's timestamp
    JOB_ABORT = 7  # a party aborted a job; every receive of it fails
    CLOSE = 8  # orderly goodbye (or a refused handshake, with the reason)


@dataclasses.dataclass(frozen=True, slots=True)
class Hello:
    party: str
    cluster: str
    version: int
    session_id: str
    peer_session_id: str  # the peer session recv_seq refers to ("" if none yet)
    recv_seq: int  # last DATA seq received in order from that peer session
    job_window: int  # the byte window this party grants every job initially


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of one message: bytes ``offset:offset+len(data)`` of ``total``."""

    job: str
    channel: str
    msg: int  # per (job, channel) message number, from 0
    offset: int
    total: int
    data: bytes | memoryview


@dataclasses.dataclass(frozen=True, slots=True)
class Data:
    seq: int
    ack: int  # piggybacked cumulative ACK
    chunks: tuple[Chunk, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class Credit:
    job: str
    limit: int  # cumulative bytes of the job the sender may have sent in total


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    t: float


@dataclasses.dataclass(frozen=True, slots=True)
class Pong:
    t: float


@dataclasses.dataclass(frozen=True, slots=True)
class JobAbort:
    job: str
    party: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    reason: str


Frame = Hello | Data | Ack | Credit | Ping | Pong | JobAbort | Close

_KIND_OF: dict[type, FrameKind] = {
    Hello: FrameKind.HELLO,
    Data: FrameKind.DATA,
    Ack: FrameKind.ACK,
    Credit: FrameKind.CREDIT,
    Ping: FrameKind.PING,
    Pong: FrameKind.PONG,
    JobAbort: FrameKind.JOB_ABORT,
    Close: FrameKind.CLOSE,
}
# Field types of the simple frames, in order, for validation on decode.
_FIELDS: dict[FrameKind, tuple[type, tuple[type | tuple[type, ...], ...]]] = {
    FrameKind.HELLO: (Hello, (str, str, int, str, str, int, int)),
    FrameKind.ACK: (Ack, (int,)),
    FrameKind.CREDIT: (Credit, (str, int)),
    FrameKind.PING: (Ping, ((int, float),)),
    FrameKind.PONG: (Pong, ((int, float),)),
    FrameKind.JOB_ABORT: (JobAbort, (str, str, str)),
    FrameKind.CLOSE: (Close, (str,)),
}
_FIELD_NAMES: dict[FrameKind, tuple[str, ...]] = {
    kind: tuple(f.name for f in dataclasses.fields(cls)) for kind, (cls, _) in _FIELDS.items()
}


def encode_frame(frame: Frame) -> list[bytes | memoryview]:
    """Encode a frame as a list of buffers to be written in order (join them or send each).

    Args:
        frame: any frame value.

    Returns:
        Buffers to write in order: runs of small pieces are joined, large chunk data are
        memoryviews of the payloads (not copied).
    """
    kind = _KIND_OF[type(frame)]
    tail: list[bytes | memoryview] = []
    if isinstance(frame, Data):
        entries = []
        for c in frame.chunks:
            entries.append((c.job, c.channel, c.msg, c.offset, c.total, len(c.data)))
            tail.append(c.data)
        header = msgpack.packb((kind, frame.seq, frame.ack, entries))
        tail_len = sum(len(t) for t in tail)
    else:
        header = msgpack.packb((kind, *[getattr(frame, f) for f in _FIELD_NAMES[kind]]))
        tail_len = 0
    body_len = 4 + len(header) + tail_len
    out: list[bytes | memoryview] = []
    run: list[bytes | memoryview] = [_PREFIX.pack(body_len, len(header)), header]
    for piece in tail:
        if len(piece) >= _COALESCE:
            out.append(b"".join(run))
            out.append(piece)
            run = []
        else:
            run.append(piece)
    if run:
        out.append(b"".join(run))
    return out


def frame_bytes(frame: Frame) -> bytes:
    """:func:`encode_frame` joined into one bytes object."""
    return b"".join(encode_frame(frame))


def _bad(msg: str) -> ProtocolError:
    return ProtocolError(f"malformed frame: {msg}")


def _is(value: Any, typ: type | tuple[type, ...]) -> bool:
    return isinstance(value, typ) and not isinstance(value, bool)


def decode_body(body: bytes | bytearray | memoryview) -> Frame:
    """Decode one frame body (everything after the 4-byte length prefix).

    Raises:
        ProtocolError: the body is not a well-formed frame.
    """
    mv = memoryview(body)
    if len(mv) < 4:
        raise _bad(f"body of {len(mv)} bytes")
    (hlen,) = struct.unpack_from(">I", mv, 0)
    if hlen > len(mv) - 4:
        raise _bad(f"header length {hlen} exceeds body of {len(mv)} bytes")
    limit = hlen
    try:
        header = msgpack.unpackb(
            mv[4 : 4 + hlen],
            use_list=True,
            raw=False,
            max_str_len=limit,
            max_bin_len=0,
            max_array_len=min(limit, MAX_FRAME_CHUNKS),  # DATA entries, the longest array
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise _bad(f"{type(exc).__name__}: {exc}"[:200]) from None
    if not isinstance(header, list) or not header or not _is(header[0], int):
        raise _bad(f"header {header!r:.80}")
    try:
        kind = FrameKind(header[0])
    except ValueError:
        raise _bad(f"unknown frame kind {header[0]!r}") from None
    tail = mv[4 + hlen :]
    if kind is FrameKind.DATA:
        return _decode_data(header, tail)
    if len(tail):
        raise _bad(f"{kind.name} frame with {len(tail)} trailing bytes")
    cls, types = _FIELDS[kind]
    fields = header[1:]
    if len(fields) != len(types) or not all(_is(v, t) for v, t in zip(fields, types)):
        raise _bad(f"{kind.name} fields {fields!r:.120}")
    if any(_is(v, int) and v < 0 for v in fields):
        raise _bad(f"{kind.name} with a negative field {fields!r:.120}")
    if any(isinstance(v, str) and len(v) > _MAX_TEXT_CHARS for v in fields) or (
        kind in (FrameKind.CREDIT, FrameKind.JOB_ABORT) and len(fields[0]) > MAX_NAME_CHARS
    ):
        raise _bad(f"{kind.name} with an overlong string field {fields!r:.120}")
    return cls(*fields)


def _decode_data(header: list[Any], tail: memoryview) -> Data:
    if len(header) != 4:
        raise _bad(f"DATA header of {len(header)} items")
    _, seq, ack, entries = header
    if not (_is(seq, int) and _is(ack, int) and seq > 0 and ack >= 0 and isinstance(entries, list)):
        raise _bad(f"DATA seq={seq!r} ack={ack!r}")
    chunks: list[Chunk] = []
    append = chunks.append
    pos = 0
    ntail = len(tail)
    for e in entries:
        try:
            job, channel, msg, offset, total, length = e
        except (TypeError, ValueError):
            raise _bad(f"DATA entry {e!r:.80}") from None
        if type(job) is not str or type(channel) is not str or (
            len(job) > MAX_NAME_CHARS or len(channel) > MAX_NAME_CHARS
        ):
            raise _bad(f"DATA entry address {job!r:.40}/{channel!r:.40}")
        if type(msg) is not int or type(offset) is not int or type(total) is not int or (
            type(length) is not int
        ):
            raise _bad(f"DATA entry numbers {e[2:]!r}")
        end = pos + length
        if msg < 0 or offset < 0 or length < 0 or offset + length > total or end > ntail:
            raise _bad(
                f"DATA entry range msg={msg} offset={offset} len={length} total={total} "
                f"at {pos} of {ntail} tail bytes"
            )
        append(Chunk(job, channel, msg, offset, total, tail[pos:end]))
        pos = end
    if pos != len(tail):
        raise _bad(f"DATA frame with {len(tail) - pos} stray tail bytes")
    return Data(seq, ack, tuple(chunks))


class _NeedData:
    """Sentinel returned by :meth:`FrameDecoder.next_frame` when more bytes are needed."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


class FrameDecoder:
    """Incremental frame parser (sans-IO).

    Args:
        max_frame_bytes: largest body accepted; a larger announced length raises ProtocolError
            before any of the body is buffered.
        reuse_buffers: receive large bodies (see :meth:`get_buffer`) into one buffer reused
            from frame to frame. A frame returned by :meth:`next_frame` (its chunk data) is then
            valid only until the next call; the session's caller copies chunks out at once.
    """

    def __init__(self, max_frame_bytes: int, *, reuse_buffers: bool = False) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._reuse = reuse_buffers
        self._pool: bytearray | None = None
        self._chunks: deque[memoryview] = deque()
        self._size = 0
        self._body_len = -1  # length of the body being assembled, -1 if waiting for a prefix
        self._body: memoryview | None = None  # a large body received in place (get_buffer)
        self._filled = 0
        self._scratch: bytearray | None = None
        self._poisoned: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return self._size

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer received bytes (a bytes object is kept without copying)."""
        if not data:
            return
        mv = memoryview(data if isinstance(data, bytes) else bytes(data))
        if self._body is not None:
            take = min(len(mv), self._body_len - self._filled)
            self._body[self._filled : self._filled + take] = mv[:take]
            self._filled += take
            mv = mv[take:]
            if not mv:
                return
        self._chunks.append(mv)
        self._size += len(mv)

    def get_buffer(self) -> memoryview:
        """Where the next received bytes should go (like ``asyncio.BufferedProtocol``).

        Once a large frame's length is known this is the rest of its body, so a transport with
        ``recv_into`` fills it in place (no copy); otherwise it is scratch space. Call
        :meth:`buffer_updated` with the number of bytes written.
        """
        if self._body_len >= DIRECT_BODY_BYTES:
            if self._body is None:
                if not self._reuse:
                    body = memoryview(bytearray(self._body_len))
                else:
                    if self._pool is None or len(self._pool) < self._body_len:
                        self._pool = bytearray(self._body_len)
                    body = memoryview(self._pool)[: self._body_len]
                have = min(self._size, self._body_len)
                if have:
                    body[:have] = self._take(have)
                self._body, self._filled = body, have
            return self._body[self._filled :]
        if self._scratch is None:
            self._scratch = bytearray(SCRATCH_BYTES)
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written into the last :meth:`get_buffer`."""
        if self._body is not None:
            self._filled += nbytes
        elif nbytes:
            assert self._scratch is not None  # get_buffer made it; narrows the type only
            self.receive_data(bytes(memoryview(self._scratch)[:nbytes]))

    def next_frame(self) -> Frame | _NeedData:
        """Return the next complete frame, or :data:`NEED_DATA`.

        Raises:
            ProtocolError: oversized, garbage or truncated frame (the decoder stays poisoned).
        """
        if self._poisoned is not None:
            raise self._poisoned
        try:
            if self._body_len < 0:
                if self._size < 4:
                    return NEED_DATA
                (n,) = struct.unpack(">I", self._take(4))
                if n > self.max_frame_bytes:
                    raise ProtocolError(
                        f"frame of {n} bytes exceeds max_frame_bytes={self.max_frame_bytes}"
                    )
                self._body_len = n
            if self._body is not None:
                if self._filled < self._body_len:
                    return NEED_DATA
                body = self._body
                self._body = None
            elif self._size < self._body_len:
                return NEED_DATA
            else:
                body = self._take(self._body_len)
            self._body_len = -1
            return decode_body(body)
        except ProtocolError as exc:
            self._poisoned = exc
            self._body = None
            self._chunks.clear()
            self._size = 0
            raise

    def _take(self, n: int) -> memoryview:
        first = self._chunks[0]
        if len(first) >= n:  # common case: zero copy
            if len(first) == n:
                self._chunks.popleft()
            else:
                self._chunks[0] = first[n:]
            self._size -= n
            return first[:n]
        out = bytearray(n)
        pos = 0
        while pos < n:
            piece = self._chunks[0]
            take = min(len(piece), n - pos)
            out[pos : pos + take] = piece[:take]
            pos += take
            if take == len(piece):
                self._chunks.popleft()
            else:
                self._chunks[0] = piece[take:]
        self._size -= n
        return memoryview(out)
