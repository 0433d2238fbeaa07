"""The ring Z_2^64 on numpy uint64, and fixed-point encoding in it.

Wrap-around of uint64 arithmetic *is* the ring's reduction, so ring ops are plain numpy ops.
A real number x is encoded as round(x * 2^f) in two's complement (f = ``fxp_bits``): exact for
|x| < 2^(63-f) up to the rounding step 2^-f. Integers are encoded with f = 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RING_DTYPE", "decode", "encode", "to_ring", "to_signed"]

RING_DTYPE = np.dtype(np.uint64)


def to_ring(values: np.ndarray) -> np.ndarray:
    """Integer array -> uint64 ring elements (two's complement for negatives)."""
    return np.asarray(values).astype(np.int64, copy=False).view(np.uint64)


def to_signed(ring: np.ndarray) -> np.ndarray:
    """uint64 ring elements -> int64 (two's complement)."""
    return np.asarray(ring, dtype=np.uint64).view(np.int64)


def encode(values: np.ndarray | float, fxp_bits: int) -> np.ndarray:
    """Encode real (or integer) values into the ring with ``fxp_bits`` fractional bits.

    Raises:
        ValueError: a value is NaN/inf or too large for 64-bit fixed point.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biu" and fxp_bits == 0:
        return to_ring(arr.astype(np.int64))
    scaled = np.rint(arr.astype(np.float64) * float(1 << fxp_bits))
    if not np.all(np.isfinite(scaled)):
        raise ValueError("cannot encode NaN or infinity in fixed point")
    if scaled.size and np.max(np.abs(scaled)) >= 2.0**63:
        raise ValueError(f"value too large for 64-bit fixed point with {fxp_bits} fractional bits")
    return scaled.astype(np.int64).view(np.uint64)


def decode(ring: np.ndarray, fxp_bits: int) -> np.ndarray:
    """Decode ring elements into float64 (or int64 when ``fxp_bits`` is 0)."""
    signed = to_signed(ring)
    if fxp_bits == 0:
        return signed.copy()
    return signed.astype(np.float64) / float(1 << fxp_bits)
