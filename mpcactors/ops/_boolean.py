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
from ._millionaire import millionaire_share
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


def _swap_mask(a: int, b: int, width: int) -> np.ndarray:
    return _mask([i for i in range(64) if (i % width >> a) & 1 == 1 and (i % width >> b) & 1 == 0])


def _lane_masks(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Lanes of 64 >> level bits: (bit 0 of every lane, the top bit of every lane)."""
    w = 64 >> level
    return _mask(list(range(0, 64, w))), _mask(list(range(w - 1, 64, w)))


# Level L of the carry tree: fields of w = 64 >> L bits. _HALF[L]: low half of each field;
# _BLOCK0[L]: bit 0 of each field (the lowest group).
_HALF = tuple(_half_mask(lv) for lv in range(6))
_BLOCK0 = tuple(_block0_mask(lv) for lv in range(7))
# Reversal of the bit index within lanes of 64 >> level bits: delta swaps exchanging index bits
# (0, k-1), (1, k-2), ... with k = 6 - level (for 64-bit lanes: (0,5), (1,4), (2,3)).
_REV_SWAPS = tuple(
    tuple(
        ((1 << (5 - lv - a)) - (1 << a), _swap_mask(a, 5 - lv - a, 64 >> lv))
        for a in range((6 - lv) // 2)
    )
    for lv in range(6)
)
_CHUNK = 1 << 14  # words per pass of _rev: 128 KiB stays in cache across the passes


def _rev(p: np.ndarray, level: int = 0) -> np.ndarray:
    """Reverse the bit index within every lane of 64 >> level bits (an involution).

    Level 0: bit i of every word moves to bit rev6(i).
    """
    out = np.array(p, dtype=np.uint64, copy=True).reshape(-1)
    t = np.empty(min(_CHUNK, out.size), dtype=np.uint64)
    for start in range(0, out.size, _CHUNK):
        x = out[start : start + _CHUNK]
        tt = t[: x.size]
        for delta, mask in _REV_SWAPS[level]:
            d = _U64(delta)
            np.right_shift(x, d, out=tt)
            tt ^= x
            tt &= mask
            x ^= tt
            tt <<= d
            x ^= tt
    return out.reshape(np.shape(p))


def _rev6(p: np.ndarray) -> np.ndarray:
    """Move bit i of every word to bit rev6(i) (6-bit index reversal)."""
    return _rev(p, 0)


def _split_parts(p: np.ndarray, level: int) -> np.ndarray:
    """(lo, hi) of one part, stacked: shape (2, n/2). Chunked so temporaries stay in cache."""
    h = _U64(32 >> level)
    mask = _HALF[level]
    inv = np.invert(mask)
    m = p.shape[0] // 2
    out = np.empty((2, m), dtype=np.uint64)
    t = np.empty(min(_CHUNK, m), dtype=np.uint64)
    for start in range(0, m, _CHUNK):
        stop = min(start + _CHUNK, m)
        a, b = p[start:stop], p[m + start : m + stop]
        lo, hi, tt = out[0, start:stop], out[1, start:stop], t[: stop - start]
        np.bitwise_and(a, mask, out=lo)
        np.bitwise_and(b, mask, out=tt)
        tt <<= h
        lo |= tt
        np.right_shift(a, h, out=hi)
        hi &= mask
        np.bitwise_and(b, inv, out=tt)
        hi |= tt
    return out


def _split(x: Share, level: int) -> tuple[Share, Share]:
    """Level-``level`` words (n) -> (even groups, odd groups) in level+1 layout (n/2 words)."""
    m = x.shape[0] // 2
    both = x.map(lambda p: _split_parts(p, level), shape=(2, m))
    return both.map(lambda p: p[0], shape=(m,)), both.map(lambda p: p[1], shape=(m,))


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
    ctx: OpContext, proto: Protocol, summands: list[Share], level: int = 0
) -> Step[tuple[Share, Share]]:
    """Carry-save adders until two boolean summands remain (one AND round per layer).

    ``a + b + c = (a ^ b ^ c) + 2 maj(a, b, c)``, ``maj = ((a ^ c) & (b ^ c)) ^ c``; k summands
    take ``ceil(log_{3/2}(k/2))`` rounds (0 for k = 2, 1 for k = 3). Words hold lanes of
    64 >> level bits (independent numbers mod 2^(64 >> level)).
    """
    lsb, _ = _lane_masks(level)
    keep = np.invert(lsb)

    def double(p: np.ndarray) -> np.ndarray:
        q = p << _ONE
        if level:
            q &= keep
        return q

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
            nxt.append(_local(proto.xor(t, c), double))
        summands = nxt + rest
        layer += 1
    return summands[0], summands[1]


def _carry_tree(
    ctx: OpContext, proto: Protocol, u: Share, v: Share, level: int
) -> Step[tuple[Share, Share]]:
    """Top bit of u ^ v and carry into the top bit of u + v, for lanes of w = 64 >> level bits.

    Inputs: n/2^level words in the level-``level`` layout (word k lane F is element
    ``k + F n/2^level``, natural bit order), n % 64 == 0. Returns ``(top, carry)``, both with
    the top lane bits only meaningful: ``top`` in the input layout, ``carry`` as n/64 words
    (word k bit F is element ``k + F n/64``). 6 - level AND rounds.
    """
    lsb, msb_mask = _lane_masks(level)
    keep = np.invert(lsb)

    def leaves(p: np.ndarray) -> np.ndarray:  # dummy position 0 (g = 0), bit-reversed lanes
        q = p << _ONE
        if level:
            q &= keep
        return _rev(q, level)

    uv = proto.xor(u, v)
    top = proto.and_public(uv, msb_mask)
    P: dict[int, Share] = {level: _local(uv, leaves)}
    splits: dict[tuple[str, int], tuple[Share, Share]] = {}

    def split(name: str, lv: int, x: Share) -> tuple[Share, Share]:
        key = (name, lv)
        if key not in splits:
            splits[key] = _split(x, lv)
        return splits[key]

    # Round 1: leaf generates G = u & v, next-level propagates; the lowest group of the next
    # level is G[1] (the dummy's generate is 0).
    plo, phi = split("P", level, P[level])
    y = proto.and_public(plo, np.invert(_BLOCK0[level + 1]))
    g, z = yield from and_many(ctx.child(1), proto, [(u, v), (phi, y)])
    G: dict[int, Share] = {level: _local(g, leaves)}
    P[level + 1] = z
    low = proto.xor(split("G", level, G[level])[1], z)
    for r in range(level + 2, 7):
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


def carry63_rounds(n_summands: int, bits: int = 64) -> int:
    """AND rounds of :func:`msb` for a protocol with ``n_summands`` A2B summands."""
    layers, k = 0, n_summands
    while k > 2:
        k = 2 * (k // 3) + k % 3
        layers += 1
    return layers + bits.bit_length() - 1


def _packed(x: Share, n: int, n_pad: int, level: int) -> Share:
    """Flatten, pad to n_pad and pack the low 64 >> level bits of 2^level elements per word:
    word k lane F holds element ``k + F n_pad/2^level``."""
    w = 64 >> level
    lanes = 1 << level
    low = _U64((1 << w) - 1)

    def fn(p: np.ndarray) -> np.ndarray:
        if n == n_pad and not level:
            return p.reshape(-1)
        flat = np.zeros(n_pad, dtype=np.uint64)
        flat[:n] = p.reshape(-1)
        if not level:
            return flat
        rows = flat.reshape(lanes, n_pad // lanes) & low
        out = rows[0].copy()
        for lane in range(1, lanes):
            out |= rows[lane] << _U64(lane * w)
        return out

    return x.map(fn, shape=(n_pad >> level,))


def msb(ctx: OpContext, proto: Protocol, x: Share, bits: int = 64) -> Step[Share]:
    """Boolean share of the sign bit of an arithmetic share.

    Args:
        ctx: the op context.
        proto: the protocol.
        x: arithmetic share, any shape.
        bits: 64 for the ring's sign bit ``x >> 63``. A power of two 2..32 computes the sign of
            the low ``bits`` bits as a two's complement number, which equals the sign of x when
            |x| < 2^(bits-1): 64/bits elements share each word, so the circuit is that many
            times smaller and has log2(bits) AND rounds instead of 6.

    Returns:
        Boolean share of x's shape, every word 0 or 1 (1 iff x < 0). Exact (in range).

    Rounds: log2(bits) AND rounds with two summands (6 for 64 bits: semi2k, 2 holders), one
    more with three (rep3). semi2k with two holders and no dealer, any ``bits``: CrypTFlow2's
    millionaires' protocol (``_millionaire.py``), the OT rounds + 1 + ceil(log2 leaves) (6 for
    64 bits, 4 for 16).
    """
    if bits not in (2, 4, 8, 16, 32, 64):
        raise ValueError(f"bits must be a power of two in 2..64, not {bits!r}")
    if getattr(proto, "dealerless", False) and len(proto.holders) == 2:
        # two holders, no dealer: the millionaires' protocol on OT, for any width
        return (yield from millionaire_share(ctx, proto, x, bits))
    level = 7 - bits.bit_length()
    shape = x.shape
    n = int(np.prod(shape, dtype=np.int64))
    n_pad = max(64, -(-n // 64) * 64)
    summands = [_packed(s, n, n_pad, level) for s in proto.a2b_summands(x)]
    u, v = yield from reduce_summands(ctx.child("csa"), proto, summands, level)
    top, carry = yield from _carry_tree(ctx.child("tree"), proto, u, v, level)
    lanes, w = 1 << level, 64 >> level
    top_shifts = (np.arange(lanes, dtype=np.uint64) * _U64(w) + _U64(w - 1))[:, None]
    shifts = np.arange(64, dtype=np.uint64)[:, None]

    def unpack_top(p: np.ndarray) -> np.ndarray:
        return ((p[None, :] >> top_shifts) & _ONE).reshape(-1)

    def unpack_carry(p: np.ndarray) -> np.ndarray:
        return ((p[None, :] >> shifts) & _ONE).reshape(-1)

    out = proto.xor(top.map(unpack_top, shape=(n_pad,)), carry.map(unpack_carry, shape=(n_pad,)))
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
