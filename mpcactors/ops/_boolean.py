"""Boolean circuits on XOR-shared uint64 words: MSB, A2B, B2A, written once for every protocol.

Theory of operation
-------------------
A boolean share holds 64 independent bits per uint64 word; AND is the protocol's multiplication
over GF(2) (:meth:`Protocol.and_`), XOR, shifts, masks and any fixed bit permutation are local.
Every arithmetic share ``x`` comes with boolean shares of *summands* whose sum mod 2^64 is ``x``
(:meth:`Protocol.a2b_summands`: 2 for 2-party semi2k, 3 for rep3). Carry-save adders reduce
three summands to two in one AND round ([CSA]: ``s = a^b^c``, ``m = maj(a, b, c)``,
``a + b + c = s + 2m``).

**MSB** (the sign bit, basis of every comparison) of ``u + v`` is ``u63 ^ v63 ^ c63`` where the
carry into bit 63 is the group generate ``G[62:0]`` of the parallel-prefix carry operator
``(G, P) o (G', P') = (G ^ P G', P P')`` over leaves ``g_i = u_i v_i``, ``p_i = u_i ^ v_i``
([KS] Kogge-Stone; XOR may replace OR since G and P of one group are exclusive). We evaluate only
the *tree* that yields G[62:0] (Brent-Kung's upward sweep, as in SPU's ``carry_out``), with two
refinements:

* **Compaction.** Each tree level halves the bits per element; the halves of two words are packed
  into one, so a level on n elements ANDs n/2^L words, not n (about 2.5n words in all instead
  of 12n). Bits are first put in bit-reversed order (``rev6``) so every split is a mask and a
  shift; after six levels word ``k`` bit ``f`` holds element ``k + f n/64``.
* **Depth 6, not 7.** The 63 carry positions are shifted up by one over a dummy position 0 with
  ``g = 0``. The lowest group of every level then never waits for its own generate, so the
  lowest group of level r is ready after round r while the other groups of level r are ready
  after round r+1; the root (level 6) needs ``G`` of the upper half (level 5, round 6) and
  ``P[63:32] G[31:0]`` (round 6). Leaf generates and level-1 propagates share round 1. In each
  round the generates of level r-1, the propagates of level r and the lowest generate of level
  r share one AND call (:func:`_carry63`): ``ceil(log2(64))`` = 6 AND rounds for two summands,
  7 after a CSA (rep3).

**A2B** (full boolean sharing) uses the whole Kogge-Stone prefix (1 + 6 AND rounds, n words per
level). **B2A** unpacks bits into words, converts each with :meth:`Protocol.bit_to_arith` (one
round) and sums with weights 2^i.

[KS] P. Kogge, H. Stone, "A parallel algorithm for the efficient solution of a general class of
recurrence equations", IEEE TC 1973. [CSA] Wallace 1964; used for A2B in ABY3 (Mohassel, Rindal,
CCS 2018, section 5.3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ._comm import Step, gather
from ._context import OpContext
from ._protocol import Protocol, Share

__all__ = ["a2b", "and_many", "b2a", "carry63_rounds", "msb", "reduce_summands"]

_U64 = np.uint64
_ONE = _U64(1)


def _mask(bits: list[int]) -> np.ndarray:
    return np.asarray(_U64(sum(1 << i for i in bits)))


def _half_mask(level: int) -> np.ndarray:
    w = 64 >> level
    return _mask([i for i in range(64) if i % w < w // 2])


def _block0_mask(level: int) -> np.ndarray:
    w = 64 >> level
    return _mask([i for i in range(64) if i % w == 0])


def _swap_mask(a: int, b: int) -> np.ndarray:
    return _mask([i for i in range(64) if (i >> a) & 1 == 1 and (i >> b) & 1 == 0])


# Level L of the carry tree: fields of w = 64 >> L bits. _HALF[L]: low half of each field;
# _BLOCK0[L]: bit 0 of each field (the lowest group).
_HALF = tuple(_half_mask(lv) for lv in range(6))
_BLOCK0 = tuple(_block0_mask(lv) for lv in range(7))
# rev6 = three delta swaps exchanging index bits (0,5), (1,4), (2,3).
_REV_SWAPS = tuple(((1 << b) - (1 << a), _swap_mask(a, b)) for a, b in ((0, 5), (1, 4), (2, 3)))


_CHUNK = 1 << 14  # words per pass of _rev6: 128 KiB stays in cache across the 18 passes


def _rev6(p: np.ndarray) -> np.ndarray:
    """Move bit i of every word to bit rev6(i) (6-bit index reversal; an involution)."""
    out = np.array(p, dtype=np.uint64, copy=True).reshape(-1)
    t = np.empty(min(_CHUNK, out.size), dtype=np.uint64)
    for start in range(0, out.size, _CHUNK):
        x = out[start : start + _CHUNK]
        tt = t[: x.size]
        for delta, mask in _REV_SWAPS:
            d = _U64(delta)
            np.right_shift(x, d, out=tt)
            tt ^= x
            tt &= mask
            x ^= tt
            tt <<= d
            x ^= tt
    return out.reshape(np.shape(p))


def _split(x: Share, level: int) -> tuple[Share, Share]:
    """Level-``level`` words (n) -> (even groups, odd groups) in level+1 layout (n/2 words)."""
    h = _U64(32 >> level)
    mask = _HALF[level]
    m = x.shape[0] // 2

    def lo(p: np.ndarray) -> np.ndarray:
        a = p[:m] & mask
        b = p[m:] & mask
        b <<= h
        a |= b
        return a

    def hi(p: np.ndarray) -> np.ndarray:
        a = p[:m] >> h
        a &= mask
        b = p[m:] & np.invert(mask)
        a |= b
        return a

    return x.map(lo, shape=(m,)), x.map(hi, shape=(m,))


def _shl(k: int) -> Callable[[np.ndarray], np.ndarray]:
    amount = _U64(k)

    def fn(p: np.ndarray) -> np.ndarray:
        return p << amount

    return fn


def _local(x: Share, fn: Callable[[np.ndarray], np.ndarray]) -> Share:
    """A shape-preserving local map (no placeholder evaluation at a party without parts)."""
    return x.map(fn, shape=x.shape)


def and_many(
    ctx: OpContext, proto: Protocol, pairs: Sequence[tuple[Share, Share]]
) -> Step[list[Share]]:
    """Independent ANDs in one round (sub-steps ``ctx.child(i)`` run through ``gather``)."""
    return (yield from gather(proto.and_(ctx.child(i), x, y) for i, (x, y) in enumerate(pairs)))


def reduce_summands(
    ctx: OpContext, proto: Protocol, summands: list[Share]
) -> Step[tuple[Share, Share]]:
    """Carry-save adders until two boolean summands remain (one AND round per layer).

    ``a + b + c = (a ^ b ^ c) + 2 maj(a, b, c)``, ``maj = ((a ^ c) & (b ^ c)) ^ c``; k summands
    take ``ceil(log_{3/2}(k/2))`` rounds (0 for k = 2, 1 for k = 3).
    """
    if not summands:
        raise ValueError("a2b_summands returned no summands")
    if len(summands) == 1:
        return summands[0], proto.xor(summands[0], summands[0])
    layer = 0
    while len(summands) > 2:
        triples = [summands[i : i + 3] for i in range(0, len(summands) - 2, 3)]
        rest = summands[3 * len(triples) :]
        pairs = [(proto.xor(a, c), proto.xor(b, c)) for a, b, c in triples]
        ands = yield from and_many(ctx.child(layer), proto, pairs)
        nxt = []
        for (_, b, c), (ac, _), t in zip(triples, pairs, ands):
            nxt.append(proto.xor(ac, b))
            nxt.append(_local(proto.xor(t, c), lambda p: p << _ONE))
        summands = nxt + rest
        layer += 1
    return summands[0], summands[1]


def _carry63(ctx: OpContext, proto: Protocol, u: Share, v: Share) -> Step[tuple[Share, Share]]:
    """Bit 63 of u ^ v, and the carry into bit 63 of u + v; 1-D inputs of n words (n % 64 == 0).

    Returns ``(top, carry)``: ``top`` has one 0/1 word per element; ``carry`` has n/64 packed
    words, word k bit f holding the carry of element ``k + f * n/64``. 6 AND rounds.
    """
    uv = proto.xor(u, v)
    top = _local(uv, lambda p: p >> _U64(63))
    P: dict[int, Share] = {0: _local(uv, lambda p: _rev6(p << _ONE))}
    splits: dict[tuple[str, int], tuple[Share, Share]] = {}

    def split(name: str, level: int, x: Share) -> tuple[Share, Share]:
        key = (name, level)
        if key not in splits:
            splits[key] = _split(x, level)
        return splits[key]

    # Round 1: leaf generates G0 = u & v, level-1 propagates; lowest group of level 1 is G0[1].
    plo, phi = split("P", 0, P[0])
    y = proto.and_public(plo, np.invert(_BLOCK0[1]))
    g, z = yield from and_many(ctx.child(1), proto, [(u, v), (phi, y)])
    G: dict[int, Share] = {0: _local(g, lambda p: _rev6(p << _ONE))}
    P[1] = z
    low = proto.xor(split("G", 0, G[0])[1], z)
    for r in range(2, 7):
        glo2, ghi2 = split("G", r - 2, G[r - 2])
        _, phi2 = split("P", r - 2, P[r - 2])
        plo1, phi1 = split("P", r - 1, P[r - 1])
        llo, _ = _split(low, r - 1)
        y = proto.xor(
            proto.and_public(plo1, np.invert(_BLOCK0[r])), proto.and_public(llo, _BLOCK0[r])
        )
        x1, z = yield from and_many(ctx.child(r), proto, [(phi2, glo2), (phi1, y)])
        G[r - 1] = proto.xor(ghi2, x1)
        P[r] = z
        low = proto.xor(split("G", r - 1, G[r - 1])[1], z)
    return top, low


def carry63_rounds(n_summands: int) -> int:
    """AND rounds of :func:`msb` for a protocol with ``n_summands`` A2B summands."""
    layers, k = 0, n_summands
    while k > 2:
        k = 2 * (k // 3) + k % 3
        layers += 1
    return layers + 6


def _flat_padded(x: Share, n_pad: int) -> Share:
    n = int(np.prod(x.shape, dtype=np.int64))

    def fn(p: np.ndarray) -> np.ndarray:
        out = np.zeros(n_pad, dtype=np.uint64)
        out[:n] = p.reshape(-1)
        return out

    return x.map(fn, shape=(n_pad,))


def msb(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """Boolean share of the most significant (sign) bit of an arithmetic share.

    Args:
        ctx: the op context.
        proto: the protocol.
        x: arithmetic share, any shape.

    Returns:
        Boolean share of x's shape, every word 0 or 1: ``x >> 63`` (1 iff x < 0 in two's
        complement). Exact.

    Rounds: 6 AND rounds with two summands (semi2k, 2 parties), 7 with three (rep3).
    """
    shape = x.shape
    n = int(np.prod(shape, dtype=np.int64))
    n_pad = max(64, -(-n // 64) * 64)
    flat = _flat_padded(x, n_pad)
    u, v = yield from reduce_summands(ctx.child("csa"), proto, proto.a2b_summands(flat))
    top, carry = yield from _carry63(ctx.child("tree"), proto, u, v)
    shifts = np.arange(64, dtype=np.uint64)[:, None]
    bits = carry.map(lambda p: ((p[None, :] >> shifts) & _ONE).reshape(-1), shape=(n_pad,))
    out = proto.xor(top, bits)
    return out.map(lambda p: p[:n].reshape(shape), shape=shape)


def a2b(ctx: OpContext, proto: Protocol, x: Share) -> Step[Share]:
    """Boolean sharing of an arithmetic share (all 64 bits), by a Kogge-Stone adder.

    Math: with summands (u, v): ``g = u & v``, ``p = u ^ v``; for k = 1, 2, ..., 32:
    ``g ^= p & (g << k)``, ``p &= p << k``; the sum is ``u ^ v ^ (g << 1)``.

    Rounds: 7 AND rounds for two summands (+1 per carry-save layer: 8 for rep3).
    """
    u, v = yield from reduce_summands(ctx.child("csa"), proto, proto.a2b_summands(x))
    (g,) = yield from and_many(ctx.child("g"), proto, [(u, v)])
    p = proto.xor(u, v)
    k = 1
    while k < 64:
        gs = _local(g, _shl(k))
        if k < 32:
            ps = _local(p, _shl(k))
            t, p2 = yield from and_many(ctx.child(k), proto, [(p, gs), (p, ps)])
        else:
            (t,) = yield from and_many(ctx.child(k), proto, [(p, gs)])
            p2 = p
        g = proto.xor(g, t)
        p = p2
        k *= 2
    return proto.xor(proto.xor(u, v), _local(g, lambda w: w << _ONE))


def b2a(ctx: OpContext, proto: Protocol, x: Share, nbits: int = 64) -> Step[Share]:
    """Arithmetic sharing of the low ``nbits`` bits of a boolean share (one round).

    Math: ``x = sum_i 2^i x_i`` with each bit x_i converted by ``bit_to_arith``.
    """
    if not 1 <= nbits <= 64:
        raise ValueError(f"nbits must be in 1..64, not {nbits!r}")
    shape = x.shape
    shifts = np.arange(nbits, dtype=np.uint64)
    bits = x.map(lambda p: (p[..., None] >> shifts) & _ONE, shape=shape + (nbits,))
    arith = yield from proto.bit_to_arith(ctx, bits)
    weights = _ONE << shifts
    weighted = proto.mul_public(arith, weights)
    return weighted.map(lambda p: p.sum(axis=-1, dtype=np.uint64), shape=shape)
