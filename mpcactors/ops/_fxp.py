"""Fixed-point helpers on the kernel: products rescaled by ``proto.fxp_bits``, public constants.

Theory of operation
-------------------
A fixed-point value v is the ring element round(v * 2^f) (two's complement, f = ``fxp_bits``).
A product of two such elements carries 2f fractional bits, so every fixed-point product is
followed by :meth:`Protocol.truncate` by f: one extra round in rep3 (ABY3 share truncation), none
for 2-party semi2k (SecureML local truncation). Both truncations are off by at most one unit in
the last place, and *fail* (return garbage) with probability about 2^(k+1-64) when the value
being truncated has magnitude 2^k, so the functions here and in ``_nonlinear.py`` keep truncated
magnitudes small: a product of fixed-point values |a b| < 2^w is truncated at magnitude
2^(w+2f).

A product of a fixed-point share with an *integer* share (a comparison bit, a power of two) is
already fixed point: no truncation, no failure. Comparisons return such integer 0/1 shares;
:func:`int_to_fxp` scales them when a fixed-point 0/1 is wanted.

Public operands: a ``numpy.uint64`` array is taken as ring elements (already encoded); any
other number or array is a real value and is encoded with ``proto.fxp_bits``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._comm import Step, gather
from ._context import OpContext
from ._protocol import Protocol, Share
from ._ring import encode

__all__ = [
    "PublicLike",
    "fxp_const",
    "fxp_matmul",
    "fxp_mul",
    "fxp_mul_public",
    "fxp_square",
    "int_to_fxp",
    "mul_many",
    "public_ring",
    "truncate_many",
]

PublicLike = np.ndarray | float | int


def public_ring(proto: Protocol, c: PublicLike) -> np.ndarray:
    """A public operand as ring elements: uint64 arrays as they are, others fixed-point encoded."""
    if isinstance(c, np.ndarray) and c.dtype == np.uint64:
        return c
    return encode(np.asarray(c, dtype=np.float64), proto.fxp_bits)


def fxp_const(proto: Protocol, value: float | np.ndarray) -> np.ndarray:
    """The fixed-point encoding of a real constant (array) with ``proto.fxp_bits``."""
    return encode(np.asarray(value, dtype=np.float64), proto.fxp_bits)


def int_to_fxp(proto: Protocol, x: Share) -> Share:
    """An integer share (e.g. a comparison's 0/1) as fixed point: x * 2^f, local."""
    return proto.mul_public(x, np.asarray(np.uint64(1) << np.uint64(proto.fxp_bits)))


def fxp_mul(ctx: OpContext, proto: Protocol, x: Share, y: Share) -> Step[Share]:
    """Fixed-point elementwise product: ``trunc(x * y, f)``.

    Accuracy: within 1 ulp (2^-f) of the exact product of the encoded values for |x y| < 2^(61-2f)
    (failure probability about |x y| 2^(2f+1-64)). Rounds: 1 + the protocol's truncation rounds.
    """
    z = yield from proto.mul(ctx.child("mul"), x, y)
    return (yield from proto.truncate(ctx.child("trunc"), z, proto.fxp_bits))


def fxp_square(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """``trunc(x * x, f)``; see :func:`fxp_mul`."""
    return (yield from fxp_mul(ctx, proto, x, x))


def fxp_mul_public(ctx: OpContext, proto: Protocol, x: Share, c: PublicLike) -> Step[Share]:
    """x * c for a public c (real values encoded with f bits, or uint64 ring elements):
    ``trunc(x * enc(c), f)``. Rounds: the protocol's truncation rounds only."""
    z = proto.mul_public(x, public_ring(proto, c))
    return (yield from proto.truncate(ctx, z, proto.fxp_bits))


def fxp_matmul(ctx: OpContext, proto: Protocol, x: Share, y: Share) -> Step[Share]:
    """Fixed-point matrix product ``trunc(x @ y, f)`` (numpy ``@`` semantics)."""
    z = yield from proto.matmul(ctx.child("mul"), x, y)
    return (yield from proto.truncate(ctx.child("trunc"), z, proto.fxp_bits))


def mul_many(
    ctx: OpContext, proto: Protocol, pairs: Sequence[tuple[Share, Share]], trunc: int | None = None
) -> Step[list[Share]]:
    """Independent products in one round (then one truncation round if ``trunc`` is given).

    ``trunc=None``: raw ring products (use when one side is an integer share); ``trunc=f``:
    fixed-point products.
    """

    def one(i: int, x: Share, y: Share) -> Step[Share]:
        sub = ctx.child(i)
        z = yield from proto.mul(sub.child("mul"), x, y)
        if trunc:
            z = yield from proto.truncate(sub.child("trunc"), z, trunc)
        return z

    return (yield from gather(one(i, x, y) for i, (x, y) in enumerate(pairs)))


def truncate_many(
    ctx: OpContext, proto: Protocol, xs: Sequence[Share], bits: int
) -> Step[list[Share]]:
    """Independent truncations by ``bits`` in one round (none for 2-party semi2k)."""
    return (yield from gather(proto.truncate(ctx.child(i), x, bits) for i, x in enumerate(xs)))
