"""Payload codec and frame codec: round-trips, and hostile input raising ProtocolError."""

from __future__ import annotations

import struct
import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcactors import ProtocolError
from mpcactors.link import DTYPES, decode_payload, encode_payload
from mpcactors.link._frames import (
    NEED_DATA,
    Ack,
    Chunk,
    Close,
    Credit,
    Data,
    FrameDecoder,
    Hello,
    JobAbort,
    Ping,
    Pong,
    frame_bytes,
)

MAX = 1 << 24

arrays = st.sampled_from(sorted(DTYPES)).flatmap(
    lambda code: hnp.arrays(
        DTYPES[code],
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
scalars = st.sampled_from(sorted(DTYPES)).flatmap(
    lambda code: hnp.from_dtype(DTYPES[code]).map(lambda v: np.asarray(v, DTYPES[code])[()])
)
leaves = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=40)
    | arrays | scalars
)  # fmt: skip
keys = st.text(max_size=8) | st.integers(-5, 5) | st.tuples(st.integers(0, 3), st.text(max_size=3))
payloads = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )  # fmt: skip
    if isinstance(a, np.generic):
        return type(a) is type(b) and a.tobytes() == b.tobytes()  # type: ignore[union-attr]
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_payload_round_trip(obj: object) -> None:
    data = encode_payload(obj)
    assert same(obj, decode_payload(bytearray(data), max_bytes=MAX))
    assert same(obj, decode_payload(data, max_bytes=MAX))


@pytest.mark.parametrize("code", sorted(DTYPES))
def test_every_dtype_0d_empty_and_strided(code: str) -> None:
    dt = DTYPES[code]
    base = np.arange(24).astype(dt).reshape(4, 6)
    for arr in (base, base[:, ::2], base.T, np.asarray(base[1, 1]), np.zeros((0, 3), dt),
                base.astype(dt.newbyteorder(">"))):  # fmt: skip
        out = decode_payload(bytearray(encode_payload(arr)), max_bytes=MAX)
        assert out.dtype == dt and out.shape == arr.shape and np.array_equal(out, arr)
        assert out.flags.writeable


def test_large_array_is_zero_copy_on_decode() -> None:
    arr = np.arange(1 << 20, dtype=np.uint64)
    buf = bytearray(encode_payload({"a": arr}))
    out = decode_payload(buf, max_bytes=MAX)["a"]
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    assert out.ctypes.data % 8 == 0


@pytest.mark.parametrize(
    "bad",
    [np.array([object()], dtype=object), {1, 2}, np.array(["a"]), np.datetime64("2020"),
     np.ma.masked_array([1]), 2**70, object()],
)
def test_encode_rejects_unsupported(bad: object) -> None:
    with pytest.raises(TypeError):
        encode_payload(bad)


def _payload(doc: bytes, raw: bytes = b"") -> bytes:
    head = struct.pack(">I", len(doc)) + doc
    if raw:
        head += bytes(-len(head) % 16) + raw
    return head


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",
        b"\xff\xff\xff\xff",  # header longer than the payload
        _payload(b"\xc1"),  # msgpack never-used byte
        _payload(b"\x92\x01"),  # truncated array
        _payload(b"\x01\x02"),  # extra data
        _payload(msgpack.packb(msgpack.ExtType(42, b"x"))),  # unknown extension type
        _payload(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["O", [1], 0]))), b"x" * 8),
        _payload(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["V8", [1], 0]))), b"x" * 8),
        _payload(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["f8", [2**40, 2**40], 0])))),
        _payload(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["f8", [-1], 0]))), b"x" * 8),
        _payload(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["u1", [1] * 33, 0]))), b"x"),
        _payload(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["u1", [4], 16]))), b"x" * 32),
        _payload(msgpack.packb(msgpack.ExtType(1, msgpack.packb(["u1", [4], 0]))), b"x" * 32),
        _payload(msgpack.packb(msgpack.ExtType(2, msgpack.packb(["f8", b"abc"])))),
        _payload(msgpack.packb(msgpack.ExtType(3, msgpack.packb(5)))),
        _payload(b"\xdd\xff\xff\xff\xff"),  # array claiming 4G elements
        _payload(b"\xdf\xff\xff\xff\xff"),  # map claiming 4G entries
        _payload(b"\xc6\xff\xff\xff\xff"),  # bin claiming 4 GB
        _payload(b"\x81\x90\x01"),  # unhashable map key
        _payload(b"\x91" * 100_000 + b"\x01"),  # nesting bomb
    ],
)
def test_decode_rejects_hostile_payloads(data: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decode_payload(bytearray(data), max_bytes=MAX)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + (1 << 20)


def test_decode_rejects_oversized_payload() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_payload(encode_payload(b"x" * 100), max_bytes=50)


def test_nested_tuples_bomb_is_rejected() -> None:
    inner = msgpack.packb(1)
    for _ in range(200):
        inner = msgpack.packb(msgpack.ExtType(3, msgpack.packb([msgpack.ExtType(3, inner)])))
    with pytest.raises(ProtocolError):
        decode_payload(_payload(inner), max_bytes=MAX)


# ---- frames ----------------------------------------------------------------------------------

names = st.text(max_size=12)
u63 = st.integers(0, 2**63 - 1)
chunks = st.builds(
    lambda job, ch, msg, data, pre: Chunk(job, ch, msg, pre, pre + len(data) + 3, data),
    names, names, u63, st.binary(max_size=64), st.integers(0, 1000),
)  # fmt: skip
frames = st.one_of(
    st.builds(Hello, names, names, u63, names, names, u63, st.integers(1, 2**40)),
    st.builds(Data, st.integers(1, 2**63 - 1), u63, st.lists(chunks, max_size=5).map(tuple)),
    st.builds(Ack, u63),
    st.builds(Credit, names, u63),
    st.builds(Ping, st.floats(0, 1e9)),
    st.builds(Pong, st.floats(0, 1e9)),
    st.builds(JobAbort, names, names, st.text(max_size=40)),
    st.builds(Close, st.text(max_size=40)),
)


def _norm(frame: object) -> object:
    if isinstance(frame, Data):
        return Data(frame.seq, frame.ack, tuple(
            Chunk(c.job, c.channel, c.msg, c.offset, c.total, bytes(c.data)) for c in frame.chunks
        ))  # fmt: skip
    return frame


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, min_size=1, max_size=6), st.integers(1, 50))
def test_frames_round_trip_in_any_split(fs: list[object], step: int) -> None:
    wire = b"".join(frame_bytes(f) for f in fs)  # type: ignore[arg-type]
    dec = FrameDecoder(1 << 20)
    out = []
    for i in range(0, len(wire), step):
        dec.receive_data(wire[i : i + step])
        while (f := dec.next_frame()) is not NEED_DATA:
            out.append(_norm(f))
    assert out == [_norm(f) for f in fs]
    assert dec.buffered == 0


def _body(header: bytes, tail: bytes = b"") -> bytes:
    body = struct.pack(">I", len(header)) + header + tail
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    "wire",
    [
        _body(b"\xc1"),
        _body(msgpack.packb([99])),  # unknown kind
        _body(msgpack.packb("x")),
        _body(msgpack.packb([3])),  # ACK without seq
        _body(msgpack.packb([3, -1])),
        _body(msgpack.packb([3, "1"])),
        _body(msgpack.packb([3, True])),
        _body(msgpack.packb([3, 1]), b"tail"),
        _body(msgpack.packb([2, 0, 0, []])),  # DATA seq 0
        _body(msgpack.packb([2, 1, 0, [["j", "c", 0, 0, 5, 5]]]), b"abc"),  # short tail
        _body(msgpack.packb([2, 1, 0, [["j", "c", 0, 4, 5, 5]]]), b"abcde"),  # beyond total
        _body(msgpack.packb([2, 1, 0, [["j", "c", 0, 0, 5, 5]]]), b"abcdefg"),  # stray bytes
        _body(msgpack.packb([2, 1, 0, [["j", 7, 0, 0, 1, 1]]]), b"a"),
        _body(msgpack.packb([1, "a", "b", 1, "s", "p", 0])),  # HELLO missing a field
        struct.pack(">I", 3) + b"abc",  # body shorter than its header length field
        struct.pack(">I", 8) + struct.pack(">I", 100) + b"abcd",
    ],
)
def test_garbage_frames_raise_and_poison(wire: bytes) -> None:
    dec = FrameDecoder(1 << 20)
    dec.receive_data(wire)
    with pytest.raises(ProtocolError):
        dec.next_frame()
    with pytest.raises(ProtocolError):
        dec.next_frame()


def test_oversized_frame_rejected_before_buffering() -> None:
    dec = FrameDecoder(1000)
    dec.receive_data(struct.pack(">I", 1001))
    with pytest.raises(ProtocolError, match="exceeds max_frame_bytes"):
        dec.next_frame()
    assert dec.buffered == 0


def test_truncated_frame_waits_then_garbage_tail_raises() -> None:
    wire = frame_bytes(Ack(5))
    dec = FrameDecoder(1 << 20)
    dec.receive_data(wire[:-1])
    assert dec.next_frame() is NEED_DATA
    dec.receive_data(wire[-1:])
    assert dec.next_frame() == Ack(5)
    assert dec.next_frame() is NEED_DATA


def test_large_data_frame_chunks_are_views() -> None:
    payload = bytes(range(256)) * 4096
    wire = frame_bytes(Data(1, 0, (Chunk("j", "c", 0, 0, len(payload), payload),)))
    dec = FrameDecoder(1 << 22)
    for i in range(0, len(wire), 65536):
        dec.receive_data(wire[i : i + 65536])
    frame = dec.next_frame()
    assert isinstance(frame, Data) and isinstance(frame.chunks[0].data, memoryview)
    assert bytes(frame.chunks[0].data) == payload


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 300_000), min_size=1, max_size=4), st.integers(1000, 70_000))
def test_frames_received_in_place_through_get_buffer(sizes: list[int], step: int) -> None:
    fs = [Data(i + 1, 0, (Chunk("j", "c", i, 0, n, bytes([i % 256]) * n),)) for i, n in enumerate(sizes)]
    wire = b"".join(frame_bytes(f) for f in fs)
    dec = FrameDecoder(1 << 20, reuse_buffers=True)
    out, pos = [], 0
    while pos < len(wire):
        buf = dec.get_buffer()
        n = min(len(buf), step, len(wire) - pos)
        buf[:n] = wire[pos : pos + n]
        dec.buffer_updated(n)
        pos += n
        while (f := dec.next_frame()) is not NEED_DATA:
            out.append(_norm(f))
    assert out == [_norm(f) for f in fs]
