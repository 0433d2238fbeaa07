"""Exact matrix products in the ring Z_2^64, fast, on float64 BLAS.

Theory of operation
-------------------
numpy multiplies integer matrices with a naive loop (no BLAS): a 1024x1024 uint64 product takes
seconds. float64 BLAS is ~50x faster but exact only while every partial sum stays below 2^53.
So each operand is split into three limbs, ``a = a0 + a1 2^22 + a2 2^44`` (22, 22 and 20 bits),
and

    a @ b = sum_{i,j} (a_i @ b_j) 2^(22 (i + j))      (mod 2^64)

Only the six limb pairs with shift 22 (i + j) < 64 matter, grouped by shift:

    shift  0: a0 b0                     terms < 2^44
    shift 22: a0 b1 + a1 b0             terms < 2^44, result needed mod 2^42
    shift 44: a0 b2 + a1 b1 + a2 b0     result needed mod 2^20, so every factor is first
                                        reduced mod 2^20: terms < 2^40

A group's float sum is exact when (#pairs x K_block x max term) < 2^53, so the inner dimension
is cut into blocks of 512, 256 and 2730 respectively. Each block's (exact, integer-valued) float
result is converted to uint64, shifted and added with wrap-around. Products too small for BLAS
to pay off use numpy's integer matmul, which wraps mod 2^64 by itself.
"""

from __future__ import annotations

import numpy as np

from .._errors import ShapeError

__all__ = ["matmul_shape", "ring_matmul"]

_U64 = np.uint64
_MASK22 = _U64((1 << 22) - 1)
_MASK20 = _U64((1 << 20) - 1)
_EXACT = (1 << 53) - 1  # largest integer float64 sums keep exact
_MAGIC_BITS = _U64(0x4330000000000000)  # the bits of the double 2^52
_MAGIC_FLOAT = float(1 << 52)

# Below this many multiply-adds numpy's integer loop beats limb splitting (measured: ~2e5).
_SMALL_WORK = 1 << 18


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``a @ b`` under numpy's matmul rules.

    Raises:
        ShapeError: a 0-d operand, mismatched inner dimensions or unbroadcastable stacks.
    """
    if len(a) == 0 or len(b) == 0:
        raise ShapeError(f"matmul needs operands of at least 1 dimension, not {a!r} and {b!r}")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ShapeError(f"matmul inner dimensions differ: {a!r} @ {b!r} ({a2[-1]} != {b2[-2]})")
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        raise ShapeError(f"matmul stacks do not broadcast: {a!r} @ {b!r}") from None
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` exactly mod 2^64 for uint64 operands, with numpy ``@`` semantics.

    Args:
        a: uint64 array (1-D, 2-D or stacked).
        b: uint64 array (1-D, 2-D or stacked).

    Returns:
        A new uint64 array of shape :func:`matmul_shape` ``(a.shape, b.shape)``.

    Raises:
        ShapeError: the operands' shapes do not fit.
    """
    a = np.asarray(a, dtype=_U64)
    b = np.asarray(b, dtype=_U64)
    out_shape = matmul_shape(a.shape, b.shape)
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    n = b2.shape[-1]
    stacks = int(np.prod(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]), dtype=np.int64))
    if k == 0 or m * n * stacks == 0:
        return np.zeros(out_shape, dtype=_U64)
    if m * n * k * stacks < _SMALL_WORK:
        return np.matmul(a2, b2).reshape(out_shape)
    return _limb_matmul(a2, b2).reshape(out_shape)


def _to_float(x: np.ndarray) -> np.ndarray:
    """Exact float64 of a uint64 array below 2^52, by the exponent trick (in place on ``x``).

    OR-ing 0x4330... into the bits of x < 2^52 gives the double 2^52 + x; subtracting 2^52
    leaves x exactly. Several times faster than numpy's uint64 -> float64 cast.
    """
    x |= _MAGIC_BITS
    f = x.view(np.float64)
    f -= _MAGIC_FLOAT
    return f


def _limbs(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x0, x1, x2, x0 mod 2^20, x1 mod 2^20) as float64 arrays (see module doc)."""
    lo = x & _MASK22
    mid = x >> _U64(22)
    mid &= _MASK22
    lo_s = lo & _MASK20
    mid_s = mid & _MASK20
    return (
        _to_float(lo),
        _to_float(mid),
        _to_float(x >> _U64(44)),
        _to_float(lo_s),
        _to_float(mid_s),
    )


def _limb_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a0, a1, a2, a0s, a1s = _limbs(a)
    b0, b1, b2, b0s, b1s = _limbs(b)
    k = a.shape[-1]
    groups = (
        (0, ((a0, b0),), (1 << 22) - 1),
        (22, ((a0, b1), (a1, b0)), (1 << 22) - 1),
        (44, ((a0s, b2), (a1s, b1s), (a2, b0s)), (1 << 20) - 1),
    )
    acc: np.ndarray | None = None
    for shift, pairs, limb_max in groups:
        block = _EXACT // (len(pairs) * limb_max * limb_max)
        for k0 in range(0, k, block):
            k1 = min(k, k0 + block)
            whole = k1 - k0 == k
            x, y = pairs[0]
            s = np.matmul(x if whole else x[..., k0:k1], y if whole else y[..., k0:k1, :])
            for x, y in pairs[1:]:
                s += np.matmul(x if whole else x[..., k0:k1], y if whole else y[..., k0:k1, :])
            part = s.astype(np.int64).view(_U64)  # exact: an integer below 2^53
            if shift:
                part <<= _U64(shift)
            if acc is None:
                acc = part
            else:
                acc += part
    if acc is None:  # k == 0 is handled by the caller; kept for type checkers
        raise ValueError("empty inner dimension")
    return acc
