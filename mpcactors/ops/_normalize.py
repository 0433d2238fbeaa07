"""Normalisation by the top set bit of |x| from ONE bit decomposition (reciprocal, log, sqrt).

Theory of operation
-------------------
The non-linear functions of ``_nonlinear.py`` scale x into [0.5, 1) by the power of two of its
top set bit i: they need, for every bit position j of a documented range lo..hi, the threshold
bit ``ge_j = [|x| >= 2^j]`` as an arithmetic 0/1 share (the one-hot bucket of the top bit is
``ge_(j-1) - ge_j``). Comparing x with K public thresholds (``_compare.ge_thresholds``, the
previous method) is K full MSB circuits per value; here one A2B gives all of them, as in SPU's
``highestOneBit`` (prefix OR over the bits of a bit decomposition):

1. ``bits = a2b(x)`` (``_boolean.a2b``: Kogge-Stone), s = bit 63 = [x < 0].
2. Unsigned use (log, sqrt, rsqrt): ``w = bits``. Signed use (reciprocal, division):
   ``w = bits XOR (s, s, .., s)``, which is x for x >= 0 and ``~x = |x| - 1`` for x < 0.
3. Suffix OR, log-depth: ``o |= o >> k`` for k = 1, 2, .., 32 (``a | b = a ^ b ^ (a & b)``, one
   AND a level): bit j of o is ``OR_{k >= j} w_k = [w >= 2^j]``. 6 AND rounds.
4. ``ge_j = o_j``, except that for x < 0 we have w = |x| - 1, which is below 2^j when |x| = 2^j
   exactly. Inside the range that only moves |x| = 2^i one bucket down, where u = |x| 2^(f-i)
   = 1 exactly (still a valid argument of every series: t = 4u - 3 = 1). At the two ends it
   would change which values saturate, so ``ge_lo`` and ``ge_hi`` get the exact correction
   ``e_j = [x < 0 and w = 2^j - 1]`` (then o_j = 0, so ``ge_j = o_j ^ e_j``): an AND of the 64
   bits of ``w ^ ~(2^j - 1)`` with s in bit 63, a log-depth AND tree whose 6 levels share the
   suffix OR's rounds (both edges packed into one word).
5. The K + 1 bits ``ge_lo .. ge_hi`` (and s, unsigned) are injected in one round, one
   ``bit_to_arith`` per row: rows of x's size, never one (K + 1, n) array (at 10^6 values the
   big array's allocations and passes cost 4x the injection itself). A public weight per bucket is then selected locally from the bits themselves (Abel
   summation: ``sum_b onehot_b w_b = w_0 + sum_j ge_j (w_(j+1) - w_j)``), never forming the
   (K + 2)-row one-hot. Unsigned: a negative x has bit 63 set, so every ge_j = 1 (bucket
   "above"); moving it to bucket 0 is the linear term ``s (w_0 - w_(K+1))``. Signed: the
   buckets are those of |x|, and s is injected early (right after the A2B, in parallel with
   step 3) so that |x| = x (1 - 2s) and other sign products are ready when the bits are.

Cost per value: one A2B (about 13 word ANDs), 6 word ANDs (12 signed), K + 2 bit injections,
against
2K full comparisons (each about 2.5 word ANDs after packing plus the bit reversal and splits)
and 2K + 3 injections for the threshold method. Rounds: A2B + 6 + 1 (semi2k with 2 holders
7 + 6 + 1 = 14, rep3 8 + 6 + 1 = 15), against one comparison (7, 8) for the thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from ._boolean import a2b, and_many
from ._comm import Step, gather
from ._context import OpContext
from ._fxp import mul_many, sum_split_products
from ._protocol import Protocol, Share

__all__ = [
    "Pow2Sums",
    "TopBit",
    "ge_pow2",
    "mul_pow2",
    "pow2_sums",
    "signed_sums",
    "suffix_or",
    "top_bit",
]

_U64 = np.uint64
_ONE = _U64(1)
_ALL = _U64(2**64 - 1)
_LOW32 = _U64(2**32 - 1)


def _local(x: Share, fn: Callable[[np.ndarray], np.ndarray]) -> Share:
    """A shape-preserving local map (also at a party that holds no parts)."""
    return x.map(fn, shape=x.shape)


def _shr(k: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda p: p >> _U64(k)


def _shl(k: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda p: p << _U64(k)


def suffix_or(ctx: OpContext, proto: Protocol, w: Share) -> Step[Share]:
    """Bit j of the result is the OR of bits j..63 of w (``[w >= 2^j]`` for w >= 0).

    Math: ``o |= o >> k`` for k = 1, 2, 4, .., 32 with ``a | b = a ^ b ^ (a & b)``.
    Rounds: 6 AND rounds (one AND of every word a round).
    """
    o, _ = yield from _or_and_trees(ctx, proto, w, None)
    return o


def _or_and_trees(
    ctx: OpContext, proto: Protocol, w: Share, z: tuple[Share, Share] | None
) -> Step[tuple[Share, Share | None]]:
    """The suffix OR of w and, in the same 6 rounds, the AND of all bits of two 64-bit words
    packed as 32-bit lanes (``z``: the low and high halves, see :func:`_edge_words`): bit 0 of
    the second result is the AND of the first word, bit 32 that of the second."""
    o = w
    a: Share | None = None
    k = 1
    while k < 64:
        shifted = _local(o, _shr(k))
        pairs = [(o, shifted)]
        if z is not None:  # level 1 ANDs the halves, then 16, 8, 4, 2, 1 within each lane
            pairs.append(z if a is None else (a, _local(a, _shr(32 // k))))
        out = yield from and_many(ctx.child(k), proto, pairs)
        o = proto.xor(proto.xor(o, shifted), out[0])
        if z is not None:
            a = out[1]
        k *= 2
    return o, a


def _edge_words(
    proto: Protocol, bits: Share, w: Share, lo: int, hi: int
) -> tuple[Share, Share]:
    """Operands of the first AND level for ``e_j = [x < 0 and w = 2^j - 1]``, j = lo and hi.

    ``z_j = w ^ (ones on bits j..62)`` with s in bit 63 is all ones iff e_j. The first operand
    holds the low halves of z_lo (lane 0) and z_hi (lane 1), the second their high halves.
    """
    top = np.asarray(_U64(1) << _U64(63))

    def z(j: int) -> Share:
        m = np.asarray(_U64(((1 << 63) - 1) ^ ((1 << j) - 1)))
        return proto.xor(proto.xor_public(w, m), proto.and_public(bits, top))

    zl, zh = z(lo), z(hi)
    low = proto.xor(proto.and_public(zl, np.asarray(_LOW32)), _local(zh, lambda p: p << _U64(32)))
    high = proto.xor(_local(zl, _shr(32)), proto.and_public(zh, np.asarray(_ALL ^ _LOW32)))
    return low, high


def _ge_from_bits(
    ctx: OpContext, proto: Protocol, bits: Share, s: Share, lo: int, hi: int, signed: bool
) -> Step[Share]:
    """Steps 2-4 of the module doc on the A2B's bits (6 AND rounds)."""
    if not signed:
        return (yield from suffix_or(ctx, proto, bits))
    w = proto.xor(bits, _local(s, np.negative))  # x, or ~x = |x| - 1 if x < 0
    o, e = yield from _or_and_trees(ctx, proto, w, _edge_words(proto, bits, w, lo, hi))
    if e is None:  # pragma: no cover - the tree is asked for
        raise RuntimeError("edge AND tree missing")
    # e: bit 0 is e_lo, bit 32 is e_hi; o has 0 at those positions where e is 1: flip them
    e_lo = proto.and_public(e, np.asarray(_ONE))
    e_hi = proto.and_public(_local(e, _shr(32)), np.asarray(_ONE))
    fix = proto.xor(_local(e_lo, _shl(lo)), _local(e_hi, _shl(hi)))
    return proto.xor(o, fix)


def _check_range(lo: int, hi: int) -> None:
    if not 0 <= lo < hi <= 62:
        raise ValueError(f"bit range {lo}..{hi} must satisfy 0 <= lo < hi <= 62")


def ge_pow2(
    ctx: OpContext, proto: Protocol, x: Share, lo: int, hi: int, signed: bool
) -> Step[tuple[Share, Share]]:
    """Boolean words whose bit j (lo <= j <= hi) is the threshold bit, and s = [x < 0] (bit 0).

    Unsigned: ``[x >= 2^j or x < 0]``. Signed: ``[|x| >= 2^j]`` at j = lo and hi, and
    ``[|x| - [x < 0] >= 2^j]`` inside (x = -2^j lands one bucket down: module doc, step 4).
    Exact for every x (no range limit). Rounds: A2B + 6 AND rounds (semi2k 13, rep3 14).
    """
    _check_range(lo, hi)
    bits = yield from a2b(ctx.child("a2b"), proto, x)
    s = _local(bits, _shr(63))
    ge = yield from _ge_from_bits(ctx.child("or"), proto, bits, s, lo, hi, signed)
    return ge, s


def _weighted_rows(rows: Sequence[np.ndarray], d: np.ndarray) -> np.ndarray:
    """``sum_j rows[j] d[j]`` without a (K, n) temporary."""
    acc = np.multiply(rows[0], d[0])
    tmp = np.empty_like(acc)
    for j in range(1, len(rows)):
        np.multiply(rows[j], d[j], out=tmp)
        acc += tmp
    return acc


class TopBit(NamedTuple):
    """What :func:`top_bit` returns: the threshold bits and, for signed inputs, the sign.

    Bucket b of the top set bit (0: |x| < 2^lo; 1 + j - lo: top bit j; K + 1: |x| >= 2^hi,
    K = hi - lo) is ``ge[b-1] - ge[b]`` (ge[-1] = 1, ge[K+1] = 0); :meth:`select` sums public
    weights over buckets from ``ge`` directly (Abel summation), never forming the one-hot.
    """

    ge: list[Share]  # K + 1 integer 0/1 shares of x's shape: [|x| >= 2^j] for j = lo..hi
    neg: Share | None  # unsigned: [x < 0], moved from the last bucket to bucket 0
    sign: Share | None  # signed: the integer 1 - 2 [x < 0]; unsigned: None
    products: list[Share]  # v * sign for each of ``sign_products`` (signed)

    def select(self, proto: Protocol, weights: np.ndarray) -> Share:
        """``sum_b onehot_b weights[b]`` for public ring weights (K + 2 of them), local.

        Math: ``w[0] + sum_j ge_j (w[j+1] - w[j])`` (+ ``neg (w[0] - w[K+1])`` unsigned).
        """
        w = np.asarray(weights, dtype=np.uint64).reshape(-1)
        k = len(self.ge)
        if w.shape[0] != k + 1:
            raise ValueError(f"{w.shape[0]} weights for {k + 1} buckets")
        d = w[1:] - w[:-1]
        rows = list(self.ge)
        if self.neg is not None:  # x < 0: bucket K + 1 -> 0
            d = np.append(d, np.subtract(w[:1], w[-1:]))
            rows.append(self.neg)
        shape = self.ge[0].shape
        parts = tuple(
            _weighted_rows([r.parts[i] for r in rows], d) for i in range(len(rows[0].parts))
        )
        acc = Share(parts, shape, "arith")
        return proto.add_public(acc, np.asarray(w[0]))

    def onehot(self, proto: Protocol) -> Share:
        """The one-hot buckets as integer 0/1 shares, (K + 2, *shape) (for tests; local)."""
        eye = np.eye(len(self.ge) + 1, dtype=np.uint64)
        return Share.combine(np.stack, [self.select(proto, row) for row in eye])
def top_bit(
    ctx: OpContext,
    proto: Protocol,
    x: Share,
    lo: int,
    hi: int,
    signed: bool,
    sign_products: Sequence[Share] = (),
) -> Step[TopBit]:
    """One-hot bucket of the top set bit of |x| (signed) or x (unsigned, x <= 0: bucket 0).

    Buckets: 0 for |x| < 2^lo, 1 + j - lo for 2^j <= |x| < 2^(j+1) (lo <= j < hi), the last
    for |x| >= 2^hi (ring units). ``sign_products`` (signed only) are multiplied by the sign
    while the decomposition runs, so |x| = x * sign costs no round of its own.

    Rounds: A2B + 6 AND rounds + 1 injection (semi2k with 2 holders 14, rep3 15).
    """
    _check_range(lo, hi)
    if sign_products and not signed:
        raise ValueError("sign_products need signed=True")
    bits = yield from a2b(ctx.child("a2b"), proto, x)
    s = _local(bits, _shr(63))

    def sign_chain(c: OpContext) -> Step[tuple[Share, list[Share]]]:
        sa = yield from proto.bit_to_arith(c.child("b2a"), s)
        sg = proto.add_public(proto.mul_public(sa, np.asarray(_U64(2**64 - 2))), np.asarray(_ONE))
        prods = yield from mul_many(c.child("mul"), proto, [(v, sg) for v in sign_products])
        return sg, prods

    ge_step = _ge_from_bits(ctx.child("or"), proto, bits, s, lo, hi, signed)
    if signed:
        ge, (sign, prods) = yield from gather([ge_step, sign_chain(ctx.child("sign"))])
    else:
        ge = yield from ge_step
        sign, prods = None, []
    # one bit_to_arith per row (all in one round): K + 1 arrays of x's size, never a (K, n) one
    rows = [proto.and_public(_local(ge, _shr(j)), np.asarray(_ONE)) for j in range(lo, hi + 1)]
    if not signed:
        rows.append(s)
    b2a = ctx.child("b2a")
    arith = yield from gather(proto.bit_to_arith(b2a.child(j), r) for j, r in enumerate(rows))
    k = hi - lo + 1
    return TopBit(arith[:k], None if signed else arith[k], sign, prods)


# ---- products by a selected power of two, with a sign ---------------------------------------


class Pow2Sums(NamedTuple):
    """A selected weight ``sum_b onehot_b w_b`` split as in ``_fxp.mul_onehot_pow2``."""

    big: Share | None  # the weights |w| >= 1 (integers)
    small: Share | None  # the weights |w| < 1 times 2^k (integers)
    k: int


def pow2_sums(proto: Protocol, tb: TopBit, weights: Sequence[np.ndarray]) -> list[Pow2Sums]:
    """Selected weights for public per-bucket weights that are powers of two (or 0), local.

    One k for all (the smallest nonzero |w| < 1 is 2^-k), so :func:`mul_pow2` truncates once.
    """
    ws = [np.asarray(w, dtype=np.float64) for w in weights]
    small = [abs(w[(w != 0) & (np.abs(w) < 1)]) for w in ws]
    mins = [float(v.min()) for v in small if v.size]
    k = max(0, int(np.ceil(-np.log2(min(mins))))) if mins else 0

    def part(v: np.ndarray) -> Share | None:
        if not np.any(v):
            return None
        return tb.select(proto, np.rint(v).astype(np.int64).view(np.uint64))

    return [
        Pow2Sums(
            part(np.where(np.abs(w) >= 1, w, 0.0)), part(np.where(np.abs(w) < 1, w, 0.0) * 2.0**k), k
        )
        for w in ws
    ]


def signed_sums(
    ctx: OpContext, proto: Protocol, sums: Sequence[Pow2Sums], sign: Share
) -> Step[list[Pow2Sums]]:
    """The selected weights times an integer +-1 share (exact integer products). Rounds: 1."""
    parts = [p for s in sums for p in (s.big, s.small) if p is not None]
    prods = iter((yield from mul_many(ctx, proto, [(p, sign) for p in parts])))
    return [
        Pow2Sums(
            next(prods) if s.big is not None else None,
            next(prods) if s.small is not None else None,
            s.k,
        )
        for s in sums
    ]


def mul_pow2(
    ctx: OpContext, proto: Protocol, terms: Sequence[tuple[Share, Pow2Sums]]
) -> Step[Share]:
    """``sum_s y_s w_s`` for selected weights: ``y big + trunc(sum y small, k)``.

    Only the small parts pass the (one) truncation, at magnitude |y| 2^(f+k), so large results
    never do (``_fxp.mul_onehot_pow2``). Rounds: 1 + a truncation (1 if no weight is < 1).
    """
    big = [(y, s.big) for y, s in terms if s.big is not None]
    small = [(y, s.small) for y, s in terms if s.small is not None]
    return (yield from sum_split_products(ctx, proto, big, small, terms[0][1].k, "mul_pow2"))
