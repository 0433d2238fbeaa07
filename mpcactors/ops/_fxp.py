"""Fixed-point helpers on the kernel: products rescaled by ``proto.fxp_bits``, public constants.

Theory of operation
-------------------
A fixed-point value v is the ring element round(v * 2^f) (two's complement, f = ``fxp_bits``).
A product of two such elements carries 2f fractional bits, so every fixed-point product is
followed by :meth:`Protocol.truncate` by f (or fused with it: :meth:`Protocol.mul_trunc`). The
truncation is faithful (``_trunc.py``): off by at most one unit in the last place for every
truncated magnitude below 2^62, so large intermediate products never blow up. Rounds of a
fixed-point product: 2 in every protocol (semi2k: Beaver round + the opening of x + r; rep3: the
product's round feeds the opening, then one re-replication round).

A product of a fixed-point share with an *integer* share (a comparison bit, a power of two) is
already fixed point: no truncation, no failure. Comparisons return such integer 0/1 shares;
:func:`int_to_fxp` scales them when a fixed-point 0/1 is wanted.

Public operands: a ``numpy.uint64`` array is taken as ring elements (already encoded); any
other number or array is a real value and is encoded with ``proto.fxp_bits``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.polynomial import chebyshev as cheb

from ._comm import Step, gather
from ._context import OpContext
from ._protocol import Protocol, Share
from ._ring import encode

__all__ = [
    "PublicLike",
    "chebyshev",
    "fxp_const",
    "fxp_matmul",
    "fxp_mul",
    "fxp_mul_public",
    "fxp_square",
    "int_to_fxp",
    "mul_many",
    "mul_onehot_pow2",
    "public_ring",
    "sum_split_products",
    "truncate_many",
    "weighted_sum",
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

    Accuracy: within 1 ulp (2^-f) of the exact product of the encoded values for
    |x y| < 2^(62-2f). Rounds: 2 (:meth:`Protocol.mul_trunc`).
    """
    return (yield from proto.mul_trunc(ctx, x, y, proto.fxp_bits))


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
    return (yield from proto.matmul_trunc(ctx, x, y, proto.fxp_bits))


def mul_many(
    ctx: OpContext, proto: Protocol, pairs: Sequence[tuple[Share, Share]], trunc: int | None = None
) -> Step[list[Share]]:
    """Independent products in one round (fixed-point products, ``trunc`` given: 2 rounds).

    ``trunc=None``: raw ring products (use when one side is an integer share); ``trunc=f``:
    fixed-point products.
    """

    def one(i: int, x: Share, y: Share) -> Step[Share]:
        if trunc:
            return (yield from proto.mul_trunc(ctx.child(i), x, y, trunc))
        return (yield from proto.mul(ctx.child(i).child("mul"), x, y))

    return (yield from gather(one(i, x, y) for i, (x, y) in enumerate(pairs)))


def truncate_many(
    ctx: OpContext, proto: Protocol, xs: Sequence[Share], bits: int
) -> Step[list[Share]]:
    """Independent truncations by ``bits`` in the rounds of one (semi2k 1, rep3 2)."""
    return (yield from gather(proto.truncate(ctx.child(i), x, bits) for i, x in enumerate(xs)))


def _scaled_products(
    ctx: OpContext,
    proto: Protocol,
    pairs: Sequence[tuple[Share, Share]],
    scale: int | Sequence[int],
) -> Step[list[Share]]:
    """``trunc(scale * a * b, f)`` for independent pairs: one product round, one truncation."""
    scales = [scale] * len(pairs) if isinstance(scale, int) else list(scale)

    def one(i: int, a: Share, b: Share) -> Step[Share]:
        if scales[i] != 1:  # an integer scale is exact on either factor
            a = proto.mul_public(a, np.asarray(np.uint64(scales[i])))
        return (yield from proto.mul_trunc(ctx.child(i), a, b, proto.fxp_bits))

    return (yield from gather(one(i, a, b) for i, (a, b) in enumerate(pairs)))


_BABY = 4  # Paterson-Stockmeyer baby steps T_0..T_3; giant steps T_4, T_8, T_16, ...


class _Leaf:
    """A degree <= 3 piece: a local weighted sum of T_0..T_3."""

    __slots__ = ("coeffs", "value")

    def __init__(self, coeffs: np.ndarray) -> None:
        self.coeffs = coeffs
        self.value: Share | None = None


class _Node:
    """``low + T_m high`` (Paterson-Stockmeyer split by Chebyshev division)."""

    __slots__ = ("high", "low", "m", "value")

    def __init__(self, m: int, low: _Leaf | _Node, high: _Leaf | _Node) -> None:
        self.m, self.low, self.high = m, low, high
        self.value: Share | None = None


def _ps_split(c: np.ndarray, giant: int) -> _Leaf | _Node:
    """Chebyshev series -> tree of pieces, p = low + T_m high, leaves of degree <= 3."""
    c = np.trim_zeros(np.asarray(c, dtype=np.float64), "b")
    if len(c) <= _BABY:
        return _Leaf(np.pad(c, (0, _BABY - len(c))))
    while giant >= len(c):
        giant //= 2
    high, low = cheb.chebdiv(c, [0.0] * giant + [1.0])
    return _Node(giant, _ps_split(low, giant // 2), _ps_split(high, giant // 2))


def _walk(tree: _Leaf | _Node) -> list[_Leaf | _Node]:
    if isinstance(tree, _Leaf):
        return [tree]
    return [tree, *_walk(tree.low), *_walk(tree.high)]


def _value(piece: _Leaf | _Node) -> Share:
    if piece.value is None:  # pragma: no cover - evaluation order guarantees it
        raise RuntimeError("Chebyshev piece evaluated before its parts")
    return piece.value


def chebyshev(
    ctx: OpContext,
    proto: Protocol,
    t: Share,
    series: Sequence[np.ndarray],
    *,
    extra_bits: int = 0,
) -> Step[list[Share]]:
    """Chebyshev series ``sum_k c_k T_k(t)`` for each coefficient vector c (one shared basis).

    Math: baby steps T_2, T_3, T_4 from ``T_(a+b) = 2 T_a T_b - T_|a-b|``, giant steps
    ``T_2m = 2 T_m^2 - 1``; each series is split Paterson-Stockmeyer style by Chebyshev division,
    ``p = low + T_m high`` (m = 8, then 4), down to degree-3 leaves that are local weighted sums
    of T_0..T_3. Degree d <= 15 costs 4 product levels (d <= 7: 3) but only 3 + log2(d/4) +
    (number of splits) products, e.g. 7 for d = 15 instead of 14 with the full basis. For t in
    [-1, 1] every T_k and every piece is bounded (pieces by the series' coefficients), so
    truncated magnitudes stay near 2^(2f+1) and errors stay a few ulp.

    Args:
        t: fixed-point share, the argument mapped into [-1, 1] (outside it, T_k grows like
            |t|^k: results are meaningless, and products may overflow).
        series: coefficient vectors (real, e.g. from numpy.polynomial.chebyshev).
        extra_bits: the results carry f + extra_bits fractional bits (coefficients encoded and
            sums rounded that finely), for callers that scale them up afterwards.

    Rounds: ceil(log2(d + 1)) product levels of 2 rounds each (fused fixed-point products),
    + one truncation (d <= 7: semi2k 7, rep3 8).
    """
    f = proto.fxp_bits
    degree = max(len(c) for c in series) - 1
    one = fxp_const(proto, 1.0)
    basis: dict[int, Share] = {1: t}
    # baby steps (and T_4, the first giant step)
    for level, ks in enumerate(([2], [3, 4])):
        ks = [k for k in ks if k <= max(degree, 1) and (k < _BABY or degree >= _BABY)]
        if not ks:
            break
        pairs = [(basis[(k + 1) // 2], basis[k // 2]) for k in ks]
        prods = yield from _scaled_products(ctx.child(f"baby{level}"), proto, pairs, 2)
        for k, p in zip(ks, prods):
            basis[k] = proto.add_public(p, np.negative(one)) if k % 2 == 0 else proto.sub(p, t)
    giant = 1 << max(2, (degree.bit_length() - 1))  # largest power of two <= degree, >= 4
    trees = [_ps_split(np.asarray(c, dtype=np.float64) * 2.0**extra_bits, giant) for c in series]
    pieces = [piece for tree in trees for piece in _walk(tree)]
    leaves = [piece for piece in pieces if isinstance(piece, _Leaf)]
    sums = []
    for leaf in leaves:  # local weighted sums of T_0..T_3, one truncation for all
        c = leaf.coeffs
        acc = proto.mul_public(t, fxp_const(proto, c[1]))
        for k in (2, 3):
            if c[k] != 0.0:
                acc = proto.add(acc, proto.mul_public(basis[k], fxp_const(proto, c[k])))
        sums.append(acc)
    truncated = yield from truncate_many(ctx.child("leaves"), proto, sums, f)
    for leaf, v in zip(leaves, truncated):
        leaf.value = proto.add_public(v, fxp_const(proto, leaf.coeffs[0]))
    m = _BABY
    while m <= giant:  # nodes bottom-up: all with giant step m in one round, T_2m alongside
        nodes = [p for p in pieces if isinstance(p, _Node) and p.m == m]
        pairs = [(basis[m], _value(node.high)) for node in nodes]
        want_next = 2 * m <= giant
        if want_next:
            pairs.append((basis[m], basis[m]))
        scales = [1] * len(nodes) + [2] * want_next
        prods = yield from _scaled_products(ctx.child(f"giant{m}"), proto, pairs, scales)
        if want_next:
            basis[2 * m] = proto.add_public(prods.pop(), np.negative(one))
        for node, prod in zip(nodes, prods):
            node.value = proto.add(_value(node.low), prod)
        m *= 2
    return [_value(tree) for tree in trees]


def weighted_sum(proto: Protocol, onehot: Share, weights: np.ndarray) -> Share:
    """``sum_b onehot[b] * weights[b]`` over the leading axis, for public ring weights (local)."""
    w = np.asarray(weights, dtype=np.uint64).reshape((-1,) + (1,) * (len(onehot.shape) - 1))
    return proto.mul_public(onehot, w).map(
        lambda p: p.sum(axis=0, dtype=np.uint64), shape=onehot.shape[1:]
    )


def mul_onehot_pow2(
    ctx: OpContext,
    proto: Protocol,
    terms: Sequence[tuple[Share, np.ndarray]],
    onehot: Share,
) -> Step[Share]:
    """``sum_s y_s * w_s[b]`` where b is the bucket whose one-hot bit is set.

    ``onehot`` is an integer 0/1 share of shape (B, *shape) with at most one 1 per element (all
    zero gives 0); each ``w_s`` is a public vector of B weights that are integers or multiples of
    2^-K (powers of two here). Math: split w = A + B 2^-K with A the weights >= 1 and B the
    scaled small ones; ``y A`` is an integer product (no truncation); ``y B`` is truncated by K
    once, at magnitude |y| 2^(f+K), so large results never go through a truncation.

    Rounds: 1 + the truncation's rounds (one product round for all terms).
    """
    small = [abs(w[(w != 0) & (np.abs(w) < 1)]) for _, w in terms]
    mins = [float(s.min()) for s in small if s.size]
    k = max(0, int(np.ceil(-np.log2(min(mins))))) if mins else 0
    big_pairs, small_pairs = [], []
    for y, w in terms:
        w = np.asarray(w, dtype=np.float64)
        big = np.where(np.abs(w) >= 1, w, 0.0)
        little = np.where(np.abs(w) < 1, w, 0.0) * 2.0**k
        if np.any(big):
            big_pairs.append((y, weighted_sum(proto, onehot, big.astype(np.int64).view(np.uint64))))
        if np.any(little):
            ints = np.rint(little).astype(np.int64)
            small_pairs.append((y, weighted_sum(proto, onehot, ints.view(np.uint64))))
    return (yield from sum_split_products(ctx, proto, big_pairs, small_pairs, k, "mul_onehot_pow2"))


def sum_split_products(
    ctx: OpContext,
    proto: Protocol,
    big: Sequence[tuple[Share, Share]],
    small: Sequence[tuple[Share, Share]],
    k: int,
    what: str,
) -> Step[Share]:
    """``sum(a * b for big) + trunc(sum(a * b for small), k)``: all products in one round, then
    one truncation by ``k`` of the small ones' sum (the weights scaled by 2^k), so results of
    large magnitude never pass a truncation. Rounds: 1 + the truncation's (none without small).

    Raises:
        ValueError: both lists are empty (``what`` names the caller).
    """
    if not big and not small:
        raise ValueError(f"{what}: every weight is zero")
    prods = yield from mul_many(ctx.child("mul"), proto, list(big) + list(small))
    out = None
    for p in prods[: len(big)]:
        out = p if out is None else proto.add(out, p)
    if small:
        acc = prods[len(big)]
        for p in prods[len(big) + 1 :]:
            acc = proto.add(acc, p)
        (low,) = yield from truncate_many(ctx.child("trunc"), proto, [acc], k)
        out = low if out is None else proto.add(out, low)
    if out is None:  # pragma: no cover - big or small is non-empty
        raise RuntimeError(f"{what}: no product")
    return out
