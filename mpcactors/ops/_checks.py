"""Small checks shared by the protocol implementations: operand kinds and shapes, ring inputs,
and validation of what peers send (a peer's payload is never trusted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import ConfigError, ProtocolError, ShapeError
from ._protocol import Share

__all__ = [
    "ROUND_MARKER",
    "U64",
    "as_ring",
    "broadcast_shape",
    "field",
    "need_kind",
    "owned_value",
    "pack_bits",
    "public_shape",
    "recv_array",
    "recv_bits",
    "recv_shape",
    "same_shape",
]

U64 = np.uint64

# Every party of a kernel step takes part in each of the step's rounds, sending this (a nil
# payload) where it has nothing to say. Composite steps (``yield from`` one kernel op after
# another, inside one op) then stay in lockstep: a party's n-th round is the same round at every
# party. A party idle in a round would otherwise skip it (empty Exchanges are not rounds), run
# one round ahead, and its next message would be filed under the wrong round.
ROUND_MARKER = None
_MAX_NDIM = 32


def as_ring(value: Any, what: str = "value") -> np.ndarray:
    """An integer (or bool) array as uint64 ring elements (two's complement for negatives).

    Raises:
        TypeError: a float, complex or object array (encode fixed point first).
    """
    arr = np.asarray(value)
    if arr.dtype == U64:
        return arr
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).view(U64) if arr.dtype.kind == "i" else arr.astype(U64)
    raise TypeError(f"{what} must be a ring (integer) array, not dtype {arr.dtype}")


def need_kind(op: str, kind: str, *shares: Share) -> None:
    """Raise TypeError unless every share is of ``kind`` ("arith" or "bool")."""
    for s in shares:
        if s.kind != kind:
            raise TypeError(f"{op} needs {kind} shares, got a {s.kind} share")


def same_shape(op: str, x: Share, y: Share) -> tuple[int, ...]:
    """The common shape of two operands of an elementwise op that does not broadcast."""
    if x.shape != y.shape:
        raise ShapeError(f"{op}: operand shapes differ: {x.shape!r} and {y.shape!r}")
    return x.shape


def broadcast_shape(op: str, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise ShapeError(f"{op}: shapes {a!r} and {b!r} do not broadcast") from None


def public_shape(op: str, x: Share, c: np.ndarray) -> None:
    """A public operand must broadcast *to* the share's shape (the result keeps x.shape)."""
    if broadcast_shape(op, x.shape, c.shape) != x.shape:
        raise ShapeError(f"{op}: public operand of shape {c.shape!r} widens share of {x.shape!r}")


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"{obj.dtype} array of shape {obj.shape}"
    return type(obj).__name__


def recv_array(obj: object, shape: tuple[int, ...], peer: str, what: str) -> np.ndarray:
    """A uint64 array of ``shape`` received from ``peer``, or ProtocolError."""
    if not (isinstance(obj, np.ndarray) and obj.dtype == U64 and obj.shape == shape):
        raise ProtocolError(
            f"{what} from {peer!r}: expected uint64 array of shape {shape}, got {_describe(obj)}",
            peer=peer,
        )
    return obj


def arshift(x: np.ndarray, bits: int) -> np.ndarray:
    """Arithmetic (sign-extending) right shift of ring elements."""
    return np.asarray(x.view(np.int64) >> np.int64(bits)).view(U64)


def fresh(fn: Any, a: Any, b: Any) -> np.ndarray:
    """``fn(a, b)`` as a new array (ufuncs return numpy scalars for 0-d operands)."""
    return np.asarray(fn(a, b))


def recv_arrays(
    msg: object, shapes: Sequence[tuple[int, ...]], peer: str, what: str
) -> list[np.ndarray]:
    """A tuple of uint64 arrays of the given shapes received from ``peer``."""
    if not isinstance(msg, (list, tuple)) or len(msg) != len(shapes):
        raise ProtocolError(f"{what} from {peer!r}: expected {len(shapes)} arrays", peer=peer)
    return [recv_array(m, shp, peer, what) for m, shp in zip(msg, shapes)]


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """0/1 uint64 words -> packed uint8 (8 bits a byte) for the wire."""
    return np.packbits(bits.reshape(-1).astype(np.bool_))


def recv_bits(obj: object, shape: tuple[int, ...], peer: str, what: str) -> np.ndarray:
    """Unpack :func:`pack_bits` output received from ``peer`` into 0/1 uint64 words."""
    n = int(np.prod(shape, dtype=np.int64))
    if not (isinstance(obj, np.ndarray) and obj.dtype == np.uint8 and obj.shape == ((n + 7) // 8,)):
        raise ProtocolError(
            f"{what} from {peer!r}: expected {(n + 7) // 8} packed bytes, got {_describe(obj)}",
            peer=peer,
        )
    return np.unpackbits(obj, count=n).astype(U64).reshape(shape)


def recv_shape(obj: object, peer: str) -> tuple[int, ...]:
    """A shape (list of non-negative ints) received from ``peer``, or ProtocolError."""
    if (
        not isinstance(obj, (list, tuple))
        or len(obj) > _MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in obj)
    ):
        raise ProtocolError(f"{peer!r} sent a malformed shape {obj!r}", peer=peer)
    return tuple(obj)


def field(msg: object, key: str, peer: str) -> Any:
    """``msg[key]`` of a dict payload from ``peer``, or ProtocolError."""
    if not isinstance(msg, dict) or key not in msg:
        raise ProtocolError(f"{peer!r} sent a payload without {key!r}: {_describe(msg)}", peer=peer)
    return msg[key]


def owned_value(
    parties: Sequence[str], party: str, owner: str, value: Any, shape: tuple[int, ...] | None
) -> np.ndarray | None:
    """The checks every ``Protocol.share`` starts with: a known owner, a value at the owner
    (as ring elements) whose shape matches the caller's, None elsewhere."""
    if owner not in parties:
        raise ConfigError(f"input owner {owner!r} is not a party of {list(parties)!r}")
    if party != owner:
        return None
    if value is None:
        raise ValueError(f"share: the owner {owner!r} must pass the value")
    v = as_ring(value)
    if shape is not None and tuple(shape) != v.shape:
        raise ShapeError(f"share: value has shape {v.shape}, caller said {tuple(shape)}")
    return v
