"""Payload codec: msgpack with numpy arrays carried out of band.

Theory of operation
-------------------
A payload is what one ``Channel.send(obj)`` carries. Its layout is::

    u32 BE header length | msgpack document | zero padding to 16 | raw array buffers

The msgpack document holds every plain value (None, bool, int, float, str, bytes, list, dict) and
three extension types of ours:

* ``EXT_NDARRAY`` (1): ``[dtype code, shape, offset]`` -- the array's bytes are not inside the
  document but in the raw region at ``offset`` (16-aligned), little-endian, C order. Encoding
  copies each array exactly once (into the joined payload); decoding copies nothing: it returns
  ``np.frombuffer`` views over the payload buffer (writable when the buffer is a bytearray, which
  is what the link hands over). A payload of 80 MB thus costs one memcpy on each side.
* ``EXT_SCALAR`` (2): ``[dtype code, raw bytes]`` for numpy scalars, so ``np.int64(3)`` comes back
  as ``np.int64(3)``, not ``3``.
* ``EXT_TUPLE`` (3): a msgpack list inside, so tuples stay tuples (also as dict keys).

Decoding trusts nothing: the dtype code must be in :data:`DTYPES` (no object, void or datetime
arrays, and never pickle), ``ndim <= 32``, every dimension a non-negative int, and the array must
lie exactly at the next aligned offset of the raw region with ``prod(shape) * itemsize`` bytes
inside it -- all checked before the array view is made. msgpack's ``max_*_len`` limits are set to
the document's size, so a forged length can never make msgpack allocate more than the payload.
Every failure is a :class:`~mpcactors.ProtocolError`; encoding an unsupported value raises
``TypeError`` (a bug in the caller, not in the peer).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import numpy as np

from .._errors import ProtocolError

__all__ = ["DTYPES", "decode_payload", "encode_payload"]

EXT_NDARRAY = 1
EXT_SCALAR = 2
EXT_TUPLE = 3
MAX_NDIM = 32
MAX_TUPLE_DEPTH = 64
BIG_PAYLOAD = 1 << 20  # array bytes from which the payload buffer comes from numpy
_ALIGN = 16
_U32 = struct.Struct(">I")

#: The whitelist: wire code -> little-endian dtype. Nothing else ever crosses the link.
DTYPES: dict[str, np.dtype[Any]] = {
    code: np.dtype(spec)
    for code, spec in {
        "b1": "?",
        "i1": "i1",
        "i2": "<i2",
        "i4": "<i4",
        "i8": "<i8",
        "u1": "u1",
        "u2": "<u2",
        "u4": "<u4",
        "u8": "<u8",
        "f2": "<f2",
        "f4": "<f4",
        "f8": "<f8",
        "c8": "<c8",
        "c16": "<c16",
    }.items()
}
_CODE_OF: dict[tuple[str, int], str] = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}


def _dtype_code(dtype: np.dtype[Any]) -> str:
    code = _CODE_OF.get((dtype.kind, dtype.itemsize))
    if code is None or dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(
            f"numpy dtype {dtype!r} cannot be sent; supported: bool, int8..int64, uint8..uint64, "
            "float16/32/64, complex64/128"
        )
    return code


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


class _Encoder:
    """One encoding: packs the document and collects array buffers in document order."""

    __slots__ = ("buffers", "depth", "raw_size")

    def __init__(self) -> None:
        self.buffers: list[tuple[int, memoryview]] = []
        self.raw_size = 0
        self.depth = 0

    def pack(self, obj: Any) -> bytes:
        packer = msgpack.Packer(default=self.default, strict_types=True, use_bin_type=True)
        try:
            return packer.pack(obj)
        except (OverflowError, ValueError) as exc:
            raise TypeError(f"cannot encode payload: {exc}") from exc

    def default(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return self._array(obj)
        if isinstance(obj, np.generic) and not isinstance(obj, (str, bytes)):
            code = _dtype_code(obj.dtype)
            raw = np.asarray(obj, dtype=DTYPES[code]).tobytes()
            return msgpack.ExtType(EXT_SCALAR, msgpack.packb([code, raw], use_bin_type=True))
        if isinstance(obj, tuple):
            if self.depth >= MAX_TUPLE_DEPTH:
                raise TypeError(f"tuples nested deeper than {MAX_TUPLE_DEPTH} cannot be sent")
            self.depth += 1
            try:
                return msgpack.ExtType(EXT_TUPLE, self.pack(list(obj)))
            finally:
                self.depth -= 1
        # strict_types sends subclasses here: IntEnum, StrEnum, np.str_, bytearray, memoryview.
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        if isinstance(obj, list):
            return list(obj)
        if isinstance(obj, dict):
            return dict(obj)
        raise TypeError(f"cannot send a {type(obj).__name__} in a payload: {obj!r:.80}")

    def _array(self, arr: np.ndarray[Any, Any]) -> msgpack.ExtType:
        if type(arr) is not np.ndarray:
            raise TypeError(f"cannot send ndarray subclass {type(arr).__name__}; use np.asarray")
        code = _dtype_code(arr.dtype)
        if arr.ndim > MAX_NDIM:
            raise TypeError(f"arrays of more than {MAX_NDIM} dimensions cannot be sent")
        want = DTYPES[code]
        if arr.dtype != want or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=want)
        offset = _align(self.raw_size)
        if arr.nbytes:
            flat: Any = arr.reshape(-1)  # numpy arrays support the buffer protocol
            self.buffers.append((offset, memoryview(flat).cast("B")))
            self.raw_size = offset + arr.nbytes
        else:
            offset = self.raw_size
        return msgpack.ExtType(EXT_NDARRAY, msgpack.packb([code, list(arr.shape), offset]))


def encode_payload(obj: Any) -> bytes | memoryview:
    """Encode one message for the wire.

    Args:
        obj: None, bool, int (64-bit), float, str, bytes, list, tuple, dict, numpy arrays of a
            whitelisted dtype and numpy scalars, nested freely.

    Returns:
        The payload, a snapshot (later changes to ``obj`` do not affect it): bytes, or for
        payloads with at least :data:`BIG_PAYLOAD` bytes of arrays a read-only memoryview of a
        buffer numpy allocates without zero-filling (huge pages where the kernel offers them:
        several times fewer page faults than a fresh bytes object of 80 MB).

    Raises:
        TypeError: ``obj`` holds a value the codec does not carry (object arrays, sets, ...).
    """
    enc = _Encoder()
    doc = enc.pack(obj)
    head = _U32.pack(len(doc)) + doc
    if not enc.buffers:
        return head
    raw_start = _align(len(head))
    if enc.raw_size < BIG_PAYLOAD:
        parts: list[Any] = [head, bytes(raw_start - len(head))]
        cursor = 0
        for offset, buf in enc.buffers:
            parts.append(bytes(offset - cursor))
            parts.append(buf)
            cursor = offset + len(buf)
        return b"".join(parts)
    out: Any = np.empty(raw_start + enc.raw_size, dtype=np.uint8)
    out[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    out[len(head) : raw_start] = 0
    cursor = 0
    for offset, buf in enc.buffers:
        start = raw_start + offset
        out[raw_start + cursor : start] = 0
        out[start : start + len(buf)] = np.frombuffer(buf, dtype=np.uint8)
        cursor = offset + len(buf)
    view = memoryview(out).cast("B")
    return view.toreadonly()


class _Decoder:
    """One decoding: walks the document; array views are made over ``raw``."""

    __slots__ = ("cursor", "depth", "limit", "raw")

    def __init__(self, raw: memoryview, limit: int) -> None:
        self.raw = raw
        self.cursor = 0
        self.limit = limit
        self.depth = 0

    def unpack(self, doc: memoryview | bytes) -> Any:
        n = self.limit
        return msgpack.unpackb(
            doc,
            ext_hook=self.ext_hook,
            strict_map_key=False,
            use_list=True,
            raw=False,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=n,
        )

    def ext_hook(self, code: int, data: bytes) -> Any:
        if code == EXT_NDARRAY:
            return self._array(data)
        if code == EXT_SCALAR:
            spec = msgpack.unpackb(data, max_bin_len=64, max_str_len=8, max_array_len=2)
            if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[1], bytes)):
                raise ProtocolError(f"malformed numpy scalar {spec!r:.80}")
            dtype = self._dtype(spec[0])
            if len(spec[1]) != dtype.itemsize:
                raise ProtocolError(f"numpy scalar of dtype {dtype} has {len(spec[1])} bytes")
            return np.frombuffer(spec[1], dtype=dtype)[0]
        if code == EXT_TUPLE:
            if self.depth >= MAX_TUPLE_DEPTH:
                raise ProtocolError(f"tuples nested deeper than {MAX_TUPLE_DEPTH}")
            self.depth += 1
            try:
                inner = self.unpack(data)
            finally:
                self.depth -= 1
            if not isinstance(inner, list):
                raise ProtocolError(f"tuple extension holds a {type(inner).__name__}, not a list")
            return tuple(inner)
        raise ProtocolError(f"unknown msgpack extension type {code}")

    @staticmethod
    def _dtype(code: Any) -> np.dtype[Any]:
        dtype = DTYPES.get(code) if isinstance(code, str) else None
        if dtype is None:
            raise ProtocolError(f"numpy dtype code {code!r:.40} is not in the whitelist")
        return dtype

    def _array(self, data: bytes) -> np.ndarray[Any, Any]:
        spec = msgpack.unpackb(data, max_array_len=MAX_NDIM + 3, max_str_len=8, max_bin_len=0)
        if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[1], list)):
            raise ProtocolError(f"malformed numpy array header {spec!r:.80}")
        code, shape, offset = spec
        dtype = self._dtype(code)
        if len(shape) > MAX_NDIM:
            raise ProtocolError(f"numpy array with {len(shape)} dimensions (max {MAX_NDIM})")
        if not all(type(d) is int and d >= 0 for d in shape):
            raise ProtocolError(f"numpy array shape {shape!r:.80} is not non-negative ints")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes == 0:
            if offset != self.cursor:
                raise ProtocolError(f"empty array at offset {offset!r}, expected {self.cursor}")
            return np.empty(shape, dtype=dtype)
        expected = _align(self.cursor)
        if offset != expected:
            raise ProtocolError(f"numpy array at offset {offset!r}, expected {expected}")
        end = expected + nbytes
        if end > len(self.raw):
            raise ProtocolError(
                f"numpy array {dtype}{tuple(shape)} needs {nbytes} bytes at offset {offset}, "
                f"the payload has {len(self.raw) - expected}"
            )
        self.cursor = end
        return np.frombuffer(self.raw, dtype=dtype, count=count, offset=expected).reshape(shape)


def decode_payload(data: bytes | bytearray | memoryview, *, max_bytes: int) -> Any:
    """Decode one payload made by :func:`encode_payload`.

    Args:
        data: the payload. Arrays in the result are zero-copy views over it; they are writable
            when ``data`` is a bytearray (the link passes bytearrays).
        max_bytes: the largest payload accepted.

    Returns:
        The decoded object (tuples and numpy scalars keep their types).

    Raises:
        ProtocolError: the payload is oversized, truncated, malformed or holds a forbidden type.
    """
    mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    size = len(mv)
    if size > max_bytes:
        raise ProtocolError(f"payload of {size} bytes exceeds the limit of {max_bytes}")
    if size < 4:
        raise ProtocolError(f"truncated payload of {size} bytes")
    (doc_len,) = _U32.unpack_from(mv, 0)
    if 4 + doc_len > size:
        raise ProtocolError(f"payload header claims {doc_len} bytes, only {size - 4} present")
    raw = mv[_align(4 + doc_len) :] if size > 4 + doc_len else mv[size:]
    dec = _Decoder(raw, doc_len)
    try:
        obj = dec.unpack(mv[4 : 4 + doc_len])
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError, KeyError) as exc:
        # ValueError covers msgpack's ExtraData, FormatError, StackError and limit errors;
        # TypeError covers unhashable map keys.
        raise ProtocolError(f"malformed payload: {type(exc).__name__}: {exc}"[:300]) from None
    if dec.cursor != len(raw):
        raise ProtocolError(f"payload has {len(raw) - dec.cursor} stray bytes after its arrays")
    return obj

