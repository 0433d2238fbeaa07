"""Comparisons, selection and reductions by comparison, on the MSB circuit of ``_boolean.py``.

Theory of operation
-------------------
For values in two's complement with |x - y| < 2^63, ``x < y`` is the sign bit of ``x - y``:
``less = bit_to_arith(msb(x - y))``. Everything else is built from that bit ``c``:

* ``x <= y = 1 - (y < x)``; ``x == y``: the sign bits of ``d`` and ``-d`` (one batched MSB) are
  both 0 iff d == 0, so ``eq = 1 ^ msb(d) ^ msb(-d)`` (exact for |d| < 2^63).
* ``sign = msb(-x) - msb(x)``; ``abs = x (1 - 2c)``; ``relu = x (1 - c)``;
  ``maximum = x - c (x - y)``; ``where(c, a, b) = b + c (a - b)``: one multiplication after the
  comparison, of an integer 0/1 by the operand, so no truncation and no rounding error.
* max/min/argmax/argmin over an axis: a tournament tree, every level one batched comparison and
  one batched select of values and indices; ties keep the left (lower) index, like numpy.

Results of comparisons are arithmetic shares of the INTEGER 0 or 1 (not fixed point): multiply
them into fixed-point values directly, or scale with :func:`~mpcactors.ops._fxp.int_to_fxp`.
Operands may be shares or public values (see ``_fxp.public_ring``: uint64 arrays are ring
elements, other numbers are encoded with ``proto.fxp_bits``); comparisons work for integer and
fixed-point shares alike as long as both operands use the same scale.

Rounds (msb: 6 AND rounds with two A2B summands, 7 with three; +1 bit_to_arith):
semi2k (2 holders) 7, rep3 8 for every comparison, equal and sign; +1 for abs, relu, maximum,
minimum and where; max/argmax over an axis of length L: ceil(log2 L) * (comparison + 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .._errors import ShapeError
from ._boolean import msb
from ._comm import Step, gather
from ._context import OpContext
from ._fxp import PublicLike, public_ring
from ._protocol import Protocol, Share

__all__ = [
    "abs_",
    "argmax",
    "argmin",
    "buckets",
    "equal",
    "ge_thresholds",
    "ge_thresholds_rows",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "ltz",
    "max_",
    "maximum",
    "min_",
    "minimum",
    "not_equal",
    "relu",
    "sign",
    "where",
]

Operand = Share | PublicLike
_ONE = np.asarray(np.uint64(1))
_MINUS_TWO = np.asarray(np.uint64(2**64 - 2))


def _broadcast(x: Share, shape: tuple[int, ...]) -> Share:
    if x.shape == shape:
        return x
    return x.map(lambda p: np.broadcast_to(p, shape), shape=shape)


def _diff(proto: Protocol, x: Operand, y: Operand) -> Share:
    """x - y for shares or public operands (at least one share), broadcast."""
    if isinstance(x, Share) and isinstance(y, Share):
        shape = np.broadcast_shapes(x.shape, y.shape)
        return proto.sub(_broadcast(x, shape), _broadcast(y, shape))
    if isinstance(x, Share):
        c = public_ring(proto, y)  # type: ignore[arg-type]
        shape = np.broadcast_shapes(x.shape, c.shape)
        return proto.add_public(_broadcast(x, shape), np.negative(c))
    if isinstance(y, Share):
        c = public_ring(proto, x)
        shape = np.broadcast_shapes(y.shape, c.shape)
        return proto.add_public(proto.neg(_broadcast(y, shape)), c)
    raise TypeError("a comparison needs at least one secret-shared operand")


def _one_minus(proto: Protocol, c: Share) -> Share:
    return proto.add_public(proto.neg(c), _ONE)


def ltz(ctx: OpContext, proto: Protocol, x: Share, bits: int = 64) -> Step[Share]:
    """[x < 0] as an integer 0/1 arithmetic share (the sign bit). Exact. Rounds: msb + 1.

    ``bits`` < 64 (a power of two) is a cheaper comparison, exact when |x| < 2^(bits-1) (see
    :func:`~mpcactors.ops._boolean.msb`): log2(bits) + 1 rounds (+1 for rep3).
    """
    b = yield from msb(ctx.child("msb"), proto, x, bits)
    return (yield from proto.bit_to_arith(ctx.child("b2a"), b))


def less(ctx: OpContext, proto: Protocol, x: Operand, y: Operand) -> Step[Share]:
    """[x < y] as an integer 0/1 share; exact for |x - y| < 2^63 (ring units).

    Args:
        ctx: the op context.
        proto: the protocol.
        x: share or public value.
        y: share or public value (at least one of x, y is a share; shapes broadcast).

    Returns:
        Arithmetic share of 0 or 1 (integer, not fixed point).

    Rounds: semi2k (2 holders) 7, rep3 8.
    """
    return (yield from ltz(ctx, proto, _diff(proto, x, y)))


def greater(ctx: OpContext, proto: Protocol, x: Operand, y: Operand) -> Step[Share]:
    """[x > y] (integer 0/1); see :func:`less`."""
    return (yield from ltz(ctx, proto, _diff(proto, y, x)))


def less_equal(ctx: OpContext, proto: Protocol, x: Operand, y: Operand) -> Step[Share]:
    """[x <= y] = 1 - [y < x] (integer 0/1); see :func:`less`."""
    c = yield from ltz(ctx, proto, _diff(proto, y, x))
    return _one_minus(proto, c)


def greater_equal(ctx: OpContext, proto: Protocol, x: Operand, y: Operand) -> Step[Share]:
    """[x >= y] = 1 - [x < y] (integer 0/1); see :func:`less`."""
    c = yield from ltz(ctx, proto, _diff(proto, x, y))
    return _one_minus(proto, c)


def _sign_bits(ctx: OpContext, proto: Protocol, d: Share) -> Step[tuple[Share, Share]]:
    """Boolean sign bits of d and -d from one batched MSB (rounds of one comparison)."""
    both = Share.combine(np.stack, [d, proto.neg(d)])
    bits = yield from msb(ctx, proto, both)
    shape = d.shape
    return bits.map(lambda p: p[0], shape=shape), bits.map(lambda p: p[1], shape=shape)


def equal(ctx: OpContext, proto: Protocol, x: Operand, y: Operand) -> Step[Share]:
    """[x == y] (integer 0/1): ``1 ^ msb(d) ^ msb(-d)`` for d = x - y; exact for |d| < 2^63.

    Rounds: those of :func:`less` (the two sign bits come from one batched MSB).
    """
    m0, m1 = yield from _sign_bits(ctx.child("msb"), proto, _diff(proto, x, y))
    eq = proto.xor_public(proto.xor(m0, m1), _ONE)
    return (yield from proto.bit_to_arith(ctx.child("b2a"), eq))


def not_equal(ctx: OpContext, proto: Protocol, x: Operand, y: Operand) -> Step[Share]:
    """[x != y] (integer 0/1); see :func:`equal`."""
    m0, m1 = yield from _sign_bits(ctx.child("msb"), proto, _diff(proto, x, y))
    return (yield from proto.bit_to_arith(ctx.child("b2a"), proto.xor(m0, m1)))


def sign(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """numpy.sign as an INTEGER share (-1, 0 or 1): [x > 0] - [x < 0]. Rounds: of :func:`less`."""
    m0, m1 = yield from _sign_bits(ctx.child("msb"), proto, x)
    both = Share.combine(np.stack, [m0, m1])
    a = yield from proto.bit_to_arith(ctx.child("b2a"), both)
    return proto.sub(a.map(lambda p: p[1], shape=x.shape), a.map(lambda p: p[0], shape=x.shape))


def abs_(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """|x| = x (1 - 2 [x < 0]), same scale as x, exact. Rounds: comparison + 1."""
    c = yield from ltz(ctx.child("ltz"), proto, x)
    s = proto.add_public(proto.mul_public(c, _MINUS_TWO), _ONE)
    return (yield from proto.mul(ctx.child("mul"), x, s))


def relu(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """max(x, 0) = x (1 - [x < 0]), same scale as x, exact. Rounds: comparison + 1."""
    c = yield from ltz(ctx.child("ltz"), proto, x)
    return (yield from proto.mul(ctx.child("mul"), x, _one_minus(proto, c)))


def _as_share(proto: Protocol, v: Operand, shape: tuple[int, ...]) -> Share:
    if isinstance(v, Share):
        return _broadcast(v, shape)
    return proto.public(np.ascontiguousarray(np.broadcast_to(public_ring(proto, v), shape)))


def maximum(ctx: OpContext, proto: Protocol, x: Share, y: Operand) -> Step[Share]:
    """Elementwise max(x, y) = x - [x < y] (x - y); exact. Rounds: comparison + 1."""
    d = _diff(proto, x, y)
    c = yield from ltz(ctx.child("ltz"), proto, d)
    t = yield from proto.mul(ctx.child("mul"), c, d)
    return proto.sub(_as_share(proto, x, d.shape), t)


def minimum(ctx: OpContext, proto: Protocol, x: Share, y: Operand) -> Step[Share]:
    """Elementwise min(x, y) = y + [x < y] (x - y); exact. Rounds: comparison + 1."""
    d = _diff(proto, x, y)
    c = yield from ltz(ctx.child("ltz"), proto, d)
    t = yield from proto.mul(ctx.child("mul"), c, d)
    return proto.add(_as_share(proto, y, d.shape), t)


def where(
    ctx: OpContext, proto: Protocol, c: Share | np.ndarray, a: Operand, b: Operand
) -> Step[Share]:
    """``c ? a : b`` elementwise = b + c (a - b), broadcast like numpy.where.

    Args:
        c: integer 0/1 share (e.g. a comparison result) or a public boolean array.
        a: share or public value.
        b: share or public value.

    Rounds: 1 if c and one of a, b are secret; 0 otherwise. Exact.
    """
    if not isinstance(c, Share):
        cond = np.asarray(c).astype(bool)
        if not isinstance(a, Share) and not isinstance(b, Share):
            raise TypeError("where with a public condition needs a secret-shared operand")
        shape = np.broadcast_shapes(cond.shape, *(v.shape for v in (a, b) if isinstance(v, Share)))
        mask = np.broadcast_to(cond, shape).astype(np.uint64)
        sa, sb = _as_share(proto, a, shape), _as_share(proto, b, shape)
        return proto.add(proto.mul_public(sa, mask), proto.mul_public(sb, np.uint64(1) - mask))
    shapes = [c.shape] + [v.shape if isinstance(v, Share) else np.shape(v) for v in (a, b)]
    shape = tuple(np.broadcast_shapes(*shapes))
    cs = _broadcast(c, shape)
    sb = _as_share(proto, b, shape)
    if not isinstance(a, Share) and not isinstance(b, Share):
        diff = np.broadcast_to(public_ring(proto, a) - public_ring(proto, b), shape)
        t = proto.mul_public(cs, np.ascontiguousarray(diff))
    else:
        t = yield from proto.mul(ctx, cs, proto.sub(_as_share(proto, a, shape), sb))
    return proto.add(sb, t)


def _tournament(
    ctx: OpContext, proto: Protocol, x: Share, axis: int, largest: bool, with_index: bool
) -> Step[tuple[Share, Share | None]]:
    """Max (or min) over ``axis`` by a tournament tree; optionally its first index."""
    ndim = len(x.shape)
    if not -ndim <= axis < ndim:
        raise ShapeError(f"axis {axis} out of range for a share of shape {x.shape}")
    axis %= ndim
    v = x.map(
        lambda p: np.moveaxis(p, axis, -1),
        shape=x.shape[:axis] + x.shape[axis + 1 :] + (x.shape[axis],),
    )
    length = v.shape[-1]
    if length == 0:
        raise ShapeError("max/min of an empty axis")
    idx: Share | None = None
    if with_index:
        idx = proto.public(
            np.ascontiguousarray(np.broadcast_to(np.arange(length, dtype=np.uint64), v.shape))
        )
    level = 0
    while length > 1:
        h = length // 2
        lead = v.shape[:-1]

        def take(s: Share, sl: slice, n: int, lead: tuple[int, ...] = lead) -> Share:
            return s.map(lambda p: p[..., sl], shape=lead + (n,))

        left, right = take(v, slice(0, 2 * h, 2), h), take(v, slice(1, 2 * h, 2), h)
        d = proto.sub(left, right) if largest else proto.sub(right, left)
        c = yield from ltz(ctx.child(level).child("cmp"), proto, d)  # 1: take the right one
        diffs = [proto.sub(right, left)]
        if idx is not None:
            diffs.append(
                proto.sub(take(idx, slice(1, 2 * h, 2), h), take(idx, slice(0, 2 * h, 2), h))
            )
        cc = Share.combine(lambda ps: np.concatenate(ps, axis=-1), [c] * len(diffs))
        dd = Share.combine(lambda ps: np.concatenate(ps, axis=-1), diffs)
        t = yield from proto.mul(ctx.child(level).child("sel"), cc, dd)
        rest = take(v, slice(2 * h, length), length - 2 * h)
        v = Share.combine(
            lambda ps: np.concatenate(ps, axis=-1), [proto.add(left, take(t, slice(0, h), h)), rest]
        )
        if idx is not None:
            ileft = take(idx, slice(0, 2 * h, 2), h)
            irest = take(idx, slice(2 * h, length), length - 2 * h)
            idx = Share.combine(
                lambda ps: np.concatenate(ps, axis=-1),
                [proto.add(ileft, take(t, slice(h, 2 * h), h)), irest],
            )
        length = v.shape[-1]
        level += 1
    lead = v.shape[:-1]
    val = v.map(lambda p: p[..., 0], shape=lead)
    out_idx = idx.map(lambda p: p[..., 0], shape=lead) if idx is not None else None
    return val, out_idx


def _reduce_axis(x: Share, axis: int | None) -> tuple[Share, int]:
    if axis is None:
        n = int(np.prod(x.shape, dtype=np.int64))
        return x.map(lambda p: p.reshape(-1), shape=(n,)), 0
    return x, axis


def _keep(x: Share, shape: Sequence[int], axis: int | None, keepdims: bool) -> Share:
    if not keepdims:
        return x
    if axis is None:
        kshape = tuple(1 for _ in shape)
    else:
        kshape = tuple(1 if i == axis % len(shape) else s for i, s in enumerate(shape))
    return x.map(lambda p: p.reshape(kshape), shape=kshape)


def max_(
    ctx: OpContext, proto: Protocol, x: Share, axis: int | None = None, keepdims: bool = False
) -> Step[Share]:
    """Maximum over ``axis`` (all elements if None), exact.

    Rounds: ceil(log2 L) * (comparison + 1) for an axis of length L.
    """
    flat, ax = _reduce_axis(x, axis)
    val, _ = yield from _tournament(ctx, proto, flat, ax, largest=True, with_index=False)
    return _keep(val, x.shape, axis, keepdims)


def min_(
    ctx: OpContext, proto: Protocol, x: Share, axis: int | None = None, keepdims: bool = False
) -> Step[Share]:
    """Minimum over ``axis``; see :func:`max_`."""
    flat, ax = _reduce_axis(x, axis)
    val, _ = yield from _tournament(ctx, proto, flat, ax, largest=False, with_index=False)
    return _keep(val, x.shape, axis, keepdims)


def _index(idx: Share | None) -> Share:
    if idx is None:  # pragma: no cover - _tournament(with_index=True) always returns one
        raise RuntimeError("tournament returned no index")
    return idx


def argmax(ctx: OpContext, proto: Protocol, x: Share, axis: int | None = None) -> Step[Share]:
    """Index of the first maximum over ``axis`` (flat index if None) as an INTEGER share.

    Rounds: those of :func:`max_` (the index rides along in the same multiplications).
    """
    flat, ax = _reduce_axis(x, axis)
    _, idx = yield from _tournament(ctx, proto, flat, ax, largest=True, with_index=True)
    return _index(idx)


def argmin(ctx: OpContext, proto: Protocol, x: Share, axis: int | None = None) -> Step[Share]:
    """Index of the first minimum over ``axis``; see :func:`argmax`."""
    flat, ax = _reduce_axis(x, axis)
    _, idx = yield from _tournament(ctx, proto, flat, ax, largest=False, with_index=True)
    return _index(idx)


def ge_thresholds(
    ctx: OpContext, proto: Protocol, x: Share, edges: np.ndarray, bits: int = 64
) -> Step[Share]:
    """``[x >= edges[j]]`` for every public ring edge, as integer shares of shape (K, *x.shape).

    One batched comparison: the rounds of :func:`less` whatever K is. ``bits`` < 64: exact
    when every |x - edge| < 2^(bits-1) (see :func:`ltz`).
    """
    edges = np.asarray(edges, dtype=np.uint64).reshape(-1)
    shape = (len(edges),) + x.shape
    xs = x.map(lambda p: np.broadcast_to(p, shape), shape=shape)
    d = proto.add_public(xs, np.negative(edges).reshape((-1,) + (1,) * len(x.shape)))
    lt = yield from ltz(ctx, proto, d, bits)
    return _one_minus(proto, lt)


def _row(j: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda p: p[j]


def ge_thresholds_rows(
    ctx: OpContext, proto: Protocol, x: Share, edges: np.ndarray, bits: int = 64
) -> Step[list[Share]]:
    """:func:`ge_thresholds` as K separate integer shares of x's shape (same rounds).

    One batched MSB of the K differences, then one ``bit_to_arith`` per threshold in the same
    round: for large x no (K, *shape) arithmetic array is made (its allocations and passes cost
    several times the injections themselves at 10^6 values).
    """
    edges = np.asarray(edges, dtype=np.uint64).reshape(-1)
    shape = (len(edges),) + x.shape
    xs = x.map(lambda p: np.broadcast_to(p, shape), shape=shape)
    d = proto.add_public(xs, np.negative(edges).reshape((-1,) + (1,) * len(x.shape)))
    lt = yield from msb(ctx.child("msb"), proto, d, bits)
    rows = [lt.map(_row(j), shape=x.shape) for j in range(len(edges))]
    b2a = ctx.child("b2a")
    arith = yield from gather(proto.bit_to_arith(b2a.child(j), r) for j, r in enumerate(rows))
    return [_one_minus(proto, a) for a in arith]


def buckets(proto: Protocol, ge: Share) -> Share:
    """One-hot bucket indicators from increasing-threshold bits ``ge`` (K, *shape), local.

    Returns shape (K + 1, *shape): bucket 0 is ``x < edge_0``, bucket j is
    ``edge_(j-1) <= x < edge_j``, bucket K is ``x >= edge_(K-1)``.
    """
    rest = ge.shape[1:]
    one = proto.public(np.ones((1,) + rest, dtype=np.uint64))
    zero = proto.public(np.zeros((1,) + rest, dtype=np.uint64))
    ext = Share.combine(lambda ps: np.concatenate(ps, axis=0), [one, ge, zero])
    k = ge.shape[0]
    hi = ext.map(lambda p: p[: k + 1], shape=(k + 1,) + rest)
    lo = ext.map(lambda p: p[1:], shape=(k + 1,) + rest)
    return proto.sub(hi, lo)
